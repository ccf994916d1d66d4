"""Running the real `veilcam` command in a subprocess, and checking its one-line errors."""

from __future__ import annotations

import subprocess
import sys


def run_veilcam(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "veilcam.daemon.cli", *args], capture_output=True, text=True, env=env, timeout=timeout)


def error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The one `veilcam: error:` line of a failed run (exit 1, no traceback), which must contain every needle."""
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("veilcam: error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
