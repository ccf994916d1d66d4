"""The tray: its menu logic with pystray's `dummy` backend against a real
running daemon, and one real GTK/AppIndicator tray under Xvfb."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daemon_rig import running_daemon
from veilcam.daemon.control_client import ControlClient
from veilcam.tray.controller import CLI, TrayController, folder_opener
from veilcam.tray.icons import STATES, icon_image

pytestmark = pytest.mark.usefixtures("model_dir")


@pytest.fixture
def pystray(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PYSTRAY_BACKEND", "dummy")
    for name in [m for m in sys.modules if m == "pystray" or m.startswith("pystray.")]:
        monkeypatch.delitem(sys.modules, name)  # pystray picks its backend at import
    import pystray

    return pystray


def _item(menu, text: str):
    (item,) = [i for i in menu.items if i.text == text]
    return item


def test_menu_drives_a_running_daemon(pystray) -> None:
    launched: list[list[str]] = []
    with running_daemon() as daemon:
        tray = TrayController(ControlClient(), launch=launched.append)
        icon = pystray.Icon("veilcam", icon_image("stopped"), "VeilCam", menu=tray.menu(pystray))
        tray.attach(icon)
        tray.refresh()
        assert tray.state == "privacy" and icon.title == "VeilCam: avatar porcelain, privacy on"
        assert icon.icon is icon_image("privacy")
        menu = icon.menu
        visible = [i.text for i in menu if i.visible]
        assert visible[0] == "VeilCam: avatar porcelain, privacy on"
        assert {"Avatars", "Mode", "Privacy mode", "Pause camera", "Panic: hide me now", "Open preview", "Open avatars folder", "Quit VeilCam"} <= set(visible)
        assert "Styles" in visible and "Start VeilCam" not in visible  # the restyle extra is installed; the daemon runs
        styles = _item(menu, "Styles").submenu
        presets = tray.status["restyle"]["styles"]
        assert [i.text for i in styles.items] == list(presets) and "anime" in presets
        _item(styles, "anime")(icon)
        assert daemon.live.selection.style == presets["anime"] and _item(styles, "anime").checked

        avatars = _item(menu, "Avatars").submenu
        assert [i.text for i in avatars.items][:2] == ["porcelain", "midnight"]
        assert _item(avatars, "porcelain").checked and _item(avatars, "porcelain").radio
        _item(avatars, "midnight")(icon)
        assert daemon.live.selection.avatar == "midnight"
        assert _item(avatars, "midnight").checked and not _item(avatars, "porcelain").checked

        modes = _item(menu, "Mode").submenu
        assert not _item(modes, "Restyle").enabled  # privacy on
        _item(modes, "Placeholder card")(icon)
        assert daemon.live.selection.mode == "placeholder" and tray.state == "paused" and icon.icon is icon_image("paused")
        _item(modes, "Avatar")(icon)
        assert daemon.live.selection.mode == "avatar"

        privacy = _item(menu, "Privacy mode")
        assert privacy.checked
        privacy(icon)
        assert daemon.live.privacy is False and not privacy.checked and tray.state == "running"
        assert _item(modes, "Restyle").enabled, "privacy off: restyle is offered"
        _item(modes, "Restyle")(icon)  # the demo has no camera image: refused politely, the avatar stays
        assert "restyle needs a camera" in tray.notifications[-1] and daemon.live.selection.mode == "avatar"
        privacy(icon)
        assert daemon.live.privacy is True

        pause = _item(menu, "Pause camera")
        pause(icon)
        assert daemon.live.selection.mode == "pause" and pause.checked
        pause(icon)
        assert daemon.live.selection.mode == "avatar"

        _item(menu, "Panic: hide me now")(icon)
        assert daemon.live.selection.mode == "placeholder" and daemon.live.card == "be right back"

        tray.switch("nope")
        assert "no avatar called 'nope'" in tray.notifications[-1]

        _item(menu, "Open preview")(icon)
        _item(menu, "Open avatars folder")(icon)
        assert launched[0] == [*CLI, "preview"]
        assert launched[1][:-1] == folder_opener() and Path(launched[1][-1]).is_dir()

        _item(menu, "Quit VeilCam")(icon)
        assert daemon.stop_event.wait(5), "Quit stops the daemon"
    tray.refresh()
    assert tray.state == "stopped" and icon.title == "VeilCam is not running"
    assert "Start VeilCam" in [i.text for i in icon.menu if i.visible]
    _item(icon.menu, "Start VeilCam")(icon)
    assert launched[-1] == [*CLI, "daemon", "start"]


def test_daemon_side_errors_become_notifications(pystray) -> None:
    with running_daemon() as daemon:
        tray = TrayController(ControlClient())
        tray.refresh()
        daemon.live._note("avatar 'midnight' stopped responding; restarting it")
        tray.refresh()
        tray.refresh()
    assert tray.notifications == ["avatar 'midnight' stopped responding; restarting it"]


def test_every_state_has_its_own_icon() -> None:
    images = [np.asarray(icon_image(s)) for s in STATES]
    assert all(img.shape == (64, 64, 4) for img in images)
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i].astype(int) - images[j].astype(int)).sum() > 0, (STATES[i], STATES[j])


@pytest.mark.parametrize("backend", ["gtk", "appindicator"])
def test_real_tray_under_xvfb(backend: str) -> None:
    """A real tray on a real (virtual) X display with a session bus and no
    notification daemon: it shows, polls, and stops cleanly."""
    assert shutil.which("xvfb-run") and shutil.which("dbus-run-session"), "install xvfb and dbus (see .ci/run)"
    env = dict(os.environ, PYSTRAY_BACKEND=backend)
    with running_daemon():
        proc = subprocess.run(
            ["xvfb-run", "-a", "dbus-run-session", "--", sys.executable, "-m", "veilcam.daemon.cli", "-v", "tray", "--quit-after", "2"],
            capture_output=True, text=True, env=env, timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    assert f"tray shown (pystray._{backend})" in proc.stderr and "tray stopped" in proc.stderr
    assert "Traceback" not in proc.stderr
