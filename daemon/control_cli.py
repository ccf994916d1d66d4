"""CLI commands that steer a running daemon, each one request on the control socket."""

from __future__ import annotations

import argparse
from typing import Any

from .control_client import SWITCH_TIMEOUT_S, ControlClient
from .selection import MODES


def _call(cmd: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
    return ControlClient().call(cmd, timeout=timeout, **args)


def cmd_switch(args: argparse.Namespace) -> int:
    r = _call("switch_avatar", timeout=SWITCH_TIMEOUT_S, name=args.name)
    print(f"avatar {r['avatar']} ({r['switch_ms']:.0f} ms)")
    return 0


def cmd_mode(args: argparse.Namespace) -> int:
    r = _call("set_mode", timeout=SWITCH_TIMEOUT_S, mode=args.mode)
    print(f"mode {r['mode']}")
    return 0


def cmd_style(args: argparse.Namespace) -> int:
    print(f"style {_call('set_style', prompt=args.prompt)['style']!r}")
    return 0


def cmd_privacy(args: argparse.Namespace) -> int:
    r = _call("set_privacy", enabled=args.state == "on")
    print(f"privacy {'on' if r['privacy'] else 'off'}")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    r = _call("reload_config", timeout=SWITCH_TIMEOUT_S)
    print("config reloaded" + (f"; restart VeilCam to apply {', '.join(r['restart_needed'])}" if r["restart_needed"] else ""))
    return 0


def cmd_panic(args: argparse.Namespace) -> int:
    _call("panic")
    print("placeholder shown; `veilcam mode avatar` brings the avatar back")
    return 0


def cmd_avatars(args: argparse.Namespace) -> int:
    r = _call("list_avatars")
    for a in r["avatars"]:
        mark = "*" if a["name"] == r["current"] else " "
        print(f"{mark} {a['name']:<20}{a['kind']:<10}{a['error'] or a['description']}")
    return 0


def add_control_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("switch", help="show another avatar (running daemon)")
    p.add_argument("name", help="avatar name (`veilcam avatars`)")
    p.set_defaults(func=cmd_switch)
    p = sub.add_parser("mode", help="avatar, restyle, placeholder card, or pause the camera (running daemon)")
    p.add_argument("mode", choices=MODES)
    p.set_defaults(func=cmd_mode)
    p = sub.add_parser("style", help="set the restyle prompt (running daemon)")
    p.add_argument("prompt")
    p.set_defaults(func=cmd_style)
    p = sub.add_parser("privacy", help="privacy mode on or off (running daemon)")
    p.add_argument("state", choices=("on", "off"))
    p.set_defaults(func=cmd_privacy)
    p = sub.add_parser("reload", help="re-read the config file (running daemon)")
    p.set_defaults(func=cmd_reload)
    p = sub.add_parser("panic", help="show the placeholder card at once (running daemon)")
    p.set_defaults(func=cmd_panic)
    p = sub.add_parser("avatars", help="list avatars, * marks the one shown (running daemon)")
    p.set_defaults(func=cmd_avatars)
