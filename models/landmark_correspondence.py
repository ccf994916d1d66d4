"""Where MediaPipe's face landmarks sit on the ICT-FaceKit face.

Fitting the face model to a tracked face needs, for each MediaPipe landmark,
the point of the model's surface it marks. No table of that exists, and a
nearest-vertex guess between two differently shaped faces is off by
millimetres where it matters most (lids, lips). It is computed instead, once
per process, from two meshes that describe the same anatomy in the same units
(cm, y up, +z out of the face):

1. A handful of unambiguous anatomical points (eye corners, nose tip and base,
   mouth corners, chin, nose bridge) are known both as MediaPipe landmark
   numbers and as ICT's Multi-PIE 68 landmark vertices. A similarity transform
   (Umeyama) fitted to them puts MediaPipe's canonical face onto ICT's.
2. Then, alternately: every canonical landmark takes its closest point on
   ICT's face surface, and ICT's identity coefficients (with a Gaussian prior)
   and the similarity are re-fitted so the model's surface passes through the
   canonical landmarks. ICT's face thereby takes the canonical face's shape,
   and the closest points converge to true correspondences rather than
   nearest neighbours of a different face.
3. The result is a (triangle, barycentric weights) pair per landmark, valid
   for every identity and expression because the model's topology is fixed.

The ten iris landmarks (468-477) are not included: they mark the pupil, which
moves with gaze, not a point on the skin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canonical_mesh import CanonicalMesh
from .face_model import FaceModel

NUM_SURFACE_LANDMARKS = 468

#: (MediaPipe landmark, iBUG-68 index) pairs of the same anatomical point:
#: outer/inner eye corners, nose bridge, nose tip, subnasale, mouth corners, chin.
ANCHORS: tuple[tuple[int, int], ...] = (
    (33, 36), (133, 39), (362, 42), (263, 45),
    (168, 27), (1, 30), (2, 33),
    (61, 48), (291, 54),
    (152, 8),
)
#: Identity prior strength while shaping ICT to the canonical face (cm²): the
#: canonical face is an average face, so the coefficients stay small.
_PRIOR = 0.05
_ITERATIONS = 8


@dataclass(frozen=True)
class LandmarkCorrespondence:
    """MediaPipe landmark i lies at `weights[i] @ vertices[triangles[i]]` on the ICT mesh."""

    triangles: np.ndarray  # (468, 3) int32 ICT vertex indices
    weights: np.ndarray  # (468, 3) float32 barycentric weights, rows sum to 1
    residual_cm: np.ndarray  # (468,) distance from the canonical landmark to its surface point after shaping
    canonical_to_model: np.ndarray  # (3, 3) rotation from MediaPipe's canonical frame to ICT's (the two differ by a few degrees of pitch)

    def points(self, vertices: np.ndarray) -> np.ndarray:
        """(468, 3) landmark positions on a posed mesh (any identity and expression)."""
        return np.einsum("nk,nkc->nc", self.weights, vertices[self.triangles])

    def basis(self, basis: np.ndarray) -> np.ndarray:
        """(M, 468, 3) the landmarks' share of per-vertex deltas (M, V, 3): how each mode moves them."""
        return np.einsum("nk,mnkc->mnc", self.weights, basis[:, self.triangles])

    def vertex_set(self) -> np.ndarray:
        """Every ICT vertex the landmarks depend on (evaluate only these when fitting)."""
        return np.unique(self.triangles)


def similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares scale, rotation and translation with dst ≈ s·R·src + t, optionally weighted per point (Umeyama 1991)."""
    w = np.full(len(src), 1.0 / len(src)) if weights is None else weights / weights.sum()
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd((b * w[:, None]).T @ a)
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / (w @ (a * a).sum(1)))
    return scale, rot, mu_d - scale * rot @ mu_s


def closest_points_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentric weights (..., 3) of the point of triangle (a, b, c) closest to p, for broadcast arrays of points.

    The region tests of Ericson, Real-Time Collision Detection, 5.1.5, done for all pairs at once.
    """
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = 1.0 / (va + vb + vc)
        v, w = vb * denom, vc * denom  # interior
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    out = np.stack([1 - v - w, v, w], -1)
    cases = [  # later cases take precedence, as in the sequential algorithm read bottom-up
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), lambda: np.stack([0 * t_bc, 1 - t_bc, t_bc], -1)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), lambda: np.stack([1 - t_ac, 0 * t_ac, t_ac], -1)),
        ((d6 >= 0) & (d5 <= d6), lambda: np.broadcast_to([0.0, 0.0, 1.0], out.shape)),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), lambda: np.stack([1 - t_ab, t_ab, 0 * t_ab], -1)),
        ((d3 >= 0) & (d4 <= d3), lambda: np.broadcast_to([0.0, 1.0, 0.0], out.shape)),
        ((d1 <= 0) & (d2 <= 0), lambda: np.broadcast_to([1.0, 0.0, 0.0], out.shape)),
    ]
    for mask, value in cases:
        out = np.where(mask[..., None], value(), out)
    return out


