"""From an enrollment clip to training data: head crops, their mattes, G-buffers and codes.

Every frame is tracked, one identity is fitted for the whole clip (the mean of
fits to frames spread over it), and each frame gets its own expression and
pose, fitted to its landmarks with that identity held fixed, starting from the
tracked blendshapes and head rotation. Each frame is then cut to the head crop
the renderer will draw (`head_gbuffer.HeadCrop`, placed by the fitted pose),
with the face model's G-buffer for the same crop and a matte of the head.

The clip's pixels stay in this data and in training: the pack keeps only what
was learned from them, and the renderer is driven by a `FaceState`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
from tqdm import tqdm

from veilcam.models.face_fit import EXPRESSION_SIGMA, PortraitFit, fit_portrait
from veilcam.models.face_model import FaceRig
from veilcam.models.expression_warp import WarpSettings, fit_light, lacking_groups, moved_expression, relit, with_group
from veilcam.models.face_state import FaceState
from veilcam.models.gaze import gaze_rotations
from veilcam.models.neural_avatar_config import COVERED, GBUFFER_CHANNELS
from veilcam.models.neural_avatar_renderer import expression_code

from .config import Config
from .errors import EnrollmentError
from .eval_fidelity import track_video
from .facekit_avatar import face_model_and_mesh
from .model_store import ModelStore
from .photo_avatar import FittingData, fitting_data, landmarks_px
from .avatars import FACE_LANDMARKER

#: The identity is the mean of fits to this many frames, spread over the clip.
IDENTITY_FRAMES = 12
#: Fewer tracked frames than this cannot teach a renderer anything.
MIN_FRAMES = 8
#: This part of the clip is held out for validation (never trained on), in HOLDOUT_BLOCKS stretches spread over
#: it: a short clip often acts each expression once, and a validation set that is only its end measures
#: expressions training never saw rather than how well the avatar draws the person.
HOLDOUT_FRACTION = 0.1
HOLDOUT_BLOCKS = 4
#: Frames on each side of a held-out stretch that are not trained on either: neighbours a frame apart are near copies.
GUARD_FRAMES = 3
#: How far a frame's fitted expression may leave the tracked one (ICT weight units). The live avatar is posed by the
#: tracked blendshapes alone, so the network must learn from expressions like those; on p2 a tight prior moved the
#: landmarks' mean fit error from 2.6 to 2.9 px while keeping each weight within 0.06 of the tracked one on average
#: (the photo fit's prior, 0.3, left them 0.34 apart).
ENROLL_EXPRESSION_SIGMA = 0.05
#: The regions whose pixels weigh more in training (`neural_training.feature_weights`), as iBUG 68-point indices: each
#: eye with its brow, and the mouth. Each region's ellipse spans its points' box this many times over, plus a margin
#: (a fraction of the crop's side), so it takes in the lids' creases, the cheek a smile lifts and the lips' corners.
FEATURE_POINTS = (tuple(range(17, 22)) + tuple(range(36, 42)), tuple(range(22, 27)) + tuple(range(42, 48)), tuple(range(48, 68)))
FEATURE_SPREAD, FEATURE_MARGIN = 1.25, 0.02
CHIN = 8  # the 68 points' chin: the matte's lower edge
#: The clip's colours of head and room (`head_matte.learn_colours`) are learned from this many crops spread over it.
COLOUR_FRAMES = 24


@dataclass(frozen=True)
class EnrollmentData:
    """Training data for one clip, frames in clip order. It is cached as one .npz (`to_arrays`, `from_arrays`)."""

    crops: np.ndarray  # (N, S, S, 3) uint8 head crops of the tracked frames
    mattes: np.ndarray  # (N, S, S) uint8 head-and-hair mattes
    gbuffers: np.ndarray  # (N, 6, S, S) float16
    codes: np.ndarray  # (N, code) float32: expression weights, head rotation
    features: np.ndarray  # (N, regions, 4) float32: each `FEATURE_POINTS` region's ellipse in crop pixels (centre x, y, radii)
    identity: np.ndarray  # (100,) float32
    train: np.ndarray  # (T,) int: the frames trained on, the warped ones among them
    holdout: np.ndarray  # (H,) int: the frames held out for validation
    # Frames after the clip's own (indices >= the tracked frames'): trained frames warped to an expression the clip
    # lacks (`expression_warp`), and the group each shows.
    warped: np.ndarray  # (W,) int
    warped_groups: np.ndarray  # (W,) str
    # The tracking of every frame of the clip (F >= N), which drives the avatar to measure its fidelity.
    clip_present: np.ndarray  # (F,) bool
    clip_blendshapes: np.ndarray  # (F, 52) float32
    clip_poses: np.ndarray  # (F, 4, 4) float32
    clip_times: np.ndarray  # (F,) float64 seconds

    def clip_states(self) -> list[FaceState]:
        return [FaceState(bool(p), b, pose, float(t)) for p, b, pose, t in zip(self.clip_present, self.clip_blendshapes, self.clip_poses, self.clip_times)]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "EnrollmentData":
        """KeyError when one is missing (a cache from another version)."""
        return cls(**{f.name: arrays[f.name] for f in dataclasses.fields(cls)})


def holdout_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held out) frame indices of `n` frames: HOLDOUT_BLOCKS stretches spread evenly, guarded on both sides."""
    held = max(1, round(HOLDOUT_FRACTION * n))
    blocks = min(HOLDOUT_BLOCKS, held)
    length = -(-held // blocks)
    role = np.zeros(n, np.int8)  # 0 train, 1 held out, 2 guard
    for j in range(blocks):
        start = min(n - length, max(0, round((2 * j + 1) * n / (2 * blocks) - length / 2)))
        role[max(0, start - GUARD_FRAMES):start + length + GUARD_FRAMES] = 2
        role[start:start + length] = 1
    return np.flatnonzero(role == 0), np.flatnonzero(role == 1)


def unmirrored(config: Config) -> Config:
    """`config` with the tracker's mirror off: a clip is tracked as recorded (the user's mirror is a display choice)."""
    return dataclasses.replace(config, tracker=dataclasses.replace(config.tracker, mirror=False))


def spread_evenly(n: int, count: int) -> np.ndarray:
    """Up to `count` distinct indices of `n` items, spread evenly from the first to the last."""
    return np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))


