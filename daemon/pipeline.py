"""The real-time pipeline: Source -> Tracker -> Renderer -> Compositor -> Sink.

Two threads. The worker takes the newest source item, tracks it, renders it
and publishes the finished frame. The output thread sends each new frame as
soon as it is ready (`SendPacer` keeps the rate at most `fps`) and repeats the
last one when rendering is late, so the virtual camera never stutters or
stops and a finished frame never waits for a clock tick.

Fail-closed: the only things the output thread can send are frames rendered by
a `FaceRenderer` (which never receives camera pixels) or the placeholder card.
Before the first frame, on any worker error, while the camera is gone, and
after stop, it sends the card.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from veilcam.models.face_filter import FaceFilter
from veilcam.models.face_state import FaceState
from veilcam.models.renderer import FaceRenderer

from .compositor import Compositor
from .errors import PrivacyError
from .mailbox import Mailbox
from .pacing import SendPacer
from .placeholder import placeholder_card
from .report import RunStats
from .sinks.base import Sink
from .sources.base import CameraFrame, FaceStateSource, FrameSource, Source

log = logging.getLogger(__name__)

STOP_CARD_FRAMES = 3  # placeholder frames sent after stop, before the sink closes


@dataclass(frozen=True)
class OutputFrame:
    """A finished frame, or (rgb None) a request to show the card with `message`."""

    rgb: np.ndarray | None
    capture_ts: float
    ready_ts: float
    index: int
    message: str = ""


class Tracker(Protocol):
    """Camera image -> `FaceState` (`FaceLandmarker`, or one on loan from `tracker_pool`)."""

    def track(self, rgb: np.ndarray, timestamp: float) -> FaceState: ...

    def close(self) -> None: ...


class Processor(Protocol):
    """Source item in, sink-ready frame out: the part shared by live and offline runs."""

    stats: RunStats

    def process(self, item: CameraFrame | FaceState) -> OutputFrame: ...

    def warm_up(self) -> None:
        """Do the slow first-use work (shader compiles, model loads) before frames are timed."""

    def close(self) -> None: ...


class FrameProcessor:
    """The privacy-safe processor: camera pixels enter `process` and go to the
    tracker only; from there on, all that flows is a `FaceState`. In privacy
    mode the pipeline accepts no other processor.
    """

    def __init__(self, tracker: Tracker | None, face_filter: FaceFilter, renderer: FaceRenderer, compositor: Compositor, stats: RunStats) -> None:
        if not isinstance(renderer, FaceRenderer) or not renderer.privacy_safe:
            raise TypeError("only FaceRenderer avatars, which never see camera frames, can drive the pipeline")
        self.tracker = tracker
        self.face_filter = face_filter
        self.renderer = renderer
        self.compositor = compositor
        self.stats = stats
        self.last_tracked: tuple[CameraFrame, FaceState] | None = None  # the newest camera frame and what it tracked

    def warm_up(self) -> None:
        self.renderer.render(FaceState.neutral(time.perf_counter()))  # compiles the shaders

    def close(self) -> None:
        self.renderer.close()
        if self.tracker is not None:
            self.tracker.close()

    def face_state(self, item: CameraFrame | FaceState) -> tuple[FaceState, int]:
        if isinstance(item, FaceState):
            return item, self.stats.frames_in
        if self.tracker is None:
            raise TypeError("a camera source needs a tracker")
        self.stats.stage("decode", item.decode_ms)
        t0 = time.perf_counter()
        state = self.tracker.track(item.rgb, item.media_time)
        self.stats.stage("track", (time.perf_counter() - t0) * 1000)
        self.last_tracked = (item, state)
        return state, item.index

    def process(self, item: CameraFrame | FaceState, tracked: FaceState | None = None) -> OutputFrame:
        """One finished frame; its latency is counted from `item.timestamp`. `tracked`:
        what another processor's tracker already found in this camera frame (a new
        avatar's first frame, see `LivePipeline`), so it is not tracked twice."""
        raw, index = self.face_state(item) if tracked is None or isinstance(item, FaceState) else (tracked, item.index)
        self.stats.record_frame(index, raw.present, raw.blendshape_dict() if raw.present else None)
        state = self.face_filter(raw)
        t0 = time.perf_counter()
        rgba = self.renderer.render(state)
        t1 = time.perf_counter()
        rgb = self.compositor.compose(rgba)
        t2 = time.perf_counter()
        self.stats.stage("render", (t1 - t0) * 1000)
        self.stats.stage("composite", (t2 - t1) * 1000)
        return OutputFrame(rgb, item.timestamp, t2, index)


def require_privacy_safe(processor: Processor, privacy: bool) -> None:
    """With privacy on, only a `FrameProcessor` (its renderer never sees pixels) may produce output."""
    if privacy and not isinstance(processor, FrameProcessor):
        raise PrivacyError(f"privacy mode is on: {type(processor).__name__} would see the camera image; turn privacy off to use it")


