"""`veilcam render`: a video file through the avatar, as fast as possible.

Exactly one output frame per input frame, in order, so the output can be
compared frame by frame with the input (fidelity checks, privacy checks).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .config import Config
from .factory import open_sink, processor_factory
from .report import FlickerMeter, RunStats
from .sources.video_file import VideoFileSource


def render_video(config: Config, source: Path, out: Path, progress: bool = True) -> dict[str, Any]:
    """Render `source` to `out` (mp4) and return the report."""
    config = dataclasses.replace(config, output=dataclasses.replace(config.output, sink="file", path=str(out), preview=False))
    stats = RunStats()
    flicker = FlickerMeter()
    with ExitStack() as stack:
        video = stack.enter_context(VideoFileSource(source, realtime=False))
        make_processor = processor_factory(config, video)  # refuses what the config does not allow, before the sink opens
        sink = stack.enter_context(open_sink(config, fps=video.fps))
        processor = make_processor(stats)
        stack.callback(processor.close)
        bar = stack.enter_context(tqdm(total=video.frame_count or None, unit="frame", desc="render", disable=not progress, leave=False))
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while True:
            try:
                frame = video.read()
            except EOFError:
                break
            result = processor.process(frame)
            flicker.add(frame.rgb, result.rgb)
            t0 = time.perf_counter()
            sink.send(result.rgb)
            stats.stage("sink", (time.perf_counter() - t0) * 1000)
            stats.latency_ms.append((t0 - result.capture_ts) * 1000)
            stats.frames_out += 1
            bar.update()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return stats.to_report(wall, cpu, extra={"source": str(source), "output": str(out), "source_fps": video.fps, **flicker.figures()})