def fit_clip(data: FittingData, states: list[FaceState], width: int, height: int) -> tuple[np.ndarray, list[PortraitFit]]:
    """One identity for all `states` (tracked faces), then each frame's expression (near the tracked one) and pose with it."""
    def fit(state: FaceState, identity: np.ndarray | None = None) -> PortraitFit:
        return fit_portrait(data.model, data.correspondence, data.canonical, data.contours.oval, landmarks_px(state, width, height),
                            state.blendshapes, state.head_pose[:3, :3], identity,
                            EXPRESSION_SIGMA if identity is None else ENROLL_EXPRESSION_SIGMA)

    picks = spread_evenly(len(states), IDENTITY_FRAMES)
    with ThreadPoolExecutor(os.cpu_count()) as pool:  # numpy's solves release the GIL
        identity = np.mean([f.identity for f in pool.map(fit, [states[i] for i in picks])], axis=0).astype(np.float32)
        return identity, list(pool.map(lambda s: fit(s, identity), states))


def crop_affine(fit: PortraitFit, centre: np.ndarray, span: float, size: int) -> np.ndarray:
    """The 2×3 map from frame pixels to crop pixels (OpenCV's integer pixel centres) of the head crop."""
    cx, cy = fit.project(centre[None])[0, :2]
    k = size / (fit.scale * span)
    return np.array([[k, 0, 0.5 * k - k * cx + size / 2 - 0.5], [0, k, 0.5 * k - k * cy + size / 2 - 0.5]], np.float32)


