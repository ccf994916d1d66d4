"""The soak report as a picture: RSS, and latency with the worst output gap, over time.

Drawn with OpenCV (already a dependency), so the benchmark needs no plotting library.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import VeilCamError

WIDTH, PANEL_H, MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 1000, 300, 80, 20, 36, 40
FONT = cv2.FONT_HERSHEY_SIMPLEX
INK, GRID, WARN = (30, 30, 30), (225, 225, 225), (40, 40, 200)
SERIES_COLOURS = [(180, 90, 20), (30, 140, 30), (40, 40, 200)]  # BGR


def _nice_range(values: list[float], floor_zero: bool) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)] or [0.0, 1.0]
    lo, hi = (0.0 if floor_zero else min(finite)), max(finite)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 1.0)
    return (lo if floor_zero else lo - pad), hi + pad


def line_panel(title: str, t: list[float], series: dict[str, list[float]], floor_zero: bool, hline: float | None, t_mark: float | None,
               value_format: str = ".1f") -> np.ndarray:
    """One panel: `series` (up to three) over time `t` (seconds), an optional red level `hline` and grey mark `t_mark`."""
    img = np.full((PANEL_H, WIDTH, 3), 255, np.uint8)
    x0, x1, y0, y1 = MARGIN_L, WIDTH - MARGIN_R, MARGIN_T, PANEL_H - MARGIN_B
    t_hi = max(t[-1], 1e-6) if t else 1.0
    lo, hi = _nice_range([v for vs in series.values() for v in vs] + ([hline] if hline is not None else []), floor_zero)

    def xy(tt: float, v: float) -> tuple[int, int]:
        return int(x0 + (x1 - x0) * tt / t_hi), int(y1 - (y1 - y0) * (v - lo) / (hi - lo))

    for i in range(5):  # horizontal grid with value labels
        v = lo + (hi - lo) * i / 4
        y = xy(0, v)[1]
        cv2.line(img, (x0, y), (x1, y), GRID, 1)
        cv2.putText(img, format(v, value_format), (4, y + 4), FONT, 0.4, INK, 1, cv2.LINE_AA)
    for i in range(6):  # time ticks
        tt = t_hi * i / 5
        x = xy(tt, lo)[0]
        cv2.line(img, (x, y1), (x, y1 + 4), INK, 1)
        cv2.putText(img, f"{tt:.0f}", (x - 10, y1 + 18), FONT, 0.4, INK, 1, cv2.LINE_AA)
    cv2.putText(img, "time (s)", (x1 - 60, PANEL_H - 6), FONT, 0.4, INK, 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y0), (x1, y1), INK, 1)
    if t_mark is not None and t_mark <= t_hi:  # where the steady state starts
        x = xy(t_mark, lo)[0]
        cv2.line(img, (x, y0), (x, y1), (150, 150, 150), 1, cv2.LINE_4)
    if hline is not None:
        y = xy(0, hline)[1]
        cv2.line(img, (x0, y), (x1, y), WARN, 1)
    cv2.putText(img, title, (x0, 22), FONT, 0.55, INK, 1, cv2.LINE_AA)
    legend_x = x0 + 12 * len(title) + 20
    for (name, values), colour in zip(series.items(), SERIES_COLOURS):
        points = np.array([xy(tt, v) for tt, v in zip(t, values) if math.isfinite(v)], np.int32)
        if len(points) > 1:
            cv2.polylines(img, [points.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA)
        for p in points if len(points) <= 1 else []:
            cv2.circle(img, tuple(int(c) for c in p), 3, colour, -1)
        cv2.putText(img, name, (legend_x, 22), FONT, 0.45, colour, 1, cv2.LINE_AA)
        legend_x += 10 * len(name) + 20
    return img


def plot_soak(report: dict[str, Any], path: Path) -> None:
    """Two panels (RSS; latency p50/p95 and each window's largest output gap) into one PNG."""
    samples = report["samples"]
    t = [s["t_s"] for s in samples]
    warm = report["warmup_s"]
    r = report["rss_mb"]
    rss = line_panel(f"RSS MB (growth {r['growth_pct']:+.2f} % after {warm:g} s)", t, {"RSS": [s["rss_mb"] for s in samples]}, False, None, warm)
    latency = line_panel(
        "latency / output gap, ms",
        t,
        {"latency p50": [s["latency_p50_ms"] for s in samples], "latency p95": [s["latency_p95_ms"] for s in samples], "max gap": [s["max_gap_ms"] for s in samples]},
        True,
        100.0,
        warm,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.vstack([rss, latency])):
        raise VeilCamError(f"cannot write the plot to {path}: use a .png path in a writable folder")
