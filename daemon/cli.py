"""The `veilcam` command.

Every config field is also a flag (`--output-fps 25`, `--tracker-mirror`),
generated from `config.py`, plus short forms for the common ones (`--source`,
`--out`). Expected failures print one line and exit 1; only bugs show a
traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .control_cli import add_control_commands
from .errors import VeilCamError
from .memory import retain_freed_memory

if TYPE_CHECKING:
    from .config import Config

EXIT_ERROR = 1


# -- flags ----------------------------------------------------------------------
def _int_list(text: str) -> tuple[int, ...]:
    """A comma-separated list of integers ("32,45"); empty gives ()."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    from .config import INT_LIST, SECTIONS, flag_name

    parser.add_argument("--config", type=Path, help="config file (default: $XDG_CONFIG_HOME/veilcam/config.toml)")
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"[{section}] settings")
        for f in fields(cls):
            help_text = f.metadata["help"] + (f" (default: {f.default!r})")
            dest = f"cfg__{section}__{f.name}"
            if f.type == "bool":
                group.add_argument(flag_name(section, f.name), dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            elif f.type == INT_LIST:
                group.add_argument(flag_name(section, f.name), dest=dest, metavar="N,N,...", default=None, help=help_text, type=_int_list)
            else:
                group.add_argument(flag_name(section, f.name), dest=dest, metavar=f.type.upper(), default=None, help=help_text,
                                   type={"int": int, "float": float, "str": str}[f.type], choices=f.metadata["choices"])


def _source_overrides(spec: str) -> dict[str, Any]:
    """--source: 'demo', 'webcam', 'webcam:2', '/dev/video2' or a video file."""
    if spec == "demo":
        return {"kind": "demo"}
    if spec == "webcam":
        return {"kind": "webcam"}
    if spec.startswith("webcam:"):
        return {"kind": "webcam", "device": spec.split(":", 1)[1]}
    if spec.startswith("/dev/video"):
        return {"kind": "webcam", "device": spec}
    return {"kind": "file", "path": spec}


def _out_overrides(spec: str) -> dict[str, Any]:
    """--out: 'virtualcam', 'virtualcam:/dev/video10', 'null' or a video file path."""
    if spec == "null":
        return {"sink": "null"}
    if spec == "virtualcam":
        return {"sink": "virtualcam"}
    if spec.startswith("virtualcam:"):
        return {"sink": "virtualcam", "device": spec.split(":", 1)[1]}
    return {"sink": "file", "path": spec}


def resolve_config(args: argparse.Namespace) -> Config:
    """Defaults < config file < short flags < explicit section flags."""
    from .config import config_from_dict, load_config

    config = load_config(args.config)
    short: dict[str, dict[str, Any]] = {}
    if getattr(args, "source", None):
        short["source"] = _source_overrides(args.source)
    if getattr(args, "out", None):
        short["output"] = _out_overrides(str(args.out))
    if getattr(args, "mode", None):
        short["restyle"] = {"enabled": args.mode == "restyle"}
    config = config_from_dict(short, "command line", config)
    explicit: dict[str, dict[str, Any]] = {}
    for key, value in vars(args).items():
        if key.startswith("cfg__") and value is not None:
            _, section, name = key.split("__")
            explicit.setdefault(section, {})[name] = value
    return config_from_dict(explicit, "command line", config)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="demo | webcam | webcam:N | /dev/videoN | VIDEO_FILE")
    parser.add_argument("--out", help="virtualcam | virtualcam:/dev/videoN | null | OUTPUT.mp4")
    _add_mode_flag(parser)
    _add_config_flags(parser)


