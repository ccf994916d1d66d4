"""Photo avatars: one portrait in, an avatar pack out, and the `photo` kind's renderer.

`create_photo_avatar` tracks the portrait with the same MediaPipe model the
pipeline uses, fits the ICT face model to its landmarks (identity, expression,
pose), bakes the photo into the model's skin texture, renders a preview with
the real renderer and writes the pack atomically. What the pack keeps is the
fitted identity, the texture, the skin and hair colours for the rest of the
head, and the turn that makes the face at rest read as upright as the mean
face; the expression and pose of the photo are dropped, because the avatar is
driven by the user's.

The photo never reaches the renderer at run time: the pack holds numbers and
a texture made once, offline, and the renderer takes a `FaceState` only.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from veilcam.models.canonical_mesh import CanonicalMesh, load_canonical_mesh
from veilcam.models.face_contours import FaceContours, face_contours
from veilcam.models.face_fit import PortraitFit, fit_portrait
from veilcam.models.face_model import FaceModel, RenderMesh, build_render_mesh
from veilcam.models.face_state import FaceState
from veilcam.models.facekit_looks import FACEKIT_LOOKS, FaceLook
from veilcam.models.renderer import FaceRenderer, rgb_of
from veilcam.models.landmark_correspondence import LandmarkCorrespondence, compute_correspondence

from .avatar_pack import check_new_pack, load_pack, new_manifest, write_pack
from .avatars import FACE_LANDMARKER, AvatarEntry, _background_image
from .config import Config, config_from_dict
from .errors import AvatarPackError, ModelFileError, PortraitError
from .facekit_avatar import make_facekit_renderer, open_face_model
from .model_store import ModelStore
from .pack_files import encode_npz, encode_png

KIND = "photo"
FACE_FILE = "face.npz"
ALBEDO_FILE = "albedo.png"
PREVIEW_FILE = "preview.png"
#: Larger photos are scaled down first: the texture cannot use more detail.
MAX_PHOTO_SIDE = 2048
#: Below this distance between the eyes (pixels) the face is too small to texture.
MIN_EYE_DISTANCE_PX = 24
DEFAULT_TEXTURE_SIZE = 1024
PREVIEW_SIZE = 512
#: Photo avatars are drawn in the human look, with the photo's texture and colours.
PHOTO_BASE_LOOK = FACEKIT_LOOKS["human"]
#: The rest pose is read from this many frames of each still render (the tracker's
#: crop settles on the second), at the output size the avatar will be seen at.
REST_READ_FRAMES = 4
#: A stored rest rotation must be a rotation (to this tolerance) of at most this many degrees.
REST_ROTATION_TOLERANCE = 1e-3
REST_ROTATION_MAX_DEG = 15.0
#: At rest, a face whose lips the tracker reads as pressed at least this much (mouthPress, the
#: mean of both sides) hides its puckers: the tracker read none at all from the shared portraits
#: whose avatars press their lips at rest (0.38-0.51), against at most 0.13 for the other
#: portraits and 0.02 for the built-in head.
PRESSED_LIPS_AT_REST = 0.3


@dataclass(frozen=True)
class PhotoAvatarResult:
    pack: Path
    fit: PortraitFit
    eye_distance_px: float  # in the (possibly scaled-down) photo the fit was made on
    hair_rgb: np.ndarray | None  # (3,) uint8 as the pack keeps it; None: the avatar is bald
    rest_turn_deg: float | None  # the rest rotation's angle; None: not read, no turn
    rest_mouth_press: float | None  # mouthPress the tracker reads from the avatar at rest; None: no face read
    seconds: dict[str, float] = field(default_factory=dict)  # per stage

    @property
    def fit_error_px(self) -> float:
        """Median distance between the fitted and the tracked landmarks."""
        return float(np.median(self.fit.error_px))

    @property
    def fit_error_p90_px(self) -> float:
        return float(np.percentile(self.fit.error_px, 90))

    @property
    def lips_pressed_at_rest(self) -> bool:
        """The avatar holds its lips pressed even at rest, so its puckers will barely show."""
        return self.rest_mouth_press is not None and self.rest_mouth_press >= PRESSED_LIPS_AT_REST

    def to_report(self) -> dict[str, object]:
        return {
            "pack": str(self.pack),
            "fit": {
                "median_px": round(self.fit_error_px, 3),
                "p90_px": round(self.fit_error_p90_px, 3),
                "max_px": round(float(self.fit.error_px.max()), 3),
                "eye_distance_px": round(self.eye_distance_px, 1),
                "median_per_eye_distance": round(self.fit_error_px / self.eye_distance_px, 4),
            },
            "hair": None if self.hair_rgb is None else hex_rgb(self.hair_rgb),
            "rest_turn_deg": None if self.rest_turn_deg is None else round(self.rest_turn_deg, 2),
            "rest_mouth_press": None if self.rest_mouth_press is None else round(self.rest_mouth_press, 3),
            "seconds": {stage: round(s, 3) for stage, s in self.seconds.items()},
            "total_s": round(sum(self.seconds.values()), 3),
        }


def read_portrait(path: Path) -> np.ndarray:
    """The photo as RGB uint8, scaled down to MAX_PHOTO_SIDE."""
    if not path.is_file():
        raise PortraitError(f"{path}: photo not found")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PortraitError(f"{path}: cannot read this as an image (use a JPEG or PNG photo)")
    scale = MAX_PHOTO_SIDE / max(bgr.shape[:2])
    if scale < 1:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def track_portrait(rgb: np.ndarray, task: Path) -> FaceState:
    """One frame through a fresh tracker (VIDEO mode on a single frame detects from scratch, like IMAGE mode)."""
    from veilcam.models.landmarker import FaceLandmarker

    try:
        tracker = FaceLandmarker(task)
    except ValueError as exc:
        raise ModelFileError(f"{task}: MediaPipe cannot load this model ({exc}); delete it so VeilCam downloads it again") from exc
    with tracker:
        return tracker.track(rgb, 0.0)


def landmarks_px(state: FaceState, width: int, height: int) -> np.ndarray:
    """A tracked face's (478, 3) landmarks in pixels of its `width`×`height` image, as `fit_portrait` takes them."""
    assert state.landmarks is not None
    return state.landmarks * np.array([width, height, width], np.float32)  # MediaPipe scales z like x


