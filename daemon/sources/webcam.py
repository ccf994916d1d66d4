"""The real webcam, read by a thread into a latest-frame mailbox.

The driver's queue is set to one frame and a thread drains it continuously, so
the frame the pipeline takes is always the newest: a slow consumer skips frames
instead of watching the past. If the camera disappears (unplugged, taken by
another app) the thread keeps trying to reopen it and reports `connected`.
"""

from __future__ import annotations

import sys
import threading
import time

import cv2

from ..errors import SourceError
from ..mailbox import Mailbox
from .base import CameraFrame, FrameSource

REOPEN_INTERVAL_S = 1.0
FAILED_READS_BEFORE_RECONNECT = 15


def _quiet_opencv() -> None:
    """OpenCV prints a warning per failed probe; our own errors say it better."""
    logging = getattr(cv2, "utils", None) and getattr(cv2.utils, "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)


def parse_device(device: str) -> int | str:
    """'0' -> 0 (an index), '/dev/video2' -> itself."""
    return int(device) if device.strip().isdigit() else device


def open_camera(device: str, width: int, height: int, fps: float) -> cv2.VideoCapture:
    _quiet_opencv()
    target = parse_device(device)
    backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    cap = cv2.VideoCapture(target, backend)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"camera {device}: cannot open it (not present, or in use by another app); list cameras with `veilcam devices`")
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    cap.set(cv2.CAP_PROP_FPS, fps)
    return cap


class WebcamSource(FrameSource):
    def __init__(self, device: str = "0", width: int = 640, height: int = 480, fps: float = 30.0) -> None:
        self.device, self.width, self.height = device, width, height
        self._cap = open_camera(device, width, height, fps)
        reported = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = reported if 1 <= reported <= 240 else fps
        self._mailbox: Mailbox[CameraFrame] = Mailbox()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = True

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="veilcam-webcam", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        index = 0
        failures = 0
        while not self._stop.is_set():
            t0 = time.perf_counter()
            ok, bgr = self._cap.read() if self._cap is not None else (False, None)
            if ok:
                failures = 0
                self.connected = True
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                t1 = time.perf_counter()
                self._mailbox.put(CameraFrame(rgb, t1, index, (t1 - t0) * 1000, t1))
                index += 1
                continue
            failures += 1
            if failures >= FAILED_READS_BEFORE_RECONNECT or self._cap is None:
                self.connected = False
                self._reopen()
            else:
                self._stop.wait(0.01)

    def _reopen(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._stop.wait(REOPEN_INTERVAL_S)
        try:
            self._cap = open_camera(self.device, self.width, self.height, self.fps)
        except SourceError:
            self._cap = None

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return self._mailbox.dropped

    def read(self, timeout: float = 1.0) -> CameraFrame | None:
        self.start()
        return self._mailbox.take(timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        if self._cap is not None:
            self._cap.release()
            self._cap = None
