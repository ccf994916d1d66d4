"""One daemon per user: an exclusive lock and a PID file in the runtime dir.

The lock is an `flock` held for the daemon's whole life, so it vanishes with
the process however that ends (no stale lock after a crash); the PID file is
only information for `veilcam daemon status/stop`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from . import paths
from .errors import VeilCamError

LOCK_NAME = "daemon.lock"
PID_NAME = "daemon.pid"


class AlreadyRunningError(VeilCamError):
    """Another daemon of this user holds the lock."""


def runtime_dir() -> Path:
    try:
        return paths.runtime_dir()
    except OSError as exc:
        raise VeilCamError(f"cannot use the runtime folder: {exc}") from exc


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class InstanceLock:
    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or runtime_dir()
        self.lock_path = self.folder / LOCK_NAME
        self.pid_path = self.folder / PID_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = _read_pid(self.pid_path)
            raise AlreadyRunningError(
                f"VeilCam is already running{f' (pid {pid})' if pid else ''}; control it with `veilcam daemon status`, or stop it with `veilcam daemon stop`"
            ) from None
        self._fd = fd
        tmp = self.pid_path.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, self.pid_path)

    def release(self) -> None:
        if self._fd is None:
            return
        if _read_pid(self.pid_path) == os.getpid():
            self.pid_path.unlink(missing_ok=True)
        os.close(self._fd)  # releases the flock
        self._fd = None

    def __enter__(self) -> "InstanceLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def running_pid(folder: Path | None = None) -> int | None:
    """The daemon's PID when one holds the lock, else None."""
    folder = folder or runtime_dir()
    lock_path = folder / LOCK_NAME
    if not lock_path.exists():
        return None
    fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(folder / PID_NAME) or -1  # held, but the PID file is not written yet
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
