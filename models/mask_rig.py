"""A blendshape rig for a face mask built on MediaPipe's canonical mesh.

At load, holes are cut for the eyes and the mouth, the lips are closed, and each
ARKit control gets a smooth displacement field: handle vertices get a prescribed
offset, vertices far from them stay put and the rest follow by biharmonic
interpolation on the mesh graph (so, across the mouth hole, the lower lip does
not drag the upper one). Per frame the fields are blended with one matrix
product, the jaw is rotated about a pivot behind it and normals are recomputed.

"Left"/"right" are the subject's own sides, as in ARKit: left is +x.
`MaskShell` turns a posed surface into a closed, slightly thick object for
rendering: a back side, a rounded outer rim and tunnels behind the eye and
mouth holes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .canonical_mesh import CanonicalMesh
from .face_state import BLENDSHAPE_INDEX, MIRROR_PERMUTATION, NUM_BLENDSHAPES
from .gaze import gaze_rotations
from .polygon import inside_polygon

RIGHT_EYE_UPPER = (246, 161, 160, 159, 158, 157, 173)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (466, 388, 387, 386, 385, 384, 398)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
INNER_LIP_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LIP_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
OUTER_LIP_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LIP_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LEFT_BROW = (300, 293, 334, 296, 336, 276, 283, 282, 295, 285)
LEFT_MOUTH_CORNER = (291, 308)
CHIN = 152

JAW_PIVOT = np.array([0.0, -2.0, -3.0], np.float32)
JAW_MAX_ANGLE = np.radians(22.0)
EYE_RADIUS = 1.2

Displacement = Sequence[float] | np.ndarray | Callable[[np.ndarray], np.ndarray]
Handle = tuple[Sequence[int], Displacement]


def _loop(first: Sequence[int], second: Sequence[int]) -> np.ndarray:
    """Two contours running the same way (the second may omit the shared end points) -> one closed loop."""
    return np.array(list(first) + [i for i in reversed(second) if i not in first], np.int64)


def _ccw(loop: np.ndarray, xy: np.ndarray) -> np.ndarray:
    p = xy[loop]
    area = np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])
    return loop if area > 0 else loop[::-1].copy()


def _cut_holes(triangles: np.ndarray, vertices: np.ndarray, loops: Sequence[np.ndarray]) -> np.ndarray:
    """Drop the triangles spanning each loop: all corners on it, centroid inside it."""
    keep = np.ones(len(triangles), bool)
    centroids = vertices[triangles].mean(axis=1)
    for loop in loops:
        on_loop = np.isin(triangles, loop).all(axis=1)
        keep &= ~(on_loop & inside_polygon(centroids[:, :2], vertices[loop, :2]))
    return triangles[keep]


def _curve_at(x: np.ndarray, contour: Sequence[int], vertices: np.ndarray) -> np.ndarray:
    """Points of a contour (polyline, monotonic in x) at the given x, interpolated."""
    p = vertices[list(contour)]
    order = np.argsort(p[:, 0])
    p = p[order]
    return np.stack([x, np.interp(x, p[:, 0], p[:, 1]), np.interp(x, p[:, 0], p[:, 2])], axis=1)


def _xyz(x, y, z) -> np.ndarray:
    """Stack per-point (or scalar) components into (n, 3) displacements."""
    return np.stack(np.broadcast_arrays(x, y, z), axis=1)


def _edges(triangles: np.ndarray) -> np.ndarray:
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def _boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    """Closed boundary loops, each ordered along its half-edges."""
    half = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    edge_set = {tuple(e) for e in half.tolist()}
    nxt = {a: b for a, b in half.tolist() if (b, a) not in edge_set}
    loops = []
    while nxt:
        start = next(iter(nxt))
        loop = [start]
        while (v := nxt.pop(loop[-1])) != start:
            loop.append(v)
        loops.append(np.array(loop, np.int64))
    return loops


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray, welded: np.ndarray | None = None) -> np.ndarray:
    """Area-weighted unit vertex normals, vectorized. `welded` (N,) names the point each vertex
    is a copy of (render vertices split along UV seams): copies share one normal, so no seam shows."""
    v0, v1, v2 = (vertices[triangles[:, i]] for i in range(3))
    face = np.cross(v1 - v0, v2 - v0)
    idx = triangles.ravel() if welded is None else welded[triangles].ravel()
    rep = np.repeat(face, 3, axis=0)
    n = len(vertices) if welded is None else int(welded.max()) + 1
    normals = np.stack([np.bincount(idx, rep[:, k], n) for k in range(3)], axis=1)
    if welded is not None:
        normals = normals[welded]
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    return normals.astype(np.float32)


class _Interpolator:
    """Biharmonic interpolation of displacements on the mesh graph."""

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray) -> None:
        n = len(vertices)
        e = _edges(triangles)
        adjacency = np.zeros((n, n))
        adjacency[e[:, 0], e[:, 1]] = adjacency[e[:, 1], e[:, 0]] = 1.0
        laplacian = np.eye(n) - adjacency / np.maximum(adjacency.sum(1, keepdims=True), 1.0)
        self._k = laplacian.T @ laplacian
        self.vertices = vertices  # rest positions, for the radius around handles

    def solve(self, handles: Sequence[Handle], radius: float, pinned: Sequence[int] = ()) -> np.ndarray:
        """Displacements that match `handles`, are 0 at `pinned` and beyond `radius`
        of every handle vertex, and are smooth in between."""
        v = self.vertices
        values = np.zeros_like(v, dtype=np.float64)
        known = np.zeros(len(v), bool)
        handle_idx = np.concatenate([np.asarray(idx, np.int64) for idx, _ in handles])
        dist = np.linalg.norm(v[:, None, :] - v[None, handle_idx, :], axis=2).min(axis=1)
        known[dist > radius] = True
        known[list(pinned)] = True
        for idx, disp in handles:
            idx = np.asarray(idx, np.int64)
            values[idx] = disp(v[idx]) if callable(disp) else disp
            known[idx] = True
        free = ~known
        k_ff = self._k[np.ix_(free, free)]
        k_fk = self._k[np.ix_(free, known)]
        values[free] = np.linalg.solve(k_ff, -k_fk @ values[known])
        return values


@dataclass(frozen=True)
class RigFrame:
    vertices: np.ndarray  # (468, 3) float32, posed front surface, canonical indices
    normals: np.ndarray  # (468, 3) float32
    eye_rotations: np.ndarray  # (2, 3, 3) float32 gaze rotations: [0] right eye (-x), [1] left eye (+x)


class MaskRig:
    """Canonical mesh with open eyes and mouth, driven by ARKit blendshapes."""

    def __init__(self, mesh: CanonicalMesh) -> None:
        v = mesh.vertices.astype(np.float64)
        self.mirror = np.array([np.argmin(np.linalg.norm(v - p * (-1, 1, 1), axis=1)) for p in v])
        self.eye_loops = (
            _ccw(_loop(RIGHT_EYE_LOWER, RIGHT_EYE_UPPER), v),
            _ccw(_loop(LEFT_EYE_LOWER, LEFT_EYE_UPPER), v),
        )
        self.mouth_loop = _ccw(_loop(INNER_LIP_UPPER, INNER_LIP_LOWER), v)
        self.triangles = _cut_holes(mesh.triangles, v, (*self.eye_loops, self.mouth_loop)).astype(np.int32)
        self.outer_loop = _ccw(max(_boundary_loops(self.triangles), key=len), v)

        solver = _Interpolator(v, self.triangles)
        lips = self._lips(v)
        v = solver.vertices = v + self._close_lips(solver, v)
        self.base = v.astype(np.float32)
        self.lip_vertices = np.array(lips["all"], np.int64)

        jaw = solver.solve(
            [(lips["lower"] + [CHIN] + list(np.flatnonzero(v[:, 1] < -7.0)), (1.0, 0, 0))],
            radius=np.inf,
            pinned=lips["upper"] + list(np.flatnonzero(v[:, 1] > -2.0)),
        )
        self._jaw_weight = np.clip(jaw[:, 0], 0.0, 1.0).astype(np.float32)
        lip_close = solver.solve([(lips["lower"], (1.0, 0, 0))], radius=1.5, pinned=lips["upper"] + [CHIN])
        self._lip_close_weight = np.clip(lip_close[:, 0], 0.0, 1.0).astype(np.float32)

        self._fields = self._build_fields(solver, v, lips)

        centers = []
        for loop in self.eye_loops:
            p = v[loop]
            centers.append([(p[:, 0].min() + p[:, 0].max()) / 2, p[:, 1].mean(), p[:, 2].max() - 0.2 - EYE_RADIUS])
        self.eye_centers = np.array(centers, np.float32)
        self.eye_radius = EYE_RADIUS

    # --- construction -------------------------------------------------------------------------

    def _lips(self, v: np.ndarray) -> dict[str, list[int]]:
        upper_poly = v[list(OUTER_LIP_UPPER) + list(INNER_LIP_UPPER[::-1]), :2]
        lower_poly = v[list(OUTER_LIP_LOWER) + list(INNER_LIP_LOWER[::-1]), :2]
        upper = set(OUTER_LIP_UPPER) | set(INNER_LIP_UPPER) | set(np.flatnonzero(inside_polygon(v[:, :2], upper_poly)).tolist())
        lower = set(OUTER_LIP_LOWER) | set(INNER_LIP_LOWER) | set(np.flatnonzero(inside_polygon(v[:, :2], lower_poly)).tolist())
        corners = {61, 78, 291, 308}
        upper, lower = sorted(upper - corners), sorted(lower - corners)
        return {"upper": upper, "lower": lower, "all": sorted(set(upper) | set(lower) | corners)}

    def _close_lips(self, solver: _Interpolator, v: np.ndarray) -> np.ndarray:
        """The canonical mouth is slightly open: move the inner lips onto their mid curve."""
        up, lo = list(INNER_LIP_UPPER[1:-1]), list(INNER_LIP_LOWER[1:-1])
        mid_up = (v[up] + _curve_at(v[up, 0], INNER_LIP_LOWER, v)) / 2
        mid_lo = (v[lo] + _curve_at(v[lo, 0], INNER_LIP_UPPER, v)) / 2
        return solver.solve([(up, mid_up - v[up]), (lo, mid_lo - v[lo]), ((78, 308), 0.0)], radius=1.0)

    def _build_fields(self, solver: _Interpolator, v: np.ndarray, lips: dict[str, list[int]]) -> np.ndarray:
        left = self._left_fields(solver, v, lips)
        both = self._symmetric_fields(solver, v, lips)
        fields = np.zeros((NUM_BLENDSHAPES, len(v), 3), np.float32)
        for name, field in left.items():
            fields[BLENDSHAPE_INDEX[name]] = field
            fields[MIRROR_PERMUTATION[BLENDSHAPE_INDEX[name]]] = field[self.mirror] * (-1, 1, 1)
        for name, field in both.items():
            fields[BLENDSHAPE_INDEX[name]] = field
        return fields.reshape(NUM_BLENDSHAPES, -1)

    def _mirrored(self, idx: Sequence[int]) -> list[int]:
        return list(idx) + [int(self.mirror[i]) for i in idx]

    def _near(self, v: np.ndarray, x: float, y: float, r: float) -> list[int]:
        """Front-facing vertices within r of (x, y) seen from the front."""
        d = np.hypot(v[:, 0] - x, v[:, 1] - y)
        return np.flatnonzero((d < r) & (v[:, 2] > 0)).tolist()

    def _left_fields(self, s: _Interpolator, v: np.ndarray, lips: dict[str, list[int]]) -> dict[str, np.ndarray]:
        up, lo = list(LEFT_EYE_UPPER), list(LEFT_EYE_LOWER)
        eyes = self._mirrored(up + lo)
        brow = list(LEFT_BROW)
        brow_x = v[brow, 0]
        outer_t = lambda p: np.clip((p[:, 0] - brow_x.min()) / np.ptp(brow_x), 0, 1)[:, None]  # noqa: E731
        corner = list(LEFT_MOUTH_CORNER)
        midline = [i for i in lips["all"] if abs(v[i, 0]) < 0.05]
        still = midline + [int(self.mirror[i]) for i in corner]
        left_upper = [i for i in lips["upper"] if v[i, 0] > 0.1]
        left_lower = [i for i in lips["lower"] if v[i, 0] > 0.1]
        side = lambda p: np.clip(p[:, 0] / 1.5, 0, 1)[:, None]  # noqa: E731
        jaw = self._jaw_weight[:, None]
        return {
            "eyeBlinkLeft": s.solve([(up, _curve_at(v[up, 0], lo, v) - v[up]), (lo, 0.0)], 2.0, brow),
            "eyeWideLeft": s.solve([(up, (0, 0.28, 0.04)), (lo, (0, -0.03, 0))], 1.8, brow),
            "eyeSquintLeft": s.solve([(lo, (0, 0.17, 0.03)), (up[1:-1], (0, -0.06, 0))], 1.8, brow),
            "cheekSquintLeft": s.solve([(self._near(v, 3.8, 0.8, 0.9), (0, 0.25, 0.1)), (lo, (0, 0.08, 0))], 2.2, up + brow),
            "browDownLeft": s.solve([(brow, lambda p: (-0.35, -0.6, 0.1) * (1 - outer_t(p)) + (0, -0.25, 0) * outer_t(p))], 2.6, eyes),
            "browOuterUpLeft": s.solve([(brow, lambda p: (0.05, 0.75, 0) * outer_t(p) ** 1.5)], 2.6, eyes),
            "noseSneerLeft": s.solve(
                [(self._near(v, 1.75, -1.0, 0.6), (0, 0.26, -0.04)), (self._near(v, 0.9, 0.9, 0.5), (0, 0.12, 0))],
                1.8,
                eyes + list(INNER_LIP_LOWER),
            ),
            "mouthSmileLeft": s.solve([(corner, (0.6, 0.75, -0.3)), (self._near(v, 3.0, -2.2, 0.6), (0.15, 0.3, 0.1))], 3.5, still),
            "mouthFrownLeft": s.solve([(corner, (0.1, -0.6, -0.05))], 2.8, still),
            "mouthStretchLeft": s.solve([(corner, (0.55, -0.2, -0.15))], 2.8, still),
            "mouthDimpleLeft": s.solve([(corner, (0.12, 0.02, -0.3))], 2.5, still),
            "mouthPressLeft": s.solve([(left_upper, (0, -0.06, -0.08)), (left_lower, (0, 0.06, -0.08))], 1.5, midline),
            "mouthUpperUpLeft": s.solve([(left_upper, lambda p: (0, 0.32, 0.02) * side(p))], 2.0, lips["lower"]),
            "mouthLowerDownLeft": s.solve([(left_lower, lambda p: (0, -0.32, 0.02) * side(p))], 2.0, lips["upper"]),
            "mouthLeft": s.solve([(lips["all"], (0.55, 0, 0))], 2.5),
            "jawLeft": jaw * np.array([0.9, 0, 0]),
        }

    def _symmetric_fields(self, s: _Interpolator, v: np.ndarray, lips: dict[str, list[int]]) -> dict[str, np.ndarray]:
        eyes = self._mirrored(list(LEFT_EYE_UPPER) + list(LEFT_EYE_LOWER))
        brows = self._mirrored(LEFT_BROW)
        inner = lambda p: np.clip(1 - (np.abs(p[:, 0]) - 1.2) / 3.5, 0, 1)[:, None] ** 1.5  # noqa: E731
        cheeks = self._near(v, 4.3, -3.5, 1.3) + self._near(v, -4.3, -3.5, 1.3)
        puff = vertex_normals(v, self.triangles)[cheeks] * 0.4 + _xyz(np.sign(v[cheeks, 0]) * 0.5, 0, 0)
        inner_up, inner_lo = list(INNER_LIP_UPPER[1:-1]), list(INNER_LIP_LOWER[1:-1])
        gape = lambda p: 1 - (p[:, 0] / 2.2) ** 2  # noqa: E731
        jaw = self._jaw_weight[:, None]
        return {
            "browInnerUp": s.solve([(brows, lambda p: (0, 0.8, 0.02) * inner(p))], 3.0, eyes),
            "cheekPuff": s.solve([(cheeks, puff)], 3.0, inner_up + inner_lo),
            "mouthPucker": s.solve([(lips["all"], lambda p: _xyz(-0.4 * p[:, 0], 0, 0.7))], 2.5),
            "mouthFunnel": s.solve(
                [
                    (lips["all"], lambda p: _xyz(-0.2 * p[:, 0], 0, 0.4)),
                    (inner_up, lambda p: _xyz(-0.2 * p[:, 0], 0.24 * gape(p), 0.4)),
                    (inner_lo, lambda p: _xyz(-0.2 * p[:, 0], -0.3 * gape(p), 0.4)),
                ],
                2.5,
            ),
            "mouthRollLower": s.solve([(lips["lower"], (0, 0.12, -0.3))], 1.5, lips["upper"]),
            "mouthRollUpper": s.solve([(lips["upper"], (0, -0.1, -0.3))], 1.5, lips["lower"]),
            "mouthShrugLower": s.solve(
                [(list(OUTER_LIP_LOWER[1:-1]), (0, 0.15, 0.1)), (self._near(v, 0.0, -7.2, 1.0), (0, 0.3, 0.15))], 3.0, lips["upper"]
            ),
            "mouthShrugUpper": s.solve([(lips["upper"], (0, 0.12, 0.08))], 2.0, lips["lower"]),
            "jawForward": jaw * np.array([0, 0, 0.7]),
        }

    # --- per frame ----------------------------------------------------------------------------

    def evaluate(self, blendshapes: np.ndarray) -> RigFrame:
        """Pose the mask for one (52,) blendshape vector (values are clipped to [0, 1])."""
        w = np.clip(np.asarray(blendshapes, np.float32), 0.0, 1.0)
        v = self.base + (w @ self._fields).reshape(-1, 3)
        angle = JAW_MAX_ANGLE * w[_JAW_OPEN]
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)  # chin down and back
        weight = self._jaw_weight * (1.0 - w[_MOUTH_CLOSE] * self._lip_close_weight)
        v += weight[:, None] * ((v - JAW_PIVOT) @ rot.T + JAW_PIVOT - v)
        return RigFrame(v, vertex_normals(v, self.triangles), gaze_rotations(w))


_JAW_OPEN = BLENDSHAPE_INDEX["jawOpen"]
_MOUTH_CLOSE = BLENDSHAPE_INDEX["mouthClose"]


def _strip(front: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Triangles joining two closed rings; for a ring counter-clockwise seen from +z and
    `back` behind it, they face the ring's axis (flip them to face outwards)."""
    f1, b1 = np.roll(front, -1), np.roll(back, -1)
    return np.concatenate([np.stack([front, f1, b1], 1), np.stack([front, b1, back], 1)])


