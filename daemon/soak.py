"""`veilcam bench --soak MINUTES`: the daemon over a long run, for leaks and output gaps.

It runs the real `Daemon` (live pipeline, control socket, stats rolled over
in windows as in production) on a paced, looping source into the chosen sink.
Each finished stats window is read once: every output interval and every
end-to-end latency in it is kept (as packed doubles: 30 minutes at 30 fps are
about 1 MB, small against the RSS being measured) and RSS is sampled.

Time 0 is when the output began (the daemon's start-up is not counted). RSS
growth is measured from the first sample after the warm-up (the first
minute by default: caches, allocator pools and lazily compiled code settle
then) to the last one. A window is read one roll late, because the output
thread may still append the interval it was timing when the window rolled.
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import time
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .errors import VeilCamError
from .report import RunStats, summary_ms, write_report

SAMPLE_S = 5.0  # a stats window, and an RSS sample, this often
WARMUP_S = 60.0
GAP_MS = 100.0  # an output interval longer than this is a visible stutter
TARGET_GROWTH_PCT = 5.0


def memory_mb() -> tuple[float, float]:
    """(resident now, peak resident) in MiB, from /proc/self/status (Linux)."""
    rss = hwm = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


@dataclasses.dataclass
class SoakSample:
    """One stats window: when it ended, memory then, and what the output did in it."""

    t_s: float
    rss_mb: float
    fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    max_gap_ms: float
    gaps_over_100ms: int


class SoakRecorder:
    """Receives the daemon's stats windows (one roll late, see the module doc)."""

    def __init__(self, warmup_s: float) -> None:
        self.warmup_s = warmup_s
        self.t0: float | None = None  # when the output began: the start of the first window
        self.samples: list[SoakSample] = []
        self.intervals_ms = array("d")  # after the warm-up only
        self.latency_ms = array("d")
        self.steady_frames_out = 0
        self.steady_s = 0.0
        self._held: tuple[RunStats, float, float, float] | None = None  # (window, its length, end time, RSS then)
        self._last_rss = 0.0
        self._lock = threading.Lock()

    def __call__(self, stats: RunStats, seconds: float) -> None:
        with self._lock:
            now = time.perf_counter()
            if self.t0 is None:
                self.t0 = now - seconds
            rss, _ = memory_mb()  # now, while the daemon runs: a window is read one roll later
            held, self._held = self._held, (stats, seconds, now - self.t0, rss)
            if held is not None:
                self._read(*held)

    def finish(self, last: RunStats | None, seconds: float) -> None:
        """The daemon stopped: read the held window, and `last` (the partial one) if any."""
        with self._lock:
            if self._held is not None:
                self._read(*self._held)
                self._held = None
            if last is not None and seconds > 0:
                now = time.perf_counter()
                # RSS now would be after the teardown freed memory: the last running sample stands for it.
                self._read(last, seconds, now - (self.t0 if self.t0 is not None else now - seconds), self._last_rss or memory_mb()[0])

    def _read(self, stats: RunStats, seconds: float, t_s: float, rss: float) -> None:
        intervals = np.asarray(stats.output_intervals_ms, np.float64)
        latency = np.asarray(stats.latency_ms, np.float64)
        self._last_rss = rss
        self.samples.append(SoakSample(
            t_s=round(t_s, 2),
            rss_mb=round(rss, 2),
            fps=round(stats.frames_out / seconds, 2),
            latency_p50_ms=round(float(np.percentile(latency, 50)), 2) if len(latency) else float("nan"),
            latency_p95_ms=round(float(np.percentile(latency, 95)), 2) if len(latency) else float("nan"),
            max_gap_ms=round(float(intervals.max()), 2) if len(intervals) else 0.0,
            gaps_over_100ms=int((intervals > GAP_MS).sum()),
        ))
        if t_s - seconds >= self.warmup_s:  # the whole window is past the warm-up
            self.intervals_ms.extend(intervals.tolist())
            self.latency_ms.extend(latency.tolist())
            self.steady_frames_out += stats.frames_out
            self.steady_s += seconds


def run_soak(config: Config, minutes: float, warmup_s: float = WARMUP_S, sample_s: float = SAMPLE_S) -> dict[str, Any]:
    """Run the daemon for `warmup_s` plus `minutes`; the report covers the part after the warm-up."""
    from .service import Daemon

    config = dataclasses.replace(config, source=dataclasses.replace(config.source, realtime=True, loop=True))
    recorder = SoakRecorder(warmup_s)
    daemon = Daemon(lambda: config, window_s=sample_s, on_window=recorder)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run(duration=warmup_s + minutes * 60)
        except BaseException as exc:  # re-raised on the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="veilcam-soak", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    live = daemon.live
    recorder.finish(live.stats if live is not None else None, time.perf_counter() - daemon.window_start)
    return soak_report(config, minutes, recorder, warmup_s, restarts=live.restarts if live is not None else 0)


