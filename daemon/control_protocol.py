"""The control API's wire format: newline-delimited JSON over a Unix socket.

Each request is one JSON object on one line (UTF-8, at most
`MAX_REQUEST_BYTES` including the newline); each gets exactly one reply line,
in order. A connection may carry several requests.

Request::

    {"cmd": "<command>", "id": <optional string or integer, echoed>, ...arguments}

Reply::

    {"id": ..., "ok": true, "result": {...}}
    {"id": ..., "ok": false, "error": {"code": "<code>", "message": "<one line>"}}

Commands and their arguments (anything else is a `bad_request`):

==============  ==============================  =========================================
cmd             arguments                       result
==============  ==============================  =========================================
status          -                               mode, avatar, style, privacy, camera
                                                (connected/disconnected/paused/none),
                                                face_tracked, fps, latency_ms {p50, p95},
                                                card, loading, restarts, error {seq,
                                                message, time} or null, restyle
                                                {available, reason, styles}, avatars_dir,
                                                output, output_device, pid, uptime_s
list_avatars    -                               avatars [{name, kind, description,
                                                error}], current
switch_avatar   name: string                    avatar, switch_ms (also selects mode avatar)
set_mode        mode: avatar | restyle |        mode, switch_ms
                placeholder | pause
set_style       prompt: string (<= 1000 chars)  style
set_privacy     enabled: boolean                privacy
reload_config   -                               restart_needed [section.key, ...]
panic           -                               mode ("placeholder", at once)
shutdown        -                               {} (the daemon stops after replying)
==============  ==============================  =========================================

Error codes: `bad_request` (not JSON, not an object, wrong or missing
arguments), `too_large`, `unknown_command`, `timeout` (no complete request
within the read timeout), `forbidden` (peer of another user), `privacy`
(refused while privacy mode is on), `unavailable` (e.g. restyle not in this
build), `failed` (the request was valid but could not be carried out; what
is shown did not change), `busy` (too many clients), `internal`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_REQUEST_BYTES = 64 * 1024
MAX_PROMPT_CHARS = 1000

#: cmd -> {argument: type}; every argument listed is required.
COMMANDS: dict[str, dict[str, type]] = {
    "status": {},
    "list_avatars": {},
    "switch_avatar": {"name": str},
    "set_mode": {"mode": str},
    "set_style": {"prompt": str},
    "set_privacy": {"enabled": bool},
    "reload_config": {},
    "panic": {},
    "shutdown": {},
}


class ProtocolError(Exception):
    """A request that cannot be carried out; `code` is one of the documented error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Request:
    cmd: str
    args: dict[str, Any]
    id: str | int | None = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_request(line: bytes) -> Request:
    """One request line -> `Request`; anything malformed raises `ProtocolError`, never anything else."""
    if len(line) > MAX_REQUEST_BYTES:
        raise ProtocolError("too_large", f"request longer than {MAX_REQUEST_BYTES} bytes")
    try:
        data = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ProtocolError("bad_request", f"not a JSON object: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_request", "a request must be a JSON object")
    req_id = data.pop("id", None)
    if req_id is not None and (not isinstance(req_id, (str, int)) or isinstance(req_id, bool)):
        raise ProtocolError("bad_request", "id must be a string or an integer")
    if isinstance(req_id, str) and len(req_id) > 200:
        raise ProtocolError("bad_request", "id longer than 200 characters")
    cmd = data.pop("cmd", None)
    if not isinstance(cmd, str):
        raise ProtocolError("bad_request", 'missing "cmd" (a string)')
    spec = COMMANDS.get(cmd)
    if spec is None:
        raise ProtocolError("unknown_command", f"unknown command {cmd[:100]!r} (known: {', '.join(COMMANDS)})")
    for name, kind in spec.items():
        if name not in data:
            raise ProtocolError("bad_request", f"{cmd}: missing argument {name!r}")
        value = data[name]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ProtocolError("bad_request", f"{cmd}: {name} must be a {kind.__name__}")
    extra = set(data) - set(spec)
    if extra:
        raise ProtocolError("bad_request", f"{cmd}: unknown argument(s) {', '.join(sorted(extra))[:200]}")
    if cmd == "set_style" and len(data["prompt"]) > MAX_PROMPT_CHARS:
        raise ProtocolError("bad_request", f"set_style: prompt longer than {MAX_PROMPT_CHARS} characters")
    return Request(cmd, data, req_id)


def ok_reply(req_id: str | int | None, result: dict[str, Any]) -> bytes:
    return _line({"id": req_id, "ok": True, "result": result})


def error_reply(req_id: str | int | None, code: str, message: str) -> bytes:
    return _line({"id": req_id, "ok": False, "error": {"code": code, "message": message}})


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str).encode("utf-8") + b"\n"