class LoopSubdivision:
    """One step of Loop subdivision near the mesh boundaries, as a fixed stencil.

    Every vertex is smoothed with Loop's vertex rule; the triangles touching a
    boundary (the mask outline and the holes, where silhouettes are sharpest)
    are split in four, and their neighbours in two so that no crack opens (red-
    green refinement). Far fewer triangles than a full step, which matters to a
    software rasterizer. Apply with `fine = subdivision(coarse_values)`.
    """

    def __init__(self, triangles: np.ndarray, n_vertices: int) -> None:
        t = triangles
        corners = np.stack([t, np.roll(t, -1, axis=1)], axis=2)  # (T, 3, 2): edge k runs t[k] -> t[k+1]
        opposite = np.roll(t, -2, axis=1)
        edges, edge_of = np.unique(np.sort(corners.reshape(-1, 2), axis=1), axis=0, return_inverse=True)
        edge_of = edge_of.reshape(-1, 3)
        on_boundary = np.bincount(edge_of.ravel(), minlength=len(edges)) == 1

        red = np.isin(t, edges[on_boundary]).any(axis=1)
        split = np.zeros(len(edges), bool)
        while True:  # a triangle with two split edges is split fully
            split[edge_of[red]] = True
            grow = ~red & (split[edge_of].sum(axis=1) >= 2)
            if not grow.any():
                break
            red |= grow
        split_ids = np.flatnonzero(split)
        self._midpoint = dict(zip(split_ids.tolist(), (n_vertices + np.arange(len(split_ids))).tolist()))
        self._edge_id = {(int(a), int(b)): i for i, (a, b) in enumerate(edges)}

        rows = self._vertex_rows(edges, on_boundary, n_vertices)
        opposites: list[list[int]] = [[] for _ in range(len(edges))]
        for e, o in zip(edge_of.ravel().tolist(), opposite.ravel().tolist()):
            opposites[e].append(o)
        for e in split_ids.tolist():
            (a, b), opp = edges[e].tolist(), opposites[e]
            rows.append({a: 0.5, b: 0.5} if len(opp) == 1 else {a: 0.375, b: 0.375, opp[0]: 0.125, opp[1]: 0.125})
        width = max(len(r) for r in rows)
        self._index = np.zeros((width, len(rows)), np.int64)  # padded with weight 0 at vertex 0
        self._weight = np.zeros((width, len(rows)), np.float32)
        for i, row in enumerate(rows):
            self._index[: len(row), i] = list(row)
            self._weight[: len(row), i] = list(row.values())
        self.vertex_count = len(rows)
        self.triangles = self._split(t, edge_of, red, split).astype(np.int32)

    @staticmethod
    def _vertex_rows(edges: np.ndarray, on_boundary: np.ndarray, n_vertices: int) -> list[dict[int, float]]:
        neighbours: list[list[int]] = [[] for _ in range(n_vertices)]
        rim: list[list[int]] = [[] for _ in range(n_vertices)]
        for (a, b), boundary in zip(edges.tolist(), on_boundary):
            for u, w in ((a, b), (b, a)):
                neighbours[u].append(w)
                if boundary:
                    rim[u].append(w)
        rows = []
        for v in range(n_vertices):
            if rim[v]:
                rows.append({v: 0.75, **{u: 0.125 for u in rim[v]}})
            else:
                k = len(neighbours[v])
                beta = 3 / 16 if k == 3 else 3 / (8 * k)
                rows.append({v: 1 - k * beta, **{u: beta for u in neighbours[v]}})
        return rows

    def _split(self, t: np.ndarray, edge_of: np.ndarray, red: np.ndarray, split: np.ndarray) -> np.ndarray:
        mid = np.full(len(split), -1)
        mid[list(self._midpoint)] = list(self._midpoint.values())
        m = mid[edge_of]  # midpoint of edge k (t[k] -> t[k+1]) per triangle, -1 when not split
        out = [t[~red & ~split[edge_of].any(axis=1)]]
        r, mr = t[red], m[red]
        out += [np.stack([r[:, 0], mr[:, 0], mr[:, 2]], 1), np.stack([r[:, 1], mr[:, 1], mr[:, 0]], 1)]
        out += [np.stack([r[:, 2], mr[:, 2], mr[:, 1]], 1), mr]
        green = ~red & split[edge_of].any(axis=1)
        for tri, mids in zip(t[green], m[green]):
            k = int(np.flatnonzero(mids >= 0)[0])
            a, b, c = np.roll(tri, -k)
            out.append(np.array([[a, mids[k], c], [mids[k], b, c]]))
        return np.concatenate(out)

    def refine_loop(self, loop: np.ndarray) -> np.ndarray:
        """A closed coarse boundary loop -> the fine loop through its edge midpoints."""
        fine = []
        for a, b in zip(loop.tolist(), np.roll(loop, -1).tolist()):
            fine.append(a)
            fine.append(self._midpoint[self._edge_id[(min(a, b), max(a, b))]])
        return np.array(fine, np.int64)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """(n_coarse, c) per-vertex values -> (n_fine, c)."""
        return np.einsum("kn,knc->nc", self._weight, np.take(values, self._index, axis=0))


