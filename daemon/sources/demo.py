"""The `demo` source: an animated face state at a steady rate, no camera."""

from __future__ import annotations

import time

from veilcam.models.demo_motion import DemoMotion
from veilcam.models.face_state import FaceState

from .base import FaceStateSource


class DemoSource(FaceStateSource):
    def __init__(self, fps: float = 30.0, seed: int = 7) -> None:
        self.fps = fps
        self._motion = DemoMotion(seed)
        self._t0: float | None = None
        self._next = 0.0

    def read(self, timeout: float = 1.0) -> FaceState | None:
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = self._next = now
        wait = self._next - now
        if wait > timeout:
            time.sleep(timeout)
            return None
        if wait > 0:
            time.sleep(wait)
        now = time.perf_counter()
        # Like a camera, the demo skips ahead instead of queueing when the consumer lags.
        self._next = max(self._next + 1.0 / self.fps, now)
        return self._motion(now - self._t0, timestamp=now)
