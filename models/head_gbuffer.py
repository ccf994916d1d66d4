"""The neural avatar's G-buffer: the posed face model rasterized into a head-centred square crop.

The crop is the same function of the face's state when training and when
rendering: centred on the head, one `HeadCrop.span` across (a head height and
a margin for hair), and orthographic, turned by the head rotation about the
head's centre. Where the head is in the camera image and how large it appears
are left to the caller (a crop of the training frame around the fitted head;
a place in the output frame). So the network only ever learns appearance as a
function of expression and rotation, never of framing.

Per pixel it holds where the pixel lies on the model's UV atlas (the four UV
tiles of the ICT model in a 2×2 grid, as grid_sample coordinates), the
camera-space normal, and whether the model covers it (`GBUFFER_CHANNELS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .attribute_raster import AttributeRasterizer
from .face_model import FaceRig
from .mask_rig import vertex_normals
from .neural_avatar_config import GBUFFER_CHANNELS

ATLAS_GRID = 2  # tiles per side of the UV atlas
#: The crop's side, in head heights (chin to crown): room for hair and a little neck.
CROP_HEADS = 1.7


@dataclass(frozen=True)
class HeadCrop:
    """Where the crop sits on the model: its centre (model space, cm) and side (cm)."""

    centre: np.ndarray
    span: float

    @staticmethod
    def for_rig(rig: FaceRig) -> "HeadCrop":
        rest = rig.rest
        chin = float(rig.model.landmark_positions(rig.identity)[8, 1])
        top = float(rest[:, 1].max())
        lo, hi = rest.min(axis=0), rest.max(axis=0)
        centre = np.array([(lo[0] + hi[0]) / 2, (top + chin) / 2, (lo[2] + hi[2]) / 2], np.float32)
        return HeadCrop(centre, CROP_HEADS * (top - chin))

    def to_crop(self, points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """(N, 3) model points -> crop x, y in [0, 1] (y down) and depth in [0, 1] (0 nearest)."""
        p = (np.asarray(points, np.float32) - self.centre) @ np.asarray(rotation, np.float32).T
        return np.stack([0.5 + p[:, 0] / self.span, 0.5 - p[:, 1] / self.span, 0.5 - p[:, 2] / (2 * self.span)], axis=1)


def atlas_grid(rig: FaceRig) -> np.ndarray:
    """(N, 2) grid_sample coordinates in [-1, 1] of each render vertex on the UV atlas (v = 0 at the atlas' bottom)."""
    mesh = rig.mesh
    tile = mesh.tile.astype(np.float32)
    u = (tile % ATLAS_GRID + mesh.uv[:, 0]) / ATLAS_GRID
    v = (tile // ATLAS_GRID + 1.0 - mesh.uv[:, 1]) / ATLAS_GRID
    return np.stack([2 * u - 1, 2 * v - 1], axis=1).astype(np.float32)


class HeadGBuffer:
    """Rasterizes a rig's posed positions into (GBUFFER_CHANNELS, size, size) float32."""

    def __init__(self, rig: FaceRig, size: int, rasterizer: AttributeRasterizer) -> None:
        self.rig = rig
        self.size = size
        self.crop = HeadCrop.for_rig(rig)
        self._raster = rasterizer
        self._triangles = rig.mesh.triangles
        self._corner_grid = atlas_grid(rig)[self._triangles]

    def render(self, positions: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        tris = self._triangles
        normals = vertex_normals(positions, tris, self.rig.mesh.source) @ np.asarray(rotation, np.float32).T
        corners = self.crop.to_crop(positions, rotation)[tris]
        attributes = np.concatenate([self._corner_grid, normals[tris]], axis=2)
        values, covered = self._raster.rasterize(corners, attributes, (self.size, self.size), depth_test=True)
        out = np.empty((GBUFFER_CHANNELS, self.size, self.size), np.float32)
        out[:5] = values.transpose(2, 0, 1)
        out[5] = covered
        return out