@dataclass(frozen=True, eq=False)
class MaskGeometry:
    """The rig and its shell: read-only once built, so every mask renderer of a
    process can share one (building them solves ~30 sparse systems: 0.2-0.5 s)."""

    rig: "MaskRig"
    shell: "MaskShell"

    @classmethod
    def from_mesh(cls, mesh: CanonicalMesh) -> "MaskGeometry":
        rig = MaskRig(mesh)
        return cls(rig, MaskShell(rig))


class MaskShell:
    """Closed, smooth render geometry around a posed mask surface.

    The rig surface is smoothed and refined near its edges (`LoopSubdivision`),
    then given a back side `THICKNESS` behind it, a rounded rim along the outer
    edge and a tunnel behind each hole: lid and lip thickness, then a dark cavity
    that the eyeballs sit in. Vertices are rows of 8 float32: position, normal,
    interior (0 glaze .. 1 dark cavity), occlusion (1 = open), then two paint
    weights: lips and cheeks (for a tint the look may apply).
    """

    THICKNESS = 0.35
    #: Per tunnel ring: depth behind the hole, scale towards its centre, interior.
    EYE_RINGS = ((0.3, 1.0, 0.5), (0.8, 1.1, 1.0), (1.8, 0.8, 1.0))
    MOUTH_RINGS = ((0.35, 1.0, 0.5), (1.0, 0.95, 1.0), (2.6, 0.55, 1.0))
    BACK_INTERIOR = 0.3
    FLOATS = 10
    CHEEK = (3.6, -1.6, 1.4)  # blush centre x (either side), y and radius, cm

    def __init__(self, rig: MaskRig) -> None:
        self._edges = _edges(rig.triangles)
        self._degree = np.bincount(self._edges.ravel(), minlength=len(rig.base)).astype(np.float32)
        self._subdivide = sub = LoopSubdivision(rig.triangles, len(rig.base))
        n = self._n = sub.vertex_count
        self._rim_loop = sub.refine_loop(rig.outer_loop)
        rim = 2 * n + np.arange(len(self._rim_loop))
        tris = [sub.triangles, _strip(self._rim_loop, rim)[:, ::-1], _strip(rim, self._rim_loop + n)[:, ::-1]]

        holes = [sub.refine_loop(loop) for loop in (*rig.eye_loops, rig.mouth_loop)]
        rings = np.array([self.EYE_RINGS, self.EYE_RINGS, self.MOUTH_RINGS], np.float32)  # (hole, ring, param)
        self._hole_vertices = np.concatenate(holes)
        self._hole_starts = np.cumsum([0] + [len(h) for h in holes[:-1]])
        self._hole_sizes = np.array([len(h) for h in holes], np.float32)
        group = np.repeat(np.arange(len(holes)), [len(h) for h in holes])
        self._hole_group = group
        self._ring_depth = rings[group, :, 0].T[:, :, None] * np.array([0, 0, 1], np.float32)  # (ring, L, 3)
        self._ring_scale = rings[group, :, 1].T[:, :, None]
        self._cap_depth = rings[:, -1, 0][:, None] * np.array([0, 0, 1], np.float32)
        self._tunnel_start = 2 * n + len(rim)
        count = len(self._hole_vertices)
        ring_ids = self._tunnel_start + np.arange(rings.shape[1] * count).reshape(rings.shape[1], count)
        cap_ids = ring_ids[-1, -1] + 1 + np.arange(len(holes))
        for h, start in enumerate(self._hole_starts):
            sl = slice(start, start + len(holes[h]))
            previous = holes[h]
            for ring in ring_ids[:, sl]:
                tris.append(_strip(previous, ring))
                previous = ring
            tris.append(np.stack([np.full(len(previous), cap_ids[h]), previous, np.roll(previous, -1)], 1))
        #: The inside of the mask comes last: it only shows when the mask faces away,
        #: and a renderer may draw the first `front_triangle_count` triangles otherwise.
        self.front_triangle_count = sum(len(t) for t in tris)
        self.triangles = np.concatenate(tris + [sub.triangles[:, ::-1] + n]).astype(np.int32)
        self.vertex_count = int(cap_ids[-1]) + 1

        out = self._template = np.zeros((self.vertex_count, self.FLOATS), np.float32)
        out[:n, 8:10] = sub(self._paint(rig))
        out[n : 2 * n, 6:8] = (self.BACK_INTERIOR, 1.0)
        out[rim, 6:8] = (0.0, 1.0)
        interior = rings[group, :, 2].T.ravel()
        out[ring_ids.ravel(), 6], out[ring_ids.ravel(), 7] = interior, 1.0 - 0.5 * interior
        out[cap_ids, 3:8] = (0.0, 0.0, 1.0, 1.0, 0.5)
        self._ring_ids, self._cap_ids = ring_ids, cap_ids

    def _paint(self, rig: MaskRig) -> np.ndarray:
        v = rig.base
        paint = np.zeros((len(v), 2), np.float32)
        paint[rig.lip_vertices, 0] = 1.0
        x, y, r = self.CHEEK
        paint[:, 1] = np.exp(-((np.abs(v[:, 0]) - x) ** 2 + (v[:, 1] - y) ** 2) / (2 * r * r)) * (v[:, 2] > 0)
        return paint

    def occlusion(self, vertices: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """Cheap ambient occlusion from concavity: darker where the neighbours rise above the surface."""
        a, b = self._edges[:, 0], self._edges[:, 1]
        n = len(vertices)
        neighbours = np.stack(
            [np.bincount(a, vertices[b, k], n) + np.bincount(b, vertices[a, k], n) for k in range(3)], axis=1
        )
        concavity = np.einsum("ij,ij->i", neighbours / self._degree[:, None] - vertices, normals)
        return np.clip(1.0 - 2.5 * concavity, 0.6, 1.0)

    def new_vertices(self) -> np.ndarray:
        """A (vertex_count, FLOATS) array for `build` to fill: one per renderer, so renderers can share the shell."""
        return self._template.copy()

    def build(self, frame: RigFrame, out: np.ndarray) -> np.ndarray:
        """Fill `out` (from `new_vertices`) with the vertex rows for one frame, and return it."""
        n, t = self._n, self.THICKNESS
        coarse = np.concatenate([frame.vertices, frame.normals, self.occlusion(frame.vertices, frame.normals)[:, None]], axis=1)
        fine = self._subdivide(coarse)
        v, nrm = fine[:, 0:3], fine[:, 3:6]
        nrm /= np.sqrt(np.einsum("ij,ij->i", nrm, nrm))[:, None]
        out[:n, 0:3], out[:n, 3:6], out[:n, 7] = v, nrm, fine[:, 6]
        out[n : 2 * n, 0:3], out[n : 2 * n, 3:6] = v - t * nrm, -nrm

        p, pn = v[self._rim_loop], nrm[self._rim_loop]
        outward = np.cross(np.roll(p, -1, 0) - np.roll(p, 1, 0), pn)
        outward /= np.sqrt(np.einsum("ij,ij->i", outward, outward))[:, None] + 1e-9
        rim = slice(2 * n, 2 * n + len(p))
        out[rim, 0:3], out[rim, 3:6] = p + 0.5 * t * (outward - pn), outward

        p = v[self._hole_vertices]
        centres = np.add.reduceat(p, self._hole_starts, axis=0) / self._hole_sizes[:, None]
        centre = centres[self._hole_group]
        inward = centre - p
        inward /= np.sqrt(np.einsum("ij,ij->i", inward, inward))[:, None] + 0.05
        inward[:, 2] += 0.3
        inward /= np.sqrt(np.einsum("ij,ij->i", inward, inward))[:, None]
        rings = slice(self._tunnel_start, self._tunnel_start + self._ring_ids.size)
        out[rings, 0:3] = (centre + self._ring_scale * (p - centre) - self._ring_depth).reshape(-1, 3)
        out[rings, 3:6] = np.broadcast_to(inward, self._ring_depth.shape).reshape(-1, 3)
        out[self._cap_ids, 0:3] = centres - self._cap_depth
        return out
