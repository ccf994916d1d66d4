"""What the tray shows and does, as a thin client of the control API.

`TrayController` keeps the daemon's last status, turns it into the icon
state and the menu, and turns menu clicks into control requests. It never
imports pystray itself: `menu(pystray)` builds the menu from the module it is
given, so the logic runs (and is tested) with any backend, `dummy` included.
Errors from the daemon (a failed avatar load, a restart after a fault) become
desktop notifications.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from veilcam.daemon.control_client import SWITCH_TIMEOUT_S, ControlClient, ControlError, DaemonNotRunningError
from veilcam.daemon.errors import VeilCamError

from .icons import icon_image

log = logging.getLogger(__name__)

MODES = (("avatar", "Avatar"), ("restyle", "Restyle"), ("placeholder", "Placeholder card"), ("pause", "Camera off (pause)"))
CLI = [sys.executable, "-m", "veilcam.daemon.cli"]
AVATARS_EVERY = 10  # refreshes between re-reading the avatar list


def _do(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
    """A menu action (pystray counts an action's parameters, so no defaults tricks)."""
    return lambda: fn(*args)


def launch_detached(cmd: list[str]) -> None:
    subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def folder_opener() -> list[str]:
    return ["open"] if sys.platform == "darwin" else ["explorer"] if sys.platform == "win32" else ["xdg-open"]


class TrayController:
    def __init__(self, client: ControlClient | None = None, launch: Callable[[list[str]], None] = launch_detached) -> None:
        self.client = client or ControlClient()
        self.launch = launch
        self.status: dict[str, Any] | None = None
        self.avatars: list[dict[str, Any]] = []
        self.notifications: list[str] = []  # everything shown as a notification, newest last
        self.icon: Any = None
        self.stopping = False
        self._seen_error: int | None = None  # errors up to this seq were there before the tray
        self._refreshes = 0
        self._lock = threading.Lock()

    # -- state -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Ask the daemon what it shows; new daemon-side errors become notifications."""
        try:
            status = self.client.call("status")
            # The list now and then, so packs installed while running appear.
            fresh = self.status is None or self._refreshes % AVATARS_EVERY == 0
            avatars = self.client.call("list_avatars")["avatars"] if fresh else self.avatars
        except (DaemonNotRunningError, ControlError):
            status, avatars = None, []
        self._refreshes += 1
        with self._lock:
            self.status, self.avatars = status, avatars
        seq = ((status or {}).get("error") or {}).get("seq", 0)
        if status is not None and self._seen_error is not None and seq > self._seen_error:
            self.notify(status["error"]["message"])
        if status is not None:
            self._seen_error = seq
        self._show()

    @property
    def state(self) -> str:
        s = self.status
        if s is None:
            return "stopped"
        if s["mode"] in ("placeholder", "pause"):
            return "paused"
        if s["mode"] == "avatar" and s.get("face_tracked") is False:
            return "no face"
        return "privacy" if s["privacy"] else "running"

    @property
    def title(self) -> str:
        s = self.status
        if s is None:
            return "VeilCam is not running"
        shown = f"avatar {s['avatar']}" if s["mode"] == "avatar" else s["mode"]
        return f"VeilCam: {shown}, privacy {'on' if s['privacy'] else 'OFF'}" + (", no face" if self.state == "no face" else "")

    # -- the icon ------------------------------------------------------------------------
    def attach(self, icon: Any) -> None:
        self.icon = icon
        self._show()

    def _show(self) -> None:
        icon = self.icon
        if icon is None:
            return
        icon.icon = icon_image(self.state)
        icon.title = self.title
        if getattr(icon, "_running", False):  # backends can only update a menu that is on screen
            icon.update_menu()

    def notify(self, message: str) -> None:
        self.notifications.append(message)
        log.warning("%s", message)
        icon = self.icon
        if icon is not None and getattr(icon, "_running", False) and icon.HAS_NOTIFICATION:
            try:
                icon.notify(message, "VeilCam")
            except Exception as exc:  # no notification daemon: the tooltip and log still say it
                log.info("desktop notification failed: %s", exc)

    def poll(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Keep the icon in step with the daemon until `stop` (run in a thread)."""
        while not stop.wait(interval):
            self.refresh()

    # -- actions -------------------------------------------------------------------------
    def _request(self, cmd: str, timeout: float | None = None, **args: Any) -> dict[str, Any] | None:
        try:
            return self.client.call(cmd, timeout=timeout, **args)
        except VeilCamError as exc:
            self.notify(str(exc))
            return None
        finally:
            self.refresh()

    def switch(self, name: str) -> None:
        self._request("switch_avatar", timeout=SWITCH_TIMEOUT_S, name=name)

    def set_mode(self, mode: str) -> None:
        self._request("set_mode", timeout=SWITCH_TIMEOUT_S, mode=mode)

    def set_style(self, prompt: str) -> None:
        self._request("set_style", prompt=prompt)

    def toggle_privacy(self) -> None:
        if self.status is not None:
            self._request("set_privacy", enabled=not self.status["privacy"])

    def toggle_pause(self) -> None:
        if self.status is not None:
            self.set_mode("avatar" if self.status["mode"] == "pause" else "pause")

    def panic(self) -> None:
        self._request("panic")

    def open_preview(self) -> None:
        self.launch([*CLI, "preview"])

    def open_avatars_folder(self) -> None:
        folder = Path(self.status["avatars_dir"]) if self.status else None
        if folder is None:
            from veilcam.daemon.paths import avatars_dir

            folder = avatars_dir()
        folder.mkdir(parents=True, exist_ok=True)
        if sys.platform == "win32":
            os.startfile(folder)  # type: ignore[attr-defined]
        else:
            self.launch([*folder_opener(), str(folder)])

    def start_daemon(self) -> None:
        self.launch([*CLI, "daemon", "start"])

    def quit(self) -> None:
        """Stop VeilCam (the daemon closes the virtual camera) and the tray."""
        self.stopping = True
        try:
            self.client.call("shutdown")
        except VeilCamError:
            pass
        if self.icon is not None:
            self.icon.stop()

    # -- the menu ------------------------------------------------------------------------
    def menu(self, pystray: ModuleType) -> Any:
        Item, Menu = pystray.MenuItem, pystray.Menu
        running = lambda _item: self.status is not None  # noqa: E731
        restyle = lambda: bool(self.status and self.status["restyle"]["available"])  # noqa: E731

        def avatar_items():
            for a in self.avatars:
                yield Item(
                    a["name"] if not a.get("error") else f"{a['name']} (broken)",
                    _do(self.switch, a["name"]),
                    checked=lambda _it, name=a["name"]: bool(self.status and self.status["mode"] == "avatar" and self.status["avatar"] == name),
                    radio=True,
                    enabled=not a.get("error"),
                )

        def mode_items():
            for mode, label in MODES:
                yield Item(
                    label,
                    _do(self.set_mode, mode),
                    checked=lambda _it, mode=mode: bool(self.status and self.status["mode"] == mode),
                    radio=True,
                    enabled=lambda _it, mode=mode: mode != "restyle" or (restyle() and not self.status["privacy"]),
                )

        def style_items():
            styles = self.status["restyle"]["styles"] if restyle() else {}
            for name, prompt in styles.items():
                yield Item(name, _do(self.set_style, prompt), checked=lambda _it, prompt=prompt: self.status["style"] == prompt, radio=True)

        return Menu(
            Item(lambda _it: self.title, None, enabled=False),
            Menu.SEPARATOR,
            Item("Avatars", Menu(avatar_items), visible=running),
            Item("Mode", Menu(mode_items), visible=running),
            Item("Styles", Menu(style_items), visible=lambda _it: restyle()),
            Item("Privacy mode", _do(self.toggle_privacy), checked=lambda _it: bool(self.status and self.status["privacy"]), visible=running),
            Item("Pause camera", _do(self.toggle_pause), checked=lambda _it: bool(self.status and self.status["mode"] == "pause"), visible=running),
            Item("Panic: hide me now", _do(self.panic), visible=running),
            Menu.SEPARATOR,
            Item("Open preview", _do(self.open_preview), visible=running),
            Item("Open avatars folder", _do(self.open_avatars_folder)),
            Item("Start VeilCam", _do(self.start_daemon), visible=lambda _it: self.status is None),
            Menu.SEPARATOR,
            Item("Quit VeilCam", _do(self.quit)),
        )
