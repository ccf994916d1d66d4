"""When the output thread sends: new frames at once, repeats only when overdue.

A frame that waits for a fixed clock tick waits up to a whole period (33 ms at
30 fps), which is most of a call's latency budget. So the output is driven by
the frames themselves. A credit, counted in periods, limits the rate of new
frames: a new frame goes out as soon as it is ready if at least half a period
of credit is there, else it waits until it is. With no new frame, the last one
is repeated one and a half periods after the last send, then every period, so
a stalled renderer still gets a steady output. Repeats only fill gaps, so they
take no credit: a late frame that arrives just after a repeat goes out at once,
and so does the punctual one after it.

The credit accrues a little faster than `fps` (MARGIN). At exactly `fps` a
camera delivering at `fps` would lock any lag in for good: after one late frame
(or a burst) each later frame would find the credit short by the same amount
and wait the same time, for the rest of the call. With the margin such a lag
fades within a third of a second, and a faster producer still gets at most
`fps * (1 + MARGIN)` frames a second.

Repeats and new frames together can exceed `fps`: a producer just slower than
REPEAT_AFTER periods gets a repeat and then its new frame, every time
(`max_send_rate`). The duplicate costs the consumer nothing, and delaying the
new frame to save it would add latency.

Time is passed in, never read, so the policy is tested without sleeping.
"""

from __future__ import annotations


class SendPacer:
    SEND_AT = 0.5  # credit (in periods) a new frame needs to go out
    CAP = 1.5  # credit saved up at most: bursts stay short
    MARGIN = 0.05  # credit accrues this much faster than fps, so lags fade
    REPEAT_AFTER = 1.5  # periods after a new frame before the first repeat

    def __init__(self, fps: float, now: float) -> None:
        self.period = 1.0 / fps
        self.credit = 1.0
        self._t = now
        self._last_send: float | None = None
        self._last_was_new = True

    def _credit_at(self, now: float) -> float:
        return min(self.CAP, self.credit + (now - self._t) * (1.0 + self.MARGIN) / self.period)

    def send_time(self, now: float) -> float:
        """Earliest time a new frame may be sent (`now` if it may go at once)."""
        return max(now, self._t + (self.SEND_AT - self.credit) * self.period / (1.0 + self.MARGIN))

    def repeat_time(self, now: float) -> float:
        """When the last frame must be repeated if nothing new arrives."""
        if self._last_send is None:
            return now + self.period
        wait = self.REPEAT_AFTER if self._last_was_new else 1.0
        return max(now, self._last_send + wait * self.period)

    def sent(self, now: float, new: bool = True) -> None:
        """A frame went out at `now`: a new one, or a repeat of the last."""
        if new:
            self.credit = self._credit_at(now) - 1.0
            self._t = now
        self._last_send = now
        self._last_was_new = new


def max_send_rate(fps: float) -> float:
    """Most sends a second over a long run: new frames alone reach fps * (1 + MARGIN); with
    repeats, at most a repeat and a new frame every REPEAT_AFTER periods."""
    return fps * max(1.0 + SendPacer.MARGIN, 2.0 / SendPacer.REPEAT_AFTER)
