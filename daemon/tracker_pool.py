"""Face trackers handed from one avatar runner to the next.

Each avatar runner of the live pipeline tracks the camera itself. A new
MediaPipe landmarker takes ~40 ms to create and its first frames run ~20 ms
slower (graph start-up, XNNPACK weight packing): a fifth of a cold avatar
switch. A runner that closes gives its tracker back here and the next runner
takes it over, warm. A tracker serves one runner at a time (MediaPipe's VIDEO
mode keeps per-stream state and is not thread-safe), and a tracker that ever
raised is closed rather than handed on.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from veilcam.models.face_state import FaceState
from veilcam.models.landmarker import FaceLandmarker

_Key = tuple[Path, int, bool]  # model file, its mtime, mirror


def _key(model_path: Path, mirror: bool) -> _Key:
    return (model_path, model_path.stat().st_mtime_ns, mirror)


class PooledTracker:
    """A tracker on loan: `close` returns it to the pool if it never failed."""

    def __init__(self, pool: TrackerPool, key: _Key, tracker: FaceLandmarker) -> None:
        self._pool = pool
        self._key = key
        self._tracker: FaceLandmarker | None = tracker
        self._healthy = True

    def track(self, rgb: np.ndarray, timestamp: float) -> FaceState:
        assert self._tracker is not None, "tracker used after close"
        try:
            return self._tracker.track(rgb, timestamp)
        except BaseException:
            self._healthy = False
            raise

    def close(self) -> None:
        tracker, self._tracker = self._tracker, None
        if tracker is None:
            return
        if self._healthy:
            self._pool._give_back(self._key, tracker)
        else:
            tracker.close()


class TrackerPool:
    """Idle trackers by (model file, mirror); at most `keep` of each are kept."""

    def __init__(self, keep: int = 1) -> None:
        self.keep = keep
        self._idle: dict[_Key, list[FaceLandmarker]] = {}
        self._lock = threading.Lock()

    def lease(self, model_path: Path, mirror: bool, open_new: Callable[[], FaceLandmarker]) -> PooledTracker:
        """An idle tracker of this model file and mirror setting, else a new one from `open_new`."""
        key = _key(model_path, mirror)
        with self._lock:
            idle = self._idle.get(key)
            tracker = idle.pop() if idle else None
        return PooledTracker(self, key, tracker or open_new())

    def stock(self, model_path: Path, mirror: bool, open_new: Callable[[], FaceLandmarker]) -> None:
        """Open a spare tracker now, at a quiet moment, unless one is idle already: the
        next switch then takes it instead of creating one in its build."""
        key = _key(model_path, mirror)
        with self._lock:
            if self._idle.get(key):
                return
        self._give_back(key, open_new())

    def idle_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._idle.values())

    def _give_back(self, key: _Key, tracker: FaceLandmarker) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.keep:
                idle.append(tracker)
                return
        tracker.close()

    def close(self) -> None:
        """Close the idle trackers (loans still out close themselves)."""
        with self._lock:
            idle = [t for trackers in self._idle.values() for t in trackers]
            self._idle.clear()
        for tracker in idle:
            tracker.close()


#: The process's pool: avatar processors lease their tracker from it.
TRACKERS = TrackerPool()
atexit.register(TRACKERS.close)
