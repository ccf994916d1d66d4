"""`veilcam bench-live`: how fast switching, panic and the watchdog are, and
what they do to the output's rhythm, measured at the sink (the long run for
memory and gaps is `veilcam bench --soak`, in `soak.py`).

The live pipeline runs as in the daemon (paced source, constant-rate output).
Every frame a runner produces is tagged with its avatar; a sink wrapper
records when each frame (or card) is handed over, so "switch latency" is from
the request to the first frame of the new avatar actually sent, and "watchdog
reaction" from the moment a renderer hangs to the first card sent.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import Config
from .errors import VeilCamError
from .factory import open_sink, open_source
from .faults import FaultPlan, faulty_builder
from .live import LivePipeline, ProcessorBuilder, default_builder
from .pipeline import Processor
from .report import RunStats, summary_ms, write_report
from .selection import Selection
from .sinks.base import Sink

log = logging.getLogger(__name__)

WARMUP_S = 5.0  # past start-up: the daemon has settled (PRELOAD_DELAY_S) and stocked its spare tracker
SETTLE_S = 1.0
GAP_WINDOW_AFTER_S = 0.5  # a switch's window runs from the request to this long after its first new frame
TIMEOUT_S = 30.0
SWITCH_TARGET_MS = 200  # a switch should change the output within this (issue 5); the table counts those over


class TracingSink(Sink):
    """Passes frames on and records (time sent, what it was: an avatar name or "card")."""

    def __init__(self, inner: Sink, origin: "OrderedDict[int, tuple[str, Any]]") -> None:
        super().__init__(inner.width, inner.height, inner.fps)
        self.inner = inner
        self.origin = origin
        self.sends: list[tuple[float, str]] = []

    def send(self, rgb: np.ndarray) -> None:
        tag = self.origin.get(id(rgb))
        self.sends.append((time.perf_counter(), tag[0] if tag is not None and tag[1] is rgb else "card"))
        self.inner.send(rgb)

    def close(self) -> None:
        self.inner.close()

    def first(self, what: Callable[[str], bool], after: float, timeout: float = TIMEOUT_S) -> float:
        """Time of the first send after `after` whose tag satisfies `what`; waits for it."""
        deadline = time.perf_counter() + timeout
        seen = 0
        while time.perf_counter() < deadline:
            sends = self.sends
            for t, tag in sends[seen:]:
                if t > after and what(tag):
                    return t
            seen = max(0, len(sends) - 1)
            time.sleep(0.005)
        raise TimeoutError("the expected frame never reached the sink")


def tagging(base: ProcessorBuilder, origin: "OrderedDict[int, tuple[str, Any]]") -> ProcessorBuilder:
    """`base`, with each produced frame remembered as coming from its avatar (the array is kept, so ids stay unique)."""

    def build(selection: Selection, config: Config, stats: RunStats) -> Processor:
        processor = base(selection, config, stats)
        process = processor.process

        def traced(item, *tracked):  # type: ignore[no-untyped-def]
            frame = process(item, *tracked)
            origin[id(frame.rgb)] = (selection.avatar, frame.rgb)
            while len(origin) > 64:
                origin.popitem(last=False)
            return frame

        processor.process = traced  # type: ignore[method-assign]
        return processor

    return build


def _summary(values_s: list[float]) -> dict[str, Any]:
    return summary_ms(np.asarray(values_s, np.float64) * 1000, 1, over=(50, 100, SWITCH_TARGET_MS))


def run_live_benchmark(config: Config, switches: int, hangs: int) -> dict[str, Any]:
    from .avatars import builtin_avatars

    names = [a.name for a in builtin_avatars()]
    config = dataclasses.replace(config, source=dataclasses.replace(config.source, realtime=True, loop=True))
    cold_config = dataclasses.replace(config, daemon=dataclasses.replace(config.daemon, warm_avatars=0))
    plan = FaultPlan("hang", at_frame=10**9, hang_s=2.0, avatars=(names[0],))
    origin: OrderedDict[int, tuple[str, Any]] = OrderedDict()
    windows: dict[str, list[tuple[float, float]]] = {"cold": [], "warm": [], "mode": [], "hang": []}
    results: dict[str, list[float]] = {"cold": [], "cold_build": [], "warm": [], "to_card": [], "to_avatar": [], "watchdog": [], "restart": []}
    failures: dict[str, int] = {}
    cold_by_avatar: dict[str, list[float]] = {}
    cold_in_order: list[dict[str, Any]] = []  # which switch was slow: a look's first build in the process, or a later one

    def trial(phase: str, measure: Callable[[], None]) -> None:
        """One measurement; a timeout or refusal is counted, not fatal (an overloaded machine)."""
        try:
            measure()
        except (TimeoutError, VeilCamError) as exc:
            failures[phase] = failures.get(phase, 0) + 1
            log.warning("%s: %s", phase, exc)
        time.sleep(SETTLE_S)

    with open_source(config) as source, open_sink(config) as inner:
        sink = TracingSink(inner, origin)
        live = LivePipeline(source, sink, cold_config, Selection("avatar", names[0]), tagging(faulty_builder(default_builder(source), plan), origin))
        live.start()
        pair = (names[0], names[1])

        def switch(kind: str, target: str) -> None:
            t0 = time.perf_counter()
            returned = live.select(Selection("avatar", target))
            t1 = sink.first(lambda tag: tag == target, t0)
            results[kind].append(t1 - t0)
            if kind == "cold":
                results["cold_build"].append(returned)
                cold_by_avatar.setdefault(target, []).append(t1 - t0)
                cold_in_order.append({"avatar": target, "ms": round((t1 - t0) * 1000, 1)})
            windows[kind].append((t0, t1 + GAP_WINDOW_AFTER_S))

        def panic_and_back() -> None:
            t0 = time.perf_counter()
            live.select(Selection("placeholder", pair[0]))
            t1 = sink.first(lambda tag: tag == "card", t0)
            time.sleep(0.3)
            t2 = time.perf_counter()
            live.select(Selection("avatar", pair[0]))
            t3 = sink.first(lambda tag: tag == pair[0], t2)
            results["to_card"].append(t1 - t0)
            results["to_avatar"].append(t3 - t2)
            windows["mode"].append((t0, t3 + GAP_WINDOW_AFTER_S))

        def hang() -> None:
            """The renderer sleeps 2 s inside render(); the watchdog shows the card and rebuilds."""
            fired = len(plan.fired_at)
            plan.rearm(plan.frames + 5)
            deadline = time.perf_counter() + TIMEOUT_S
            while len(plan.fired_at) == fired:
                if time.perf_counter() > deadline:
                    raise TimeoutError("the injected hang never fired")
                time.sleep(0.002)
            hang_t = plan.fired_at[-1]
            t_card = sink.first(lambda tag: tag == "card", hang_t)
            t_back = sink.first(lambda tag: tag == pair[0], t_card)
            results["watchdog"].append(t_card - hang_t)
            results["restart"].append(t_back - hang_t)
            windows["hang"].append((hang_t, t_back + GAP_WINDOW_AFTER_S))
            time.sleep(plan.hang_s)

        try:
            time.sleep(WARMUP_S)
            t_start = time.perf_counter()
            for i in range(switches):  # cold: every switch builds (nothing kept warm)
                trial("cold", lambda: switch("cold", names[(i + 1) % len(names)]))
            live.config = config  # warm: back and forth between two avatars, the other one parked
            trial("warm", lambda: live.select(Selection("avatar", pair[0])))
            trial("warm", lambda: live.select(Selection("avatar", pair[1])))
            for i in range(switches):
                trial("warm", lambda: switch("warm", pair[i % 2]))
            for _ in range(max(3, switches // 2)):
                trial("mode", panic_and_back)
            trial("hang", lambda: live.select(Selection("avatar", pair[0])))
            for _ in range(hangs):
                trial("hang", hang)
            t_end = time.perf_counter()
        finally:
            live.stop()
    sends = np.array([t for t, _ in sink.sends])
    starts, gaps = sends[:-1], np.diff(sends)

    def in_windows(kind: str) -> np.ndarray:
        mask = np.zeros(len(gaps), bool)
        for a, b in windows[kind]:
            mask |= (starts >= a) & (starts <= b)
        return mask

    busy = np.zeros(len(gaps), bool)
    for kind in windows:
        busy |= in_windows(kind)
    steady = ~busy & (starts >= t_start) & (starts <= t_end)
    o = config.output
    return {
        "source": config.source.path or config.source.kind,
        "output": [o.width, o.height, o.fps],
        "avatars": names,
        "watchdog_s": config.daemon.watchdog_s,
        "failures": failures,
        "restarts_not_injected": live.restarts - len(plan.fired_at),
        "switch_ms": {
            "cold": _summary(results["cold"]),
            "cold_select_returned": _summary(results["cold_build"]),
            "cold_by_avatar": {name: _summary(values) for name, values in cold_by_avatar.items()},
            "cold_in_order": cold_in_order,
            "warm": _summary(results["warm"]),
            "to_placeholder": _summary(results["to_card"]),
            "placeholder_to_avatar": _summary(results["to_avatar"]),
        },
        "watchdog_ms": {"hang_to_card": _summary(results["watchdog"]), "hang_to_avatar_again": _summary(results["restart"])},
        "output_interval_ms": {
            "steady": _summary(list(gaps[steady])),
            "cold_switch": _summary(list(gaps[in_windows("cold")])),
            "warm_switch": _summary(list(gaps[in_windows("warm")])),
            "mode_switch": _summary(list(gaps[in_windows("mode")])),
            "watchdog_restart": _summary(list(gaps[in_windows("hang")])),
        },
    }


def format_live_table(report: dict[str, Any]) -> str:
    switches = [
        ("switch, cold (build + warm-up)", report["switch_ms"]["cold"]),
        *((f"  cold, to {name}", s) for name, s in report["switch_ms"]["cold_by_avatar"].items()),
        ("switch, warm (parked avatar)", report["switch_ms"]["warm"]),
        ("avatar -> placeholder (panic)", report["switch_ms"]["to_placeholder"]),
        ("placeholder -> avatar", report["switch_ms"]["placeholder_to_avatar"]),
    ]
    watchdog = [
        ("watchdog: hang -> card", report["watchdog_ms"]["hang_to_card"]),
        ("watchdog: hang -> avatar again", report["watchdog_ms"]["hang_to_avatar_again"]),
    ]
    gaps = [(f"output interval, {k.replace('_', ' ')}", v) for k, v in report["output_interval_ms"].items()]
    over = f"over_{SWITCH_TARGET_MS}ms"
    lines = [f"{'measure':<34}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'>' + str(SWITCH_TARGET_MS) + 'ms':>8}"]
    nan = float("nan")
    for rows, is_switch in ((switches, True), (watchdog, False)):  # the target is for switches
        for name, s in rows:
            count = s.get(over, "-") if is_switch else "-"
            lines.append(f"{name:<34}{s['n']:>6}{s.get('p50', nan):>9.1f}{s.get('p95', nan):>9.1f}{s.get('max', nan):>9.1f}{count:>8}")
    lines.append("")
    lines.append(f"{'output interval (sink)':<34}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'>50ms':>7}{'>100ms':>7}")
    for name, s in gaps:
        if s["n"]:
            lines.append(f"{name.removeprefix('output interval, '):<34}{s['n']:>6}{s['p50']:>9.1f}{s['p95']:>9.1f}{s['p99']:>9.1f}{s['max']:>9.1f}{s['over_50ms']:>7}{s['over_100ms']:>7}")
    o = report["output"]
    lines.append("")
    lines.append(f"source {report['source']}, output {o[0]}x{o[1]} @ {o[2]:g} fps, watchdog {report['watchdog_s']:g} s, avatars {', '.join(report['avatars'])}")
    lines.append(f"restarts not injected: {report['restarts_not_injected']}; failed trials: {report['failures'] or 'none'}")
    return "\n".join(lines)


def cmd_bench_live(args: argparse.Namespace, resolve: Callable[[argparse.Namespace], Config]) -> int:
    if args.out is None:
        args.out = "null"
    config = resolve(args)
    report = run_live_benchmark(config, args.switches, args.hangs)
    print(format_live_table(report))
    if args.json:
        write_report(report, Path(args.json))
    return 0


def add_live_bench_command(sub: argparse._SubParsersAction, add_config_flags: Callable[[argparse.ArgumentParser], None], resolve: Callable[[argparse.Namespace], Config]) -> None:
    p = sub.add_parser("bench-live", help="measure avatar switches, panic and the watchdog, and the output's rhythm meanwhile")
    p.add_argument("--source", default="demo", help="demo | VIDEO_FILE (default: demo)")
    p.add_argument("--out", help="null (default) | OUTPUT.mp4")
    p.add_argument("--switches", type=int, default=12, help="cold and warm avatar switches each (default: 12)")
    p.add_argument("--hangs", type=int, default=5, help="renderer hangs to inject (default: 5)")
    p.add_argument("--json", help="write the report JSON here")
    add_config_flags(p)
    p.set_defaults(func=lambda a: cmd_bench_live(a, resolve))
