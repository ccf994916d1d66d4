"""Building face-model (ICT-FaceKit) avatars: the model file, its light mesh, the renderer.

The model loads once per process. Its simplified render mesh takes a few
seconds to compute, so it is kept in the user cache, keyed by the model's
content and the simplification settings; a missing or unreadable cache entry is
simply computed again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from veilcam.models.face_model import FaceModel, RenderMesh, build_render_mesh, load_face_model
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


@lru_cache(maxsize=2)
def _load(path: Path, mtime_ns: int) -> FaceModel:
    try:
        return load_face_model(path)
    except ValueError as exc:
        raise ModelFileError(f"{exc}; delete it so VeilCam builds it again") from exc


def open_face_model(store: ModelStore) -> FaceModel:
    """The verified ICT-FaceKit model (downloaded and converted on first use)."""
    path = store.resolve(COMPACT_NAME)
    return _load(path, path.stat().st_mtime_ns)


def _lod_key(model: FaceModel) -> str:
    from veilcam.models.facekit_lod import KEEP

    h = hashlib.sha256(f"{_LOD_VERSION}{sorted(KEEP.items())}".encode())
    for array in (model.neutral, model.exp_basis, model.triangles):
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:20]


@lru_cache(maxsize=2)
def facekit_mesh(model: FaceModel) -> RenderMesh:
    """The simplified render mesh, from the user cache when it is there."""
    from veilcam.models.facekit_lod import simplified_triangles

    mesh = build_render_mesh(model)
    cached = paths.cache_dir() / "facekit" / f"mesh-{_lod_key(model)}.npy"
    try:
        triangles = np.load(cached, allow_pickle=False)
        if triangles.ndim == 2 and triangles.shape[1] == 3 and triangles.dtype == np.int32 and 0 <= triangles.min() and triangles.max() < len(mesh.source):
            return mesh.with_triangles(triangles)
    except (OSError, ValueError):
        pass  # not there yet, or damaged: compute it again
    triangles = simplified_triangles(model, mesh)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".mesh-", suffix=".npy", dir=cached.parent)
        with os.fdopen(fd, "wb") as f:
            np.save(f, triangles)
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only cache only costs the computation next time
    return mesh.with_triangles(triangles)


def make_facekit_renderer(config: Config, store: ModelStore, look: FaceLook, identity: np.ndarray | None = None,
                          background: np.ndarray | None = None) -> FaceRenderer:
    """A face-model renderer sized to the output; `background` (an RGB image, from
    `avatar.background_image`) replaces the look's. `identity`: up to 100 identity
    coefficients; a textured face comes with `look.texture`. Call it on the thread
    that will render (GL contexts are per thread)."""
    from veilcam.models.facekit_renderer import FaceKitRenderer  # OpenGL loads here, not at import

    if background is not None:
        look = dataclasses.replace(look, background=background)
    model = open_face_model(store)
    try:
        bake = DiskBake(paths.cache_dir() / "facekit")
        return FaceKitRenderer(config.output.width, config.output.height, model, look, identity, facekit_mesh(model), bake)
    except RuntimeError as exc:  # no OpenGL
        raise ConfigError(f"avatar: cannot render ({exc})") from exc
