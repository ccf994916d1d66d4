"""Building face-model (ICT-FaceKit) avatars: the model file, its light mesh, the renderer.

The model loads once per process, from a prepared copy in the user cache
(uncompressed, float32, memory-mapped) once one exists for the verified file.
Its simplified render mesh takes a few seconds to compute, so it is kept in the
user cache too, keyed by the model's content and the simplification settings.
A missing or unreadable cache entry is simply computed again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from veilcam.models.face_model import (
    FaceModel,
    RenderMesh,
    build_render_mesh,
    face_model_from_arrays,
    load_face_model,
    read_face_model_arrays,
    write_prepared_face_model,
)
from veilcam.models.facekit_looks import FaceLook
from veilcam.models.renderer import FaceRenderer

from . import paths
from .bake_cache import DiskBake
from .config import Config
from .errors import ConfigError, ModelFileError
from .facekit_convert import COMPACT_NAME
from .model_store import ModelStore

#: Bump when the simplification changes in a way the settings below do not show.
_LOD_VERSION = 1


#: Bump when the prepared copy's layout changes.
_PREPARED_VERSION = 1


@lru_cache(maxsize=2)
def _load(path: Path, stamp: tuple[int, int, int]) -> FaceModel:
    """The model, from a prepared copy in the user cache when there is one for this
    very file (path, size, mtime, inode); else from the file, then prepared for next time."""
    key = hashlib.sha256(f"{_PREPARED_VERSION} {path.resolve()} {stamp}".encode()).hexdigest()[:20]
    prepared = paths.cache_dir() / "facekit" / f"model-{key}"
    try:
        return load_face_model(prepared)
    except ValueError:
        pass  # not prepared yet, or damaged: read the file itself
    try:
        arrays = read_face_model_arrays(path)
        model = face_model_from_arrays(path, arrays)
    except ValueError as exc:
        raise ModelFileError(f"{exc}; delete it so VeilCam builds it again") from exc
    _prepare(arrays, prepared)
    return model


def _prepare(arrays: dict[str, np.ndarray], prepared: Path) -> None:
    """Write the prepared copy next to the old ones, then drop those (best effort: a
    read-only or full cache only costs reading the compact file next time)."""
    try:
        prepared.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=prepared.parent))
        try:
            write_prepared_face_model(arrays, tmp / "m")
            os.replace(tmp / "m", prepared)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for old in prepared.parent.glob("model-*"):
            if old != prepared:
                shutil.rmtree(old, ignore_errors=True)
    except OSError:
        pass


def open_face_model(store: ModelStore) -> FaceModel:
    """The verified ICT-FaceKit model (downloaded and converted on first use)."""
    path = store.resolve(COMPACT_NAME)
    st = path.stat()
    return _load(path, (st.st_size, st.st_mtime_ns, st.st_ino))


def face_model_and_mesh(store: ModelStore) -> tuple[FaceModel, RenderMesh]:
    """The verified model and its simplified render mesh. The store verified the
    model's content against its pin, so the pin names that content in the mesh's
    cache key (hashing the 17 MB of arrays again cost 70 ms per process)."""
    model = open_face_model(store)
    pin = store.registry[COMPACT_NAME].pin
    assert pin is not None, "the face model is checked by its content"
    return model, facekit_mesh(model, pin)


@lru_cache(maxsize=2)
def facekit_mesh(model: FaceModel, content: str) -> RenderMesh:
    """The simplified render mesh of `model`, whose arrays `content` names (a digest),
    from the user cache when it is there (whole: building even the full mesh it
    simplifies takes 0.15 s)."""
    from veilcam.models.facekit_lod import KEEP, simplified_triangles

    key = hashlib.sha256(f"{_LOD_VERSION} {sorted(KEEP.items())} {content}".encode()).hexdigest()[:20]
    cached = paths.cache_dir() / "facekit" / f"rendermesh-{key}.npz"
    try:
        return _read_mesh(cached, model)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # not there yet, or damaged: compute it again
    full = build_render_mesh(model)
    mesh = full.with_triangles(simplified_triangles(model, full))
    try:
        paths.write_atomically(cached, lambda f: np.savez(
            f, source=mesh.source, uv=mesh.uv, tile=mesh.tile, material=mesh.material, triangles=mesh.triangles,
            moving=np.int64(mesh.moving), eyeballs=np.array(mesh.eyeballs, np.int64)))
    except OSError:
        pass  # a read-only cache only costs the computation next time
    return mesh


def _read_mesh(path: Path, model: FaceModel) -> RenderMesh:
    """A cached render mesh, checked to index this model and itself consistently (ValueError if not)."""
    with np.load(path, allow_pickle=False) as f:
        a = {k: f[k] for k in ("source", "uv", "tile", "material", "triangles", "moving", "eyeballs")}
    n = len(a["source"])
    moving, eyeballs = int(a["moving"]), a["eyeballs"]
    ok = (a["source"].dtype == np.int32 and a["uv"].shape == (n, 2) and len(a["tile"]) == n and len(a["material"]) == n
          and a["triangles"].ndim == 2 and a["triangles"].shape[1] == 3 and a["triangles"].dtype == np.int32
          and n > 0 and 0 <= a["source"].min() and a["source"].max() < model.num_vertices
          and 0 <= a["triangles"].min() and a["triangles"].max() < n and 0 <= moving <= n
          and eyeballs.shape == (2, 2) and 0 <= eyeballs.min() and eyeballs.max() <= n)
    if not ok:
        raise ValueError(f"{path}: not a render mesh of this model")
    return RenderMesh(a["source"], a["uv"].astype(np.float32), a["tile"].astype(np.int8), a["material"].astype(np.int8), a["triangles"], moving,
                      ((int(eyeballs[0, 0]), int(eyeballs[0, 1])), (int(eyeballs[1, 0]), int(eyeballs[1, 1]))))


def make_facekit_renderer(config: Config, store: ModelStore, look: FaceLook, identity: np.ndarray | None = None,
                          background: np.ndarray | None = None, rest_rotation: np.ndarray | None = None) -> FaceRenderer:
    """A face-model renderer sized to the output; `background` (an RGB image, from
    `avatar.background_image`) replaces the look's. `identity`: up to 100 identity
    coefficients; a textured face comes with `look.texture`; `rest_rotation`: see
    `FaceKitRenderer`. Call it on the thread that will render (GL contexts are per thread)."""
    from veilcam.models.facekit_renderer import FaceKitRenderer  # OpenGL loads here, not at import

    if background is not None:
        look = dataclasses.replace(look, background=background)
    model, mesh = face_model_and_mesh(store)
    try:
        bake = DiskBake(paths.cache_dir() / "facekit")
        return FaceKitRenderer(config.output.width, config.output.height, model, look, identity, mesh, bake, rest_rotation)
    except RuntimeError as exc:  # no OpenGL
        raise ConfigError(f"avatar: cannot render ({exc})") from exc
