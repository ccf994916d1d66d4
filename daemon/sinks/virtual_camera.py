"""Output to a virtual webcam through pyvirtualcam.

pyvirtualcam picks the OS mechanism (v4l2loopback on Linux, the OBS virtual
camera on Windows/macOS); this wrapper only turns its multi-line, backend-by-
backend failures into one actionable line and leaves pacing to our own output
thread, which is why `Camera.sleep_until_next_frame` is never called here.
"""

from __future__ import annotations

import platform

import numpy as np
import pyvirtualcam
from pyvirtualcam.camera import BACKENDS

from ..errors import SinkError
from .base import Sink

LINUX_FIX = 'load v4l2loopback: sudo modprobe v4l2loopback exclusive_caps=1 card_label="VeilCam"'
OBS_FIX = "install OBS Studio and start its virtual camera once (Start Virtual Camera), then retry"


def virtual_camera_backends() -> list[str]:
    """Names of the pyvirtualcam backends registered in this process.

    pyvirtualcam only registers the built-in backends of the running OS
    (v4l2loopback on Linux, obs on macOS, obs and unitycapture on Windows),
    so this is also the list of backends usable here, in the order
    `VirtualCameraSink(backend=None)` tries them. A backend being listed does
    not mean its device exists: only opening it tells.
    """
    return list(BACKENDS)


def _fix_hint() -> str:
    return LINUX_FIX if platform.system() == "Linux" else OBS_FIX


class VirtualCameraSink(Sink):
    """Frames become the picture of a virtual webcam that other apps can select."""

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        fps: float = 30,
        device: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(width, height, fps)
        where = f"virtual camera {device or '(first free device)'} via {backend or 'any backend'}"
        # Checked here because pyvirtualcam raises a bare KeyError for an unknown
        # name, and one with no backends at all ends in an empty error message.
        if not BACKENDS:
            raise SinkError(f"cannot open {where}: pyvirtualcam has no backend for {platform.system()}")
        if backend is not None and backend not in BACKENDS:
            raise SinkError(
                f"cannot open {where}: unknown backend {backend!r}; "
                f"use one of {', '.join(BACKENDS)} or leave it unset"
            )
        try:
            self._cam = pyvirtualcam.Camera(
                width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB, device=device, backend=backend
            )
        except Exception as e:
            # pyvirtualcam joins one line per backend tried; the CLI needs one line.
            reason = "; ".join(ln.strip().rstrip(".") for ln in str(e).splitlines() if ln.strip())
            fix = "close the program already using it" if "in use" in reason else _fix_hint()
            raise SinkError(f"cannot open {where}: {reason or type(e).__name__}; {fix}") from e
        # Cached: the backend cannot be asked any more once closed.
        self.device: str = self._cam.device
        self.backend: str = self._cam.backend

    def send(self, rgb: np.ndarray) -> None:
        self._cam.send(rgb)

    def close(self) -> None:
        self._cam.close()

    @property
    def description(self) -> str:
        return f"virtual camera {self.device} ({self.backend}, {self.width}x{self.height} @ {self.fps:g} fps)"
