"""`veilcam doctor` on this machine and on prepared system trees; `veilcam
autostart` against temporary XDG dirs."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

import pytest

from daemon_rig import running_daemon
from veilcam.daemon import autostart
from veilcam.daemon.cli import main
from veilcam.daemon.doctor import SECURE_BOOT_VAR, Doctor

pytestmark = pytest.mark.usefixtures("model_dir")


def _lines(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    out = capsys.readouterr().out.splitlines()
    return {line[5:].split(":", 1)[0]: line for line in out}


def test_doctor_here_fails_on_the_missing_loopback_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 1
    lines = _lines(capsys)
    assert set(lines) == {"v4l2loopback", "device permissions", "secure boot", "OBS virtual camera", "camera", "GPU/CUDA", "model files", "config"}
    assert lines["v4l2loopback"].startswith("FAIL") and 'modprobe v4l2loopback exclusive_caps=1 card_label="VeilCam"' in lines["v4l2loopback"]
    assert lines["model files"].startswith("OK") and "face_landmarker.task" in lines["model files"]
    assert lines["config"].startswith("OK") and "defaults" in lines["config"]
    assert lines["OBS virtual camera"].startswith("OK") and "not needed on Linux" in lines["OBS virtual camera"]
    assert lines["GPU/CUDA"].startswith("OK")  # no GPU here: the CPU path is fine
    assert lines["camera"].startswith("FAIL") and "veilcam devices" in lines["camera"]  # no webcam here


def test_doctor_names_a_bad_config_and_a_missing_model(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[output]\nfps = "fast"\n')
    monkeypatch.setenv("VEILCAM_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    assert main(["doctor", "--config", str(bad)]) == 1
    lines = _lines(capsys)
    assert lines["config"].startswith("FAIL") and "output.fps" in lines["config"] and str(bad) in lines["config"]
    assert lines["model files"].startswith("FAIL") and "face_landmarker.task" in lines["model files"] and "fix:" in lines["model files"]


def _tree(root: Path, loaded: bool = True, caps: str = "Y", secure_boot: int | None = None, videos: int = 1) -> Path:
    if loaded:
        params = root / "sys/module/v4l2loopback/parameters"
        params.mkdir(parents=True)
        (params / "exclusive_caps").write_text(caps + "\n")
    if secure_boot is not None:
        efivars = root / "sys/firmware/efi/efivars"
        efivars.mkdir(parents=True)
        (efivars / SECURE_BOOT_VAR).write_bytes(bytes([6, 0, 0, 0, secure_boot]))
    (root / "dev").mkdir()
    for i in range(videos):
        (root / f"dev/video{i}").write_bytes(b"")
    return root


def test_doctor_linux_checks_on_prepared_trees(tmp_path: Path) -> None:
    good = Doctor(root=_tree(tmp_path / "good", secure_boot=1), system="Linux")
    assert good.v4l2loopback().ok and "exclusive_caps=1" in good.v4l2loopback().detail
    assert good.secure_boot().ok and "signed" in good.secure_boot().detail
    assert good.device_permissions().ok and "video0" in good.device_permissions().detail

    no_caps = Doctor(root=_tree(tmp_path / "nocaps", caps="N"), system="Linux").v4l2loopback()
    assert not no_caps.ok and "exclusive_caps=1" in no_caps.fix

    blocked = Doctor(root=_tree(tmp_path / "sb", loaded=False, secure_boot=1, videos=0), system="Linux")
    assert not blocked.secure_boot().ok and "mokutil" in blocked.secure_boot().fix
    assert not blocked.device_permissions().ok
    off = Doctor(root=_tree(tmp_path / "off", loaded=False, secure_boot=0), system="Linux").secure_boot()
    assert off.ok and "off" in off.detail


def test_doctor_asks_a_running_daemon_about_the_camera(capsys: pytest.CaptureFixture[str]) -> None:
    with running_daemon():
        main(["doctor"])
    assert _lines(capsys)["camera"].startswith("OK   camera: in use by the running VeilCam (none)")


def test_autostart_enable_and_disable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "odd dir%"))
    assert main(["autostart", "enable"]) == 0
    unit = configparser.ConfigParser(interpolation=None)
    unit.read(autostart.unit_path())
    exec_start = unit["Service"]["ExecStart"]
    assert exec_start.split(" ")[:3] == [sys.executable, "-m", "veilcam.daemon.cli"] and exec_start.endswith(" run")
    assert unit["Service"]["Restart"] == "on-failure" and unit["Install"]["WantedBy"] == "default.target"
    link = autostart.wants_link()
    assert link.is_symlink() and link.resolve() == autostart.unit_path().resolve()
    entry = configparser.ConfigParser(interpolation=None)
    entry.read(autostart.desktop_path())
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application" and desktop["Exec"].endswith(" tray --start-daemon")
    assert main(["autostart", "enable"]) == 0  # idempotent
    assert main(["autostart", "disable"]) == 0
    assert not link.is_symlink() and not autostart.unit_path().exists() and not autostart.desktop_path().exists()
    capsys.readouterr()
    assert main(["autostart", "disable"]) == 0
    assert "was not enabled" in capsys.readouterr().out


def test_exec_lines_quote_what_needs_quoting() -> None:
    assert autostart._quote("/usr/bin/python3") == "/usr/bin/python3"
    assert autostart._quote("/home/a b/py") == '"/home/a b/py"'
    assert autostart._quote('/x/"$`\\') == '"/x/\\"\\$\\`\\\\"'
    assert autostart._quote("/50%/py") == "/50%%/py"
