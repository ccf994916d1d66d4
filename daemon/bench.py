"""`veilcam bench`: the real-time pipeline as in production, measured.

The source is paced in real time and the output thread runs at its constant
rate, so the figures (latency, delivered fps, drops, CPU) are what a call
would get, not an offline throughput.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from .compositor import Compositor
from .config import Config
from .factory import make_filter, make_renderer, open_sink, open_source, open_tracker
from .pipeline import FrameProcessor, Pipeline
from .report import RunStats
from .sources.base import FrameSource

WARMUP_S = 1.0  # model and GL warm-up are excluded from the figures


def run_benchmark(config: Config, frames: int) -> dict[str, Any]:
    source_cfg = dataclasses.replace(config.source, realtime=True, loop=True)
    config = dataclasses.replace(config, source=source_cfg)
    source = open_source(config)
    try:
        tracker = open_tracker(config) if isinstance(source, FrameSource) else None
        renderer = make_renderer(config)
        sink = open_sink(config)
    except Exception:
        source.close()
        raise
    stats = RunStats()
    processor = FrameProcessor(tracker, make_filter(config), renderer, Compositor(sink.width, sink.height), stats)
    pipeline = Pipeline(source, processor, sink, config.output.fps)
    try:
        pipeline.start()
        time.sleep(WARMUP_S)
        measured = pipeline.reset_stats()
        dropped0 = pipeline.dropped
        wall0, cpu0 = time.perf_counter(), time.process_time()
        pipeline.wait(timeout=frames / source.fps * 3 + 10, max_frames=frames)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        pipeline.stop()
        sink.close()
        renderer.close()
        if tracker is not None:
            tracker.close()
    return measured.to_report(
        wall, cpu, dropped=pipeline.dropped - dropped0,
        extra={"source": config.source.path or config.source.kind, "output_size": [sink.width, sink.height], "output_fps_target": config.output.fps},
    )