def soak_report(config: Config, minutes: float, rec: SoakRecorder, warmup_s: float, restarts: int) -> dict[str, Any]:
    steady = [s for s in rec.samples if s.t_s >= warmup_s] or rec.samples[-1:]
    intervals = np.frombuffer(rec.intervals_ms, np.float64) if len(rec.intervals_ms) else np.zeros(0)
    latency = np.frombuffer(rec.latency_ms, np.float64) if len(rec.latency_ms) else np.zeros(0)
    start, end = steady[0].rss_mb, steady[-1].rss_mb
    growth = 100 * (end - start) / start if start > 0 else float("nan")
    gaps_over = int((intervals > GAP_MS).sum())
    _, hwm = memory_mb()
    return {
        "minutes": minutes,
        "source": config.source.path or config.source.kind,
        "avatar": config.avatar.name,
        "output": [config.output.width, config.output.height, config.output.fps],
        "warmup_s": warmup_s,
        "sample_s": rec.samples[1].t_s - rec.samples[0].t_s if len(rec.samples) > 1 else None,
        "rss_mb": {
            "steady_start": start,
            "steady_start_t_s": steady[0].t_s,
            "end": end,
            "growth_pct": round(growth, 2),
            "peak_sampled": max(s.rss_mb for s in rec.samples),
            "peak_hwm": round(hwm, 2),
        },
        "output_fps": round(rec.steady_frames_out / rec.steady_s, 2) if rec.steady_s > 0 else 0.0,
        "output_interval_ms": {**summary_ms(intervals, 2), "over_100ms": gaps_over},
        "latency_ms": summary_ms(latency, 2),
        "restarts": restarts,
        "target": {
            "rss_growth_pct_under": TARGET_GROWTH_PCT,
            "max_gap_ms": GAP_MS,
            "met": bool(growth < TARGET_GROWTH_PCT and gaps_over == 0 and len(intervals) > 0),
        },
        "samples": [dataclasses.asdict(s) for s in rec.samples],
    }


def format_soak_table(report: dict[str, Any]) -> str:
    r, g, lat = report["rss_mb"], report["output_interval_ms"], report["latency_ms"]
    o = report["output"]
    lines = [
        f"soak {report['minutes']:g} min after a {report['warmup_s']:g} s warm-up; source {report['source']}, avatar {report['avatar']}, output {o[0]}x{o[1]} @ {o[2]:g} fps",
        f"{'RSS MB at steady start':<28}{r['steady_start']:>10.1f}   (t = {r['steady_start_t_s']:.0f} s)",
        f"{'RSS MB at end':<28}{r['end']:>10.1f}",
        f"{'RSS growth %':<28}{r['growth_pct']:>+10.2f}   (target < {report['target']['rss_growth_pct_under']:g} %)",
        f"{'RSS MB peak (sampled, HWM)':<28}{r['peak_sampled']:>10.1f}{r['peak_hwm']:>10.1f}",
        f"{'output fps':<28}{report['output_fps']:>10.2f}",
    ]
    if g["n"]:
        lines.append(f"{'output interval ms':<28}n {g['n']}, p50 {g['p50']:.1f}, p95 {g['p95']:.1f}, p99 {g['p99']:.1f}, max {g['max']:.1f}")
    lines.append(f"{'gaps over 100 ms':<28}{g['over_100ms']:>10d}")
    if lat["n"]:
        lines.append(f"{'latency ms':<28}n {lat['n']}, p50 {lat['p50']:.1f}, p95 {lat['p95']:.1f}, max {lat['max']:.1f}")
    lines.append(f"{'renderer restarts':<28}{report['restarts']:>10d}")
    lines.append(f"target met: {'yes' if report['target']['met'] else 'NO'}")
    lines.append("")
    lines.append(f"{'t s':>8}{'RSS MB':>10}{'fps':>8}{'lat p50':>9}{'lat p95':>9}{'max gap':>9}{'>100ms':>8}")
    samples = report["samples"]
    step = max(1, len(samples) // 15)
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        lines.append(f"{s['t_s']:>8.0f}{s['rss_mb']:>10.1f}{s['fps']:>8.1f}{s['latency_p50_ms']:>9.1f}{s['latency_p95_ms']:>9.1f}{s['max_gap_ms']:>9.1f}{s['gaps_over_100ms']:>8d}")
    return "\n".join(lines)


def add_soak_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="instead: run the daemon this long after a warm-up; report RSS over time and output gaps")
    parser.add_argument("--soak-warmup", type=float, default=WARMUP_S, metavar="SECONDS", help=f"soak: seconds before the steady state (default: {WARMUP_S:g})")
    parser.add_argument("--soak-sample", type=float, default=SAMPLE_S, metavar="SECONDS", help=f"soak: stats window and RSS sample period (default: {SAMPLE_S:g})")
    parser.add_argument("--plot", help="soak: draw RSS and latency over time to this PNG")


def cmd_soak(args: argparse.Namespace, config: Config) -> int:
    from .soak_plot import plot_soak

    if args.soak <= 0 or args.soak_warmup < 0 or args.soak_sample <= 0:
        raise VeilCamError("--soak needs MINUTES > 0, --soak-warmup >= 0 and --soak-sample > 0")
    report = run_soak(config, args.soak, args.soak_warmup, args.soak_sample)
    print(format_soak_table(report))
    if args.json:
        write_report(report, Path(args.json))
    if args.plot:
        plot_soak(report, Path(args.plot))
    return 0

