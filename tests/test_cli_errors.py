"""Bad input gives one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli_run import error_line, run_veilcam
from conftest import MODELS_DIR, video_path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_CONFIG_HOME=str(tmp_path / "config"), VEILCAM_MODEL_DIR=str(MODELS_DIR))
    return e


def test_missing_model_file(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    env["VEILCAM_MODEL_DIR"] = str(empty)
    proc = run_veilcam(["render", "--source", str(video_path("p4")), "--out", str(tmp_path / "o.mp4"), "--no-models-download"], env)
    error_line(proc, "face_landmarker.task", "https://storage.googleapis.com/")


def test_corrupt_model_file(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "models"
    bad.mkdir()
    (bad / "face_landmarker.task").write_bytes(b"not a model" * 100)
    env["VEILCAM_MODEL_DIR"] = str(bad)
    proc = run_veilcam(["render", "--source", str(video_path("p4")), "--out", str(tmp_path / "o.mp4")], env)
    error_line(proc, str(bad / "face_landmarker.task"))


def test_unreadable_video(env: dict[str, str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    proc = run_veilcam(["render", "--source", str(junk), "--out", str(tmp_path / "o.mp4")], env)
    error_line(proc, str(junk))
    proc = run_veilcam(["render", "--source", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o.mp4")], env)
    error_line(proc, "nope.mp4", "not found")


def test_camera_that_does_not_exist(env: dict[str, str]) -> None:
    proc = run_veilcam(["run", "--source", "/dev/video99", "--out", "null", "--duration", "1"], env)
    error_line(proc, "/dev/video99")


def test_bad_config_values(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[output]\nfps = "fast"\n')
    error_line(run_veilcam(["run", "--config", str(config), "--source", "demo", "--out", "null"], env), str(config), "output.fps")
    config.write_text("[output]\nfsp = 30\n")
    error_line(run_veilcam(["run", "--config", str(config), "--source", "demo", "--out", "null"], env), "output.fsp")
    config.write_text("[output\n")
    error_line(run_veilcam(["run", "--config", str(config), "--source", "demo", "--out", "null"], env), str(config), "TOML")
    error_line(run_veilcam(["run", "--source", "demo", "--out", "null", "--output-fps", "0"], env), "output.fps", "between")
    error_line(run_veilcam(["run", "--source", "demo", "--out", "null", "--avatar-name", "nope"], env), "avatar.name")


def test_config_file_in_xdg_dir_is_used(env: dict[str, str], tmp_path: Path) -> None:
    cfg_dir = Path(env["XDG_CONFIG_HOME"]) / "veilcam"
    cfg_dir.mkdir(parents=True)
    (cfg_dir / "config.toml").write_text('[source]\nkind = "demo"\n[output]\nsink = "file"\nwidth = 320\nheight = 180\npath = "%s"\n' % (tmp_path / "x.mp4"))
    proc = run_veilcam(["run", "--duration", "1"], env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.mp4").stat().st_size > 0


def test_help_everywhere(env: dict[str, str]) -> None:
    for cmd in ([], ["run"], ["render"], ["bench"], ["devices"]):
        proc = run_veilcam([*cmd, "--help"], env)
        assert proc.returncode == 0 and "usage: veilcam" in proc.stdout


def test_a_daemon_command_loads_none_of_the_pipelines_libraries(env: dict[str, str], tmp_path: Path) -> None:
    """`veilcam panic` bound to a key must act at once: no NumPy, OpenCV, MediaPipe or torch on its way."""
    import subprocess
    import sys

    env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")  # nothing listens there
    code = ("import sys; from veilcam.daemon.cli import main; rc = main(['panic']); "
            "heavy = sorted({'numpy', 'cv2', 'mediapipe', 'torch', 'moderngl'} & set(sys.modules)); print(rc, heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.strip() == "1 []", proc.stdout + proc.stderr
    assert "is not running" in proc.stderr
