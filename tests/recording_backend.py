"""A real pyvirtualcam backend for tests, registered with `register_backend`:
it keeps every frame the virtual camera hands it, with its arrival time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

TEST_BACKEND = "veilcam-test"
TEST_DEVICE = "VeilCam Test Device"


@dataclass
class Opened:
    """What one instance of the test backend was opened with and received."""

    width: int
    height: int
    fps: float
    fourcc: int
    device: str | None
    frames: list[np.ndarray] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    closed: bool = False


OPENED: list[Opened] = []


class RecordingBackend:
    """A pyvirtualcam backend (duck-typed, as pyvirtualcam asks) that keeps what it gets."""

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw: object):
        if device not in (None, TEST_DEVICE):
            raise RuntimeError(f"Device {device} does not exist.")
        self.record = Opened(width, height, fps, fourcc, device)
        OPENED.append(self.record)

    def device(self) -> str:
        return TEST_DEVICE

    def native_fourcc(self) -> int | None:
        return None

    def send(self, frame: np.ndarray) -> None:
        self.record.times.append(time.perf_counter())
        # pyvirtualcam passes a view of the caller's buffer: copy, as a real device would.
        self.record.frames.append(frame.copy())

    def close(self) -> None:
        self.record.closed = True