@dataclass(frozen=True, eq=False)
class FittingData:
    """What fitting needs besides the photo; built once per process (the correspondence takes ~1 s)."""

    model: FaceModel
    mesh: RenderMesh
    canonical: CanonicalMesh
    contours: FaceContours
    correspondence: LandmarkCorrespondence


@lru_cache(maxsize=2)
def fitting_data(model: FaceModel, task: Path) -> FittingData:
    try:
        canonical = load_canonical_mesh(task)
    except ValueError as exc:
        raise ModelFileError(f"{task}: no usable face geometry inside ({exc}); delete it so VeilCam downloads it again") from exc
    return FittingData(model, build_render_mesh(model), canonical, face_contours(canonical), compute_correspondence(model, canonical))


def _stage(bar: tqdm, seconds: dict[str, float], name: str, start: float) -> float:
    now = time.perf_counter()
    seconds[name] = now - start
    bar.update(1)
    return now


def create_photo_avatar(photo: Path, name: str, config: Config, store: ModelStore, root: Path, texture_size: int = DEFAULT_TEXTURE_SIZE,
                        description: str = "", replace: bool = False, progress: bool = True) -> PhotoAvatarResult:
    """Make the photo avatar `name` from `photo` and install it under `root`; see the module docstring."""
    from veilcam.models.attribute_raster import AttributeRasterizer
    from veilcam.models.photo_texture import bake_photo_texture, eye_distance
    from veilcam.models.scene import rotation_degrees

    check_new_pack(root, name, description, replace, "--force to replace it")
    seconds: dict[str, float] = {}
    stages = ("read", "track", "fit", "texture", "preview", "rest pose", "write")
    with tqdm(total=len(stages), desc=f"creating {name}", unit="step", disable=not progress, leave=False) as bar:
        t = time.perf_counter()
        rgb = read_portrait(photo)
        h, w = rgb.shape[:2]
        t = _stage(bar, seconds, "read", t)

        task = store.resolve(FACE_LANDMARKER)
        state = track_portrait(rgb, task)
        if not state.present or state.landmarks is None:
            raise PortraitError(f"{photo}: no face found; use a photo of one face, looking at the camera, not too small or dark")
        landmarks = landmarks_px(state, w, h)
        t = _stage(bar, seconds, "track", t)

        data = fitting_data(open_face_model(store), task)
        eyes = eye_distance(landmarks, data.contours)
        if eyes < MIN_EYE_DISTANCE_PX:
            raise PortraitError(f"{photo}: the face is too small ({eyes:.0f} px between the eyes, need {MIN_EYE_DISTANCE_PX}); use a closer or larger photo")
        fit = fit_portrait(data.model, data.correspondence, data.canonical, data.contours.oval, landmarks, state.blendshapes, state.head_pose[:3, :3])
        t = _stage(bar, seconds, "fit", t)

        with AttributeRasterizer() as raster:
            try:
                baked = bake_photo_texture(data.model, data.mesh, fit, rgb, landmarks, data.contours, texture_size, raster, PHOTO_BASE_LOOK)
            except ValueError as exc:
                raise PortraitError(f"{photo}: {exc}; use a photo where the face is clearly visible") from exc
        t = _stage(bar, seconds, "texture", t)

        colours = {"skin_rgb": _rgb8(baked.skin_rgb)}
        if baked.hair_rgb is not None:
            colours["hair_rgb"] = _rgb8(baked.hair_rgb)
        look = photo_look(baked.image, colours["skin_rgb"], colours.get("hair_rgb"))
        preview = render_preview(config, store, look, fit.identity)
        t = _stage(bar, seconds, "preview", t)

        at_rest = _rest_read(config, store, look, fit.identity)
        rest = rest_rotation(at_rest, _rest_read(config, store, FACEKIT_LOOKS["human"], None))
        t = _stage(bar, seconds, "rest pose", t)

        arrays = {"identity": fit.identity.astype(np.float32), **colours}
        if rest is not None:
            arrays["rest_rotation"] = rest
        files = {
            FACE_FILE: encode_npz(arrays),
            ALBEDO_FILE: encode_png(baked.image),
            PREVIEW_FILE: encode_png(preview),
        }
        manifest = new_manifest(name, KIND, {"face": FACE_FILE, "albedo": ALBEDO_FILE}, files, PREVIEW_FILE,
                                   description, generator=f"veilcam {veilcam_version()}")
        pack = write_pack(root, manifest, files, replace=replace)
        _stage(bar, seconds, "write", t)
    press = None if at_rest is None else float(np.mean([at_rest.score("mouthPressLeft"), at_rest.score("mouthPressRight")]))
    return PhotoAvatarResult(pack, fit, eyes, colours.get("hair_rgb"), None if rest is None else rotation_degrees(rest), press, seconds)


