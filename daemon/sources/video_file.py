"""A video file as a camera: paced at its own frame rate, or as fast as possible."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import cv2

from ..errors import SourceError
from ..mailbox import Mailbox
from .base import CameraFrame, FrameSource


def open_video(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise SourceError(f"{path}: video file not found")
    cap = cv2.VideoCapture(str(path))
    ok, _ = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise SourceError(f"{path}: cannot decode this video (not a video file, or a codec OpenCV lacks); convert it to H.264 mp4")
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    return cap


class VideoFileSource(FrameSource):
    """`realtime=True` behaves like a camera (frames appear on the file's clock
    in a thread, and a slow consumer drops frames); `realtime=False` decodes
    on demand so every frame is delivered exactly once (offline rendering)."""

    def __init__(self, path: Path, realtime: bool = True, loop: bool = False) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.loop = loop
        self._cap = open_video(self.path)
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else 30.0
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self._delivered = 0
        self._mailbox: Mailbox[CameraFrame] = Mailbox()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._eof = False

    def _decode(self) -> CameraFrame | None:
        t0 = time.perf_counter()
        ok, bgr = self._cap.read()
        if not ok and self.loop and self._delivered > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok:
            return None
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        t1 = time.perf_counter()
        # Frames keep counting across loops so media time never runs backwards.
        frame = CameraFrame(rgb, t1, self._delivered, (t1 - t0) * 1000, self._delivered / self.fps)
        self._delivered += 1
        return frame

    def start(self) -> None:
        if self.realtime and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="veilcam-file-source", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        period = 1.0 / self.fps
        deadline = time.perf_counter()
        while not self._stop.is_set():
            frame = self._decode()
            if frame is None:
                break
            delay = deadline - time.perf_counter()
            if delay > 0:
                self._stop.wait(delay)
                # A camera delivers the frame at its deadline: stamp it then.
                frame = dataclasses.replace(frame, timestamp=time.perf_counter())
            self._mailbox.put(frame)
            deadline += period
        self._eof = True
        self._mailbox.close()

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return self._mailbox.dropped

    def read(self, timeout: float = 1.0) -> CameraFrame | None:
        if not self.realtime:
            frame = self._decode()
            if frame is None:
                raise EOFError(str(self.path))
            return frame
        self.start()
        frame = self._mailbox.take(timeout)
        if frame is None and self._eof:
            raise EOFError(str(self.path))
        return frame

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._cap.release()
