"""2D polygon geometry shared by the mask rig and the face-model paint."""

from __future__ import annotations

import numpy as np


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test in 2D, vectorized over points: (N, 2+) points, (M, 2+) polygon -> (N,) bool."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (np.sum(crosses & (x < x_cross), axis=1) % 2) == 1
