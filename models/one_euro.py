"""The One Euro filter (Casiez, Roussel, Vogel, CHI 2012), vectorized.

It smooths strongly when a signal is still (no jitter on a calm face) and
follows quickly when it moves (a blink still closes fully), by raising the
cut-off frequency with the signal's speed.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters a vector signal; each element may have its own parameters."""

    def __init__(self, min_cutoff: np.ndarray | float, beta: np.ndarray | float, d_cutoff: float = 1.0) -> None:
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def reset(self, x: np.ndarray | None = None, t: float = 0.0) -> None:
        """Forget the history; with `x`, continue smoothly from that value."""
        if x is None:
            self._x = None
        else:
            self._x, self._dx, self._t = np.asarray(x, np.float64).copy(), np.zeros(np.shape(x)), t

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.copy()
