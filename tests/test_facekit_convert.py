"""ICT-FaceKit converter and the model store's download-then-convert path (real files, a real HTTP server)."""

from __future__ import annotations

import functools
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, shared_file
from test_model_store import server  # noqa: F401  (the local HTTP server fixture)
from veilcam.daemon import facekit_convert as fc
from veilcam.daemon.errors import ModelFileError
from veilcam.daemon.model_store import MODELS, ModelSpec, ModelStore

RAW = SHARED / "models" / "ict_facekit" / "raw_subset"
COMPACT = "models/ict_facekit/ict_facekit_compact.npz"


@pytest.fixture(scope="module")
def compact() -> dict[str, np.ndarray]:
    with np.load(shared_file(COMPACT)) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def subset() -> dict[str, np.ndarray]:
    files = fc.ReleaseFiles(RAW)
    try:
        return fc.convert(files, identities=[0], expressions=["jawOpen"], progress=False)
    finally:
        files.close()


def compact_slices(compact: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference arrays cut down to what raw_subset holds: identity 0 and jawOpen."""
    j = list(compact["exp_names"]).index("jawOpen")
    out = dict(compact)
    out["id_basis"] = compact["id_basis"][:1]
    for key in ("exp_basis", "exp_names", "exp_official"):
        out[key] = compact[key][j : j + 1]
    out["exp_names"] = out["exp_names"].astype("<U7")
    return out


def test_converter_reproduces_the_compact_files_arrays(subset, compact):
    reference = compact_slices(compact)
    assert set(subset) == set(compact)
    for key, value in subset.items():
        assert value.dtype == reference[key].dtype and value.shape == reference[key].shape, key
        np.testing.assert_array_equal(value, reference[key], err_msg=key)  # bit-exact, float16 deltas included
    assert json.loads(str(subset["regions"]))["eyeball_left"] == [21451, 23021]


def test_content_digest_pins_the_reference_and_sees_any_change(subset, compact):
    assert fc.file_digest(shared_file(COMPACT)) == fc.COMPACT_DIGEST
    assert fc.content_digest(subset) == fc.content_digest(compact_slices(compact))
    changed = dict(subset)
    changed["exp_basis"] = subset["exp_basis"].copy()
    changed["exp_basis"][0, 100, 1] += np.float16(0.01)
    assert fc.content_digest(changed) != fc.content_digest(subset)
    described = dict(subset, meta=np.array("{}"))
    assert fc.content_digest(described) == fc.content_digest(subset)  # meta is description only


def release_zip(path: Path, altered: bool = False) -> bytes:
    """raw_subset laid out like GitHub's archive of the pinned commit."""
    root = f"ICT-FaceKit-{fc.UPSTREAM_COMMIT}/FaceXModel/"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"ICT-FaceKit-{fc.UPSTREAM_COMMIT}/README.md", "ICT-FaceKit")
        for name in ("generic_neutral_mesh.obj", "identity000.obj", "jawOpen.obj", "vertex_indices.json"):
            text = (RAW / name).read_text()
            if altered and name == "jawOpen.obj":
                text = re.sub(r"\nv \S+", "\nv 0.123", text, count=1)  # move one vertex
            z.writestr(root + name, text)
    return path.read_bytes()


def subset_spec(url: str, digest: str) -> ModelSpec:
    return ModelSpec(
        name="ict_facekit/subset_compact.npz",
        url=url,
        sha256=None,
        size=None,
        build=functools.partial(fc.build_compact, identities=[0], expressions=["jawOpen"]),
        verify=lambda p: fc.file_digest(p) == digest,
    )


def test_store_downloads_the_release_and_converts_it(tmp_path, server, subset, capsys):  # noqa: F811
    url = server.serve("/ICT-FaceKit.zip", release_zip(tmp_path / "release.zip"))
    spec = subset_spec(url, fc.content_digest(subset))
    store = ModelStore(None, tmp_path / "cache", registry={spec.name: spec}, progress=True)
    path = store.resolve(spec.name)
    assert path == tmp_path / "cache" / "ict_facekit" / "subset_compact.npz"
    assert "ICT-FaceKit" in capsys.readouterr().err  # download and conversion progress
    with np.load(path) as z:
        np.testing.assert_array_equal(z["exp_basis"], subset["exp_basis"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["subset_compact.npz"]  # no temp files left
    assert ModelStore(None, tmp_path / "cache", registry={spec.name: spec}, progress=False).resolve(spec.name) == path
    assert server.requests == ["/ICT-FaceKit.zip"]


def test_store_rejects_a_release_with_other_content(tmp_path, server, subset):  # noqa: F811
    url = server.serve("/ICT-FaceKit.zip", release_zip(tmp_path / "release.zip", altered=True))
    spec = subset_spec(url, fc.content_digest(subset))
    with pytest.raises(ModelFileError, match="does not hold the expected model") as err:
        ModelStore(None, tmp_path / "cache", registry={spec.name: spec}, progress=False).resolve(spec.name)
    assert "\n" not in str(err.value)
    assert list((tmp_path / "cache" / "ict_facekit").iterdir()) == []


def test_a_broken_release_is_named_in_one_line(tmp_path):
    not_zip = tmp_path / "release.zip"
    not_zip.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(fc.ConversionError, match="not a readable zip"):
        fc.ReleaseFiles(not_zip)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("ICT-FaceKit/README.md", "")
    with pytest.raises(fc.ConversionError, match="FaceXModel/generic_neutral_mesh.obj"):
        fc.ReleaseFiles(empty)
    files = fc.ReleaseFiles(RAW)
    with pytest.raises(fc.ConversionError, match="identity001.obj is missing"):
        fc.convert(files, identities=[1], expressions=[], progress=False)


def test_registry_resolves_the_compact_file_from_the_model_dir(model_dir):
    spec = MODELS[fc.COMPACT_NAME]
    assert spec.url == fc.ARCHIVE_URL and fc.UPSTREAM_COMMIT in spec.url and spec.build is fc.build_compact
    store = ModelStore.from_environment(allow_download=False, progress=False)
    assert store.resolve(fc.COMPACT_NAME) == model_dir / "ict_facekit" / "ict_facekit_compact.npz"
