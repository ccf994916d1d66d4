"""Full blinks for every face: ICT's blink shapes are sized for the mean face.

`eyeBlink_L/R` are one displacement field for every identity. An identity
whose eyes open taller than the mean face's keeps a slit open at a full
blink, with the white of the eye and the iris showing through it: the photo
avatar fitted to the shared portrait s42 keeps 1-2.4 mm open across the eye,
the mean face at most 1.5 mm, at the middle only. Per identity, the part of
each blink shape that moves the upper lid is scaled, column by column across
the eye, so that the upper lid's margin reaches the lower lid's at weight 1.
The shape stays linear in its weight, so a half blink closes half as far.

The margin is found by geometry, not by a vertex list: the vertices resting
on the eyeball's sphere in front of its centre, split into upper and lower
lid by height.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A vertex within this (cm) of the eyeball's sphere touches the eye: the lid margin.
MARGIN_CM = 0.08
#: Columns across the eye, and how far (cm) to either side of one a margin vertex counts for it.
COLUMNS = 9
COLUMN_HALF_WIDTH_CM = 0.15
#: Only the upper lid is scaled: vertices above the eye's centre and within this (cm) of it, seen from the front.
AROUND_EYE_CM = 2.5
#: Never move an upper lid more than this many times as far as the shape does.
MAX_SCALE = 2.0
_MOVES_CM = 1e-4
_SCALES = np.linspace(1.0, MAX_SCALE, 101)


@dataclass(frozen=True)
class LidCorrection:
    """What to add, per unit of one blink weight, to close that eye fully."""

    vertices: np.ndarray  # (K,) model vertex indices
    delta: np.ndarray  # (K, 3) float32 cm at weight 1


def lid_margin(rest: np.ndarray, centre: np.ndarray, radius: float, skin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertex indices of the upper and the lower lid's margin of the eye whose eyeball is
    the sphere (`centre`, `radius`), on a face at `rest` (V, 3) whose skin vertices are `skin`."""
    on_ball = skin & (np.abs(np.linalg.norm(rest - centre, axis=1) - radius) < MARGIN_CM)
    on_ball &= rest[:, 2] > centre[2]
    upper_side = rest[:, 1] > centre[1]
    return np.flatnonzero(on_ball & upper_side), np.flatnonzero(on_ball & ~upper_side)


def lid_correction(rest: np.ndarray, blink: np.ndarray, centre: np.ndarray, radius: float, skin: np.ndarray) -> LidCorrection:
    """The correction for one eye of a face at `rest` (V, 3), whose blink shape is `blink` (V, 3),
    whose eyeball is the sphere (`centre`, `radius`) and whose skin vertices are `skin` (V,) bool:
    the margin is looked for on the skin only, not on the eyeball or the lashes."""
    upper, lower = lid_margin(rest, centre, radius, skin)
    upper_side = rest[:, 1] > centre[1]
    closed = rest + blink
    xs = np.linspace(rest[upper, 0].min(), rest[upper, 0].max(), COLUMNS) if len(upper) else np.zeros(0)
    scales = np.ones(len(xs))
    for j, x in enumerate(xs):
        up = upper[np.abs(rest[upper, 0] - x) < COLUMN_HALF_WIDTH_CM]
        low = lower[np.abs(rest[lower, 0] - x) < COLUMN_HALF_WIDTH_CM]
        if not len(up) or not len(low):
            continue
        lower_top = closed[low, 1].max()
        # The smallest scale that brings the upper lid's lowest point down to the lower lid:
        # the margin may change vertex as the scale grows, so every candidate is checked.
        lowest = (rest[up, 1] + _SCALES[:, None] * blink[up, 1]).min(axis=1)
        reached = np.flatnonzero(lowest <= lower_top)
        scales[j] = _SCALES[reached[0]] if len(reached) else MAX_SCALE
    around_eye = np.linalg.norm(rest[:, :2] - centre[:2], axis=1) < AROUND_EYE_CM
    moving = np.flatnonzero(upper_side & around_eye & (np.abs(blink).max(axis=1) > _MOVES_CM))
    vertex_scale = np.interp(rest[moving, 0], xs, scales, left=1.0, right=1.0) if len(xs) else np.ones(len(moving))
    keep = vertex_scale > 1.0
    vertices = moving[keep]
    delta = ((vertex_scale[keep] - 1.0)[:, None] * blink[vertices]).astype(np.float32)
    return LidCorrection(vertices, delta)
