"""Fit the ICT face model to one image's tracked landmarks: identity, expression and pose.

The camera is scaled orthographic (u = s·(R·X)x + tu, v = -s·(R·X)y + tv):
portraits are shot from far enough that perspective barely changes a face's
outline, and a linear camera makes the texture projection a plain affine map.

All unknowns are solved together by regularized Gauss-Newton (a maximum a
posteriori fit):
- identity: 100 coefficients, prior N(0, 1);
- expression: ICT weights, prior centred on MediaPipe's blendshape scores for
  the same image, kept in [0, 1] by projection;
- pose: rotation (starting from MediaPipe's head rotation), scale and translation.

A few degrees of head rotation look much like some identity modes, so the
identity is held to change no landmark by a net rotation (a gauge condition,
measured on the landmarks MediaPipe itself aligns to estimate the head pose):
any tilt goes into the pose, never into the face's shape. Proportions can
still read as a slightly raised or lowered head; `daemon/photo_avatar.py`
measures what is left on the rendered avatar and turns it away.

Residuals are measured in units of LANDMARK_SIGMA_CM on the face (pixels /
scale), so the prior strengths mean the same for a thumbnail and a 4K photo.
MediaPipe's relative depth (z) enters with a lower weight: it is a learned
estimate, not a measurement, but it is what keeps a frontal photo from
flattening the nose. The face-oval landmarks follow the silhouette rather than
a fixed point of the skin, so they count less, and every landmark's weight is
reduced robustly (Cauchy) when it stays far off the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canonical_mesh import CanonicalMesh
from .face_model import FaceModel
from .landmark_correspondence import NUM_SURFACE_LANDMARKS, LandmarkCorrespondence

#: Expected landmark disagreement (cm) with the model surface: MediaPipe's own
#: jitter plus the correspondence error. Sets how strongly the priors pull.
LANDMARK_SIGMA_CM = 0.15
#: How far (one standard deviation) the expression weights may stray from MediaPipe's scores.
EXPRESSION_SIGMA = 0.3
#: The identity's net rotation of the pose landmarks is held at zero to about this (degrees).
GAUGE_SIGMA_DEG = 0.05
DEPTH_WEIGHT = 0.3
OVAL_WEIGHT = 0.3
#: Landmarks off the model by more than about this (cm) lose weight (hair over the
#: brow, glasses, a poor correspondence) instead of bending the face.
ROBUST_SCALE_CM = 0.3
_ITERATIONS = 12

_FLIP = np.diag([1.0, -1.0, 1.0])  # camera (y up) -> image (v down)


@dataclass(frozen=True)
class PortraitFit:
    """The model fitted to an image; image coordinates are pixels, y down."""

    identity: np.ndarray  # (100,) float32
    expression: np.ndarray  # (E,) float32 ICT weights
    rotation: np.ndarray  # (3, 3) model -> camera (camera: x right, y up, z towards the viewer)
    scale: float  # pixels per cm
    translation: np.ndarray  # (3,) pixels: u, v of the model origin, and its depth
    landmarks_px: np.ndarray  # (468, 2) fitted landmark positions in the image
    error_px: np.ndarray  # (468,) distance to the tracked landmark

    def project(self, vertices: np.ndarray) -> np.ndarray:
        """(N, 3) model points -> (N, 3) image u, v (pixels, v down) and depth towards the camera (pixels, larger is nearer)."""
        return project(vertices, self.rotation, self.scale, self.translation).astype(np.float32)


def project(points: np.ndarray, rotation: np.ndarray, scale: float, translation: np.ndarray) -> np.ndarray:
    """(N, 3) model points -> (N, 3) image u, v (pixels, v down) and depth towards the camera (pixels, larger is nearer)."""
    return scale * points @ (_FLIP @ rotation).T + translation


def _skew(v: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N, 3, 3) cross-product matrices."""
    z = np.zeros(len(v))
    return np.stack([np.stack([z, -v[:, 2], v[:, 1]], -1), np.stack([v[:, 2], z, -v[:, 0]], -1), np.stack([-v[:, 1], v[:, 0], z], -1)], 1)


