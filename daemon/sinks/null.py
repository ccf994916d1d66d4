"""A sink that discards frames, for running the pipeline without any output device."""

from __future__ import annotations

import numpy as np

from .base import Sink


class NullSink(Sink):
    """Counts frames so tests and benchmarks can see that output happened."""

    def __init__(self, width: int, height: int, fps: float) -> None:
        super().__init__(width, height, fps)
        self.frames_sent = 0

    def send(self, rgb: np.ndarray) -> None:
        self.frames_sent += 1
