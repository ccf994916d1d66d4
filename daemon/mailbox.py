"""A one-slot, latest-wins hand-off between threads.

Queues between real-time stages turn a slow consumer into growing latency.
A mailbox keeps only the newest item: a slow consumer sees fewer items, never
older ones, and the number it missed is counted as dropped.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._seq = 0  # items ever put
        self._taken_seq = 0  # seq of the last item taken
        self.dropped = 0
        self._closed = False

    def put(self, item: T) -> None:
        with self._cond:
            if self._seq > self._taken_seq:
                self.dropped += 1
            self._item = item
            self._seq += 1
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item not taken yet; None on timeout or once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > self._taken_seq or self._closed, timeout):
                return None
            if self._seq == self._taken_seq:
                return None
            self._taken_seq = self._seq
            return self._item

    def wait_newer(self, seen: int, timeout: float) -> tuple[T | None, int]:
        """The newest item and its sequence number, waiting up to `timeout` for
        one newer than `seen`; for readers that repeat items (they do not count
        as taking, so nothing is marked dropped)."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seen or self._closed, max(timeout, 0.0))
            return self._item, self._seq

    def close(self) -> None:
        """Wake every waiter: the producer is done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
