"""A driver's resting expression, estimated live, and expressions re-based from one face's rest onto another's.

The tracker reads part of a face's shape as expression: on the shared clips a
woman's brows read 0.85 most of the time (`browInnerUp`) and her eyes read as
looking down (0.45), and a man's left eye squints at 0.54 or more. A face-model
avatar shows those readings as they are, which is what the built-in looks are
measured with. A neural avatar is different: its network learned the codes of
one enrollment clip, whose person rests at other readings, and a driver's rest
far from them asks the network for expressions it never saw (her resting
"look down" drew the clip's lids half shut). Re-basing the driver's rest onto
the clip's before the network sees it keeps every change the driver makes and
drops the offset.

The rest is a low quantile of each blendshape over the last seconds: every
blendshape is an activation (0 = not doing it), so the least-activated state
a face keeps for a tenth of the time is its rest, whatever it does the rest of
the time. It is what has been seen so far from the first frame on, so an
expression held from the very start shows only once the face has relaxed.
Ramping the estimate in from 0 over the first 5 s instead (scratch run, three
enrolled avatars driven by p1/p3/p4) lost most of the gain: the ramp itself
moved every expression for those seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .face_state import NUM_BLENDSHAPES


@dataclass(frozen=True)
class RestSettings:
    window_s: float = 20.0  # the rest follows changes (a new person, new light) this slowly
    quantile: float = 10.0  # percent of the time a face spends at least as relaxed as its rest
    max_rate_hz: float = 60.0  # samples kept per second: a window's size is bounded whatever the camera's rate
    refresh_s: float = 0.2  # how often the quantile is taken again: the rest moves over seconds, not frames


class RestEstimator:
    """Feed the tracked blendshapes of one face in time order; `rest` is its resting expression so far."""

    def __init__(self, settings: RestSettings = RestSettings()) -> None:
        self.settings = settings
        capacity = max(1, int(np.ceil(settings.window_s * settings.max_rate_hz)))
        self._values = np.zeros((capacity, NUM_BLENDSHAPES), np.float32)
        self._times = np.full(capacity, -np.inf)
        self._next = 0
        self._last_t: float | None = None
        self._refreshed_t = -np.inf
        self.rest = np.zeros(NUM_BLENDSHAPES, np.float32)

    def update(self, blendshapes: np.ndarray, t: float) -> np.ndarray:
        s = self.settings
        if self._last_t is not None and t - self._last_t < 1.0 / s.max_rate_hz:
            return self.rest
        self._last_t = t
        self._values[self._next] = blendshapes
        self._times[self._next] = t
        self._next = (self._next + 1) % len(self._times)
        if t - self._refreshed_t >= s.refresh_s:
            self._refreshed_t = t
            self.rest = resting_expression(self._values[self._times > t - s.window_s], s.quantile)
        return self.rest


def resting_expression(blendshapes: np.ndarray, quantile: float = RestSettings.quantile) -> np.ndarray:
    """(N, 52) blendshapes of one face -> (52,) its rest: each one's `quantile` percent lowest value."""
    k = int(round(quantile / 100.0 * (len(blendshapes) - 1)))
    return np.partition(np.asarray(blendshapes, np.float32), k, axis=0)[k]


def rebase(blendshapes: np.ndarray, rest: np.ndarray, target_rest: np.ndarray) -> np.ndarray:
    """Each blendshape's range above the driver's `rest` mapped linearly onto the range above `target_rest`; a value
    under the driver's rest (a tenth of the time, by its definition) maps to the target's rest."""
    span = np.maximum(1.0 - rest, 1e-3)
    above = np.clip((blendshapes - rest) / span, 0.0, 1.0)
    return (target_rest + above * (1.0 - target_rest)).astype(np.float32)
