"""Sink interface: where finished frames go.

A sink receives RGB uint8 frames of exactly the size it was opened with, at the
pipeline's output rate. `send` must return quickly: the output thread calls it
at a constant rate and must never block on anything else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Sink(ABC):
    def __init__(self, width: int, height: int, fps: float) -> None:
        self.width = width
        self.height = height
        self.fps = fps

    @abstractmethod
    def send(self, rgb: np.ndarray) -> None:
        """Deliver one (height, width, 3) uint8 RGB frame."""

    def close(self) -> None:
        """Flush and release the output; the default has nothing to release."""

    @property
    def description(self) -> str:
        return type(self).__name__

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
