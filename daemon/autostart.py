"""`veilcam autostart enable|disable`: start VeilCam with the desktop session.

Two entries, because desktops differ. A systemd user unit runs the daemon
(and restarts it if it crashes) where systemd manages the user session; an
XDG autostart entry starts the tray, which starts the daemon itself where
there is no systemd and finds it already running where there is (one daemon
per user). Both run this very Python environment (`python -m veilcam...`), so
they work from a virtualenv as well as from a system install.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .paths import write_atomically

UNIT_NAME = "veilcam.service"
DESKTOP_NAME = "veilcam.desktop"
WANTED_BY = "default.target"
_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def _config_home() -> Path:
    value = os.environ.get("XDG_CONFIG_HOME")
    return Path(value) if value else Path.home() / ".config"


def unit_path() -> Path:
    return _config_home() / "systemd" / "user" / UNIT_NAME


def wants_link() -> Path:
    return _config_home() / "systemd" / "user" / f"{WANTED_BY}.wants" / UNIT_NAME


def desktop_path() -> Path:
    return _config_home() / "autostart" / DESKTOP_NAME


def _quote(arg: str) -> str:
    """Quote one argument for systemd's ExecStart= and the desktop spec's Exec= (same rules for what we emit)."""
    arg = arg.replace("%", "%%")
    if _SAFE.match(arg):
        return arg
    return '"' + re.sub(r'(["\\`$])', r"\\\1", arg) + '"'


def command_line(*args: str) -> str:
    return " ".join(_quote(a) for a in [sys.executable, "-m", "veilcam.daemon.cli", *args])


def unit_text() -> str:
    return f"""[Unit]
Description=VeilCam virtual camera (shows an avatar instead of you)
After=default.target

[Service]
Type=simple
ExecStart={command_line("run")}
Restart=on-failure
RestartSec=3

[Install]
WantedBy={WANTED_BY}
"""


def desktop_text() -> str:
    return f"""[Desktop Entry]
Type=Application
Name=VeilCam
Comment=Virtual camera that shows an avatar instead of you
Exec={command_line("tray", "--start-daemon")}
Icon=camera-web
Terminal=false
Categories=AudioVideo;Video;
X-GNOME-Autostart-enabled=true
"""


def _write(path: Path, text: str) -> None:
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def _reload_systemd() -> None:
    """Tell a running systemd user manager about the change; nothing to do without one."""
    if shutil.which("systemctl") and os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        subprocess.run(["systemctl", "--user", "daemon-reload"], capture_output=True, timeout=10, check=False)


def enable() -> list[Path]:
    """Write the unit, enable it (the link `systemctl --user enable` would make) and the autostart entry."""
    _write(unit_path(), unit_text())
    link = wants_link()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(Path("..") / UNIT_NAME)
    _write(desktop_path(), desktop_text())
    _reload_systemd()
    return [unit_path(), link, desktop_path()]


def disable() -> list[Path]:
    removed = []
    for path in (wants_link(), unit_path(), desktop_path()):
        if path.is_symlink() or path.exists():
            path.unlink()
            removed.append(path)
    _reload_systemd()
    return removed


def cmd_autostart(args: argparse.Namespace) -> int:
    if args.action == "enable":
        for path in enable():
            print(f"wrote {path}")
        print("VeilCam starts with your next login (systemd: `systemctl --user start veilcam` starts it now)")
    else:
        removed = disable()
        for path in removed:
            print(f"removed {path}")
        if not removed:
            print("autostart was not enabled")
    return 0


def add_autostart_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("autostart", help="start VeilCam (daemon and tray) when you log in, or stop doing so")
    p.add_argument("action", choices=("enable", "disable"))
    p.set_defaults(func=cmd_autostart)
