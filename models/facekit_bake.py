"""Start-up bakes for the face model with OpenGL: ambient occlusion and UV position maps.

Both are rendered once per avatar, not per frame. Occlusion is the fraction of
the sky each vertex sees, found by drawing depth maps from many directions; it
darkens the mouth's inside, the nostrils and the eye corners the way soft room
light does. A position map gives, for every texel of a UV tile, the 3D point
of the mesh that maps there: painting procedural features or projecting a photo
into texture space starts from it.
"""

from __future__ import annotations

import moderngl
import numpy as np

from .face_model import RenderMesh
from .mask_rig import vertex_normals

_DEPTH_VERTEX = """
#version 330
uniform mat3 u_view;
uniform vec3 u_centre;
uniform float u_scale;
in vec3 in_position;
void main() {
    vec3 p = u_view * (in_position - u_centre) * u_scale;
    gl_Position = vec4(p.xy, -p.z, 1.0);  // orthographic, looking down -z of the view
}
"""

_EMPTY_FRAGMENT = """
#version 330
void main() {}
"""

_UV_VERTEX = """
#version 330
in vec2 in_uv;
in vec3 in_position;
out vec3 v_position;
void main() {
    v_position = in_position;
    gl_Position = vec4(in_uv * 2.0 - 1.0, 0.0, 1.0);
}
"""

_UV_FRAGMENT = """
#version 330
in vec3 v_position;
out vec4 f_position;
void main() {
    f_position = vec4(v_position, 1.0);
}
"""


def sphere_directions(count: int) -> np.ndarray:
    """(count, 3) unit vectors spread evenly over the sphere (Fibonacci lattice)."""
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1).astype(np.float32)


def _view_from(direction: np.ndarray) -> np.ndarray:
    """A rotation whose +z row is `direction`: the view from far away along it."""
    z = direction / np.linalg.norm(direction)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z]).astype(np.float32)


def ambient_occlusion(ctx: moderngl.Context, poses: list[np.ndarray], triangles: np.ndarray, directions: int = 64,
                      size: int = 256) -> np.ndarray:
    """(N,) fraction in [0, 1] of the cosine-weighted sky each vertex sees: the
    largest over `poses` (e.g. rest and open jaw, so teeth are lit as they show).
    """
    dirs = sphere_directions(directions)
    result = np.zeros(len(poses[0]), np.float32)
    program = ctx.program(vertex_shader=_DEPTH_VERTEX, fragment_shader=_EMPTY_FRAGMENT)
    depth = ctx.depth_texture((size, size))
    fbo = ctx.framebuffer(depth_attachment=depth)
    vbo = ctx.buffer(reserve=poses[0].nbytes)
    vao = ctx.vertex_array(program, [(vbo, "3f", "in_position")], index_buffer=ctx.buffer(triangles.astype(np.int32).tobytes()))
    try:
        fbo.use()
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE)
        for positions in poses:
            positions = positions.astype(np.float32)
            normals = vertex_normals(positions, triangles)
            centre = (positions.max(axis=0) + positions.min(axis=0)) / 2
            radius = float(np.linalg.norm(positions - centre, axis=1).max()) * 1.01
            vbo.write(positions.tobytes())
            program["u_centre"].value = tuple(centre)
            program["u_scale"].value = 1.0 / radius
            seen = np.zeros(len(positions), np.float32)
            total = np.zeros(len(positions), np.float32)
            bias = 2.5 * 2.0 / size  # a couple of texels, in depth units
            for d in dirs:
                view = _view_from(d)
                program["u_view"].write(np.ascontiguousarray(view.T).tobytes())
                fbo.clear(depth=1.0)
                vao.render(moderngl.TRIANGLES)
                buffer = np.frombuffer(depth.read(), np.float32).reshape(size, size)
                p = ((positions + 0.02 * normals) - centre) @ view.T / radius  # nudged off the surface
                px = np.clip(((p[:, :2] * 0.5 + 0.5) * size).astype(int), 0, size - 1)
                z = (-p[:, 2]) * 0.5 + 0.5  # window depth of each vertex
                visible = z <= buffer[px[:, 1], px[:, 0]] + bias
                weight = np.maximum(normals @ d, 0.0)
                seen += weight * visible
                total += weight
            result = np.maximum(result, seen / np.maximum(total, 1e-6))
    finally:
        for obj in (vao, vbo, fbo, depth, program):
            obj.release()
    return result


def uv_position_map(ctx: moderngl.Context, mesh: RenderMesh, positions: np.ndarray, material: int = 0,
                    size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) float32 3D point (of `positions`, per render vertex) at each
    texel of the UV tile of `material` (an index into `FaceModel.material_names`;
    0 is M_Face, the face skin), and a (size, size) bool coverage mask. Row 0 is
    the top of the texture (v = 1), the layout of `FaceLook.texture`. Other
    materials share some tiles (the scleras use tile 0 too), hence by material.
    """
    tris = mesh.triangles[mesh.material[mesh.triangles[:, 0]] == material]
    program = ctx.program(vertex_shader=_UV_VERTEX, fragment_shader=_UV_FRAGMENT)
    target = ctx.texture((size, size), 4, dtype="f4")
    fbo = ctx.framebuffer([target])
    data = np.concatenate([mesh.uv, positions.astype(np.float32)], axis=1).astype(np.float32)
    vbo = ctx.buffer(data.tobytes())
    vao = ctx.vertex_array(program, [(vbo, "2f 3f", "in_uv", "in_position")], index_buffer=ctx.buffer(tris.astype(np.int32).tobytes()))
    try:
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0)
        ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE | moderngl.BLEND)
        vao.render(moderngl.TRIANGLES)
        out = np.frombuffer(target.read(), np.float32).reshape(size, size, 4)[::-1]  # GL rows run bottom-up
    finally:
        for obj in (vao, vbo, fbo, target, program):
            obj.release()
    return np.ascontiguousarray(out[:, :, :3]), out[:, :, 3] > 0.5
