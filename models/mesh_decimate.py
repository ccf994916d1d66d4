"""Fewer triangles for a software rasterizer, with every kept vertex an original one.

ICT-FaceKit's head has ~48k drawn triangles, a few pixels each at webcam size:
llvmpipe spends its time setting up triangles, not shading pixels. Half-edge
collapses (a vertex merges into a neighbour, which stays where it is) keep the
surviving vertices a subset of the original ones, so the blendshape bases,
texture coordinates and landmarks still index them unchanged.

The error of a collapse is the quadric error (Garland-Heckbert) summed over
several poses of the mesh, so regions that deform (lids, lips) keep the
vertices their deformation needs. Collapses run in rounds of independent,
vectorized steps: in each round, every vertex whose cheapest valid collapse is
cheaper than those of all vertices within two edges takes it.
"""

from __future__ import annotations

import numpy as np

#: A collapse may not turn a triangle's normal by more than this (in any pose).
_MAX_NORMAL_TURN_COS = np.cos(np.radians(50.0))


def _plane_quadrics(poses: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(P, V, 3) poses -> (V, P, 4, 4) sums of the plane quadrics of each vertex's triangles."""
    n_vert = poses.shape[1]
    q = np.zeros((poses.shape[0], n_vert, 16))
    for p, v in enumerate(poses):
        a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
        normal = np.cross(b - a, c - a)
        unit = normal / np.maximum(np.linalg.norm(normal, axis=1), 1e-12)[:, None]
        plane = np.c_[unit, -np.einsum("ij,ij->i", unit, a)]
        k = (plane[:, :, None] * plane[:, None, :]).reshape(-1, 16)
        for corner in range(3):
            for j in range(16):
                q[p, :, j] += np.bincount(tris[:, corner], k[:, j], n_vert)
    return q.transpose(1, 0, 2).reshape(n_vert, -1, 4, 4).copy()


def _undirected_edges(tris: np.ndarray, n_vert: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique sorted edges (E, 2) and how many triangles use each."""
    e = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    keys, counts = np.unique(e[:, 0] * n_vert + e[:, 1], return_counts=True)
    return np.stack([keys // n_vert, keys % n_vert], axis=1), counts


def boundary_vertices(tris: np.ndarray, n_vert: int) -> np.ndarray:
    """(V,) bool: vertices on an edge used by exactly one triangle."""
    edges, counts = _undirected_edges(tris.astype(np.int64), n_vert)
    out = np.zeros(n_vert, bool)
    out[edges[counts == 1].ravel()] = True
    return out


def decimate(poses: np.ndarray, tris: np.ndarray, locked: np.ndarray, target: int, length_weight: float = 0.002,
             checked_per_vertex: int = 3) -> np.ndarray:
    """Triangles (at most about `target`, over the same vertex indices) of the decimated mesh.

    `poses` (P, V, 3): the mesh in P poses (the first is the rest pose); `locked`
    (V,) bool: vertices that never move or disappear (seams); boundary vertices
    are locked too. The cost of a collapse is its quadric error summed over the
    poses (cm²) plus `length_weight` times its squared length at rest, which
    keeps flat areas evenly meshed. It stops early when no valid collapse is left.
    """
    poses = poses.astype(np.float64)
    n_vert = poses.shape[1]
    tris = tris.astype(np.int64)
    q = _plane_quadrics(poses, tris)
    homogeneous = np.concatenate([poses, np.ones((*poses.shape[:2], 1))], axis=2).transpose(1, 0, 2).copy()  # (V, P, 4)
    locked = locked | boundary_vertices(tris, n_vert)
    while len(tris) > target:
        edges, counts = _undirected_edges(tris, n_vert)
        cand = np.concatenate([edges, edges[:, ::-1]])  # half-edges u -> v
        cand = cand[(np.concatenate([counts, counts]) == 2) & ~locked[cand[:, 0]]]
        if len(cand) == 0:
            break
        u, v = cand[:, 0], cand[:, 1]
        hv = homogeneous[v]
        cost = np.einsum("cpi,cpij,cpj->c", hv, q[u] + q[v], hv)
        cost += length_weight * np.sum((poses[0, u] - poses[0, v]) ** 2, axis=1)
        # check only each vertex's few cheapest collapses: the rest would not win this round
        order = np.lexsort((cost, u))
        rank = np.arange(len(order)) - np.searchsorted(u[order], u[order])
        cand, cost = cand[order][rank < checked_per_vertex], cost[order][rank < checked_per_vertex]
        ok = _link_ok(cand, edges, n_vert) & _no_flips(cand, tris, poses)
        cand, cost = cand[ok], cost[ok]
        if len(cand) == 0:
            break
        best = np.full(n_vert, np.inf)
        np.minimum.at(best, cand[:, 0], cost)
        # a vertex collapses when its best cost is the lowest among its neighbours' (ties: lower index)
        key = best + np.arange(n_vert) * 1e-15
        ring = key.copy()
        np.minimum.at(ring, edges[:, 0], key[edges[:, 1]])
        np.minimum.at(ring, edges[:, 1], key[edges[:, 0]])
        winners = np.isfinite(best) & (key <= ring)
        chosen = cand[winners[cand[:, 0]] & (cost == best[cand[:, 0]])]
        chosen = chosen[np.unique(chosen[:, 0], return_index=True)[1]]
        if len(chosen) == 0:
            break
        excess = (len(tris) - target) // 2  # a collapse removes about two triangles
        if len(chosen) > excess + 1:
            chosen = chosen[np.argsort(best[chosen[:, 0]])[: excess + 1]]
        target_of = np.arange(n_vert)
        target_of[chosen[:, 0]] = chosen[:, 1]
        np.add.at(q, chosen[:, 1], q[chosen[:, 0]])
        tris = target_of[tris]
        tris = tris[(tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 2] != tris[:, 0])]
    return tris.astype(np.int32)


def _link_ok(cand: np.ndarray, edges: np.ndarray, n_vert: int) -> np.ndarray:
    """The link condition for interior edges: u and v share exactly two neighbours,
    so the collapse keeps the surface a manifold."""
    both = np.concatenate([edges, edges[:, ::-1]])
    order = np.argsort(both[:, 0], kind="stable")
    neighbours = both[order, 1]
    start = np.searchsorted(both[order, 0], np.arange(n_vert + 1))
    keys = np.sort(both[:, 0] * n_vert + both[:, 1])
    u, v = cand[:, 0], cand[:, 1]
    degree = start[u + 1] - start[u]
    rows = np.repeat(np.arange(len(cand)), degree)
    offsets = np.arange(len(rows)) - np.repeat(np.cumsum(degree) - degree, degree)
    w = neighbours[start[u][rows] + offsets]
    k = v[rows] * n_vert + w
    pos = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
    shared = np.bincount(rows, keys[pos] == k, minlength=len(cand))
    return shared == 2


def _no_flips(cand: np.ndarray, tris: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """For each half-edge u -> v: moving u onto v turns no remaining triangle of u
    by more than the limit and leaves none degenerate, in every pose."""
    corner_vertex = tris.ravel()
    order = np.argsort(corner_vertex, kind="stable")
    start = np.searchsorted(corner_vertex[order], np.arange(poses.shape[1] + 1))
    u, v = cand[:, 0], cand[:, 1]
    count = start[u + 1] - start[u]
    rows = np.repeat(np.arange(len(cand)), count)
    offsets = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
    corner = order[start[u][rows] + offsets]
    tri_index = corner // 3
    t = tris[tri_index]
    keep = ~np.any(t == v[rows, None], axis=1)  # triangles on the edge disappear
    rows, t, slot, tri_index = rows[keep], t[keep], (corner % 3)[keep], tri_index[keep]
    moved = t.copy()
    moved[np.arange(len(t)), slot] = v[rows]
    good = np.ones(len(rows), bool)
    for pose in poses:
        normals = np.cross(pose[tris[:, 1]] - pose[tris[:, 0]], pose[tris[:, 2]] - pose[tris[:, 0]])
        before = normals[tri_index]
        after = np.cross(pose[moved[:, 1]] - pose[moved[:, 0]], pose[moved[:, 2]] - pose[moved[:, 0]])
        nb, na = np.sqrt(np.einsum("ij,ij->i", before, before)), np.sqrt(np.einsum("ij,ij->i", after, after))
        good &= (np.einsum("ij,ij->i", before, after) > _MAX_NORMAL_TURN_COS * nb * na) & (na > 0.05 * nb)
    bad = np.bincount(rows, ~good, minlength=len(cand))
    return bad == 0
