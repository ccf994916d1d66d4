"""`veilcam bench --soak`: a few seconds of the real daemon, to check the report and the plot (no timing asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from cli_run import run_veilcam


def test_soak_reports_memory_gaps_and_latency_and_plots_them(tmp_path: Path, model_dir: Path) -> None:
    report_path, plot_path = tmp_path / "soak.json", tmp_path / "soak.png"
    proc = run_veilcam(["bench", "--soak", "0.07", "--soak-warmup", "2", "--soak-sample", "1", "--source", "demo",
                        "--output-width", "320", "--output-height", "240", "--json", str(report_path), "--plot", str(plot_path)])
    assert proc.returncode == 0, proc.stderr
    assert "RSS growth %" in proc.stdout and "gaps over 100 ms" in proc.stdout

    report = json.loads(report_path.read_text())
    samples = report["samples"]
    assert len(samples) >= 4
    times = [s["t_s"] for s in samples]
    assert times == sorted(times) and times[-1] >= 2 + 0.07 * 60 - 1.5
    rss = report["rss_mb"]
    steady = [s for s in samples if s["t_s"] >= report["warmup_s"]]
    assert rss["steady_start"] == steady[0]["rss_mb"] and rss["end"] == samples[-1]["rss_mb"]
    assert 50 < rss["steady_start"] < 10_000 and rss["peak_sampled"] >= max(rss["steady_start"], rss["end"])
    assert rss["peak_hwm"] >= rss["peak_sampled"] - 1
    assert math.isclose(rss["growth_pct"], 100 * (rss["end"] - rss["steady_start"]) / rss["steady_start"], abs_tol=0.01)

    gaps, latency = report["output_interval_ms"], report["latency_ms"]
    # Every interval of the steady windows is kept: about one per output frame.
    assert gaps["n"] >= 0.5 * report["output_fps"] * (times[-1] - report["warmup_s"] - 1)
    assert 0 < gaps["p50"] <= gaps["p95"] <= gaps["p99"] <= gaps["max"]
    assert gaps["over_100ms"] <= sum(s["gaps_over_100ms"] for s in samples)  # the steady windows are some of the samples
    assert latency["n"] > 0 and 0 < latency["p50"] <= latency["p95"] <= latency["max"]
    assert 0 < report["output_fps"] <= 1.2 * report["output"][2]
    assert report["target"]["met"] == (rss["growth_pct"] < 5 and gaps["over_100ms"] == 0)

    image = cv2.imread(str(plot_path))
    assert image is not None and image.shape[1] == 1000 and image.shape[0] >= 400
    # Both panels carry curves in colour, not just the white page and black axes.
    colourful = (np.ptp(image.astype(int), axis=2) > 60).sum()
    assert colourful > 500


def test_rss_is_sampled_while_the_daemon_runs_not_after_its_teardown(monkeypatch) -> None:
    """Windows are read one roll late; the last ones are read after the daemon stopped and freed
    memory. Each must carry the RSS of when the daemon handed it over."""
    from veilcam.daemon import soak
    from veilcam.daemon.report import RunStats

    rss = iter([700.0, 710.0, 720.0, 500.0, 500.0])  # the last two: after the teardown
    monkeypatch.setattr(soak, "memory_mb", lambda: (next(rss), 0.0))
    recorder = soak.SoakRecorder(warmup_s=0.0)
    for _ in range(3):
        stats = RunStats()
        stats.frames_out = 150
        stats.output_intervals_ms.extend([33.0] * 150)
        recorder(stats, 5.0)
    recorder.finish(RunStats(), 1.0)  # the partial window after the stop
    assert [s.rss_mb for s in recorder.samples] == [700.0, 710.0, 720.0, 720.0]