def veilcam_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("veilcam")
    except PackageNotFoundError:
        return "dev"


def _rgb8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


# -- rendering a photo avatar ------------------------------------------------------
def hex_rgb(rgb: np.ndarray) -> str:
    """The colour as "#rrggbb", the way looks and reports write colours."""
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


def photo_look(albedo: np.ndarray, skin_rgb: np.ndarray, hair_rgb: np.ndarray | None) -> FaceLook:
    """The human look with the photo's face texture, the rest of the head in the
    face's skin colour, and short hair in the photo's hair colour; bald without one
    (the photo showed bare scalp, or packs made before hair was read)."""
    hair = None if hair_rgb is None else hex_rgb(hair_rgb)
    return dataclasses.replace(PHOTO_BASE_LOOK, texture=albedo, skin_color=hex_rgb(skin_rgb), hair_color=hair)


def _rest_read(config: Config, store: ModelStore, look: FaceLook, identity: np.ndarray | None) -> FaceState | None:
    """What the tracker reads from the avatar at rest, facing the camera, or None when
    it finds no face there."""
    from .compositor import Compositor
    from .factory import open_tracker

    with make_facekit_renderer(config, store, look, identity) as renderer:
        frame = Compositor(renderer.width, renderer.height).compose(renderer.render(FaceState.neutral(0.0, present=True)))
    unmirrored = dataclasses.replace(config, tracker=dataclasses.replace(config.tracker, mirror=False))
    with open_tracker(unmirrored, store) as tracker:
        for k in range(REST_READ_FRAMES):
            state = tracker.track(frame, k / 30.0)
    return state if state.present else None


