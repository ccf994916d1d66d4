"""Headless OpenGL for the avatar renderers: an EGL context with no window."""

from __future__ import annotations

import ctypes
from functools import lru_cache

import cv2
import moderngl
import numpy as np

MIN_GL_VERSION = 330

_INSTALL_HINT = "install libegl1 libegl-mesa0 libgl1-mesa-dri (Debian/Ubuntu) or your GPU driver's EGL/OpenGL libraries"


def create_headless_context() -> moderngl.Context:
    """A standalone OpenGL >= 3.3 core context over EGL (no display needed).

    Raises RuntimeError with a one-line fix when EGL or OpenGL is missing.
    """
    try:
        ctx = moderngl.create_context(standalone=True, backend="egl", require=MIN_GL_VERSION)
    except Exception as exc:  # moderngl/glcontext raise bare Exception for a missing library
        raise RuntimeError(f"cannot create a headless OpenGL context over EGL ({exc}); on Linux, {_INSTALL_HINT}") from exc
    return ctx


_GL_TEXTURE_2D = 0x0DE1
_GL_TEXTURE_MAX_LEVEL = 0x813D
_GL_UNPACK_ALIGNMENT = 0x0CF5
_GL_RGB, _GL_RGB8, _GL_UNSIGNED_BYTE = 0x1907, 0x8051, 0x1401


@lru_cache(maxsize=1)
def _libgl() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libOpenGL.so.0")  # GLVND's entry points: they dispatch to the current EGL context
    except OSError:
        return None


def mipmapped_rgb_texture(ctx: moderngl.Context, rgb: np.ndarray) -> moderngl.Texture:
    """An RGB texture with trilinear filtering from an (H, W, 3) uint8 image, rows bottom first.

    The mip levels are box-filtered on the CPU (OpenCV, which releases the GIL)
    and uploaded with glTexImage2D through ctypes, which releases it too: Mesa's
    llvmpipe spends ~60 ms in glGenerateMipmap for each new texture (most of it
    set-up, holding the GIL in moderngl's `build_mipmaps`), which stalled the
    output while an avatar was being built. Falls back to `build_mipmaps` where
    GLVND's libOpenGL is missing. `ctx` must be current.
    """
    rgb = np.ascontiguousarray(rgb, np.uint8)
    texture = ctx.texture((rgb.shape[1], rgb.shape[0]), 3, rgb.tobytes(), alignment=1)
    gl = _libgl()
    if gl is None:
        texture.build_mipmaps()
    else:
        gl.glBindTexture(_GL_TEXTURE_2D, texture.glo)
        gl.glPixelStorei(_GL_UNPACK_ALIGNMENT, 1)
        level, image = 0, rgb
        while max(image.shape[:2]) > 1:  # GL's chain: each level halves (rounding down) to 1x1
            size = (max(1, image.shape[1] // 2), max(1, image.shape[0] // 2))
            image = np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
            level += 1
            gl.glTexImage2D(_GL_TEXTURE_2D, level, _GL_RGB8, size[0], size[1], 0, _GL_RGB, _GL_UNSIGNED_BYTE, image.ctypes.data_as(ctypes.c_void_p))
        gl.glTexParameteri(_GL_TEXTURE_2D, _GL_TEXTURE_MAX_LEVEL, level)
    texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
    return texture
