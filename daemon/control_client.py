"""Talking to a running daemon: what the CLI and the tray use.

Kept free of pipeline imports so the tray and `veilcam panic` start fast.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from . import paths
from .errors import VeilCamError

SOCKET_NAME = "control.sock"
DEFAULT_TIMEOUT_S = 5.0
SWITCH_TIMEOUT_S = 90.0  # a cold avatar load may take a while; the daemon gives up after 60 s


class DaemonNotRunningError(VeilCamError):
    """No daemon answers on the control socket."""


class ControlError(VeilCamError):
    """The daemon answered with an error; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def socket_path() -> Path:
    return paths.runtime_dir() / SOCKET_NAME


class ControlClient:
    def __init__(self, path: Path | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = path or socket_path()
        self.timeout = timeout

    def call(self, cmd: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Send one request and return its result; raises `ControlError` or `DaemonNotRunningError`."""
        line = json.dumps({"cmd": cmd, **args}).encode("utf-8") + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout or self.timeout)
            try:
                sock.connect(str(self.path))
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise DaemonNotRunningError(f"VeilCam is not running (nothing answers on {self.path}); start it with `veilcam daemon start`") from exc
            except PermissionError as exc:
                raise ControlError("forbidden", f"{self.path}: permission denied (the daemon belongs to another user)") from exc
            try:
                try:
                    sock.sendall(line)
                except BrokenPipeError:  # a daemon that refuses us replies, then closes, maybe before we send
                    pass
                reply = self._read_line(sock)
            except socket.timeout as exc:
                raise ControlError("timeout", f"VeilCam did not answer {cmd!r} within {timeout or self.timeout:g} s") from exc
            except OSError as exc:
                raise ControlError("internal", f"the connection to VeilCam broke ({exc.strerror or exc})") from exc
        if not reply:
            raise ControlError("internal", f"VeilCam closed the connection without answering {cmd!r}")
        data = json.loads(reply)
        if data.get("ok"):
            return data["result"]
        error = data.get("error") or {}
        raise ControlError(error.get("code", "internal"), error.get("message", "unknown error"))

    @staticmethod
    def _read_line(sock: socket.socket) -> bytes:
        buf = bytearray()
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        return bytes(buf).split(b"\n", 1)[0]
