"""A real daemon in a thread of the test process: demo face, null sink, real
control socket in the test's private runtime dir."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from veilcam.daemon.config import Config, config_from_dict
from veilcam.daemon.service import Daemon

SMALL_DEMO = {"source": {"kind": "demo"}, "output": {"sink": "null", "width": 320, "height": 180}}


def demo_config(**sections: dict) -> Config:
    return config_from_dict({**SMALL_DEMO, **sections}, "test")


@contextmanager
def running_daemon(load: Callable[[], Config] = demo_config) -> Iterator[Daemon]:
    daemon = Daemon(load)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run()
        except BaseException as exc:  # surfaced by the context manager
            failure.append(exc)
            daemon.ready.set()

    thread = threading.Thread(target=run, name="test-daemon")
    thread.start()
    try:
        assert daemon.ready.wait(60), "the daemon did not come up"
        if failure:
            raise failure[0]
        yield daemon
    finally:
        daemon.stop_event.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the daemon did not stop"
