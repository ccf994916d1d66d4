"""A constant-rate output clock that lines its ticks up with the frames.

The output thread must tick at a fixed rate whatever rendering does. But a
tick that falls just before a frame is ready makes that frame wait almost a
whole period, which is most of a call's latency budget. So the clock keeps its
rate and slowly slides its phase until new frames land a small margin before
a tick. The slide is bounded per tick, so intervals stay within a few percent
of the nominal period. The margin adapts: a frame that just missed its tick
widens it a lot, every frame on time narrows it a little, which settles at a
few percent of misses whatever the render time jitter is.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque


class OutputClock:
    MIN_MARGIN_S = 0.002
    MISS_WIDEN_S = 0.001
    HIT_NARROW_S = 0.00004

    def __init__(self, fps: float, margin_s: float = 0.004, gain: float = 0.15, max_slide_s: float = 0.0008) -> None:
        self.period = 1.0 / fps
        self.margin = margin_s
        self.gain = gain
        self.max_slide = max_slide_s
        self.next_tick = time.perf_counter() + self.period
        self._errors: deque[float] = deque(maxlen=15)

    def wait(self, stop: threading.Event | None = None) -> float:
        """Sleep until the next tick and return its time; skips ticks that are long past."""
        now = time.perf_counter()
        if now > self.next_tick + self.period:
            self.next_tick = now  # we were suspended or starved: do not burst to catch up
        delay = self.next_tick - now
        if delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
        tick = self.next_tick
        self.next_tick += self.period
        return tick

    def frame_ready(self, ready_time: float) -> None:
        """Report when a new frame became ready; adapts the margin and nudges the phase."""
        wait = self.next_tick - ready_time  # how long it sits before it is sent
        # Circular error in (-period/2, period/2]: a frame just after a tick is as
        # much "late" as it is "a whole period early".
        error = (wait - self.margin + self.period / 2) % self.period - self.period / 2
        self._errors.append(error)
        median = statistics.median(self._errors)
        if len(self._errors) == self._errors.maxlen and abs(median) < 0.002:
            # Locked on: a frame later than its margin missed the tick it was meant for.
            if error < -self.margin:
                self.margin = min(self.margin + self.MISS_WIDEN_S, self.period / 2)
            else:
                self.margin = max(self.margin - self.HIT_NARROW_S, self.MIN_MARGIN_S)
        slide = self.gain * median
        self.next_tick -= max(-self.max_slide, min(self.max_slide, slide))
