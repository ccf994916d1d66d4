"""Temporal policy for tracked faces: head-pose smoothing and the face-lost rule.

Expressions are passed on as tracked, not smoothed again: in VIDEO mode
MediaPipe smooths its landmarks itself, before it computes the blendshapes (a
One Euro filter with a 0.05 Hz cut-off at rest that opens with speed, in units
of the face's size), and what jitter is left never shows on an avatar. A
portrait fed as a still video with fresh camera noise every frame (sigma 3 and
8 of 255, the five shared portraits, a neural avatar) changes the rendered
head by 0.02-0.15 of 255 levels from frame to frame (mean over its pixels),
and by 0.05-0.14 with a One Euro filter at 10 Hz on the expressions, where
the camera's own noise changes them by about 3.4 (stop 30). What that filter
did show was its lag, a third of a frame on every expression: without it
`veilcam eval fidelity` scores every avatar higher on every shared talking
clip (mean correlation +0.004 to +0.024), and the mouth trails the voice
by that third of a frame less. The filter stays for whoever wants it
(`smooth_expressions`), eyelids and jaw with their own cut-off since blinks
must stay fast.

Head pose gets 3 Hz (53 ms), because the whole head moving is what shows
most, yet fast enough for nods: on p2 (head motion) the avatar's head trails
by 1.5 frames and keeps 87-90 % of the fast motion, where 1 Hz trailed by 3.6
frames and kept 71-77 %; head-yaw jitter on the calm p4 clip falls by half.
When the face is lost the avatar holds its last expression for a moment (a
hand passing in front of the face should not make it go blank), then eases
to a calm neutral face looking at the camera; when it comes back, the avatar
eases from what is on screen to it, so nothing pops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .expression_rest import RestEstimator, RestSettings
from .face_state import BLENDSHAPE_NAMES, FaceState, identity_pose
from .one_euro import OneEuroFilter

_FAST = np.array([n.startswith(("eyeBlink", "eyeSquint", "eyeWide", "jawOpen")) for n in BLENDSHAPE_NAMES])


@dataclass(frozen=True)
class FilterSettings:
    smooth_expressions: bool = False  # One Euro on the expressions too, at the cut-offs below
    blend_min_cutoff: float = 10.0  # Hz, expression shapes at rest
    blink_min_cutoff: float = 10.0  # Hz, eyelids and jaw: fast by nature
    blend_beta: float = 2.0
    pose_min_cutoff: float = 3.0
    pose_beta: float = 0.3
    grace_s: float = 0.5  # hold the last state this long after the face is lost
    ease_s: float = 1.0  # then ease to neutral over this long
    return_s: float = 0.15  # when the face comes back, ease from what is on screen to it over this long


def _rotation_to_quat(r: np.ndarray) -> np.ndarray:
    w = np.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2.0
    x = np.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2.0
    y = np.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2.0
    z = np.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2.0
    x = np.copysign(x, r[2, 1] - r[1, 2])
    y = np.copysign(y, r[0, 2] - r[2, 0])
    z = np.copysign(z, r[1, 0] - r[0, 1])
    return np.array([w, x, y, z])


def _quat_to_rotation(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _pose_vector(pose: np.ndarray, reference_quat: np.ndarray | None) -> np.ndarray:
    """Pose as (quaternion, translation), the quaternion on the reference's hemisphere."""
    # MediaPipe's matrix carries the face's scale in its rotation part.
    scale = np.linalg.norm(pose[:3, 0])
    q = _rotation_to_quat(pose[:3, :3] / scale)
    if reference_quat is not None and np.dot(q, reference_quat) < 0:
        q = -q
    return np.concatenate([q, pose[:3, 3], [scale]])


def _pose_matrix(v: np.ndarray) -> np.ndarray:
    pose = np.eye(4, dtype=np.float32)
    pose[:3, :3] = _quat_to_rotation(v[:4]) * v[7]
    pose[:3, 3] = v[4:7]
    return pose


def _eased(elapsed: float, duration: float) -> float:
    """0 -> 1 along a smoothstep over `duration` seconds from `elapsed` = 0; a step there when `duration` is 0."""
    if duration <= 0:
        return float(elapsed >= 0)
    x = min(max(elapsed / duration, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


class FaceFilter:
    """Feeds raw tracked states in, gets the states to render out, one for one."""

    def __init__(self, settings: FilterSettings = FilterSettings(), rest: RestSettings = RestSettings()) -> None:
        self.settings = settings
        self._rest = RestEstimator(rest)  # the face's resting expression, for avatars that re-base onto their own
        s = settings
        self._blend = OneEuroFilter(np.where(_FAST, s.blink_min_cutoff, s.blend_min_cutoff), s.blend_beta)
        self._pose = OneEuroFilter(s.pose_min_cutoff, s.pose_beta)
        self._held: FaceState | None = None  # the last state passed on with a face
        self._last_output: FaceState | None = None
        self._lost_since: float | None = None
        self._returned: tuple[float, np.ndarray] | None = None  # (when, the expression on screen) while easing back

    def __call__(self, raw: FaceState) -> FaceState:
        out = self._track(raw) if raw.present else self._lost(raw.timestamp)
        self._last_output = out
        return out

    def _track(self, raw: FaceState) -> FaceState:
        t = raw.timestamp
        s = self.settings
        prev_quat = None if self._held is None else _pose_vector(self._held.head_pose, None)[:4]
        if self._lost_since is not None and self._last_output is not None:
            # Re-acquired: continue from what is on screen, not from before the loss.
            shown = self._last_output
            shown_pose = _pose_vector(shown.head_pose, None)
            self._blend.reset()
            self._pose.reset(shown_pose, t - 1e-3)
            self._returned = (t, shown.blendshapes)
            prev_quat = shown_pose[:4]
        self._lost_since = None
        blend = self._blend(raw.blendshapes, t) if s.smooth_expressions else raw.blendshapes
        blend = np.clip(blend, 0.0, 1.0).astype(np.float32)
        if self._returned is not None:
            since, shown_blend = self._returned
            w = _eased(t - since, s.return_s)
            blend = ((1 - w) * shown_blend + w * blend).astype(np.float32)
            if w >= 1.0:
                self._returned = None
        pose = _pose_matrix(self._pose(_pose_vector(raw.head_pose, prev_quat), t))
        self._held = FaceState(True, blend, pose, t, raw.landmarks, self._rest.update(blend, t))
        return self._held

    def _lost(self, t: float) -> FaceState:
        if self._held is None:
            return FaceState.neutral(t)
        if self._lost_since is None:
            self._lost_since = t
        s = self.settings
        e = _eased(t - self._lost_since - s.grace_s, s.ease_s)
        held_pose = _pose_vector(self._held.head_pose, None)
        neutral_pose = _pose_vector(identity_pose(), held_pose[:4])
        neutral_pose[4:] = held_pose[4:]  # keep where the head was; only turn it to face the camera
        pose = _pose_matrix((1 - e) * held_pose + e * neutral_pose)
        blend = (self._held.blendshapes * (1 - e)).astype(np.float32)
        landmarks = self._held.landmarks if e == 0 else None
        return FaceState(False, blend, pose, t, landmarks, self._held.rest_blendshapes)
