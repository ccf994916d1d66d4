"""The daemon as a user runs it: real processes, the real CLI, the socket."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cli_run import error_line
from conftest import read_frames
from veilcam.daemon import paths
from veilcam.daemon.control_client import ControlClient, ControlError, DaemonNotRunningError
from veilcam.daemon.instance import running_pid
from veilcam.daemon.lifecycle_cli import _alive
from veilcam.daemon.placeholder import placeholder_card

pytestmark = pytest.mark.usefixtures("model_dir")
SMALL = ["--output-width", "320", "--output-height", "180"]


def _veilcam(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "veilcam.daemon.cli", *args], capture_output=True, text=True, timeout=timeout)


def _ends_with_the_card(video: Path, message: str) -> None:
    last = read_frames(video)[-1].astype(int)
    assert np.abs(last - placeholder_card(320, 180, message).astype(int)).mean() < 4


def test_daemon_start_control_and_stop(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    started = _veilcam("daemon", "start", "--source", "demo", "--out", str(out), *SMALL)
    assert started.returncode == 0, started.stderr + started.stdout
    pid = int(re.search(r"pid (\d+)", started.stdout)[1])
    assert running_pid() == pid
    try:
        assert "already running" in _veilcam("daemon", "start", "--source", "demo").stdout
        assert "already running" in error_line(_veilcam("run", "--source", "demo", "--out", "null"))
        assert _veilcam("switch", "midnight").stdout.startswith("avatar midnight")
        assert "* midnight" in _veilcam("avatars").stdout
        assert _veilcam("panic").returncode == 0
        assert ControlClient().call("status")["mode"] == "placeholder"
        assert _veilcam("mode", "avatar").stdout.strip() == "mode avatar"
        assert "privacy mode is on" in error_line(_veilcam("mode", "restyle"))
        assert "no avatar called 'nope'" in error_line(_veilcam("switch", "nope"))
        status = _veilcam("daemon", "status")
        assert status.returncode == 0 and re.search(r"^avatar\s+midnight$", status.stdout, re.M), status.stdout
        assert re.search(r"^privacy\s+on$", status.stdout, re.M)
    finally:
        stopped = _veilcam("daemon", "stop")
    assert stopped.stdout.strip() == "VeilCam stopped", stopped.stderr
    assert running_pid() is None
    assert not _alive(pid), "stop returns once the process is gone"
    assert _veilcam("daemon", "status").returncode == 3
    log = (paths.state_dir() / "veilcam.log").read_text()
    assert "switched to avatar 'midnight'" in log and "stopped:" in log
    _ends_with_the_card(out, "stopped")


def test_daemon_start_reports_why_it_could_not_start() -> None:
    failed = _veilcam("daemon", "start", "--source", "/dev/video99", "--out", "null")
    assert "/dev/video99" in error_line(failed) and "did not start" in error_line(failed)
    assert running_pid() is None


def test_sigterm_shows_the_card_then_closes_the_camera(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "veilcam.daemon.cli", "run", "--source", "demo", "--out", str(out), *SMALL], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert time.monotonic() < deadline and proc.poll() is None, "the daemon did not come up"
            try:
                if ControlClient().call("status")["fps"] is not None:
                    break
            except (DaemonNotRunningError, ControlError):
                pass
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "VeilCam stopped:" in stderr and "Traceback" not in stderr
    assert running_pid() is None and not (paths.runtime_dir() / "control.sock").exists()
    _ends_with_the_card(out, "stopped")


def test_the_log_rotates(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from veilcam.daemon import logs

    monkeypatch.setattr(logs, "MAX_BYTES", 2000)
    handler = logs.attach_log_file()
    try:
        for i in range(200):
            logging.getLogger("veilcam.test").warning("line %d of a long-running daemon's log", i)
    finally:
        logs.detach_log_file(handler)
    files = sorted(p.name for p in logs.log_file().parent.iterdir())
    assert files == ["veilcam.log", "veilcam.log.1", "veilcam.log.2", "veilcam.log.3"]
    assert all(p.stat().st_size <= 2100 for p in logs.log_file().parent.iterdir())
    assert "line 199" in logs.log_file().read_text()
