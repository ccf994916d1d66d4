"""Redraw a photo texture's lips and eyes on the face model's own contours.

A portrait's lips, lash lines, lid creases and the shadows around them land on
the fitted mesh only roughly: the fit leaves a few millimetres of error there,
and the photo's light is baked into them. On a still face that does not show.
But the mesh moves: a smile stretches the model's lips and a blink lowers its
lid, and the photo's features, painted beside them, move differently. The
tracker then finds the lips and the lids where the photo's colours are, not
where the model's are: on the shared portrait s42, smiles read back as puckers.
So, as the painted looks do, the features are drawn from the model's own
contours: around the lips and the eyes the photo gives way to the skin around
them (filled in smoothly), then the lips are painted inside the model's lip
contour in the photo's own lip colour, and a lash line along each upper lid.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .facekit_paint import front_of_face, lid_lines, paint_lips
from .polygon import contour_distance, smoothstep

#: How far (cm, on the rest face) around the model's outer lip contour and around each eye opening
#: the photo gives way: beyond the fit's error at the lips, and over the lids, lashes and creases at the eyes.
LIP_MARGIN_CM = 0.3
EYE_MARGIN_CM = 0.7
#: Over this distance (cm) beyond the margin the photo comes back.
MARGIN_FEATHER_CM = 0.15
#: A lip texel counts for the photo's lip colour when it is this much redder (CIE Lab a*) than the skin...
LIP_REDDER_THAN_SKIN = 8.0
#: ...well inside the contour and well seen in the photo; with fewer such texels the lip colour is not taken from the photo.
LIP_MIN_TEXELS = 64


@dataclass(frozen=True)
class FeatureColours:
    """Linear RGB (0..1) colours the redrawn features are painted in."""

    lips: np.ndarray  # (3,)
    lip_strength: float  # how much of the lip colour the lips take (the rest is the skin beneath)
    lashes: np.ndarray  # (3,)
    lash_strength: float


def _opening_margin(xy: np.ndarray, contour: np.ndarray, margin: float) -> np.ndarray:
    """(K,) in [0, 1]: 1 inside the closed `contour` and up to `margin` from it, fading to 0 over the feather."""
    d, inside = contour_distance(xy, contour, reach=margin + MARGIN_FEATHER_CM)
    return np.where(inside, 1.0, 1.0 - smoothstep(margin, margin + MARGIN_FEATHER_CM, d))


def near_features(points: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(K,) bool: rest positions within the box around the eyes and lips (with their margins),
    the only ones the redraw can change: a tenth of the face's tile, so the rest is skipped."""
    features = landmarks[36:68, :2]
    reach = max(LIP_MARGIN_CM, EYE_MARGIN_CM) + MARGIN_FEATHER_CM
    return np.all((points[:, :2] > features.min(axis=0) - reach) & (points[:, :2] < features.max(axis=0) + reach), axis=1)


def feature_area(points: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(K,) in [0, 1]: where the photo gives way, at rest positions `points` (K, 3) of the face
    whose 68 landmarks are `landmarks`: the lips and the eyes with their margins."""
    xy = points[:, :2]
    area = _opening_margin(xy, landmarks[48:60, :2], LIP_MARGIN_CM)
    for eye in (landmarks[36:42], landmarks[42:48]):
        area = np.maximum(area, _opening_margin(xy, eye[:, :2], EYE_MARGIN_CM))
    return area * front_of_face(points, landmarks)


def photo_lip_colour(linear: np.ndarray, lips: np.ndarray, photo_weight: np.ndarray, skin_rgb: np.ndarray) -> np.ndarray | None:
    """The photo's lip colour (linear RGB): the median of the texels well inside the lip contour
    (`lips` > 0.9), well seen (`photo_weight` > 0.5) and redder than the skin (sRGB `skin_rgb`).
    None when the photo shows too few of them (a moustache, a hand, a tiny face)."""
    srgb = np.sqrt(np.clip(linear, 0, 1)).astype(np.float32)
    a_star = cv2.cvtColor(srgb[None], cv2.COLOR_RGB2Lab)[0, :, 1]
    skin_a = cv2.cvtColor(np.clip(skin_rgb / 255.0, 0, 1).astype(np.float32)[None, None], cv2.COLOR_RGB2Lab)[0, 0, 1]
    core = (lips > 0.9) & (photo_weight > 0.5) & (a_star > skin_a + LIP_REDDER_THAN_SKIN)
    if np.count_nonzero(core) < LIP_MIN_TEXELS:
        return None
    return np.median(linear[core], axis=0)


def redraw_features(linear: np.ndarray, points: np.ndarray, area: np.ndarray, skin_fill: np.ndarray, landmarks: np.ndarray,
                    lips: np.ndarray, colours: FeatureColours) -> np.ndarray:
    """(K, 3) linear texels of the face with the lips and lid lines drawn on the model's contours:
    `linear` (the photo's colours) gives way to `skin_fill` (the skin around, filled in) by `area`,
    then the lips (`lips`: their `lip_coverage`) and lash lines are painted over."""
    out = linear + (skin_fill - linear) * area[:, None]
    out = paint_lips(out, points, landmarks, lips, colours.lips, colours.lip_strength)
    return out + (colours.lashes - out) * (colours.lash_strength * lid_lines(points, landmarks))[:, None]
