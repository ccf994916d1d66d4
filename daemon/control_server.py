"""The control socket's server: a Unix socket only its own user can talk to.

Three walls keep other users out: the socket lives in the user's private
runtime dir (0700), the socket file itself is 0600, and every connection's
peer credentials (SO_PEERCRED, Linux) must name the daemon's own uid.

No client can hurt the daemon: each connection has its own thread, at most
`MAX_CLIENTS` at once; a request must arrive whole within `READ_TIMEOUT_S`
and within `MAX_REQUEST_BYTES`; a client that does not read its reply is
dropped after `WRITE_TIMEOUT_S`; and whatever a handler raises becomes an
error reply. The wire format is in `control_protocol`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .control_protocol import MAX_REQUEST_BYTES, ProtocolError, Request, error_reply, ok_reply, parse_request
from .errors import VeilCamError

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 2.0
MAX_CLIENTS = 8
MAX_SOCKET_PATH = 100  # sun_path is 104-108 bytes depending on the OS

Handler = Callable[[Request], dict[str, Any]]


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end, where the OS tells (Linux); None elsewhere."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class ControlServer:
    def __init__(self, path: Path, handle: Handler, read_timeout: float = READ_TIMEOUT_S, max_clients: int = MAX_CLIENTS) -> None:
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise VeilCamError(f"control socket path {path} is too long for a Unix socket; set XDG_RUNTIME_DIR to a shorter folder")
        self.path = Path(path)
        self.handle = handle
        self.read_timeout = read_timeout
        self.max_clients = max_clients
        self.refused = 0  # connections turned away (other user, too many clients)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def start(self) -> None:
        """Bind and listen; a leftover socket file is replaced (the caller holds the instance lock)."""
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise VeilCamError(f"cannot create the control socket {self.path}: {exc.strerror or exc}") from exc
        sock.settimeout(0.5)  # close() is noticed even if its wake-up connection fails
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="veilcam-control", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> int:
        """Clients being served now (not counting ones turned away)."""
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        """Stop at once: a connection of our own wakes the accept loop, so a stopping
        daemon does not wait out the accept timeout (shutdown() does not wake a
        poll()ing accept, and not on every platform a blocking one)."""
        self._closed.set()
        if self._thread is not None:
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
                wake.settimeout(0.2)
                wake.connect(str(self.path))
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            for conn in list(self._clients):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.path.unlink(missing_ok=True)

    # -- connections ---------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:  # out of descriptors, or closed: keep serving unless closed
                if self._closed.wait(0.1):
                    return
                continue
            if self._closed.is_set():  # close()'s wake-up, or a client too late
                conn.close()
                return
            try:
                self._admit(conn)
            except Exception:
                log.exception("control connection set-up failed")
                conn.close()

    def _admit(self, conn: socket.socket) -> None:
        uid = peer_uid(conn)
        if uid is not None and uid != os.getuid():
            self.refused += 1
            log.warning("control socket: refused a client of uid %d", uid)
            self._reply_and_close(conn, error_reply(None, "forbidden", "this VeilCam belongs to another user"))
            return
        with self._lock:
            busy = len(self._clients) >= self.max_clients
            if not busy:
                self._clients.add(conn)
        if busy:
            self.refused += 1
            self._reply_and_close(conn, error_reply(None, "busy", f"more than {self.max_clients} clients connected; try again"))
            return
        threading.Thread(target=self._serve, args=(conn,), name="veilcam-control-client", daemon=True).start()

    def _reply_and_close(self, conn: socket.socket, reply: bytes) -> None:
        try:
            conn.settimeout(WRITE_TIMEOUT_S)
            conn.sendall(reply)
        except OSError:
            pass
        finally:
            conn.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._converse(conn)
        except OSError:
            pass  # the client went away or stopped reading
        except Exception:
            log.exception("control connection failed")
        finally:
            with self._lock:
                self._clients.discard(conn)
            conn.close()

    def _converse(self, conn: socket.socket) -> None:
        buf = bytearray()
        deadline = time.monotonic() + self.read_timeout
        while not self._closed.is_set():
            newline = buf.find(b"\n")
            if newline < 0:
                if len(buf) > MAX_REQUEST_BYTES:
                    self._send(conn, error_reply(None, "too_large", f"request longer than {MAX_REQUEST_BYTES} bytes"))
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._send(conn, error_reply(None, "timeout", f"no complete request within {self.read_timeout:g} s"))
                    return
                conn.settimeout(remaining)
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue  # the deadline check above replies
                if not chunk:
                    return
                buf += chunk
                continue
            line = bytes(buf[:newline]).strip()
            del buf[: newline + 1]
            if not line:
                continue
            self._send(conn, self._dispatch(line))
            deadline = time.monotonic() + self.read_timeout

    def _send(self, conn: socket.socket, reply: bytes) -> None:
        conn.settimeout(WRITE_TIMEOUT_S)
        conn.sendall(reply)

    def _dispatch(self, line: bytes) -> bytes:
        req_id = None
        try:
            request = parse_request(line)
            req_id = request.id
            return ok_reply(req_id, self.handle(request))
        except ProtocolError as exc:
            return error_reply(req_id, exc.code, str(exc))
        except Exception as exc:
            log.exception("control request failed")
            return error_reply(req_id, "internal", f"{type(exc).__name__}: {exc}")
