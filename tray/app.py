"""`veilcam tray`: the tray icon, and `veilcam preview`.

pystray is imported only here, when the tray starts: it picks its backend at
import time and raises without a desktop session, which must not break any
other command.
"""

from __future__ import annotations

import argparse
import logging
import threading

from veilcam.daemon.errors import VeilCamError

log = logging.getLogger(__name__)


def import_pystray():
    try:
        import pystray
    except Exception as exc:  # ImportError, or Xlib's display errors
        raise VeilCamError(f"the tray needs a desktop session and pystray ({exc}); the `veilcam` commands do the same without it") from exc
    return pystray


def run_tray(start_daemon: bool = False, quit_after: float | None = None) -> int:
    from .controller import TrayController
    from .icons import icon_image

    pystray = import_pystray()
    controller = TrayController()
    controller.refresh()
    if start_daemon and controller.status is None:
        controller.start_daemon()
    icon = pystray.Icon("veilcam", icon_image(controller.state), controller.title, menu=controller.menu(pystray))
    controller.attach(icon)
    stop = threading.Event()

    def close_tray_only() -> None:
        controller.stopping = True
        icon.stop()

    def setup(icon) -> None:
        icon.visible = True
        log.info("tray shown (%s)", type(icon).__module__)
        threading.Thread(target=controller.poll, args=(stop,), name="veilcam-tray-poll", daemon=True).start()
        if quit_after is not None:
            threading.Timer(quit_after, close_tray_only).start()

    try:
        icon.run(setup)
    except Exception as exc:
        # Stopping closes the last desktop notification; without a notification
        # daemon (a bare X session) that call fails, after the tray is gone.
        if not controller.stopping:
            raise
        log.info("tray closed; closing its notification failed: %s", exc)
    finally:
        stop.set()
    log.info("tray stopped")
    return 0


def cmd_tray(args: argparse.Namespace) -> int:
    return run_tray(args.start_daemon, args.quit_after)


def cmd_preview(args: argparse.Namespace) -> int:
    from .preview import show_preview

    return show_preview()


def add_tray_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tray", help="the tray icon: switch avatars and modes, privacy, pause, panic")
    p.add_argument("--start-daemon", action="store_true", help="start the daemon if it is not running")
    p.add_argument("--quit-after", type=float, help=argparse.SUPPRESS)  # smoke tests
    p.set_defaults(func=cmd_tray)
    p = sub.add_parser("preview", help="show what the virtual camera shows, in a window")
    p.set_defaults(func=cmd_preview)
