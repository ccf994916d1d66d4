"""The avatar catalog: every avatar a user can pick, by one name.

Built-in avatars need no files beyond the tracker's model; later kinds (3DMM
looks, photo and neural avatars from packs) add entries here. Config, CLI,
control socket and tray all select avatars by `name`, so this is the one place
that maps a name to the renderer that draws it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from veilcam.models.renderer import FaceRenderer

from .config import Config
from .errors import ConfigError, ModelFileError
from .model_store import ModelStore

FACE_LANDMARKER = "face_landmarker.task"


@dataclass(frozen=True)
class AvatarEntry:
    name: str
    kind: str  # which builder draws it: "mask", ...
    description: str
    pack_dir: Path | None = None  # None for built-ins


def _background_image(path: str) -> np.ndarray | None:
    if not path:
        return None
    bgr = cv2.imread(str(Path(path).expanduser()), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"avatar.background_image: cannot read {path} as an image (use a PNG or JPEG)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _build_mask(entry: AvatarEntry, config: Config, store: ModelStore) -> FaceRenderer:
    from veilcam.models.canonical_mesh import load_canonical_mesh
    from veilcam.models.mask_renderer import MASK_LOOKS, MaskRenderer  # OpenGL loads here, not at import

    look = MASK_LOOKS[entry.name]
    background = _background_image(config.avatar.background_image)
    if background is not None:
        look = dataclasses.replace(look, background=background)
    # The mask's geometry is MediaPipe's canonical face, shipped inside the tracker's model file.
    task = store.resolve(FACE_LANDMARKER)
    try:
        mesh = load_canonical_mesh(task)
    except ValueError as exc:
        raise ModelFileError(f"{task}: no usable face geometry inside ({exc}); delete it so VeilCam downloads it again") from exc
    try:
        return MaskRenderer(config.output.width, config.output.height, mesh, look)
    except RuntimeError as exc:  # no OpenGL
        raise ConfigError(f"avatar: cannot render ({exc})") from exc


RendererBuilder = Callable[[AvatarEntry, Config, ModelStore], FaceRenderer]
RENDERER_BUILDERS: dict[str, RendererBuilder] = {"mask": _build_mask}


def builtin_avatars() -> list[AvatarEntry]:
    from veilcam.models.mask_renderer import MASK_LOOKS

    return [AvatarEntry(name, "mask", f"{name} mask on the MediaPipe face geometry") for name in MASK_LOOKS]


def list_avatars() -> list[AvatarEntry]:
    """All avatars the user can pick, built-ins first."""
    return builtin_avatars()


def find_avatar(name: str) -> AvatarEntry:
    avatars = list_avatars()
    for entry in avatars:
        if entry.name == name:
            return entry
    raise ConfigError(f"avatar.name: no avatar called {name!r} (choose one of {', '.join(a.name for a in avatars)}; see `veilcam avatar list`)")


def build_renderer(entry: AvatarEntry, config: Config, store: ModelStore) -> FaceRenderer:
    """The renderer for `entry`, sized to the output. Call it on the thread that will render (GL contexts are per thread)."""
    return RENDERER_BUILDERS[entry.kind](entry, config, store)
