"""The control socket with real sockets: every request, every kind of bad
client, another user, and a fuzzed parser."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon_rig import demo_config, running_daemon
from veilcam.daemon.control_client import ControlClient, ControlError, DaemonNotRunningError, socket_path
from veilcam.daemon.control_protocol import COMMANDS, MAX_REQUEST_BYTES, ProtocolError, Request, parse_request
from veilcam.daemon.control_server import ControlServer
from veilcam.daemon.errors import VeilCamError
from veilcam.daemon.instance import AlreadyRunningError, running_pid
from veilcam.daemon.service import Daemon

pytestmark = pytest.mark.usefixtures("model_dir")


def _raw(path: Path, payload: bytes, read: bool = True, timeout: float = 10.0) -> list[dict]:
    """Send raw bytes; return every reply line until the server closes or goes quiet."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while read:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


def _eventually(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_every_request_over_the_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = tmp_path / "veilcam.toml"
    config_file.write_text('[source]\nkind = "demo"\n[output]\nsink = "null"\nwidth = 320\nheight = 180\n')
    from veilcam.daemon.config import load_config

    with running_daemon(lambda: load_config(config_file)) as daemon:
        path = socket_path()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert running_pid() == os.getpid()
        client = ControlClient()
        status = client.call("status")
        for key in ("mode", "avatar", "fps", "latency_ms", "face_tracked", "privacy", "camera", "restyle", "error"):
            assert key in status
        assert (status["mode"], status["avatar"], status["privacy"], status["camera"]) == ("avatar", "porcelain", True, "none")
        assert status["restyle"]["available"] is True and "oil-painting" in status["restyle"]["styles"]
        names = [a["name"] for a in client.call("list_avatars")["avatars"]]
        assert {"porcelain", "midnight"} <= set(names)

        assert client.call("switch_avatar", name="midnight")["avatar"] == "midnight"
        assert client.call("status")["avatar"] == "midnight"
        with pytest.raises(ControlError, match="no avatar called 'nope'") as err:
            client.call("switch_avatar", name="nope")
        assert err.value.code == "failed"

        with pytest.raises(ControlError, match="privacy mode is on") as err:
            client.call("set_mode", mode="restyle")
        assert err.value.code == "privacy"
        assert client.call("set_privacy", enabled=False) == {"privacy": False}
        with pytest.raises(ControlError, match="restyle needs a camera") as err:  # the demo has no image to restyle
            client.call("set_mode", mode="restyle")
        assert err.value.code == "failed"
        assert client.call("set_privacy", enabled=True) == {"privacy": True}
        assert client.call("set_style", prompt="oil painting")["style"] == "oil painting"

        assert client.call("panic") == {"mode": "placeholder"}
        status = client.call("status")
        assert (status["mode"], status["card"]) == ("placeholder", "be right back")
        client.call("set_mode", mode="avatar")
        _eventually(lambda: client.call("status")["card"] is None)  # gone with the avatar's first frame

        config_file.write_text('[source]\nkind = "demo"\n[output]\nsink = "null"\nwidth = 320\nheight = 180\nfps = 25\n[avatar]\nname = "jade"\n')
        assert client.call("reload_config", timeout=60) == {"restart_needed": ["output.fps"]}
        assert client.call("status")["avatar"] == "jade"
        config_file.write_text("[avatar\n")
        with pytest.raises(ControlError, match="not valid TOML"):
            client.call("reload_config")
        assert client.call("status")["avatar"] == "jade"

        assert client.call("shutdown") == {}
        daemon.stop_event.wait(5)
    with pytest.raises(DaemonNotRunningError, match="not running"):
        ControlClient().call("status")
    assert running_pid() is None


def test_bad_requests_get_error_replies_and_the_daemon_lives() -> None:
    with running_daemon() as daemon:
        path = socket_path()
        lines = [
            b"not json",
            b"[1, 2]",
            b'{"cmd": "format_disk"}',
            b'{"cmd": "switch_avatar"}',
            b'{"cmd": "switch_avatar", "name": 5}',
            b'{"cmd": "set_privacy", "enabled": "yes"}',
            b'{"cmd": "set_privacy", "enabled": 1}',
            b'{"cmd": "set_mode", "mode": "sepia"}',
            b'{"cmd": "status", "extra": 1}',
            b'{"cmd": "status", "id": [1]}',
            b'{"cmd": "status", "x": NaN}',
            b"\xff\xfe\x00garbage",
            b"[" * 30_000 + b"]" * 30_000,
            b'{"cmd": "status", "id": 7}',
        ]
        replies = _raw(path, b"\n".join(lines) + b"\n")
        assert len(replies) == len(lines), "one reply per request, in order, on one connection"
        codes = [r["error"]["code"] if not r["ok"] else "ok" for r in replies]
        assert codes[:2] == ["bad_request", "bad_request"]
        assert codes[2] == "unknown_command"
        assert codes[3:13] == ["bad_request"] * 10
        assert replies[-1]["ok"] and replies[-1]["id"] == 7 and replies[-1]["result"]["mode"] == "avatar"

        (huge,) = _raw(path, b'{"cmd": "status", "pad": "' + b"x" * (MAX_REQUEST_BYTES + 10_000))
        assert huge["error"]["code"] == "too_large"

        assert ControlClient().call("status")["mode"] == "avatar"
        assert not daemon.stop_event.is_set()


def _echo_server(path: Path, **kw) -> ControlServer:
    server = ControlServer(path, lambda req: {"cmd": req.cmd}, **kw)
    server.start()
    return server


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_silent_slow_and_excess_clients_are_dropped_without_blocking_others(private_runtime: Path) -> None:
    path = private_runtime / "c.sock"
    server = _echo_server(path, read_timeout=2.0, max_clients=3)
    try:
        silent = socket.socket(socket.AF_UNIX)
        silent.connect(str(path))
        silent.settimeout(5)
        slow = socket.socket(socket.AF_UNIX)
        slow.connect(str(path))
        slow.settimeout(5)
        slow.sendall(b'{"cmd": "sta')  # and never the rest
        # While those two hang on, others are served at once.
        assert ControlClient(path).call("status") == {"cmd": "status"}
        _wait_until(lambda: server.connected == 2)  # the status client has gone
        third = socket.socket(socket.AF_UNIX)
        third.connect(str(path))
        _wait_until(lambda: server.connected == 3)  # the server accepts in its own time
        with socket.socket(socket.AF_UNIX) as fourth:
            fourth.settimeout(5)
            fourth.connect(str(path))
            assert json.loads(fourth.recv(4096))["error"]["code"] == "busy"
        t0 = time.monotonic()
        assert json.loads(silent.recv(4096))["error"]["code"] == "timeout"
        assert json.loads(slow.recv(4096))["error"]["code"] == "timeout"
        assert silent.recv(4096) == b"" and time.monotonic() - t0 < 5, "dropped after the read timeout"
        for s in (silent, slow, third):
            s.close()
        assert ControlClient(path).call("panic") == {"cmd": "panic"}
        # A client that sends requests but never reads its replies does not wedge the server.
        greedy = socket.socket(socket.AF_UNIX)
        greedy.connect(str(path))
        greedy.setblocking(False)
        try:
            for _ in range(20000):
                greedy.send(b'{"cmd": "status"}\n' * 100)
        except BlockingIOError:
            pass
        assert ControlClient(path).call("status") == {"cmd": "status"}
        greedy.close()
    finally:
        server.close()
    assert not path.exists()


def test_handler_errors_become_error_replies(private_runtime: Path) -> None:
    def handle(req: Request) -> dict:
        if req.cmd == "panic":
            raise RuntimeError("handler bug")
        raise ProtocolError("failed", "nothing to show")

    path = private_runtime / "c.sock"
    server = ControlServer(path, handle)
    server.start()
    try:
        with pytest.raises(ControlError, match="handler bug") as err:
            ControlClient(path).call("panic")
        assert err.value.code == "internal"
        with pytest.raises(ControlError, match="nothing to show"):
            ControlClient(path).call("status")
    finally:
        server.close()


OTHER_USER_CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES"); sys.exit(0)
try:
    s.sendall(b'{"cmd": "status"}\\n')
except BrokenPipeError:  # refused and closed before we sent: the reply is still there to read
    pass
print(json.loads(s.recv(4096))["error"]["code"])
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a client as another user needs root (CI runs as root)")
def test_a_client_of_another_user_is_refused(private_runtime: Path) -> None:
    path = private_runtime / "c.sock"
    server = _echo_server(path)

    def as_nobody() -> str:
        proc = subprocess.run(["/usr/bin/python3", "-c", OTHER_USER_CLIENT, str(path)], user=65534, group=65534, capture_output=True, text=True, timeout=20)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    try:
        os.chmod(private_runtime, 0o755)  # only the socket's own mode (0600) in the way
        assert as_nobody() == "EACCES"
        os.chmod(path, 0o666)  # even if someone loosens the socket, the peer check refuses
        assert as_nobody() == "forbidden"
        assert server.refused == 1
        assert ControlClient(path).call("status") == {"cmd": "status"}
    finally:
        os.chmod(private_runtime, 0o700)
        server.close()


def test_one_daemon_per_user() -> None:
    with running_daemon():
        with pytest.raises(AlreadyRunningError, match="already running"):
            Daemon(demo_config).run()
        assert ControlClient().call("status")["mode"] == "avatar"


def test_an_avatar_typo_fails_before_anything_opens() -> None:
    with pytest.raises(VeilCamError, match="no avatar called 'nope'"):
        Daemon(lambda: demo_config(avatar={"name": "nope"})).run()
    assert running_pid() is None


# -- fuzzing --------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
requests = st.fixed_dictionaries({"cmd": st.sampled_from([*COMMANDS, "bogus"])}, optional={"id": json_values, "name": json_values, "mode": json_values, "enabled": json_values, "prompt": json_values})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | requests.map(lambda d: json.dumps(d).encode()))
def test_parser_fuzz_never_raises_anything_but_a_protocol_error(line: bytes) -> None:
    try:
        request = parse_request(line)
    except ProtocolError as exc:
        assert exc.code in ("bad_request", "unknown_command", "too_large") and str(exc)
        return
    assert request.cmd in COMMANDS
    assert set(request.args) == set(COMMANDS[request.cmd])


def test_server_fuzz_answers_every_line(private_runtime: Path) -> None:
    path = private_runtime / "f.sock"
    server = _echo_server(path)

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.binary(max_size=200).filter(lambda b: b"\n" not in b) | requests.map(lambda d: json.dumps(d).encode()), min_size=1, max_size=5))
    def answers_every_line(lines: list[bytes]) -> None:
        replies = _raw(path, b"\n".join(lines) + b"\n")
        assert len(replies) == sum(1 for line in lines if line.strip())
        assert all(isinstance(r["ok"], bool) for r in replies)

    try:
        answers_every_line()
        assert ControlClient(path).call("status") == {"cmd": "status"}
    finally:
        server.close()


def test_the_server_survives_a_flood_of_connections(private_runtime: Path) -> None:
    path = private_runtime / "c.sock"
    server = _echo_server(path)
    errors: list[BaseException] = []

    def hammer() -> None:
        for _ in range(30):
            try:
                ControlClient(path).call("status")
            except ControlError as exc:
                if exc.code != "busy":
                    errors.append(exc)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert not errors, errors[:3]
        assert ControlClient(path).call("status") == {"cmd": "status"}
    finally:
        server.close()