def rest_rotation(photo: FaceState | None, mean_face: FaceState | None) -> np.ndarray | None:
    """The turn (3x3 float32, model space) that makes the fitted face at rest (`photo`, as
    `_rest_read` reads it) read, to the tracker, as the mean face's head does; None (no turn)
    when the tracker finds no face in the avatar (a stylized portrait can make one it does
    not read; it still renders).

    The fit keeps the identity from adding a net rotation of the landmarks the tracker
    aligns to (see `face_fit`), but a face's proportions can still read as a slightly
    raised or lowered head: 3.5 degrees of pitch for one test portrait against 1.9 for
    the mean face. Driven by your head, that avatar would look a little up all the time.
    """
    from veilcam.models.scene import nearest_rotation

    if photo is None or mean_face is None:
        return None
    photo_turn, mean_turn = (nearest_rotation(s.head_pose).astype(np.float64) for s in (photo, mean_face))
    return (photo_turn.T @ mean_turn).astype(np.float32)


def checked_rest_rotation(face: dict[str, np.ndarray], where: str) -> np.ndarray | None:
    """The pack's rest rotation, or None for packs made before it was measured."""
    from veilcam.models.scene import rotation_degrees  # OpenGL loads here, not at import

    r = face.get("rest_rotation")
    if r is None:
        return None
    r64 = r.astype(np.float64)
    if np.abs(r64.T @ r64 - np.eye(3)).max() > REST_ROTATION_TOLERANCE or np.linalg.det(r64) < 0 or rotation_degrees(r) > REST_ROTATION_MAX_DEG:
        raise AvatarPackError(f"{where}: rest_rotation is not a rotation of at most {REST_ROTATION_MAX_DEG:g} degrees; "
                              "make the avatar again with `veilcam avatar create --force`")
    return r


def render_preview(config: Config, store: ModelStore, look: FaceLook, identity: np.ndarray) -> np.ndarray:
    """The avatar at rest, facing the camera, as `veilcam avatar show` points to it: (H, W, 3) uint8."""
    size = {"output": {"width": PREVIEW_SIZE, "height": PREVIEW_SIZE}}
    with make_facekit_renderer(config_from_dict(size, "preview", config), store, look, identity) as renderer:
        return rgb_of(renderer.render(FaceState.neutral(0.0, present=True)))


def build_photo_renderer(entry: AvatarEntry, config: Config, store: ModelStore) -> FaceRenderer:
    """The `photo` kind: the pack is verified in full before anything is built, so a bad
    pack raises its one-line error while the avatar already running stays."""
    assert entry.pack_dir is not None
    pack = load_pack(entry.pack_dir)
    face = pack.arrays["face"]
    look = photo_look(pack.images["albedo"], face["skin_rgb"], face.get("hair_rgb"))
    rest = checked_rest_rotation(face, f"avatar pack {entry.pack_dir} ({FACE_FILE})")
    return make_facekit_renderer(config, store, look, face["identity"], background=_background_image(config.avatar.background_image),
                                 rest_rotation=rest)
