"""Headless OpenGL for the avatar renderers: an EGL context with no window."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache

import cv2
import moderngl
import numpy as np

MIN_GL_VERSION = 330

_INSTALL_HINT = "install libegl1 libegl-mesa0 libgl1-mesa-dri (Debian/Ubuntu) or your GPU driver's EGL/OpenGL libraries"


@lru_cache(maxsize=1)
def _egl_libraries() -> dict[str, str]:
    """libGL and libEGL as the system names them, looked up once per process:
    glcontext otherwise runs `ldconfig -p` (a fork of the whole daemon) for each
    new context, i.e. on every avatar switch."""
    found = {"libgl": ctypes.util.find_library("GL"), "libegl": ctypes.util.find_library("EGL")}
    return {key: name for key, name in found.items() if name}


def create_headless_context() -> moderngl.Context:
    """A standalone OpenGL >= 3.3 core context over EGL (no display needed).

    Raises RuntimeError with a one-line fix when EGL or OpenGL is missing.
    """
    try:
        ctx = moderngl.create_context(standalone=True, backend="egl", require=MIN_GL_VERSION, **_egl_libraries())
    except Exception as exc:  # moderngl/glcontext raise bare Exception for a missing library
        raise RuntimeError(f"cannot create a headless OpenGL context over EGL ({exc}); on Linux, {_INSTALL_HINT}") from exc
    return ctx


_GL_TEXTURE_2D = 0x0DE1
_GL_TEXTURE_MAX_LEVEL = 0x813D
_GL_UNPACK_ALIGNMENT = 0x0CF5
_GL_UNSIGNED_BYTE = 0x1401
_GL_FORMATS = {3: (0x8051, 0x1907), 4: (0x8058, 0x1908)}  # channels -> (GL_RGB8, GL_RGB), (GL_RGBA8, GL_RGBA)


@lru_cache(maxsize=1)
def _libgl() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libOpenGL.so.0")  # GLVND's entry points: they dispatch to the current EGL context
    except OSError:
        return None


def mip_chain(image: np.ndarray, levels: int | None = None) -> list[np.ndarray]:
    """GL's mip chain of an (H, W, C) uint8 image, each level box-filtered from the
    one before (OpenCV's area resize), halving (rounding down) to 1x1, or the first
    `levels` of it (the texture then stops there: `mipmapped_texture`)."""
    chain = [np.ascontiguousarray(image, np.uint8)]
    while max(chain[-1].shape[:2]) > 1 and (levels is None or len(chain) < levels):
        h, w = chain[-1].shape[:2]
        chain.append(np.ascontiguousarray(cv2.resize(chain[-1], (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)))
    return chain


def pack_mip_chain(levels: list[np.ndarray]) -> np.ndarray:
    """One flat array of the whole chain (to keep it as one file): `unpack_mip_chain` reverses it."""
    return np.concatenate([level.ravel() for level in levels])


def unpack_mip_chain(flat: np.ndarray, height: int, width: int, channels: int, levels: int | None = None) -> list[np.ndarray]:
    """The levels of a packed chain (`mip_chain(image, levels)`) of an image of this
    shape; ValueError if it does not fit."""
    chain, offset = [], 0
    h, w = height, width
    while True:
        n = h * w * channels
        if flat.dtype != np.uint8 or offset + n > flat.size:
            raise ValueError("not a mip chain of that size")
        chain.append(flat[offset: offset + n].reshape(h, w, channels))
        offset += n
        if max(h, w) == 1 or (levels is not None and len(chain) == levels):
            break
        h, w = max(1, h // 2), max(1, w // 2)
    if offset != flat.size:
        raise ValueError("not a mip chain of that size")
    return chain


def mipmapped_texture(ctx: moderngl.Context, levels: list[np.ndarray]) -> moderngl.Texture:
    """An RGB or RGBA texture with trilinear filtering from a mip chain (`mip_chain`), rows bottom first.

    Mesa's llvmpipe spends ~60 ms in glGenerateMipmap for each new texture, holding
    the GIL in moderngl, which stalled the output while an avatar was being built;
    so the levels come from the CPU (and from the bake cache) and are uploaded with
    glTexImage2D through libOpenGL. ctypes releases the GIL for each call, and
    while another avatar renders each call can wait for it to come back, so a
    chain cut short uploads with fewer waits. RGBA uploads in about half the
    time of RGB (llvmpipe stores both as RGBA). Falls back to `build_mipmaps`
    (the full chain) where libOpenGL is missing. `ctx` must be current.
    """
    base = np.ascontiguousarray(levels[0])
    channels = base.shape[2]
    internal, layout = _GL_FORMATS[channels]
    texture = ctx.texture((base.shape[1], base.shape[0]), channels, base, alignment=1)  # no copy: fresh pages cost
    gl = _libgl()
    if gl is None:
        texture.build_mipmaps()
    else:
        gl.glBindTexture(_GL_TEXTURE_2D, texture.glo)
        gl.glPixelStorei(_GL_UNPACK_ALIGNMENT, 1)
        for k, level in enumerate(levels[1:], start=1):
            level = np.ascontiguousarray(level)
            gl.glTexImage2D(_GL_TEXTURE_2D, k, internal, level.shape[1], level.shape[0], 0, layout, _GL_UNSIGNED_BYTE, level.ctypes.data_as(ctypes.c_void_p))
        gl.glTexParameteri(_GL_TEXTURE_2D, _GL_TEXTURE_MAX_LEVEL, len(levels) - 1)
    texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
    return texture
