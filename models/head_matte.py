"""A matte of the head, hair included, in a head crop of a video frame.

No segmentation model is needed: the fitted face model already says where the
head is. Where the model covers the crop (shrunk a little) is certainly head;
a band around it, where hair and ears can reach, may be head or background;
the crop's top and side borders are background. GrabCut (OpenCV) settles the
uncertain pixels by colour. Below the chin the matte fades out, so the
avatar ends at the neck instead of at whatever the person wore.

The colours are learned once for the whole clip (`learn_colours`), from
frames spread over it, and each frame is cut with them held fixed. Learned
frame by frame, a wall the colour of skin or hair beside the head went into
one frame's matte and not the next one's; the network cannot learn a room
that comes and goes, and drew patches of it. On a webcam clip with a
skin-coloured wall beside the head (p1), the mattes of neighbouring frames
differed by 0.031 of the crop's upper three quarters on average, 0.005 with
the clip's colours, and the patches went; on p2 and p3, 0.005 → 0.003 and
0.002 → 0.002. It is also quicker: one graph cut per frame instead of four
rounds of learning and cutting (p1's 396 frames on the 2-core VM: 73 s, then
20 s with the learning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

#: How far (fraction of the crop side) hair may stand out from the model's head.
HAIR_REACH = 0.12
#: Pixels of the model's own outline that may still be background (fit error, a thin neck).
OUTLINE_SLACK = 0.02
#: The matte fades from 1 to 0 between these distances below the chin (fraction of the crop side).
NECK_FADE = (0.06, 0.16)
#: Rounds of GrabCut's learning and cutting that learn the clip's colours.
GRABCUT_ITERATIONS = 4


def _disk(radius: int) -> np.ndarray:
    r = max(1, radius)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def neck_fade(size: int, chin_row: float) -> np.ndarray:
    """(size, 1) float32: 1 above the chin and down to NECK_FADE[0] below it, 0 from NECK_FADE[1] on."""
    rows = (np.arange(size, dtype=np.float32) + 0.5 - chin_row) / size
    return np.clip((NECK_FADE[1] - rows) / (NECK_FADE[1] - NECK_FADE[0]), 0.0, 1.0)[:, None]


@dataclass(frozen=True)
class ColourModel:
    """GrabCut's colour mixtures of the background and the head (OpenCV's (1, 65) float64 layout)."""

    background: np.ndarray
    head: np.ndarray


def _labels(coverage: np.ndarray) -> np.ndarray:
    """GrabCut's starting labels of a crop whose face model lies at `coverage` (S, S) bool; see the module docstring."""
    size = coverage.shape[0]
    covered = coverage.astype(np.uint8)
    mask = np.full((size, size), cv2.GC_PR_BGD, np.uint8)
    mask[cv2.dilate(covered, _disk(round(HAIR_REACH * size))) > 0] = cv2.GC_PR_FGD
    mask[cv2.erode(covered, _disk(round(OUTLINE_SLACK * size))) > 0] = cv2.GC_FGD
    border = max(2, size // 64)
    mask[:border] = cv2.GC_BGD
    mask[:, :border] = cv2.GC_BGD
    mask[:, -border:] = cv2.GC_BGD
    return mask


def learn_colours(crops: Sequence[np.ndarray], coverages: Sequence[np.ndarray]) -> ColourModel:
    """The colours of the head and of the room around it over head crops (S, S, 3) uint8 of one clip, each with where
    the face model lies in it ((S, S) bool). The crops are stacked into one image, so one GrabCut learns from all."""
    mosaic = np.ascontiguousarray(np.concatenate([c[..., ::-1] for c in crops]))
    labels = np.concatenate([_labels(c) for c in coverages])
    background, head = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(mosaic, labels, None, background, head, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    return ColourModel(background, head)


def head_matte(rgb: np.ndarray, coverage: np.ndarray, chin_row: float, colours: ColourModel) -> np.ndarray:
    """(S, S) float32 in [0, 1]: the head and hair in a head crop `rgb` (S, S, 3) uint8, cut with the clip's `colours`.

    `coverage`: (S, S) bool, where the fitted face model lies in the crop;
    `chin_row`: the chin's row in the crop.
    """
    size = rgb.shape[0]
    mask = _labels(coverage)
    # A frozen model's graph cut is the same every round: one is all there is.
    cv2.grabCut(np.ascontiguousarray(rgb[..., ::-1]), mask, None, colours.background.copy(), colours.head.copy(), 1,
                cv2.GC_EVAL_FREEZE_MODEL)
    head = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    # Keep the part joined to the face; fill holes (glasses, teeth that matched the background).
    count, labels = cv2.connectedComponents(head)
    if count > 2:
        inside = labels[coverage & (head > 0)]
        if len(inside):
            head = (labels == np.bincount(inside).argmax()).astype(np.uint8)
    closed = cv2.morphologyEx(head, cv2.MORPH_CLOSE, _disk(max(1, size // 64)))
    soft = cv2.GaussianBlur(closed.astype(np.float32), (0, 0), max(0.5, size / 256))
    return (soft * neck_fade(size, chin_row)).astype(np.float32)
