"""What sources produce, and the two kinds of source.

A `FrameSource` yields camera pixels, which only the tracker (and, outside
privacy mode, restyle) may see. A `FaceStateSource` yields face states directly
(the demo): there is no camera at all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from veilcam.models.face_state import FaceState


@dataclass(frozen=True)
class CameraFrame:
    rgb: np.ndarray  # (H, W, 3) uint8
    timestamp: float  # time.perf_counter() when the frame became available: latency starts here
    index: int  # position in the source (file frame number, or capture count)
    decode_ms: float  # time spent capturing/decoding it
    media_time: float  # seconds on the source's own clock: what tracking and smoothing see


class Source(ABC):
    #: Frames the source produced that the consumer never took (it was slower).
    dropped: int = 0
    #: Nominal rate of the source, frames per second.
    fps: float = 30.0

    def start(self) -> None:
        """Begin producing (threads start here, not in __init__)."""

    def close(self) -> None:
        """Stop producing and release the device."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameSource(Source):
    @abstractmethod
    def read(self, timeout: float = 1.0) -> CameraFrame | None:
        """The next (newest) frame; None on timeout. Raises EOFError at the end of a file."""


class FaceStateSource(Source):
    @abstractmethod
    def read(self, timeout: float = 1.0) -> FaceState | None:
        """The next face state; None on timeout."""