class Pipeline:
    """Runs a source through a processor into a sink until stopped.

    The processor is built by `make_processor` on the worker thread, because an
    OpenGL context belongs to the thread that made it: the renderer is created,
    used and closed there. Until its first frame, the output shows the card.
    With `privacy` on (the default), only a `FrameProcessor` may run: anything
    else is closed unused and `start` raises `PrivacyError`.
    """

    def __init__(self, source: Source, make_processor: Callable[[RunStats], Processor], sink: Sink, fps: float, privacy: bool = True) -> None:
        if not isinstance(source, (FrameSource, FaceStateSource)):
            raise TypeError(f"unsupported source {type(source).__name__}")
        self.source = source
        self.make_processor = make_processor
        self.processor: Processor | None = None
        self.sink = sink
        self.fps = fps
        self.privacy = privacy
        self.stats = RunStats()
        self._frames: Mailbox[OutputFrame] = Mailbox()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._worker_done = threading.Event()
        self._startup_error: BaseException | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        """Start both threads; raises what building the processor raised.

        The output thread starts once the worker has built and warmed up the
        renderer: compiling shaders holds the GIL for a noticeable time, which
        would otherwise stall the constant-rate output right after it began.
        """
        worker = threading.Thread(target=self._worker_loop, name="veilcam-worker", daemon=True)
        self._threads = [worker]
        worker.start()
        self._ready.wait()
        if self._startup_error is not None:
            self.stop()
            raise self._startup_error
        output = threading.Thread(target=self._output_loop, name="veilcam-output", daemon=True)
        self._threads.append(output)
        output.start()

    def stop(self) -> None:
        """Stop, show the card for a moment, close the source; the sink stays open."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self.source.close()

    def wait(self, timeout: float | None = None, max_frames: int | None = None) -> bool:
        """Block until the source ends, `max_frames` are in, or `timeout`; True if the source ended."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not self._stop.is_set():
            if self._worker_done.wait(0.05):
                return True
            if max_frames is not None and self.stats.frames_in >= max_frames:
                return False
            if deadline is not None and time.perf_counter() >= deadline:
                return False
        return False

    # -- threads -------------------------------------------------------------
    def _worker_loop(self) -> None:
        try:
            self.processor = self.make_processor(self.stats)
            require_privacy_safe(self.processor, self.privacy)
            self.processor.warm_up()
        except BaseException as exc:  # reported by start() on the caller's thread
            if self.processor is not None:
                self.processor.close()
            self._startup_error = exc
            self._worker_done.set()
            self._ready.set()
            return
        self._ready.set()
        try:
            self._process_until_stopped(self.processor)
        finally:
            self.processor.close()
            self._worker_done.set()

    def _process_until_stopped(self, processor: Processor) -> None:
        while not self._stop.is_set():
            try:
                item = self.source.read(timeout=0.25)
            except EOFError:
                break
            if item is None:
                if getattr(self.source, "connected", True) is False:
                    self._frames.put(OutputFrame(None, 0.0, time.perf_counter(), -1, "camera disconnected"))
                continue
            try:
                self._frames.put(processor.process(item))
            except Exception:  # fail closed: show the card, keep going
                self.stats.errors += 1
                log.exception("frame failed; showing the placeholder")
                self._frames.put(OutputFrame(None, 0.0, time.perf_counter(), -1, "avatar unavailable"))

    def _output_loop(self) -> None:
        w, h = self.sink.width, self.sink.height
        pacer = SendPacer(self.fps, time.perf_counter())
        frame: OutputFrame | None = None
        seen = 0
        last_send = None
        while not self._stop.is_set():
            now = time.perf_counter()
            newest, seq = self._frames.wait_newer(seen, pacer.repeat_time(now) - now)
            if self._stop.is_set():
                break
            is_new = seq > seen
            if is_new:
                frame, seen = newest, seq
                now = time.perf_counter()
                delay = pacer.send_time(now) - now
                if delay > 0 and self._stop.wait(delay):
                    break
            t0 = time.perf_counter()
            self._send(frame, w, h)
            t1 = time.perf_counter()
            pacer.sent(t0, new=is_new)
            stats = self.stats
            stats.stage("sink", (t1 - t0) * 1000)
            if last_send is not None:
                stats.output_intervals_ms.append((t0 - last_send) * 1000)
            last_send = t0
            if frame is not None and frame.rgb is not None:
                if is_new:
                    stats.latency_ms.append((t0 - frame.capture_ts) * 1000)
                else:
                    stats.repeats += 1
        for _ in range(STOP_CARD_FRAMES):
            self._send_card("stopped", w, h)
            time.sleep(1.0 / self.fps)

    def _send(self, frame: OutputFrame | None, w: int, h: int) -> None:
        if frame is None:
            self._send_card("starting", w, h)
        elif frame.rgb is None:
            self._send_card(frame.message, w, h)
        else:
            self.sink.send(frame.rgb)
            self.stats.frames_out += 1

    def _send_card(self, message: str, w: int, h: int) -> None:
        self.sink.send(placeholder_card(w, h, message))
        self.stats.frames_out += 1
        self.stats.placeholders += 1

    # -- reporting -----------------------------------------------------------
    def reset_stats(self) -> RunStats:
        """Start measuring afresh (after warm-up); returns the new collector."""
        self.stats = RunStats()
        if self.processor is not None:
            self.processor.stats = self.stats
        return self.stats

    @property
    def dropped(self) -> int:
        """Source frames the worker never processed because newer ones had arrived."""
        return self.source.dropped
