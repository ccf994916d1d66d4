"""Eyes that look where the mean face's do: a fitted identity moves lids and eyeballs apart.

ICT's identity modes reshape the lids and move the eyeballs, but not together:
an identity fitted to a portrait can leave the iris off the middle of its eye
opening. The photo avatar fitted to the shared portrait s42 looked 4 degrees
further outwards and 3 degrees higher than the mean face, with each eye; the
tracker read its eyes at rest as glancing sideways (eyeLookOutLeft 0.38,
against 0.18 for the mean face; 0.25 once re-aimed), people see a slightly
wall-eyed stare, and its blinks read less clearly as the gaze changes.

Each eye's gaze axis at rest (where the renderer paints the iris, and the axis
the gaze rotations turn) is therefore re-aimed so that it points, relative to
the middle of that face's own eye opening, as the mean face's does relative
to its opening. The mean face keeps its axes exactly. Angles are taken from the
front, as yaw (about y) and pitch (about x) of the direction from the eyeball's
centre, the convention of `gaze.gaze_rotations`.
"""

from __future__ import annotations

import numpy as np

from .eyelid_closure import lid_margin


def _yaw_pitch(direction: np.ndarray) -> np.ndarray:
    return np.arctan2(direction[:2], direction[2])


def _direction(yaw_pitch: np.ndarray) -> np.ndarray:
    d = np.array([np.tan(yaw_pitch[0]), np.tan(yaw_pitch[1]), 1.0])
    return d / np.linalg.norm(d)


def opening_direction(rest: np.ndarray, centre: np.ndarray, radius: float, skin: np.ndarray) -> np.ndarray | None:
    """The direction (unit 3-vector) from the eyeball's centre to the middle of the eye opening,
    seen from the front: the middle of the lid margin's extent, taken onto the eyeball's front;
    None when no margin is found."""
    upper, lower = lid_margin(rest, centre, radius, skin)
    if not len(upper) or not len(lower):
        return None
    margin = rest[np.concatenate([upper, lower]), :2]
    dx, dy = (margin.min(axis=0) + margin.max(axis=0)) / 2 - centre[:2]
    dz = np.sqrt(max(radius * radius - dx * dx - dy * dy, 1e-6 * radius * radius))
    d = np.array([dx, dy, dz])
    return d / np.linalg.norm(d)


def aimed_axis(axis: np.ndarray, opening: np.ndarray | None, mean_axis: np.ndarray, mean_opening: np.ndarray | None) -> np.ndarray:
    """The gaze axis (unit, float32) that sits in `opening` as `mean_axis` sits in `mean_opening`;
    `axis` itself when either opening is unknown."""
    if opening is None or mean_opening is None:
        return axis.astype(np.float32)
    offset = _yaw_pitch(mean_axis) - _yaw_pitch(mean_opening)
    return _direction(_yaw_pitch(opening) + offset).astype(np.float32)
