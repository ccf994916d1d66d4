"""`veilcam bench`: the real-time pipeline as in production, measured.

The source is paced in real time and the output thread runs at its constant
rate, so the figures (latency, delivered fps, drops, CPU) are what a call
would get, not an offline throughput.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from .config import Config
from .factory import open_sink, open_source, processor_factory
from .pipeline import Pipeline

WARMUP_S = 1.0  # model and GL warm-up are excluded from the figures


def run_benchmark(config: Config, frames: int) -> dict[str, Any]:
    source_cfg = dataclasses.replace(config.source, realtime=True, loop=True)
    config = dataclasses.replace(config, source=source_cfg)
    with open_source(config) as source, open_sink(config) as sink:
        pipeline = Pipeline(source, processor_factory(config, source), sink, config.output.fps, privacy=config.privacy.enabled)
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
    return measured.to_report(
        wall, cpu, dropped=pipeline.dropped - dropped0,
        extra={"source": config.source.path or config.source.kind, "output_size": [sink.width, sink.height], "output_fps_target": config.output.fps},
    )
