"""Where on the face model the neural avatar's training loss counts extra: the eyes and the mouth.

They are a small part of a head crop (the eyes a few percent of its pixels), so a
loss spread evenly over the crop spends little of the network on them, and a
blurred eye costs the loss almost nothing. But they carry most of what people
(and the tracker that measures fidelity) read from a face: blinks, gaze,
smiles and puckers. The emphasis is a map over the UV atlas, so it follows
the geometry through every pose and augmentation shift of the G-buffer.
"""

from __future__ import annotations

import cv2
import numpy as np

from .face_model import FaceRig
from .head_gbuffer import atlas_grid

#: Model vertices this close (cm, at rest) to an eye's or the mouth's 68-point landmarks are emphasised.
EYE_RADIUS_CM = 0.9
MOUTH_RADIUS_CM = 0.8
#: Cells per side of the map over the UV atlas; mesh vertices are splatted and the gaps between them closed.
CELLS = 256
_EYES, _MOUTH = slice(36, 48), slice(48, 68)


def emphasis_atlas(rig: FaceRig) -> np.ndarray:
    """(CELLS, CELLS) float32 in {0, 1} over the UV atlas, rows as grid_sample's y (row 0 at grid y = -1)."""
    marks = rig.model.landmark_positions(rig.identity)

    def near(points: np.ndarray, radius: float) -> np.ndarray:
        d = np.linalg.norm(rig.rest[:, None, :] - points[None, :, :], axis=2).min(axis=1)
        return d < radius

    chosen = near(marks[_EYES], EYE_RADIUS_CM) | near(marks[_MOUTH], MOUTH_RADIUS_CM)
    cells = np.clip(((atlas_grid(rig)[chosen] + 1) * 0.5 * CELLS).astype(int), 0, CELLS - 1)
    atlas = np.zeros((CELLS, CELLS), np.uint8)
    atlas[cells[:, 1], cells[:, 0]] = 1
    return cv2.morphologyEx(atlas, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8)).astype(np.float32)