def _rodrigues(w: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(w))
    if theta < 1e-12:
        return np.eye(3)
    k = _skew((w / theta)[None])[0]
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k


def rotation_gauge(points: np.ndarray, basis: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(3, M): the small rotation (axis times angle) that best explains each mode's
    displacement of the weighted `points` (K, 3), given `basis` (M, K, 3), after
    translation and uniform scale are taken out (a linearized weighted Procrustes)."""
    w = weights / weights.sum()
    q = points - w @ points
    rows = np.concatenate([-_skew(q), np.broadcast_to(np.eye(3), (len(q), 3, 3)), q[:, :, None]], axis=2).reshape(-1, 7)
    rw = np.repeat(w, 3)[:, None]
    solve = np.linalg.solve(rows.T @ (rw * rows), (rw * rows).T)  # (7, 3K)
    return solve[:3] @ basis.reshape(len(basis), solve.shape[1]).T


def _bounded_step(h: np.ndarray, g: np.ndarray, weights: np.ndarray, first: int) -> np.ndarray:
    """Solve h·delta = g with the parameters from `first` on (the expression `weights`)
    kept in [0, 1]: an active set pins each weight that would leave the range to its
    bound and solves again for the rest."""
    delta = np.zeros(len(g))
    free = np.ones(len(g), bool)
    for _ in range(len(weights) + 1):
        pinned = ~free
        rhs = g[free] - h[np.ix_(free, pinned)] @ delta[pinned]
        delta[free] = np.linalg.solve(h[np.ix_(free, free)], rhs)
        new = weights + delta[first:]
        out = free[first:] & ((new < 0.0) | (new > 1.0))
        if not out.any():
            break
        idx = np.nonzero(out)[0]
        delta[first + idx] = np.clip(new[idx], 0.0, 1.0) - weights[idx]
        free[first + idx] = False
    return delta


def fit_portrait(model: FaceModel, corr: LandmarkCorrespondence, canonical: CanonicalMesh, oval: np.ndarray,
                 landmarks_px: np.ndarray, blendshapes: np.ndarray, head_rotation: np.ndarray,
                 identity: np.ndarray | None = None, expression_sigma: float = EXPRESSION_SIGMA) -> PortraitFit:
    """Fit to MediaPipe's tracking of one image.

    `landmarks_px`: MediaPipe's (478, 3) landmarks in pixels (x times the image
    width, y times its height, z times its width: MediaPipe scales z like x);
    `blendshapes`: its (52,) scores; `head_rotation`: the rotation part of its
    facial transformation matrix. `canonical`: MediaPipe's canonical face (for
    its pose landmarks); `oval`: the face-oval landmarks (`FaceContours.oval`).
    `identity`: known identity coefficients, held fixed (the frames of a video
    of one person: one identity, fitted once, and an expression and pose per frame).
    `expression_sigma`: how far the expression may leave the tracked blendshapes' (the prior's width).
    """
    lm = np.asarray(landmarks_px[:NUM_SURFACE_LANDMARKS], np.float64)
    target = np.stack([lm[:, 0], lm[:, 1], -lm[:, 2]], axis=1)  # MediaPipe z grows away from the camera
    w = np.ones(NUM_SURFACE_LANDMARKS)
    w[oval] = OVAL_WEIGHT
    base_weights = np.stack([w, w, w * DEPTH_WEIGHT], axis=1)
    weights = base_weights

    mean = corr.points(model.neutral).astype(np.float64)  # (L, 3)
    id_basis = corr.basis(model.id_basis).astype(np.float64)
    if identity is not None:
        fixed = np.zeros(len(id_basis))
        fixed[: len(identity)] = identity
        mean = mean + np.tensordot(fixed, id_basis, 1)
        id_basis = id_basis[:0]
    basis = np.concatenate([id_basis, corr.basis(model.exp_basis).astype(np.float64)])  # (M, L, 3)
    n_id = len(id_basis)
    expression_prior = model.expression_weights(blendshapes).astype(np.float64)
    prior_centre = np.concatenate([np.zeros(n_id), expression_prior])
    prior_scale = np.concatenate([np.ones(n_id), np.full(len(expression_prior), 1.0 / expression_sigma)])
    pose = canonical.pose_landmarks
    gauge = rotation_gauge(mean[pose], basis[:n_id, pose], canonical.pose_weights.astype(np.float64)) / np.radians(GAUGE_SIGMA_DEG)

    coeffs = prior_centre.copy()
    # MediaPipe's rotation takes its canonical face to the camera; ours takes ICT's.
    rotation = np.asarray(head_rotation, np.float64) @ corr.canonical_to_model.T
    x = mean + np.tensordot(coeffs, basis, 1)
    proj = x @ rotation.T
    scale = float(np.sqrt(((lm[:, :2] - lm[:, :2].mean(0)) ** 2).sum() / ((proj[:, :2] - proj[:, :2].mean(0)) ** 2).sum()))
    t = target.mean(0) - project(x, rotation, scale, np.zeros(3)).mean(0)
    for _ in range(_ITERATIONS):
        x = mean + np.tensordot(coeffs, basis, 1)
        pred = project(x, rotation, scale, t)
        sw = np.sqrt(weights) / (LANDMARK_SIGMA_CM * scale)  # (L, 3): pixels -> units of the landmark sigma
        r_data = ((pred - target) * sw).ravel()
        cam = scale * _FLIP @ rotation
        j_rot = -scale * np.einsum("ij,njk->nik", _FLIP, _skew(x @ rotation.T))  # (L, 3, 3), left-multiplied increment
        j_scale = (pred - t)[:, :, None]  # d/d log s
        j_t = np.broadcast_to(np.eye(3), (len(x), 3, 3))
        j_shape = np.einsum("dc,mlc->ldm", cam, basis)  # (L, 3, M)
        jac = np.concatenate([j_rot, j_scale, j_t, j_shape], axis=2) * sw[:, :, None]
        jac = jac.reshape(-1, jac.shape[2])
        n_pose = 7
        # Priors on the coefficients, and the identity's gauge condition.
        j_prior = np.zeros((len(coeffs) + 3, jac.shape[1]))
        j_prior[: len(coeffs), n_pose:] = np.diag(prior_scale)
        j_prior[len(coeffs) :, n_pose : n_pose + n_id] = gauge
        r_prior = np.concatenate([prior_scale * (coeffs - prior_centre), gauge @ coeffs[:n_id]])
        a = np.concatenate([jac, j_prior])
        b = np.concatenate([r_data, r_prior])
        delta = _bounded_step(a.T @ a, -a.T @ b, coeffs[n_id:], n_pose + n_id)
        rotation = _rodrigues(delta[:3]) @ rotation
        scale *= float(np.exp(delta[3]))
        t = t + delta[4:7]
        coeffs = np.concatenate([coeffs[:n_id] + delta[n_pose : n_pose + n_id], np.clip(coeffs[n_id:] + delta[n_pose + n_id :], 0.0, 1.0)])
        # Robust reweighting from the distance each landmark is left off the model.
        fitted = project(mean + np.tensordot(coeffs, basis, 1), rotation, scale, t)
        e = np.linalg.norm(fitted[:, :2] - lm[:, :2], axis=1) / scale
        weights = base_weights / (1.0 + (e[:, None] / ROBUST_SCALE_CM) ** 2)

    fitted = project(mean + np.tensordot(coeffs, basis, 1), rotation, scale, t)
    error = np.linalg.norm(fitted[:, :2] - lm[:, :2], axis=1)
    fitted_identity = coeffs[:n_id] if identity is None else np.asarray(identity)
    return PortraitFit(fitted_identity.astype(np.float32), coeffs[n_id:].astype(np.float32), rotation, scale, t,
                       fitted[:, :2].astype(np.float32), error.astype(np.float32))
