"""Headless OpenGL for the avatar renderers: an EGL context with no window."""

from __future__ import annotations

import moderngl

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
