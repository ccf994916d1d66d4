"""Headless OpenGL helpers on the real EGL context (Mesa llvmpipe in CI)."""

from __future__ import annotations

import moderngl
import numpy as np
import pytest

from veilcam.models import gl_context

_QUAD_VERTEX = """
#version 330
in vec2 in_pos;
out vec2 uv;
void main() { uv = in_pos * 0.5 + 0.5; gl_Position = vec4(in_pos, 0.0, 1.0); }
"""
_QUAD_FRAGMENT = """
#version 330
uniform sampler2D tex;
in vec2 uv;
out vec4 color;
void main() { color = texture(tex, uv); }
"""


def _minified(ctx: moderngl.Context, texture: moderngl.Texture, size: int) -> np.ndarray:
    """The texture drawn onto a `size` square: sampled from the mip levels near 1/scale."""
    program = ctx.program(vertex_shader=_QUAD_VERTEX, fragment_shader=_QUAD_FRAGMENT)
    quad = ctx.buffer(np.array([-1, -1, 1, -1, -1, 1, 1, 1], np.float32).tobytes())
    vao = ctx.vertex_array(program, [(quad, "2f", "in_pos")])
    fbo = ctx.simple_framebuffer((size, size), components=4)
    fbo.use()
    texture.use(0)
    vao.render(moderngl.TRIANGLE_STRIP)
    return np.frombuffer(fbo.read(components=3), np.uint8).reshape(size, size, 3).astype(int)


def test_libopengl_is_there_so_mip_levels_come_from_the_cpu() -> None:
    """CI installs libopengl0 (as the README asks users to); without it the slow fallback would go unnoticed."""
    assert gl_context._libgl() is not None


@pytest.mark.parametrize(("channels", "levels"), [(3, None), (4, None), (4, 6)])
def test_cpu_mip_levels_sample_like_the_drivers_own(channels: int, levels: int | None) -> None:
    rng = np.random.default_rng(3)
    stripes = np.full((160, 128, channels), 255, np.uint8)  # fine detail that aliases without mipmaps
    stripes[..., :3] = 0
    stripes[:, ::2, :3] = (250, 40, 10)
    stripes[..., :3] += rng.integers(0, 5, (160, 128, 3), dtype=np.uint8)
    ctx = gl_context.create_headless_context()
    try:
        with ctx:
            ours = gl_context.mipmapped_texture(ctx, gl_context.mip_chain(stripes, levels))
            theirs = ctx.texture((128, 160), channels, stripes.tobytes(), alignment=1)
            theirs.build_mipmaps()
            theirs.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
            for size in (40, 17, 5):
                a, b = _minified(ctx, ours, size), _minified(ctx, theirs, size)
                assert np.abs(a - b).max() <= 3, size
                assert abs(a[..., 0].mean() - 125) < 10  # averaged stripes, not every other texel
    finally:
        ctx.release()


def test_a_packed_mip_chain_unpacks_to_the_same_levels_and_only_at_its_size() -> None:
    image = np.random.default_rng(5).integers(0, 255, (37, 20, 3), dtype=np.uint8)
    chain = gl_context.mip_chain(image)
    assert [lv.shape[:2] for lv in chain] == [(37, 20), (18, 10), (9, 5), (4, 2), (2, 1), (1, 1)]  # GL's sizes
    unpacked = gl_context.unpack_mip_chain(gl_context.pack_mip_chain(chain), 37, 20, 3)
    assert all(np.array_equal(a, b) for a, b in zip(chain, unpacked)) and len(unpacked) == len(chain)
    for shape in ((36, 20, 3), (37, 20, 4)):
        with pytest.raises(ValueError):
            gl_context.unpack_mip_chain(gl_context.pack_mip_chain(chain), *shape)
    short = gl_context.mip_chain(image, 3)
    assert [lv.shape[:2] for lv in short] == [(37, 20), (18, 10), (9, 5)]
    assert all(np.array_equal(a, b) for a, b in zip(short, gl_context.unpack_mip_chain(gl_context.pack_mip_chain(short), 37, 20, 3, 3)))
