"""`veilcam daemon start|stop|status`: the daemon in the background.

`start` runs `veilcam run` as a detached process (its own session, no
terminal) with the same options, and returns once the control socket answers,
or with the daemon's own one-line error if it could not start. `stop` asks it
over the socket and falls back to SIGTERM. Both read the lock, so they never
act on a PID file left behind by a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from . import paths
from .config import flag_name
from .control_client import ControlClient, ControlError, DaemonNotRunningError
from .errors import VeilCamError
from .instance import running_pid
from .logs import log_file

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
EXIT_NOT_RUNNING = 3  # as LSB init scripts report "not running"


def run_argv(args: argparse.Namespace) -> list[str]:
    """The `veilcam run` options equivalent to the ones given to `daemon start`."""
    argv: list[str] = []
    if args.config:
        argv += ["--config", str(Path(args.config).resolve())]
    for opt in ("source", "out"):
        if getattr(args, opt, None):
            argv += [f"--{opt}", str(getattr(args, opt))]
    for key, value in vars(args).items():
        if key.startswith("cfg__") and value is not None:
            _, section, name = key.split("__")
            flag = flag_name(section, name)
            argv += [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, str(value)]
    return argv


def _startup_error(out: Path, code: int) -> str:
    lines = out.read_text(encoding="utf-8", errors="replace").splitlines() if out.exists() else []
    errors = [line.removeprefix("veilcam: error: ") for line in lines if line.startswith("veilcam: error:")]
    return errors[-1] if errors else f"the daemon exited with code {code}; see {out} and {log_file()}"


def cmd_start(args: argparse.Namespace, validate: Callable[[argparse.Namespace], Any]) -> int:
    validate(args)  # bad flags or config fail here, in the terminal, not in a log
    pid = running_pid()
    if pid:
        print(f"VeilCam is already running (pid {pid})")
        return 0
    out = paths.state_dir() / "daemon.out"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "veilcam.daemon.cli", *(["-v"] if args.verbose else []), "run", "--detached", *run_argv(args)]
    with out.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    client = ControlClient(timeout=2.0)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise VeilCamError(f"VeilCam did not start: {_startup_error(out, code)}")
        try:
            client.call("status")
        except (DaemonNotRunningError, ControlError):
            time.sleep(0.1)
            continue
        print(f"VeilCam started (pid {proc.pid}); log: {log_file()}")
        return 0
    raise VeilCamError(f"VeilCam did not answer within {START_TIMEOUT_S:.0f} s; see {log_file()}")


def _alive(pid: int) -> bool:
    """Whether process `pid` still exists (a zombie waiting for its parent counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no procfs (macOS): kill(0) said it exists


def _wait_gone(pid: int, timeout: float) -> bool:
    """Until the lock is free and the process has exited (the virtual camera is closed by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_pid() is None and not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def cmd_stop(args: argparse.Namespace) -> int:
    pid = running_pid()
    if pid is None:
        print("VeilCam is not running")
        return 0
    try:
        ControlClient().call("shutdown")
    except (DaemonNotRunningError, ControlError):
        if pid > 0:
            os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, STOP_TIMEOUT_S):
        if pid <= 0:
            raise VeilCamError(f"VeilCam did not stop within {STOP_TIMEOUT_S:.0f} s")
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, 5.0):
            raise VeilCamError(f"VeilCam (pid {pid}) did not stop; kill it with `kill -9 {pid}`")
    print("VeilCam stopped")
    return 0


def format_status(s: dict[str, Any]) -> str:
    latency = s.get("latency_ms") or {}
    error = s.get("error")
    rows = [
        ("mode", s["mode"] + (f" ({s['card']})" if s.get("card") else "")),
        ("avatar", s["avatar"] + (f" (loading {s['loading']})" if s.get("loading") else "")),
        ("privacy", "on" if s["privacy"] else "OFF"),
        ("camera", s["camera"]),
        ("face", {True: "tracked", False: "not found", None: "-"}[s.get("face_tracked")]),
        ("output", f"{s.get('fps') or 0:.1f} fps to {s['output']}"),
        ("latency", f"p50 {latency.get('p50')} ms, p95 {latency.get('p95')} ms"),
        ("restarts", str(s["restarts"])),
        ("last error", error["message"] if error else "none"),
        ("pid", f"{s['pid']}, up {s['uptime_s']:.0f} s"),
    ]
    return "\n".join(f"{k:<11}{v}" for k, v in rows)


def cmd_status(args: argparse.Namespace) -> int:
    try:
        status = ControlClient().call("status")
    except DaemonNotRunningError:
        print("VeilCam is not running")
        return EXIT_NOT_RUNNING
    print(json.dumps(status, indent=1) if args.json else format_status(status))
    return 0


def add_daemon_commands(sub: argparse._SubParsersAction, add_run_options: Callable[[argparse.ArgumentParser], None], validate: Callable[[argparse.Namespace], Any]) -> None:
    daemon = sub.add_parser("daemon", help="start, stop or query the background daemon")
    actions = daemon.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="start VeilCam in the background (same options as `veilcam run`)")
    add_run_options(start)
    start.set_defaults(func=lambda a: cmd_start(a, validate))
    stop = actions.add_parser("stop", help="stop the background daemon (card first, then the virtual camera closes)")
    stop.set_defaults(func=cmd_stop)
    status = actions.add_parser("status", help="what the daemon shows and how it is doing")
    status.add_argument("--json", action="store_true", help="the raw status reply")
    status.set_defaults(func=cmd_status)
