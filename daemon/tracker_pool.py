"""Face trackers handed from one avatar runner to the next.

Each avatar runner of the live pipeline tracks the camera itself. A new
MediaPipe landmarker takes ~40 ms to create and its first frames run ~20 ms
slower (graph start-up, XNNPACK weight packing): a fifth of a cold avatar
switch. A runner that closes gives its tracker back here and the next runner
takes it over, warm. A tracker serves one runner at a time (MediaPipe's VIDEO
mode keeps per-stream state and is not thread-safe), and a tracker that ever
raised is closed rather than handed on.

A tracker only continues the stream it tracked: VIDEO mode carries the last
frame's face region and its landmark smoothing into the next frame, so handed
to another stream (the next video of an offline render) it would start from
the last one's face. On the shared p4 video, a second run in one process then
scored 0.856 instead of 0.858 in `eval fidelity`. A spare opened by `stock`
has tracked nothing and suits any stream.
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

    def __init__(self, pool: TrackerPool, key: _Key, tracker: FaceLandmarker, stream: object) -> None:
        self._pool = pool
        self._key = key
        self._stream = stream
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
            self._pool._give_back(self._key, tracker, self._stream)
        else:
            tracker.close()


class TrackerPool:
    """Idle trackers by (model file, mirror); at most `keep` of each are kept."""

    def __init__(self, keep: int = 1) -> None:
        self.keep = keep
        self._idle: dict[_Key, list[tuple[FaceLandmarker, object]]] = {}  # with the stream it tracked (None: none)
        self._lock = threading.Lock()

    def lease(self, model_path: Path, mirror: bool, open_new: Callable[[], FaceLandmarker], *, stream: object) -> PooledTracker:
        """An idle tracker of this model file and mirror setting that tracked `stream` (the
        source object) or nothing yet, else a new one from `open_new`."""
        key = _key(model_path, mirror)
        with self._lock:
            idle = self._idle.get(key)
            tracker, tracked = idle.pop() if idle else (None, None)
        if tracker is not None and tracked is not None and tracked is not stream:
            tracker.close()  # warm, but for another stream
            tracker = None
        return PooledTracker(self, key, tracker or open_new(), stream)

    def stock(self, model_path: Path, mirror: bool, open_new: Callable[[], FaceLandmarker]) -> None:
        """Open a spare tracker now, at a quiet moment, unless one is idle already: the
        next switch then takes it instead of creating one in its build."""
        key = _key(model_path, mirror)
        with self._lock:
            if self._idle.get(key):
                return
        self._give_back(key, open_new(), None)

    def idle_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._idle.values())

    def _give_back(self, key: _Key, tracker: FaceLandmarker, stream: object) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.keep:
                idle.append((tracker, stream))
                return
        tracker.close()

    def close(self) -> None:
        """Close the idle trackers (loans still out close themselves)."""
        with self._lock:
            idle = [t for trackers in self._idle.values() for t, _ in trackers]
            self._idle.clear()
        for tracker in idle:
            tracker.close()


#: The process's pool: avatar processors lease their tracker from it.
TRACKERS = TrackerPool()
atexit.register(TRACKERS.close)
