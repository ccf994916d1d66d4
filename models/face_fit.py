"""Fit the ICT face model to one image's tracked landmarks: identity, expression and pose.

The camera is scaled orthographic (u = s·(R·X)x + tu, v = -s·(R·X)y + tv):
portraits are shot from far enough that perspective barely changes a face's
outline, and a linear camera makes the texture projection a plain affine map.

All unknowns are solved together by regularized Gauss-Newton (a maximum a
posteriori fit):
- identity: 100 coefficients, prior N(0, 1);
- expression: ICT weights, prior centred on MediaPipe's blendshape scores for
  the same image, kept in [0, 1] by projection;
- pose: rotation (prior: MediaPipe's head rotation), scale and translation.

Solving them jointly matters: under an orthographic camera a few degrees of
pitch look much like some identity modes, and fitting pose and shape in turn
lets the shape soak up that tilt, so the avatar would look tilted to the
tracker at rest. Jointly, the rotation prior decides along that valley.

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

from .face_model import FaceModel
from .landmark_correspondence import NUM_SURFACE_LANDMARKS, LandmarkCorrespondence

#: Expected landmark disagreement (cm) with the model surface: MediaPipe's own
#: jitter plus the correspondence error. Sets how strongly the priors pull.
LANDMARK_SIGMA_CM = 0.15
#: How far (one standard deviation) the expression weights may stray from MediaPipe's scores.
EXPRESSION_SIGMA = 0.3
#: How far (degrees, one standard deviation) the head rotation may stray from MediaPipe's.
ROTATION_SIGMA_DEG = 2.0
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


def _rotation_vector(r: np.ndarray) -> np.ndarray:
    """Axis times angle of a rotation matrix (its logarithm)."""
    angle = float(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)))
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    return v * (0.5 if angle < 1e-6 else angle / (2 * np.sin(angle)))


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


def fit_portrait(model: FaceModel, corr: LandmarkCorrespondence, oval: np.ndarray, landmarks_px: np.ndarray,
                 blendshapes: np.ndarray, head_rotation: np.ndarray) -> PortraitFit:
    """Fit to MediaPipe's tracking of one image.

    `landmarks_px`: MediaPipe's (478, 3) landmarks in pixels (x times the image
    width, y times its height, z times its width: MediaPipe scales z like x);
    `blendshapes`: its (52,) scores; `head_rotation`: the rotation part of its
    facial transformation matrix. `oval`: the face-oval landmarks
    (`FaceContours.oval`).
    """
    lm = np.asarray(landmarks_px[:NUM_SURFACE_LANDMARKS], np.float64)
    target = np.stack([lm[:, 0], lm[:, 1], -lm[:, 2]], axis=1)  # MediaPipe z grows away from the camera
    w = np.ones(NUM_SURFACE_LANDMARKS)
    w[oval] = OVAL_WEIGHT
    base_weights = np.stack([w, w, w * DEPTH_WEIGHT], axis=1)
    weights = base_weights

    mean = corr.points(model.neutral).astype(np.float64)  # (L, 3)
    basis = np.concatenate([corr.basis(model.id_basis), corr.basis(model.exp_basis)]).astype(np.float64)  # (M, L, 3)
    n_id = len(model.id_basis)
    expression_prior = model.expression_weights(blendshapes).astype(np.float64)
    # MediaPipe's rotation takes its canonical face to the camera; ours takes ICT's.
    rotation_prior = np.asarray(head_rotation, np.float64) @ corr.canonical_to_model.T
    prior_centre = np.concatenate([np.zeros(n_id), expression_prior])
    prior_scale = np.concatenate([np.ones(n_id), np.full(len(expression_prior), 1.0 / EXPRESSION_SIGMA)])
    rotation_weight = 1.0 / np.radians(ROTATION_SIGMA_DEG)

    coeffs = prior_centre.copy()
    rotation = rotation_prior
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
        # Priors: rows on the rotation and on the coefficients.
        j_prior = np.zeros((3 + len(coeffs), jac.shape[1]))
        j_prior[:3, :3] = rotation_weight * np.eye(3)
        j_prior[3:, n_pose:] = np.diag(prior_scale)
        r_prior = np.concatenate([rotation_weight * _rotation_vector(rotation @ rotation_prior.T), prior_scale * (coeffs - prior_centre)])
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
    return PortraitFit(coeffs[:n_id].astype(np.float32), coeffs[n_id:].astype(np.float32), rotation, scale, t,
                       fitted[:, :2].astype(np.float32), error.astype(np.float32))
