"""The output clock's phase alignment, driven with synthetic times (no sleeping)."""

from __future__ import annotations

import numpy as np

from veilcam.daemon.mailbox import Mailbox
from veilcam.daemon.pacing import OutputClock

FPS = 30.0
PERIOD = 1 / FPS


def _simulate(offset: float, jitter: float, ticks: int = 400, seed: int = 0) -> tuple[list[float], list[float]]:
    """Frames become ready at k*PERIOD + offset (+ jitter); returns each new frame's wait and the tick intervals."""
    rng = np.random.default_rng(seed)
    clock = OutputClock(FPS)
    clock.next_tick = 0.0
    waits, intervals, last_tick = [], [], None
    k = 0
    for _ in range(ticks):
        tick = clock.next_tick
        clock.next_tick += clock.period  # what wait() does, without sleeping
        ready = k * PERIOD + offset + rng.uniform(0, jitter)
        if ready <= tick:
            waits.append(tick - ready)
            clock.frame_ready(ready)
            k = int((tick - offset) // PERIOD) + 1
        if last_tick is not None:
            intervals.append(tick - last_tick)
        last_tick = tick
    return waits, intervals


def test_clock_slides_until_frames_wait_only_the_margin() -> None:
    for offset in (0.001, 0.010, 0.020, 0.032):
        waits, intervals = _simulate(offset, jitter=0.0)
        assert np.median(waits[-50:]) < 0.010, f"offset {offset}: frames still wait {np.median(waits[-50:]) * 1000:.1f} ms"
        # The rate never strays more than the bounded slide from nominal.
        assert max(abs(i - PERIOD) for i in intervals) <= 0.0008 + 1e-9


def test_clock_keeps_a_margin_under_jitter() -> None:
    waits, _ = _simulate(0.015, jitter=0.004)
    late = np.array(waits[-100:])
    assert np.median(late) < 0.012
    assert len(waits) > 300  # frames are not being missed wholesale


def test_mailbox_keeps_only_the_newest_and_counts_drops() -> None:
    box: Mailbox[int] = Mailbox()
    for i in range(5):
        box.put(i)
    assert box.take(timeout=0) == 4
    assert box.dropped == 4
    assert box.take(timeout=0.01) is None
    assert box.peek() == 4
    box.close()
    assert box.take(timeout=1) is None
