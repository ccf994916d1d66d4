"""A local window showing the output, so the user sees what the call sees.

OpenCV's Qt build aborts the whole process (SIGABRT, no Python exception) when
it cannot reach a display, so the display is checked before any window call.
The window itself is created by the first `send`, so that every GUI call is
made from the output thread: Qt windows misbehave when driven from two threads.
"""

from __future__ import annotations

import os
import platform

import cv2
import numpy as np

from ..errors import SinkError
from .base import Sink


class PreviewSink(Sink):
    """Shows each frame in a window; the window is refreshed but never waited on."""

    def __init__(self, width: int, height: int, fps: float, title: str = "VeilCam preview") -> None:
        super().__init__(width, height, fps)
        if platform.system() == "Linux" and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        ):
            raise SinkError("no display (DISPLAY and WAYLAND_DISPLAY are unset): run without --preview")
        self.title = title
        self._shown = False

    def send(self, rgb: np.ndarray) -> None:
        cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self._shown = True
        # waitKey(1) is what lets the GUI toolkit repaint; the key is ignored.
        cv2.waitKey(1)

    def close(self) -> None:
        if self._shown:
            self._shown = False
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass  # already closed by the user

    @property
    def description(self) -> str:
        return f"preview window {self.title!r}"
