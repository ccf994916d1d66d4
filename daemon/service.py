"""The VeilCam daemon: the live pipeline, its control socket, and a clean life cycle.

`veilcam run` runs it in the foreground, `veilcam daemon start` in the
background; either way there is one per user (`InstanceLock`), it answers
on the control socket (schema in `control_protocol`), and SIGTERM/SIGINT, a
`shutdown` request, `--duration` or the end of a video file all stop it the
same way: the card is shown for a moment, then the virtual camera closes.

Nothing a client sends can take it down: a bad request is an error reply, a
broken avatar or config keeps what is running, and the figures in `status`
come from a rolling window, so memory stays flat however long it runs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from dataclasses import fields
from typing import Any, Callable

from . import paths
from .avatars import find_avatar, list_avatars
from .config import Config
from .control_client import socket_path
from .control_protocol import ProtocolError, Request
from .control_server import ControlServer
from .errors import PrivacyError, VeilCamError
from .factory import open_sink, open_source
from .instance import InstanceLock
from .live import LivePipeline
from .logs import attach_log_file, detach_log_file
from .report import RunStats, percentiles
from .restyle import check_restyle_allowed
from .restyle_hook import RestyleUnavailableError, restyle_support
from .selection import MODES, Selection

log = logging.getLogger(__name__)

STATS_WINDOW_S = 5.0
LIVE_SECTIONS_FIXED = ("source", "output")  # set when the camera and virtual camera open: a restart applies them


@dataclasses.dataclass
class Totals:
    frames_out: int = 0
    frames_in: int = 0
    errors: int = 0

    def add(self, stats: RunStats) -> None:
        self.frames_out += stats.frames_out
        self.frames_in += stats.frames_in
        self.errors += stats.errors


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


class Daemon:
    """`load_config` is called at start and on every `reload_config` request."""

    def __init__(
        self,
        load_config: Callable[[], Config],
        stop: threading.Event | None = None,
        window_s: float = STATS_WINDOW_S,
        on_window: Callable[[RunStats, float], None] | None = None,
    ) -> None:
        """`on_window(stats, seconds)` sees each finished stats window (the soak benchmark reads them)."""
        self.load_config = load_config
        self.stop_event = stop or threading.Event()
        self.window_s = window_s
        self.on_window = on_window
        self.live: LivePipeline | None = None
        self.totals = Totals()
        self.ready = threading.Event()  # the control socket answers
        self._started = time.time()
        self.window: tuple[RunStats, float] | None = None  # the last complete stats window and its length (read-only)
        self.window_start = time.perf_counter()

    def run(self, duration: float | None = None, announce: Callable[[str], None] = lambda _: None) -> Totals:
        config = self.load_config()
        find_avatar(config.avatar.name)  # a typo fails here, as one line, before anything opens
        if config.restyle.enabled:  # --mode restyle: refused in privacy mode, before anything opens
            check_restyle_allowed(config)
        with InstanceLock():
            handler = attach_log_file()
            try:
                self._run(config, duration, announce)
            finally:
                detach_log_file(handler)
        return self.totals

    def _run(self, config: Config, duration: float | None, announce: Callable[[str], None]) -> None:
        restyle_support(config)  # its heavy imports happen now, not while the output runs
        with open_source(config) as source, open_sink(config) as sink:
            reopen = (lambda: open_source(config)) if config.source.kind == "webcam" else None
            mode = "restyle" if config.restyle.enabled else "avatar"
            live = LivePipeline(source, sink, config, Selection(mode, config.avatar.name), reopen_source=reopen)
            live.start()
            deadline = None if duration is None else time.perf_counter() + duration  # the output's running time
            live.preload([Selection("avatar", a.name) for a in list_avatars() if not a.error and a.name != config.avatar.name])
            self.live = live
            self.window_start = time.perf_counter()
            server = ControlServer(socket_path(), self.handle)
            try:
                server.start()
                self.ready.set()
                message = f"VeilCam: {config.source.kind} -> {sink.description}, control socket {server.path}"
                log.info("%s", message)
                announce(message)
                self._serve(live, deadline)
            finally:
                server.close()
                live.stop()
                self.totals.add(live.stats)
                log.info("stopped: %d frames out, %d in, %d errors", self.totals.frames_out, self.totals.frames_in, self.totals.errors)

    def _serve(self, live: LivePipeline, deadline: float | None) -> None:
        while not self.stop_event.is_set():
            if live.wait(timeout=0.2):
                log.info("the source ended")
                return
            now = time.perf_counter()
            if deadline is not None and now >= deadline:
                return
            if now - self.window_start >= self.window_s:
                self._roll_stats(live, now)

    def _roll_stats(self, live: LivePipeline, now: float) -> None:
        finished = live.stats
        live.reset_stats()
        self.window = (finished, now - self.window_start)
        self.window_start = now
        self.totals.add(finished)
        if self.on_window is not None:
            self.on_window(finished, self.window[1])

    # -- control requests ------------------------------------------------------------------
    def handle(self, request: Request) -> dict[str, Any]:
        """Carry out one request; any `VeilCamError` becomes an error reply with its code."""
        if self.live is None:
            raise ProtocolError("failed", "VeilCam is still starting")
        try:
            return getattr(self, f"_cmd_{request.cmd}")(self.live, **request.args)
        except PrivacyError as exc:
            raise ProtocolError("privacy", str(exc)) from exc
        except RestyleUnavailableError as exc:
            raise ProtocolError("unavailable", str(exc)) from exc
        except VeilCamError as exc:
            raise ProtocolError("failed", str(exc)) from exc

    def _cmd_status(self, live: LivePipeline) -> dict[str, Any]:
        current = live.stats
        window, seconds = self.window or (current, time.perf_counter() - self.window_start)
        latency = percentiles(window.latency_ms)
        records = current.frames[-1:] or window.frames[-1:]
        support = restyle_support(live.config)
        return {
            **live.snapshot(),
            "face_tracked": records[0].face if records and live.selection.mode == "avatar" else None,
            "fps": round(window.frames_out / seconds, 2) if seconds > 0 else None,
            "latency_ms": {"p50": _number(latency["p50"]), "p95": _number(latency["p95"])},
            "restyle": {"available": support.available, "reason": support.reason, "styles": support.styles},
            "avatars_dir": str(paths.avatars_dir()),
            "output": live.sink.description,
            "output_device": getattr(live.sink, "device", None),
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self._started, 1),
        }

    def _cmd_list_avatars(self, live: LivePipeline) -> dict[str, Any]:
        avatars = [
            {"name": a.name, "kind": a.kind, "description": a.description, "error": a.error} for a in list_avatars()
        ]
        return {"avatars": avatars, "current": live.selection.avatar}

    def _cmd_switch_avatar(self, live: LivePipeline, name: str) -> dict[str, Any]:
        find_avatar(name)
        seconds = live.select(dataclasses.replace(live.selection, mode="avatar", avatar=name))
        log.info("switched to avatar %r in %.0f ms", name, seconds * 1000)
        return {"avatar": name, "switch_ms": round(seconds * 1000, 1)}

    def _cmd_set_mode(self, live: LivePipeline, mode: str) -> dict[str, Any]:
        if mode not in MODES:
            raise ProtocolError("bad_request", f"set_mode: mode must be one of {', '.join(MODES)}")
        seconds = live.select(dataclasses.replace(live.selection, mode=mode))
        log.info("mode %s", mode)
        return {"mode": mode, "switch_ms": round(seconds * 1000, 1)}

    def _cmd_set_style(self, live: LivePipeline, prompt: str) -> dict[str, Any]:
        live.set_style(prompt)
        return {"style": prompt}

    def _cmd_set_privacy(self, live: LivePipeline, enabled: bool) -> dict[str, Any]:
        live.set_privacy(enabled)
        log.info("privacy %s", "on" if enabled else "off")
        return {"privacy": enabled}

    def _cmd_reload_config(self, live: LivePipeline) -> dict[str, Any]:
        new = self.load_config()
        find_avatar(new.avatar.name)
        old = live.config
        restart_needed = [
            f"{section}.{f.name}"
            for section in LIVE_SECTIONS_FIXED
            for f in fields(getattr(old, section))
            if getattr(getattr(old, section), f.name) != getattr(getattr(new, section), f.name)
        ]
        live.reload(dataclasses.replace(new, **{s: getattr(old, s) for s in LIVE_SECTIONS_FIXED}))
        log.info("config reloaded%s", f"; restart to apply {', '.join(restart_needed)}" if restart_needed else "")
        return {"restart_needed": restart_needed}

    def _cmd_panic(self, live: LivePipeline) -> dict[str, Any]:
        live.select(dataclasses.replace(live.selection, mode="placeholder"))
        log.warning("panic: placeholder shown")
        return {"mode": "placeholder"}

    def _cmd_shutdown(self, live: LivePipeline) -> dict[str, Any]:
        log.info("shutdown requested")
        self.stop_event.set()
        return {}
