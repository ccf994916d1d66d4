"""Fit the ICT face model to one image's tracked landmarks: identity, expression and pose.

The camera is scaled orthographic (u = s·(R·X)x + tu, v = -s·(R·X)y + tv):
portraits are shot from far enough that perspective barely changes a face's
outline, and a linear camera keeps the shape step an exact linear solve and
makes the texture projection a plain affine map.

Unknowns, solved alternately (each step lowers the same cost):
- pose (rotation, scale, translation): Gauss-Newton from MediaPipe's head rotation;
- identity (100 coefficients, prior N(0, 1)) and expression (ICT weights in
  [0, 1], prior centred on MediaPipe's blendshape scores for the same image):
  one regularized linear least-squares solve, with the weights kept in range
  by an active set.

Residuals are measured in centimetres on the face (pixels / scale), so the
prior strengths mean the same for a thumbnail and a 4K photo. MediaPipe's
relative depth (z) enters with a lower weight: it is a learned estimate, not
a measurement, but it is what keeps a frontal photo from flattening the nose.
The face-oval landmarks follow the silhouette rather than a fixed point of the
skin, so they count less.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .face_model import FaceModel
from .landmark_correspondence import NUM_SURFACE_LANDMARKS, LandmarkCorrespondence

#: Expected landmark disagreement (cm) with the model surface: MediaPipe's own
#: jitter plus the correspondence error. Sets how strongly the priors pull.
LANDMARK_SIGMA_CM = 0.15
#: How far (in prior standard deviations) MediaPipe's blendshape scores may be off.
EXPRESSION_SIGMA = 0.3
DEPTH_WEIGHT = 0.3
ROBUST_SCALE_CM = 0.3
OVAL_WEIGHT = 0.3
_ROUNDS = 6
_POSE_STEPS = 4


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


class _Problem:
    """Targets, weights and the model restricted to the landmarks' vertices."""

    def __init__(self, model: FaceModel, corr: LandmarkCorrespondence, target: np.ndarray, weights: np.ndarray,
                 expression_prior: np.ndarray) -> None:
        self.mean = corr.points(model.neutral).astype(np.float64)  # (L, 3)
        self.id_basis = corr.basis(model.id_basis).astype(np.float64)  # (100, L, 3)
        self.exp_basis = corr.basis(model.exp_basis).astype(np.float64)  # (E, L, 3)
        self.target = target  # (L, 3): u, v (pixels, y down), depth towards the camera (pixels)
        self.weights = weights  # (L, 3) per coordinate
        self.expression_prior = expression_prior

    def shape(self, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        return self.mean + np.tensordot(identity, self.id_basis, 1) + np.tensordot(expression, self.exp_basis, 1)


_FLIP = np.diag([1.0, -1.0, 1.0])  # camera (y up) -> image (v down)


def project(points: np.ndarray, rotation: np.ndarray, scale: float, translation: np.ndarray) -> np.ndarray:
    """(N, 3) model points -> (N, 3) image u, v (pixels, v down) and depth towards the camera (pixels, larger is nearer)."""
    return scale * points @ (_FLIP @ rotation).T + translation


def _fit_pose(p: _Problem, x: np.ndarray, rotation: np.ndarray, scale: float, t: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Gauss-Newton on (rotation increment, log scale, translation), the shape held fixed."""
    sw = np.sqrt(p.weights).ravel()
    for _ in range(_POSE_STEPS):
        rx = x @ rotation.T  # (L, 3) rotated model points
        pred = project(x, rotation, scale, t)
        r = (pred - p.target).ravel() * sw
        # d pred / d omega = -s * flip @ [R x]_x ; d pred / d log s = pred - t ; d pred / d t = I
        j_rot = -scale * np.einsum("ij,njk->nik", _FLIP, _skew(rx))  # (L, 3, 3)
        j_scale = (pred - t)[:, :, None]
        j_t = np.broadcast_to(np.eye(3), (len(x), 3, 3))
        jac = np.concatenate([j_rot, j_scale, j_t], axis=2).reshape(-1, 7) * sw[:, None]
        delta = np.linalg.lstsq(jac, -r, rcond=None)[0]
        rotation = _rodrigues(delta[:3]) @ rotation
        scale *= float(np.exp(delta[3]))
        t = t + delta[4:]
    return rotation, scale, t


def _fit_shape(p: _Problem, rotation: np.ndarray, scale: float, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Regularized linear least squares for identity and expression, the pose held fixed.

    Residuals are divided by the scale (cm on the face) and by LANDMARK_SIGMA_CM,
    so the N(0, 1) identity prior and the expression prior enter with unit weight.
    """
    cam = _FLIP @ rotation  # residuals in cm on the face
    sw = np.sqrt(p.weights) / LANDMARK_SIGMA_CM  # (L, 3)
    rhs = (((p.target - t) / scale - p.mean @ cam.T) * sw).ravel()
    n_id, n_exp = len(p.id_basis), len(p.exp_basis)
    a_id = (np.einsum("mlc,dc->ldm", p.id_basis, cam) * sw[:, :, None]).reshape(-1, n_id)
    a_exp = (np.einsum("mlc,dc->ldm", p.exp_basis, cam) * sw[:, :, None]).reshape(-1, n_exp)
    prior = p.expression_prior
    free = np.ones(n_exp, bool)
    expression = prior.copy()
    for _ in range(n_exp + 1):  # active set: pin weights that leave [0, 1] to the bound, re-solve the rest
        a = np.concatenate([a_id, a_exp[:, free]], axis=1)
        b = rhs - a_exp[:, ~free] @ expression[~free]
        reg = np.concatenate([np.ones(n_id), np.full(free.sum(), 1.0 / EXPRESSION_SIGMA**2)])
        centre = np.concatenate([np.zeros(n_id), prior[free]])
        lhs = a.T @ a + np.diag(reg)
        sol = np.linalg.solve(lhs, a.T @ b + reg * centre)
        identity = sol[:n_id]
        expression[free] = sol[n_id:]
        out = free & ((expression < 0) | (expression > 1))
        if not out.any():
            break
        expression[out] = np.clip(expression[out], 0.0, 1.0)
        free &= ~out
    return identity, expression


def fit_portrait(model: FaceModel, corr: LandmarkCorrespondence, oval: np.ndarray, landmarks_px: np.ndarray,
                 blendshapes: np.ndarray, head_rotation: np.ndarray) -> PortraitFit:
    """Fit to MediaPipe's tracking of one image.

    `landmarks_px`: MediaPipe's (478, 3) landmarks in pixels (x times the image
    width, y times its height, z times its width: MediaPipe scales z like x);
    `blendshapes`: its (52,) scores; `head_rotation`: the rotation part of its
    facial transformation matrix, the starting pose. `oval`: the face-oval
    landmarks (`FaceContours.oval`).
    """
    lm = np.asarray(landmarks_px[:NUM_SURFACE_LANDMARKS], np.float64)
    target = np.stack([lm[:, 0], lm[:, 1], -lm[:, 2]], axis=1)  # MediaPipe z grows away from the camera
    w = np.ones(NUM_SURFACE_LANDMARKS)
    w[oval] = OVAL_WEIGHT
    base_weights = np.stack([w, w, w * DEPTH_WEIGHT], axis=1)
    prior = model.expression_weights(blendshapes).astype(np.float64)
    p = _Problem(model, corr, target, base_weights, prior)

    identity = np.zeros(len(p.id_basis))
    expression = prior.copy()
    rotation = np.asarray(head_rotation, np.float64)
    x = p.shape(identity, expression)
    # Initial scale and translation from the spread and centre of the points.
    proj = x @ rotation.T
    scale = float(np.sqrt(((lm[:, :2] - lm[:, :2].mean(0)) ** 2).sum() / ((proj[:, :2] - proj[:, :2].mean(0)) ** 2).sum()))
    t = target.mean(0) - project(x, rotation, scale, np.zeros(3)).mean(0)
    for _ in range(_ROUNDS):
        rotation, scale, t = _fit_pose(p, x, rotation, scale, t)
        identity, expression = _fit_shape(p, rotation, scale, t)
        x = p.shape(identity, expression)
        # Robust reweighting (Cauchy): a landmark far off the model (hair over the
        # brow, glasses, a poor correspondence) loses its pull instead of bending the face.
        fitted = project(x, rotation, scale, t)
        e = np.linalg.norm(fitted[:, :2] - lm[:, :2], axis=1) / scale
        p.weights = base_weights / (1.0 + (e[:, None] / ROBUST_SCALE_CM) ** 2)
    rotation, scale, t = _fit_pose(p, x, rotation, scale, t)

    fitted = project(x, rotation, scale, t)
    error = np.linalg.norm(fitted[:, :2] - lm[:, :2], axis=1)
    return PortraitFit(identity.astype(np.float32), expression.astype(np.float32), rotation, scale, t,
                       fitted[:, :2].astype(np.float32), error.astype(np.float32))
