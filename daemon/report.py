"""Timing records and the report JSON shared by `render`, `bench` and `run`.

One format for every command, so numbers from an offline render, a benchmark
and a live session can be compared field by field.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

STAGES = ("decode", "track", "render", "composite", "sink")


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    a = np.asarray(values, np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3), "max": round(float(a.max()), 3)}


def summary_ms(ms: np.ndarray, decimals: int, over: tuple[float, ...] = ()) -> dict[str, Any]:
    """Count, p50/p95/p99 and max of durations in ms, and how many exceed each of `over`
    ("over_100ms"): the benchmarks' view of a distribution's tail. {"n": 0} when empty."""
    ms = np.asarray(ms, np.float64)
    if not len(ms):
        return {"n": 0}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    summary: dict[str, Any] = {"n": int(len(ms)), **{k: round(float(v), decimals) for k, v in (("p50", p50), ("p95", p95), ("p99", p99), ("max", ms.max()))}}
    summary.update({f"over_{limit:g}ms": int((ms > limit).sum()) for limit in over})
    return summary


@dataclass
class FrameRecord:
    index: int
    face: bool
    blendshapes: dict[str, float] | None


@dataclass
class RunStats:
    """Collected from several threads; list appends are atomic under the GIL."""

    stages_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    latency_ms: list[float] = field(default_factory=list)
    frames: list[FrameRecord] = field(default_factory=list)
    frames_in: int = 0
    frames_out: int = 0  # frames handed to the sink, repeats and placeholders included
    repeats: int = 0
    placeholders: int = 0
    errors: int = 0
    output_intervals_ms: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stage(self, name: str, ms: float) -> None:
        self.stages_ms[name].append(ms)

    def record_frame(self, index: int, face: bool, blendshapes: dict[str, float] | None) -> None:
        with self._lock:
            self.frames_in += 1
            self.frames.append(FrameRecord(index, face, blendshapes))

    def to_report(self, wall_s: float, cpu_s: float | None = None, dropped: int | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        frames = sorted(self.frames, key=lambda f: f.index)
        report: dict[str, Any] = {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "face_frames": sum(f.face for f in frames),
            "fps": round(self.frames_out / wall_s, 3) if wall_s > 0 else 0.0,
            "wall_s": round(wall_s, 3),
            "latency_ms": percentiles(self.latency_ms),
            "stages_ms": {s: percentiles(v) for s, v in self.stages_ms.items() if v},
            "repeats": self.repeats,
            "placeholders": self.placeholders,
            "errors": self.errors,
        }
        if self.output_intervals_ms:
            report["output_interval_ms"] = percentiles(self.output_intervals_ms)
        if cpu_s is not None:
            report["cpu_cores"] = round(cpu_s / wall_s, 3) if wall_s > 0 else 0.0
        if dropped is not None:
            report["dropped_source_frames"] = dropped
        report.update(extra or {})
        report["frames"] = [
            {"index": f.index, "face": f.face, **({"blendshapes": f.blendshapes} if f.blendshapes is not None else {})} for f in frames
        ]
        return report


class FlickerMeter:
    """How much the output changes from frame to frame, relative to the input.

    flicker = mean |out[t] - out[t-1]| / mean |in[t] - in[t-1]| (per pixel and
    channel, 0-255). About 1: the output moves as much as the camera image;
    above 1: it adds its own flicker (a restyle whose texture boils).
    """

    def __init__(self) -> None:
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._sums = [0.0, 0.0]  # input, output
        self._pairs = 0

    def add(self, rgb_in: np.ndarray, rgb_out: np.ndarray) -> None:
        if self._prev is not None:
            self._sums[0] += float(cv2.absdiff(rgb_in, self._prev[0]).mean())
            self._sums[1] += float(cv2.absdiff(rgb_out, self._prev[1]).mean())
            self._pairs += 1
        self._prev = (rgb_in.copy(), rgb_out.copy())

    def figures(self) -> dict[str, float]:
        mean_in, mean_out = (total / max(self._pairs, 1) for total in self._sums)
        ratio = mean_out / mean_in if mean_in > 0 else float("nan")
        return {"flicker": round(ratio, 4), "input_frame_diff": round(mean_in, 3), "output_frame_diff": round(mean_out, 3)}


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def format_table(report: dict[str, Any]) -> str:
    """A human summary of a report: one row per stage, then the totals."""
    lines = [f"{'stage':<12}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}"]
    for name, p in report["stages_ms"].items():
        lines.append(f"{name:<12}{p['p50']:>10.2f}{p['p95']:>10.2f}{p['max']:>10.2f}")
    lat = report["latency_ms"]
    lines.append(f"{'end-to-end':<12}{lat['p50']:>10.2f}{lat['p95']:>10.2f}{lat['max']:>10.2f}")
    if "output_interval_ms" in report:
        iv = report["output_interval_ms"]
        lines.append(f"{'out interval':<12}{iv['p50']:>10.2f}{iv['p95']:>10.2f}{iv['max']:>10.2f}")
    lines.append("")
    summary = [f"frames in {report['frames_in']}", f"out {report['frames_out']}", f"with face {report['face_frames']}", f"fps {report['fps']:.2f}"]
    if "dropped_source_frames" in report:
        summary.append(f"dropped {report['dropped_source_frames']}")
    if "cpu_cores" in report:
        summary.append(f"cpu {report['cpu_cores']:.2f} cores")
    summary.append(f"repeats {report['repeats']}")
    if "flicker" in report:
        summary.append(f"flicker {report['flicker']:.2f}")
    lines.append(", ".join(summary))
    return "\n".join(lines)
