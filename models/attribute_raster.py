"""Rasterize per-corner attributes of a triangle mesh into float images (OpenGL).

Texture work needs, for every texel of a UV map, things like "where is this
skin point in the photo" or "which texel is its mirror image": values given at
the triangle corners and interpolated across each triangle, which is what a
rasterizer does. The same call, fed image-space positions and a depth test,
gives a depth map for visibility. This is the GPU's interpolation with no
shading: float32 targets, no anti-aliasing, one draw.
"""

from __future__ import annotations

import moderngl
import numpy as np

from .gl_context import create_headless_context

_VERTEX = """
#version 330
in vec3 in_pos;
{inputs}
{outputs}
void main() {{
    gl_Position = vec4(in_pos * 2.0 - 1.0, 1.0);
{copy}
}}
"""
_FRAGMENT = """
#version 330
{inputs}
{outputs}
void main() {{
{write}
}}
"""


class AttributeRasterizer:
    """Owns a headless GL context; `rasterize` may be called many times (on the thread that made it)."""

    def __init__(self) -> None:
        self.ctx = create_headless_context()
        self._programs: dict[int, moderngl.Program] = {}

    def _program(self, groups: int) -> moderngl.Program:
        if groups not in self._programs:
            ins = "\n".join(f"in vec4 in_a{k};" for k in range(groups))
            vouts = "\n".join(f"out vec4 v_a{k};" for k in range(groups))
            copy = "\n".join(f"    v_a{k} = in_a{k};" for k in range(groups))
            fins = "\n".join(f"in vec4 v_a{k};" for k in range(groups))
            fouts = "\n".join(f"layout(location = {k}) out vec4 f_a{k};" for k in range(groups))
            write = "\n".join(f"    f_a{k} = v_a{k};" for k in range(groups))
            self._programs[groups] = self.ctx.program(
                vertex_shader=_VERTEX.format(inputs=ins, outputs=vouts, copy=copy),
                fragment_shader=_FRAGMENT.format(inputs=fins, outputs=fouts, write=write),
            )
        return self._programs[groups]

    def rasterize(self, positions: np.ndarray, attributes: np.ndarray, size: tuple[int, int],
                  depth_test: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Draw triangles and return (values (H, W, C) float32, covered (H, W) bool).

        `positions`: (T, 3, 2) or (T, 3, 3) per-corner positions, x and y in
        [0, 1] across the image (y = 0 is row 0), optional z in [0, 1] with
        0 nearest (used with `depth_test`). `attributes`: (T, 3, C) per-corner
        values, interpolated linearly. Uncovered pixels are 0.
        """
        width, height = size
        tris = len(positions)
        pos = np.zeros((tris, 3, 3), np.float32)
        pos[..., : positions.shape[2]] = positions
        channels = attributes.shape[2]
        groups = max(1, -(-channels // 3))  # 3 values + a coverage flag per vec4
        attrs = np.zeros((tris, 3, groups, 4), np.float32)
        flat = np.zeros((tris, 3, groups * 3), np.float32)
        flat[..., :channels] = attributes
        attrs[..., :3] = flat.reshape(tris, 3, groups, 3)
        attrs[..., 3] = 1.0
        data = np.concatenate([pos.reshape(-1, 3), attrs.reshape(tris * 3, -1)], axis=1)

        ctx = self.ctx
        prog = self._program(groups)
        targets = [ctx.texture((width, height), 4, dtype="f4") for _ in range(groups)]
        depth = ctx.depth_renderbuffer((width, height)) if depth_test else None
        fbo = ctx.framebuffer(targets, depth)
        vbo = ctx.buffer(np.ascontiguousarray(data, np.float32).tobytes())
        vao = ctx.vertex_array(prog, [(vbo, "3f " + " ".join(["4f"] * groups), "in_pos", *[f"in_a{k}" for k in range(groups)])])
        try:
            fbo.use()
            fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
            if depth_test:
                ctx.enable(moderngl.DEPTH_TEST)
            else:
                ctx.disable(moderngl.DEPTH_TEST)
            vao.render()
            out = [np.frombuffer(fbo.read(attachment=k, components=4, dtype="f4"), np.float32).reshape(height, width, 4) for k in range(groups)]
        finally:
            for obj in (vao, vbo, fbo, *targets, *([depth] if depth is not None else [])):
                obj.release()
        values = np.concatenate([o[..., :3] for o in out], axis=2)[..., :channels]
        return np.ascontiguousarray(values), out[0][..., 3] > 0.5

    def close(self) -> None:
        for prog in self._programs.values():
            prog.release()
        self._programs.clear()
        self.ctx.release()

    def __enter__(self) -> "AttributeRasterizer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