# -- commands -------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .service import Daemon

    daemon = Daemon(lambda: resolve_config(args))
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: daemon.stop_event.set())
    announce = (lambda _: None) if args.detached else (lambda m: print(f"{m}. Ctrl-C stops.", file=sys.stderr))
    totals = daemon.run(args.duration, announce)
    if not args.detached:
        print(f"VeilCam stopped: {totals.frames_out} frames out, {totals.frames_in} in, {totals.errors} errors.", file=sys.stderr)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from .offline import render_video
    from .report import format_table, write_report

    config = resolve_config(args)
    report = render_video(config, Path(args.source), Path(args.out), progress=not args.quiet)
    if args.report:
        write_report(report, Path(args.report))
    if not args.quiet:
        print(format_table(report))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_benchmark
    from .report import format_table, write_report
    from .soak import cmd_soak

    if args.out is None:
        args.out = "null"
    config = resolve_config(args)
    if args.soak is not None:
        return cmd_soak(args, config)
    report = run_benchmark(config, args.frames)
    print(format_table(report))
    if args.json:
        write_report(report, Path(args.json))
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from .devices import describe_devices

    print(describe_devices())
    return 0


# -- parser ---------------------------------------------------------------------
def _add_mode_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("avatar", "restyle"),
                        help="avatar (default) or restyle: the camera image redrawn by a diffusion model; "
                        "restyle is not privacy-safe and needs --no-privacy-enabled (sets restyle.enabled)")


def _parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="veilcam", description="A virtual webcam that shows an avatar instead of you.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks)")
    return parser, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


def control_parser() -> tuple[argparse.ArgumentParser, set[str]]:
    """Only the commands for a running daemon, and their names: building it loads none of the pipeline's libraries."""
    parser, sub = _parser()
    add_control_commands(sub)
    return parser, set(sub.choices)


def build_parser() -> argparse.ArgumentParser:
    from veilcam.tray.app import add_tray_commands

    from .autostart import add_autostart_command
    from .avatar_cli import add_avatar_commands
    from .bench_facemodel import add_parser as add_bench_facemodel
    from .doctor import add_doctor_command
    from .eval_fidelity import add_parser as add_eval
    from .lifecycle_cli import add_daemon_commands
    from .live_bench import add_live_bench_command
    from .soak import add_soak_flags

    parser, sub = _parser()

    run = sub.add_parser("run", help="run in the foreground: camera -> avatar -> virtual camera, with the control socket")
    _add_run_options(run)
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--detached", action="store_true", help=argparse.SUPPRESS)  # started by `daemon start`
    run.set_defaults(func=cmd_run)

    render = sub.add_parser("render", help="render a video file through the avatar, as fast as possible")
    render.add_argument("--source", required=True, help="input video file")
    render.add_argument("--out", required=True, help="output video file (.mp4)")
    render.add_argument("--report", help="write the report JSON here")
    render.add_argument("-q", "--quiet", action="store_true", help="no progress bar or table")
    _add_mode_flag(render)
    _add_config_flags(render)
    render.set_defaults(func=cmd_render)

    bench = sub.add_parser("bench", help="measure the real-time pipeline (paced source, constant-rate output)")
    bench.add_argument("--source", default="demo", help="demo | VIDEO_FILE (default: demo)")
    bench.add_argument("--out", help="null (default) | OUTPUT.mp4 (record while measuring)")
    bench.add_argument("--frames", type=int, default=300, help="source frames to measure (default: 300)")
    bench.add_argument("--json", help="write the report JSON here")
    add_soak_flags(bench)
    _add_mode_flag(bench)
    _add_config_flags(bench)
    bench.set_defaults(func=cmd_bench)

    devices = sub.add_parser("devices", help="list cameras and virtual-camera backends")
    devices.set_defaults(func=cmd_devices)
    add_bench_facemodel(sub, _add_config_flags)
    add_eval(sub, _add_config_flags)
    add_avatar_commands(sub)
    add_daemon_commands(sub, _add_run_options, resolve_config)
    add_control_commands(sub)
    add_autostart_command(sub)
    add_doctor_command(sub)
    add_tray_commands(sub)
    add_live_bench_command(sub, _add_config_flags, resolve_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # A command for the running daemon is parsed alone, without NumPy, OpenCV and
    # the rest (~0.2 s): `veilcam panic` bound to a key should act at once.
    parser, control = control_parser()
    if not (argv[:1] and argv[0] in control):
        retain_freed_memory()  # before any thread starts: see daemon/memory.py
        parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except VeilCamError as exc:
        if args.verbose:
            logging.exception("failed")
        print(f"veilcam: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
