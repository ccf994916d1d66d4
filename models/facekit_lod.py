"""A lighter ICT-FaceKit render mesh for CPU rasterization.

At webcam size the full model draws ~48k triangles of a few pixels each, and a
software rasterizer (llvmpipe) pays per triangle: drawing it takes several times
the whole frame budget. Each material group is decimated on its own (groups meet
only at UV seams, which stay intact), judged on the rest pose and on the
expressions that deform the face most, so that blinks still close the lids and
an open jaw still looks round. Kept vertices are original ones, so everything
indexed by vertex (bases, UVs, landmarks) still applies.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .face_model import FaceModel, RenderMesh, build_render_mesh
from .face_state import BLENDSHAPE_INDEX, NUM_BLENDSHAPES
from .mesh_decimate import decimate

#: Fraction of each material's triangles kept. The face carries the expressions;
#: the mouth's inside shows only through the lips; the back of the head faces
#: away from the camera most of the time. The eyelashes are cards made for an
#: alpha-textured material: opaque, they read as black slabs (the painted lid
#: lines stand in for them).
KEEP = {
    "M_Face": 0.3,
    "M_BackHead": 0.25,
    "M_GumsTongue": 0.2,
    "M_Teeth": 0.2,
    "M_ScleraLeft": 0.3,
    "M_ScleraRight": 0.3,
    "M_EyeLashes": 0.0,
}

#: Expressions the simplified mesh must still show well (MediaPipe names).
_SHAPE_POSES: tuple[dict[str, float], ...] = (
    {"jawOpen": 1.0},
    {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0},
    {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "browInnerUp": 1.0},
    {"mouthPucker": 1.0, "mouthFunnel": 0.5, "eyeWideLeft": 1.0, "eyeWideRight": 1.0},
)


def shape_poses(model: FaceModel, mesh: RenderMesh) -> np.ndarray:
    """(P, N, 3): the rest mesh, then the expressions in `_SHAPE_POSES`."""
    poses = [model.evaluate(None, None, mesh.source)]
    for scores in _SHAPE_POSES:
        w = np.zeros(NUM_BLENDSHAPES, np.float32)
        for name, value in scores.items():
            w[BLENDSHAPE_INDEX[name]] = value
        poses.append(model.evaluate(None, model.expression_weights(w), mesh.source))
    return np.stack(poses)


def simplified_triangles(model: FaceModel, mesh: RenderMesh, keep: dict[str, float] = KEEP) -> np.ndarray:
    """Decimated triangles over `mesh`'s vertices (a few seconds: cache the result)."""
    poses = shape_poses(model, mesh)
    tri_material = mesh.material[mesh.triangles[:, 0]]
    locked = np.zeros(len(mesh.source), bool)
    out = []
    for k in np.unique(tri_material):
        group = mesh.triangles[tri_material == k]
        fraction = keep.get(model.material_names[k], 1.0)
        if fraction > 0.0:
            out.append(group if fraction >= 1.0 else decimate(poses, group, locked, int(len(group) * fraction)))
    return np.concatenate(out)


@lru_cache(maxsize=2)
def simplified_render_mesh(model: FaceModel) -> RenderMesh:
    """The render mesh with `simplified_triangles`, computed once per model and process."""
    mesh = build_render_mesh(model)
    return mesh.with_triangles(simplified_triangles(model, mesh))
