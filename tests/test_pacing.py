"""The output send policy, driven with synthetic times (no sleeping), and the mailbox."""

from __future__ import annotations

import numpy as np

from veilcam.daemon.mailbox import Mailbox
from veilcam.daemon.pacing import SendPacer, max_send_rate

FPS = 30.0
PERIOD = 1 / FPS


def _simulate(ready_times: list[float], end: float) -> tuple[list[float], list[float]]:
    """Run the output loop's decisions over frames ready at `ready_times`;
    returns every send time and, for each new frame, how long it waited."""
    pacer = SendPacer(FPS, 0.0)
    now, sends, waits = 0.0, [], []
    pending = sorted(ready_times)
    while now < end:
        repeat_at = pacer.repeat_time(now)
        new = bool(pending) and pending[0] <= repeat_at
        if new:
            ready = max(pending.pop(0), now)
            while pending and pending[0] <= ready:  # latest wins
                ready = max(pending.pop(0), ready)
            now = pacer.send_time(ready)
            waits.append(now - ready)
        else:
            now = repeat_at
        sends.append(now)
        pacer.sent(now, new=new)
    return sends, waits


def test_frames_at_the_output_rate_go_out_at_once_despite_jitter() -> None:
    rng = np.random.default_rng(0)
    ready = [k * PERIOD + 0.020 + rng.uniform(0, 0.012) for k in range(300)]
    sends, waits = _simulate(ready, 300 * PERIOD)
    assert np.median(waits) == 0.0
    assert np.percentile(waits, 95) < 0.002
    # Each frame once, and repeats only where a frame was really late: about one send per period.
    assert abs(len(sends) - 300) <= 3


def test_the_rate_never_exceeds_fps_with_a_faster_producer() -> None:
    ready = [k / 90.0 for k in range(900)]  # 90 fps in, 10 s
    sends, _ = _simulate(ready, 10.0)
    sends = np.array(sends)
    for start in np.arange(0.0, 9.0, 0.5):  # every 1 s window
        in_window = np.count_nonzero((sends >= start) & (sends < start + 1.0))
        assert in_window <= FPS * (1 + SendPacer.MARGIN) + 1
    assert np.min(np.diff(sends)) >= PERIOD * 0.5 / (1 + SendPacer.MARGIN) - 1e-9


def test_repeats_and_new_frames_together_stay_under_two_sends_per_repeat_delay() -> None:
    """A producer just slower than REPEAT_AFTER periods gets a repeat and then its new frame
    at once, every time: the most sends repeats and new frames can add up to (repeats take no
    credit, by design). The live tests bound the output rate by this, not by fps alone."""
    interval = SendPacer.REPEAT_AFTER * PERIOD + 0.001
    ready = [k * interval for k in range(1, 400)]
    sends, waits = _simulate(ready, ready[-1])
    rate = (len(sends) - 1) / (sends[-1] - sends[0])
    assert max(waits) == 0.0
    assert 1.9 / interval < rate <= max_send_rate(FPS)


def test_a_late_frame_after_a_repeat_delays_nothing() -> None:
    ready = [k * PERIOD + 0.020 + (0.025 if k == 100 else 0.0) for k in range(400)]  # frame 100 late
    sends, waits = _simulate(ready, 400 * PERIOD)
    assert max(waits) == 0.0
    assert len([s for s in sends if s <= ready[-1]]) == 401  # one repeat filled the gap


def test_a_lag_from_a_burst_fades_instead_of_locking_in() -> None:
    """At exactly fps, each frame after a held-back one would find the credit short by the same
    amount and wait as long, for the rest of the call; the margin makes such a lag fade."""
    pacer = SendPacer(FPS, 0.0)
    pacer.sent(0.0)
    pacer.sent(0.001)  # a burst: credit now in debt
    ready, waits = 0.001, []
    for _ in range(60):  # then a producer at exactly fps
        ready += PERIOD
        sent = pacer.send_time(ready)
        waits.append(sent - ready)
        pacer.sent(sent)
    assert waits[0] > 0.010  # held back at first...
    assert max(waits[12:]) == 0.0  # ...but free again within 0.4 s


def test_a_stalled_producer_still_gets_a_frame_every_period() -> None:
    ready = [k * PERIOD for k in range(30)] + [2.0 + k * PERIOD for k in range(30)]  # 1 s stall
    sends, waits = _simulate(ready, 3.0)
    gaps = np.diff(sends)
    assert gaps.max() <= 1.5 * PERIOD + 1e-9
    stall = [s for s in sends if 1.05 < s < 1.95]
    assert abs(np.mean(np.diff(stall)) - PERIOD) < 1e-6  # repeats at the nominal rate
    assert max(waits) <= 0.5 * PERIOD + 1e-9  # the first frame after the stall is not held back long


def test_mailbox_keeps_only_the_newest_and_counts_drops() -> None:
    box: Mailbox[int] = Mailbox()
    for i in range(5):
        box.put(i)
    assert box.take(timeout=0) == 4
    assert box.dropped == 4
    assert box.take(timeout=0.01) is None
    assert box.wait_newer(0, timeout=0) == (4, 5)
    assert box.wait_newer(5, timeout=0.01) == (4, 5)  # nothing newer: waits, then gives the newest again
    box.close()
    assert box.take(timeout=1) is None