def _incident_triangles(triangles: np.ndarray, num_vertices: int) -> np.ndarray:
    """(V, D) triangles around each vertex, padded by repeating one (-1 for vertices off the surface)."""
    flat = triangles.ravel()
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=num_vertices)
    starts = np.concatenate([[0], np.cumsum(counts)])
    rank = np.arange(len(flat)) - starts[flat[order]]
    table = np.full((num_vertices, counts.max()), -1, np.intp)
    table[flat[order], rank] = order // 3
    first = table[:, :1]
    return np.where(table < 0, first, table)


def _closest_on_surface(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray,
                        incident: np.ndarray, candidates: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """For each point, the (triangle index, barycentric weights) of the closest surface point.

    Candidate triangles are those around the nearest few vertices: the closest
    point of a fine mesh lies on a triangle touching one of them.
    """
    used = np.unique(triangles)
    v = vertices[used]
    d2 = (v * v).sum(1)[None, :] - 2.0 * points @ v.T  # squared distance up to a per-point constant
    near = used[np.argpartition(d2, candidates, axis=1)[:, :candidates]]
    cand = incident[near].reshape(len(points), -1)  # (P, candidates * D)
    a, b, c = (vertices[triangles[cand, k]] for k in range(3))
    p = points[:, None, :]
    w = closest_points_on_triangles(p, a, b, c)
    q = w[..., :1] * a + w[..., 1:2] * b + w[..., 2:] * c
    j = np.argmin(((q - p) ** 2).sum(-1), axis=1)
    rows = np.arange(len(points))
    return cand[rows, j], w[rows, j]


def face_surface(model: FaceModel) -> np.ndarray:
    """Triangles of the face skin only (region `face`): where landmarks can lie."""
    start, end = model.regions["face"]
    tris = model.triangles
    return tris[np.all((tris >= start) & (tris < end), axis=1)]


def compute_correspondence(model: FaceModel, canonical: CanonicalMesh) -> LandmarkCorrespondence:
    """Shape ICT's face to MediaPipe's canonical face and read off where each landmark lies (see the module docstring)."""
    triangles = face_surface(model)
    incident = _incident_triangles(triangles, model.num_vertices)

    mp_idx, ibug_idx = np.array(ANCHORS).T
    canon = canonical.vertices[:NUM_SURFACE_LANDMARKS].astype(np.float64)
    s, r, t = similarity(canon[mp_idx], model.neutral[model.landmarks68[ibug_idx]].astype(np.float64))
    identity = np.zeros(model.id_basis.shape[0])
    vertices = model.neutral.astype(np.float64)
    for _ in range(_ITERATIONS):
        target = canon @ (s * r).T + t
        tri_idx, w = _closest_on_surface(target, vertices, triangles, incident)
        corr = LandmarkCorrespondence(triangles[tri_idx], w, np.zeros(len(w)), r)
        mean = corr.points(model.neutral.astype(np.float64))
        basis = corr.basis(model.id_basis).reshape(len(identity), -1).T  # (468*3, 100)
        lhs = basis.T @ basis + _PRIOR * np.eye(len(identity))
        identity = np.linalg.solve(lhs, basis.T @ (target - mean).ravel())
        vertices = model.evaluate(identity).astype(np.float64)
        s, r, t = similarity(canon, corr.points(vertices))
    target = canon @ (s * r).T + t
    tri_idx, w = _closest_on_surface(target, vertices, triangles, incident)
    corr = LandmarkCorrespondence(triangles[tri_idx].astype(np.int32), w.astype(np.float32), np.zeros(0), r)
    residual = np.linalg.norm(corr.points(vertices) - target, axis=1).astype(np.float32)
    return LandmarkCorrespondence(corr.triangles, corr.weights, residual, r)
