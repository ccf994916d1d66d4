"""The avatar catalog: every avatar a user can pick, by one name.

Built-in avatars need no files beyond the tracker's model; later kinds (3DMM
looks, photo and neural avatars from packs) add entries here. Config, CLI,
control socket and tray all select avatars by `name`, so this is the one place
that maps a name to the renderer that draws it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from veilcam.models.renderer import FaceRenderer

from . import paths
from .avatar_pack import installed_packs
from .config import Config
from .errors import AvatarPackError, ConfigError, ModelFileError
from .model_store import ModelStore

if TYPE_CHECKING:
    from veilcam.models.mask_rig import MaskGeometry

FACE_LANDMARKER = "face_landmarker.task"


@dataclass(frozen=True)
class AvatarEntry:
    name: str
    kind: str  # which builder draws it: "mask", ...
    description: str
    pack_dir: Path | None = None  # None for built-ins; an installed pack's folder or .zip
    error: str | None = None  # why an installed pack cannot be used (it is listed, never built)


def _background_image(path: str) -> np.ndarray | None:
    if not path:
        return None
    bgr = cv2.imread(str(Path(path).expanduser()), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"avatar.background_image: cannot read {path} as an image (use a PNG or JPEG)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@lru_cache(maxsize=2)
def _mask_geometry(task: Path, mtime_ns: int) -> "MaskGeometry":
    """One rig and shell per process for every mask look: a switch between masks then skips 0.2-0.5 s of set-up."""
    from veilcam.models.canonical_mesh import load_canonical_mesh
    from veilcam.models.mask_rig import MaskGeometry

    # The mask's geometry is MediaPipe's canonical face, shipped inside the tracker's model file.
    try:
        return MaskGeometry.from_mesh(load_canonical_mesh(task))
    except ValueError as exc:
        raise ModelFileError(f"{task}: no usable face geometry inside ({exc}); delete it so VeilCam downloads it again") from exc


def _build_mask(entry: AvatarEntry, config: Config, store: ModelStore) -> FaceRenderer:
    from veilcam.models.mask_renderer import MASK_LOOKS, MaskRenderer  # OpenGL loads here, not at import

    look = MASK_LOOKS[entry.name]
    background = _background_image(config.avatar.background_image)
    if background is not None:
        look = dataclasses.replace(look, background=background)
    task = store.resolve(FACE_LANDMARKER)
    geometry = _mask_geometry(task, task.stat().st_mtime_ns)
    try:
        return MaskRenderer(config.output.width, config.output.height, geometry, look)
    except RuntimeError as exc:  # no OpenGL
        raise ConfigError(f"avatar: cannot render ({exc})") from exc


def _build_facekit(entry: AvatarEntry, config: Config, store: ModelStore) -> FaceRenderer:
    from veilcam.models.facekit_looks import FACEKIT_LOOKS

    from .facekit_avatar import make_facekit_renderer

    return make_facekit_renderer(config, store, FACEKIT_LOOKS[entry.name], background=_background_image(config.avatar.background_image))


def _build_photo(entry: AvatarEntry, config: Config, store: ModelStore) -> FaceRenderer:
    from .photo_avatar import build_photo_renderer  # the face model and OpenGL load here, not at import

    return build_photo_renderer(entry, config, store)


def _build_neural(entry: AvatarEntry, config: Config, store: ModelStore) -> FaceRenderer:
    from .neural_avatar import build_neural_renderer  # onnxruntime (or torch) and OpenGL load here, not at import

    return build_neural_renderer(entry, config, store)


RendererBuilder = Callable[[AvatarEntry, Config, ModelStore], FaceRenderer]
RENDERER_BUILDERS: dict[str, RendererBuilder] = {"mask": _build_mask, "facekit": _build_facekit, "photo": _build_photo, "neural": _build_neural}


def builtin_avatars() -> list[AvatarEntry]:
    from veilcam.models.facekit_looks import FACEKIT_LOOKS
    from veilcam.models.mask_renderer import MASK_LOOKS

    masks = [AvatarEntry(name, "mask", f"{name} mask on the MediaPipe face geometry") for name in MASK_LOOKS]
    return masks + [AvatarEntry(name, "facekit", f"{name} look on the ICT-FaceKit 3D face model") for name in FACEKIT_LOOKS]


def installed_avatars(builtin_names: set[str]) -> list[AvatarEntry]:
    """Packs in the avatars folder. A broken pack is listed with its error rather
    than hidden, so `veilcam avatar list` and the tray can say why it is unusable;
    only its manifest is read here (checksums are verified when it is built)."""
    entries = []
    for pack in installed_packs(paths.avatars_dir()):
        m = pack.manifest
        if m is None:
            entries.append(AvatarEntry(pack.name, "broken", "cannot be used", pack.path, pack.error))
        elif m.name in builtin_names:
            error = f"avatar pack {pack.path}: {m.name!r} is the name of a built-in avatar; remove the pack or re-create it under another name"
            entries.append(AvatarEntry(m.name, m.kind, "cannot be used", pack.path, error))
        else:
            description = m.description or f"{m.kind} avatar, created {m.created:%Y-%m-%d}"
            entries.append(AvatarEntry(m.name, m.kind, description, pack.path))
    return entries


def list_avatars() -> list[AvatarEntry]:
    """All avatars the user can pick, built-ins first, then installed packs (broken ones included, with their error)."""
    builtins = builtin_avatars()
    return builtins + installed_avatars({a.name for a in builtins})


def find_avatar(name: str) -> AvatarEntry:
    """The usable avatar called `name`; a broken pack raises its own error here, before anything is built."""
    avatars = list_avatars()
    for entry in avatars:
        if entry.name == name:
            if entry.error:
                raise AvatarPackError(entry.error)
            return entry
    raise ConfigError(f"avatar.name: no avatar called {name!r} (choose one of {', '.join(a.name for a in avatars)}; see `veilcam avatar list`)")


def build_renderer(entry: AvatarEntry, config: Config, store: ModelStore) -> FaceRenderer:
    """The renderer for `entry`, sized to the output. Call it on the thread that will render (GL contexts are per thread).

    Raises a `VeilCamError` (a bad pack, a missing model) before any renderer
    exists, so a caller swapping avatars can keep the one it has.
    """
    if entry.error:
        raise AvatarPackError(entry.error)
    builder = RENDERER_BUILDERS.get(entry.kind)
    if builder is None:
        raise ConfigError(f"avatar {entry.name!r}: kind {entry.kind!r} cannot be rendered by this VeilCam (update it)")
    return builder(entry, config, store)
