"""The face model's caches in the user cache: a prepared copy of the model and its render mesh."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import shared_file
from veilcam.daemon import facekit_avatar
from veilcam.daemon.facekit_convert import COMPACT_DIGEST
from veilcam.models.face_model import load_face_model

COMPACT = "models/ict_facekit/ict_facekit_compact.npz"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    facekit_avatar._load.cache_clear()
    facekit_avatar.facekit_mesh.cache_clear()
    yield tmp_path / "veilcam" / "facekit"
    facekit_avatar._load.cache_clear()
    facekit_avatar.facekit_mesh.cache_clear()


def _load():
    path = shared_file(COMPACT)
    st = path.stat()
    facekit_avatar._load.cache_clear()  # as in a new process
    return facekit_avatar._load(path, (st.st_size, st.st_mtime_ns, st.st_ino))


def _mapped(a: np.ndarray) -> bool:
    while a is not None:
        if isinstance(a, np.memmap):
            return True
        a = a.base
    return False


def test_the_prepared_copy_gives_the_same_model_memory_mapped(cache) -> None:
    reference = load_face_model(shared_file(COMPACT))
    first = _load()
    assert len(list(cache.glob("model-*"))) == 1
    second = _load()
    assert _mapped(second.id_basis) and _mapped(second.exp_basis) and not _mapped(first.id_basis)
    for f in dataclasses.fields(reference):
        a, b = getattr(reference, f.name), getattr(second, f.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), f.name
            assert not b.flags.writeable
        else:
            assert a == b, f.name


def test_a_damaged_prepared_copy_is_read_past(cache) -> None:
    _load()
    (prepared,) = cache.glob("model-*")
    data = (prepared / "exp_basis.npy").read_bytes()
    (prepared / "exp_basis.npy").write_bytes(data[: len(data) // 2])  # truncated
    model = _load()
    assert not _mapped(model.exp_basis)  # from the compact file again
    assert np.array_equal(model.exp_basis, load_face_model(shared_file(COMPACT)).exp_basis)


def test_the_cached_render_mesh_is_the_computed_one(cache) -> None:
    model = load_face_model(shared_file(COMPACT))
    computed = facekit_avatar.facekit_mesh(model, COMPACT_DIGEST)
    facekit_avatar.facekit_mesh.cache_clear()
    (entry,) = cache.glob("rendermesh-*.npz")
    cached = facekit_avatar.facekit_mesh(model, COMPACT_DIGEST)
    for f in dataclasses.fields(computed):
        a, b = getattr(computed, f.name), getattr(cached, f.name)
        assert (np.array_equal(a, b) and a.dtype == b.dtype) if isinstance(a, np.ndarray) else a == b, f.name
    with np.load(entry) as z:
        arrays = dict(z)
    arrays["triangles"] = arrays["triangles"] + len(arrays["source"])  # indices out of range
    np.savez(entry, **arrays)
    with pytest.raises(ValueError, match="not a render mesh"):
        facekit_avatar._read_mesh(entry, model)
    facekit_avatar.facekit_mesh.cache_clear()
    assert np.array_equal(facekit_avatar.facekit_mesh(model, COMPACT_DIGEST).triangles, computed.triangles)  # computed again
