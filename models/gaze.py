"""Eye rotations from the gaze blendshapes.

ARKit's (and MediaPipe's) `eyeLook*` scores say where each eye looks, but a
blendshape cannot turn a sphere: face models (the mask, ICT-FaceKit) move only
the lids with them. Every avatar therefore turns its eyeballs itself, with the
rotations from here, so all avatars look the same way for the same scores.
"""

from __future__ import annotations

import numpy as np

from .face_state import BLENDSHAPE_INDEX

#: Rotation at a score of 1. MediaPipe rarely reports more than ~0.7 for a
#: natural glance, which then turns the eye by about 20 degrees.
GAZE_MAX_YAW = np.radians(28.0)
GAZE_MAX_PITCH = np.radians(22.0)

_IDX = {name: BLENDSHAPE_INDEX[name] for name in BLENDSHAPE_INDEX if name.startswith("eyeLook")}


def gaze_rotations(blendshapes: np.ndarray) -> np.ndarray:
    """(52,) blendshapes in `BLENDSHAPE_NAMES` order -> (2, 3, 3) float32 rotations.

    [0] is the subject's right eye (-x), [1] the left eye (+x), in the head's
    frame (y up, +z out of the face). A rotation turns the eye's +z axis
    towards +x for positive yaw and towards +y for positive pitch.
    """
    g = {name: float(np.clip(blendshapes[i], 0.0, 1.0)) for name, i in _IDX.items()}
    yaws = (  # towards +x: the right eye looks "in" towards +x, the left eye "out"
        (g["eyeLookInRight"] - g["eyeLookOutRight"]) * GAZE_MAX_YAW,
        (g["eyeLookOutLeft"] - g["eyeLookInLeft"]) * GAZE_MAX_YAW,
    )
    pitches = (
        (g["eyeLookUpRight"] - g["eyeLookDownRight"]) * GAZE_MAX_PITCH,
        (g["eyeLookUpLeft"] - g["eyeLookDownLeft"]) * GAZE_MAX_PITCH,
    )
    out = np.empty((2, 3, 3), np.float32)
    for i, (yaw, pitch) in enumerate(zip(yaws, pitches)):
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        r_pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
        out[i] = r_yaw @ r_pitch
    return out
