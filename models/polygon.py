"""2D geometry shared by the mask rig, the face-model paint and the photo texture: polygons, polylines, soft edges."""

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


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """0 below e0, 1 above e1, a smooth cubic between: the soft edge of every painted or masked shape."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def polyline_distance(points: np.ndarray, line: np.ndarray, reach: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """2D distance from each point to a polyline, and the arc-length parameter
    (0..1 from its first point) of the nearest point on it. Points farther than
    `reach` from the line's bounding box get distance inf (cheap to skip)."""
    near = np.all((points >= line.min(axis=0) - reach) & (points <= line.max(axis=0) + reach), axis=1)
    dist, param = np.full(len(points), np.inf), np.zeros(len(points))
    if near.any():
        dist[near], param[near] = _nearest_on_polyline(points[near], line)
    return dist, param


def contour_distance(points: np.ndarray, contour: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """2D distance from each point to a closed contour (M, 2) (inf beyond `reach` of its
    bounding box), and whether the point lies inside it."""
    d, _ = polyline_distance(points, np.vstack([contour, contour[:1]]), reach=reach)
    near = np.isfinite(d)
    inside = np.zeros(len(points), bool)
    inside[near] = inside_polygon(points[near], contour)
    return d, inside


def _nearest_on_polyline(points: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = line[:-1], line[1:]
    seg = b - a
    length = np.linalg.norm(seg, axis=1)
    start = np.concatenate([[0.0], np.cumsum(length)])[:-1]
    rel = points[:, None, :] - a[None]
    s = np.clip(np.einsum("psk,sk->ps", rel, seg) / (length**2)[None], 0.0, 1.0)
    d = np.linalg.norm(rel - s[:, :, None] * seg[None], axis=2)
    nearest = np.argmin(d, axis=1)
    rows = np.arange(len(points))
    t = (start[nearest] + s[rows, nearest] * length[nearest]) / length.sum()
    return d[rows, nearest], t