def feature_ellipses(points: np.ndarray, size: int) -> np.ndarray:
    """(regions, 4) ellipses (centre x, y and radii, pixels) over the `FEATURE_POINTS` regions of the 68 points (68, 2),
    given in crop pixels."""
    out = np.empty((len(FEATURE_POINTS), 4), np.float32)
    for r, index in enumerate(FEATURE_POINTS):
        region = points[list(index)]
        lo, hi = region.min(axis=0), region.max(axis=0)
        out[r, :2] = (lo + hi) / 2
        out[r, 2:] = FEATURE_SPREAD * (hi - lo) / 2 + FEATURE_MARGIN * size
    return out


def plan_warps(blendshapes: np.ndarray, train: np.ndarray, settings: WarpSettings | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which trained frames to warp to which lacking group and score: (frame rows, groups, scores). The choice is
    drawn with a fixed seed, so a clip always gives the same data. `blendshapes`: the tracked frames' (N, 52)."""
    lacking = {} if settings is None else lacking_groups(blendshapes, settings)
    count = round(settings.per_frame * len(train)) if settings is not None and lacking else 0
    if not count:
        return np.zeros(0, int), np.zeros(0, str), np.zeros(0, np.float32)
    rng = np.random.default_rng(0)
    rows = rng.choice(train, count)
    groups = rng.choice(sorted(lacking), count)
    scores = np.array([rng.uniform(max(lacking[g], settings.min_score), 1.0) for g in groups], np.float32)
    return rows, groups, scores


def prepare_enrollment(video: Path, config: Config, store: ModelStore, size: int, progress: bool = True,
                       warp: WarpSettings | None = WarpSettings()) -> EnrollmentData:
    """Track, fit and cut `video` into training data at `size`×`size`; see the module docstring. `warp`: how to add
    frames of the expressions the clip lacks (`expression_warp`), or None for the clip's frames alone."""
    from veilcam.models.expression_warp import ExpressionWarp
    from veilcam.models.gl_context import create_headless_context
    from veilcam.models.head_gbuffer import HeadGBuffer
    from veilcam.models.head_matte import head_matte, learn_colours

    from .sources.video_file import VideoFileSource, open_video

    try:
        states = track_video(video, unmirrored(config), False, "track clip", progress)
    except (OSError, RuntimeError) as exc:
        raise EnrollmentError(f"{video}: cannot read this video ({exc}); use an MP4 or another file OpenCV reads") from exc
    tracked = [i for i, s in enumerate(states) if s.present and s.landmarks is not None]
    if len(tracked) < MIN_FRAMES:
        raise EnrollmentError(f"{video}: a face was found in {len(tracked)} of {len(states)} frames (need {MIN_FRAMES}); "
                              "record a clip with your face in view, lit from the front")
    cap = open_video(video)
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    model, mesh = face_model_and_mesh(store)
    data = fitting_data(model, store.resolve(FACE_LANDMARKER))
    identity, fits = fit_clip(data, [states[i] for i in tracked], width, height)
    rig = FaceRig(model, identity, mesh)
    n = len(tracked)
    train, holdout = holdout_split(n)
    warp_rows, warp_groups, warp_scores = plan_warps(np.stack([states[i].blendshapes for i in tracked]), train, warp)
    total = n + len(warp_rows)
    crops = np.empty((total, size, size, 3), np.uint8)
    mattes = np.empty((total, size, size), np.uint8)
    gbuffers = np.empty((total, GBUFFER_CHANNELS, size, size), np.float16)
    codes = np.empty((total, model.num_expressions + 6), np.float32)
    features = np.empty((total, len(FEATURE_POINTS), 4), np.float32)
    wanted = dict(zip(tracked, range(n)))
    filled = 0
    chin_rows = np.empty(n, np.float32)
    ctx = create_headless_context()
    try:
        with VideoFileSource(video, realtime=False) as source, \
                tqdm(total=n, unit="frame", desc="cut crops", disable=not progress, leave=False, file=sys.stderr) as bar:
            gbuffer = HeadGBuffer(rig, size, ctx)
            crop = gbuffer.crop

            def crop_landmarks(expression: np.ndarray, rotation: np.ndarray) -> np.ndarray:
                """The face model's 68 points posed so, in crop pixels (68, 2)."""
                return crop.to_crop(model.landmark_positions(identity, expression), rotation)[:, :2] * size

            for frame_no in range(len(states)):
                try:
                    frame = source.read()
                except EOFError:
                    break
                k = wanted.get(frame_no)
                if k is None:
                    continue
                fit, state = fits[k], states[frame_no]
                positions = rig.pose(fit.expression, gaze_rotations(state.blendshapes))
                gbuffers[k] = g = gbuffer.render(positions, fit.rotation)
                crops[k] = cv2.warpAffine(frame.rgb, crop_affine(fit, crop.centre, crop.span, size), (size, size),
                                          flags=cv2.INTER_AREA if fit.scale * crop.span > size else cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_REPLICATE)
                points = crop_landmarks(fit.expression, fit.rotation)
                chin_rows[k] = points[CHIN, 1]
                codes[k] = expression_code(fit.expression, fit.rotation)
                features[k] = feature_ellipses(points, size)
                filled += 1
                bar.update()
        if filled < n:
            raise EnrollmentError(f"{video}: the video gave fewer frames on a second read ({filled} of {n} tracked ones); re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)")
        # The mattes are cut with the colours of the whole clip (`head_matte`), learned from crops spread over it.
        picks = spread_evenly(n, COLOUR_FRAMES)
        colours = learn_colours(crops[picks], gbuffers[picks, COVERED] > 0.5)
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            cut = pool.map(lambda k: head_matte(crops[k], gbuffers[k, COVERED] > 0.5, chin_rows[k], colours), range(n))
            for k, matte in enumerate(tqdm(cut, total=n, unit="frame", desc="cut mattes", disable=not progress, leave=False, file=sys.stderr)):
                mattes[k] = np.round(255 * matte).astype(np.uint8)
        warper = ExpressionWarp(rig.mesh.triangles, len(rig.rest), crop, size, ctx)
        try:
            for j, (k, group, score) in enumerate(tqdm(list(zip(warp_rows, warp_groups, warp_scores)), unit="frame", desc="warp expressions",
                                                       disable=not progress or not len(warp_rows), leave=False, file=sys.stderr)):
                fit, tracked_scores = fits[k], states[tracked[k]].blendshapes
                expression = moved_expression(model, fit.expression, tracked_scores, with_group(tracked_scores, str(group), float(score)))
                eyes = gaze_rotations(tracked_scores)
                before = rig.pose(fit.expression, eyes).copy()
                after = rig.pose(expression, eyes)
                maps = warper.maps(before, after, fit.rotation)
                gbuffers[n + j] = g = gbuffer.render(after, fit.rotation)
                crops[n + j] = relit(warper.apply(crops[k], maps), fit_light(crops[k], gbuffers[k]), gbuffers[k], g, maps)
                mattes[n + j] = warper.apply(mattes[k], maps)
                codes[n + j] = expression_code(expression, fit.rotation)
                features[n + j] = feature_ellipses(crop_landmarks(expression, fit.rotation), size)
        finally:
            warper.release()
    finally:
        ctx.release()
    warped = n + np.arange(len(warp_rows))
    return EnrollmentData(crops, mattes, gbuffers, codes, features, identity, np.concatenate([train, warped]), holdout, warped, warp_groups.astype(str),
                          np.array([s.present for s in states]), np.stack([s.blendshapes for s in states]),
                          np.stack([s.head_pose for s in states]), np.array([s.timestamp for s in states]))
