"""When the output thread sends: new frames at once, repeats only when overdue.

A frame that waits for a fixed clock tick waits up to a whole period (33 ms at
30 fps), which is most of a call's latency budget. So the output is driven by
the frames themselves, with a credit that accrues at the output rate: a new
frame is sent as soon as it is ready if at least half a period of credit is
there (else it waits until it is); with no new frame, the last one is repeated
once the credit reaches one and a half periods. The long-run rate therefore
never exceeds `fps`, a stalled renderer still gets a frame every period, and
a frame that is ready is never held back for a tick.

Time is passed in, never read, so the policy is tested without sleeping.
"""

from __future__ import annotations


class SendPacer:
    SEND_AT = 0.5  # credit (in periods) a new frame needs to go out
    REPEAT_AT = 1.5  # credit at which the last frame is repeated

    def __init__(self, fps: float, now: float) -> None:
        self.period = 1.0 / fps
        self.credit = 1.0
        self._t = now

    def _credit_at(self, now: float) -> float:
        return min(self.REPEAT_AT, self.credit + (now - self._t) / self.period)

    def _time_of(self, credit: float, now: float) -> float:
        return max(now, self._t + (credit - self.credit) * self.period)

    def send_time(self, now: float) -> float:
        """Earliest time a new frame may be sent (`now` if it may go at once)."""
        return self._time_of(self.SEND_AT, now)

    def repeat_time(self, now: float) -> float:
        """When the last frame must be repeated if nothing new arrives."""
        return self._time_of(self.REPEAT_AT, now)

    def sent(self, now: float) -> None:
        """A frame (new or repeated) went out at `now`."""
        self.credit = self._credit_at(now) - 1.0
        self._t = now
