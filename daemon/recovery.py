"""What the live pipeline does after a fault: how long to wait, and what to try next.

A renderer that fails once is rebuilt at once; one that keeps failing is
rebuilt ever more slowly, so a permanent fault costs a few retries a minute
instead of a busy loop. Running out of (GPU) memory is different: building
the same thing again will fail the same way, so the next attempt is a step
down a ladder of cheaper selections, ending at the card.
"""

from __future__ import annotations

import dataclasses
import sys

from .selection import Selection


def is_out_of_memory(exc: BaseException) -> bool:
    """A host `MemoryError` or a CUDA out-of-memory error (torch is only consulted when already loaded)."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    return oom is not None and isinstance(exc, oom)


def fallback_selection(failed: Selection, fallback_avatar: str) -> Selection:
    """The next cheaper selection after `failed` ran out of memory.

    Restyle (a diffusion model) -> the user's avatar; an avatar -> the
    configured fallback avatar (a CPU one); the fallback itself -> the card.
    """
    if failed.mode == "restyle":
        return dataclasses.replace(failed, mode="avatar")
    if failed.mode == "avatar" and failed.avatar != fallback_avatar:
        return dataclasses.replace(failed, avatar=fallback_avatar)
    return dataclasses.replace(failed, mode="placeholder")


class Backoff:
    """Delays between restarts: `base` after an isolated failure, doubling
    (up to `cap`) while failures keep coming within `window` seconds of each other."""

    def __init__(self, base: float = 0.0, first: float = 0.25, cap: float = 8.0, window: float = 10.0) -> None:
        self.base, self.first, self.cap, self.window = base, first, cap, window
        self._last: float | None = None
        self._delay = base

    def failure(self, now: float) -> float:
        """Record a failure at `now`; returns how long to wait before the next attempt."""
        if self._last is not None and now - self._last < self.window:
            self._delay = min(self.cap, max(self.first, self._delay * 2))
        else:
            self._delay = self.base
        self._last = now
        return self._delay
