"""`veilcam avatar record`: a clip for `avatar enroll`, recorded while the person follows `record_script.SCRIPT`.

The clip holds the camera's frames as they came, never a prompt: the prompts
go to the terminal and, with a preview window, over a mirrored copy of the
image. It is lossless when the file is named .mkv (`sinks.video_file`).
The recording ends when the script does; the summary says what the clip
still lacks, as enrollment would judge it (`expression_warp.lacking_groups`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from veilcam.models.expression_warp import lacking_groups

from .config import Config
from .enroll_data import unmirrored
from .errors import ConfigError, SourceError
from .factory import open_source, open_tracker
from .model_store import ModelStore
from .record_script import SCRIPT, Prompt, ScriptRun
from .sinks.preview import PreviewSink
from .sinks.video_file import VideoFileSink
from .sources.base import FrameSource


#: How long the recording waits for a frame (a webcam reopening after a hiccup takes about a second) before it gives up.
CAMERA_WAIT_S = 3.0


@dataclass(frozen=True)
class RecordResult:
    path: Path
    frames: int
    seconds: float
    run: ScriptRun
    face_fraction: float  # of the frames, those the tracker found a face in
    lacking: dict[str, float]  # the warpable groups the clip barely shows, with how far it reaches them


def prompt_view(rgb: np.ndarray, prompt: Prompt, number: int, total: int, progress: float) -> np.ndarray:
    """A mirrored copy of the frame (people expect to see themselves as in a mirror) with the prompt and its meter."""
    view = np.ascontiguousarray(rgb[:, ::-1])
    h, w = view.shape[:2]
    scale = max(0.5, w / 1280)
    cv2.rectangle(view, (0, 0), (w, int(70 * scale)), (0, 0, 0), -1)
    cv2.putText(view, f"{number}/{total}  {prompt.text}", (int(12 * scale), int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale,
                (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)
    cv2.rectangle(view, (int(12 * scale), int(45 * scale)), (int(12 * scale + (w - 24 * scale) * progress), int(60 * scale)), (80, 200, 80), -1)
    return view


def record_clip(config: Config, out: Path, store: ModelStore, preview: bool = False, replace: bool = False,
                on_frame: Callable[[ScriptRun, float], None] | None = None, script: tuple[Prompt, ...] = SCRIPT) -> RecordResult:
    """Record `config.source` to `out` while `script` runs (see the module docstring); `on_frame` sees each frame's
    place in the script and the current prompt's progress (0-1)."""
    if out.exists() and not replace:
        raise ConfigError(f"{out}: already exists; choose another file name or --replace it")
    if out.suffix.lower() not in (".mkv", ".mp4"):
        raise ConfigError(f"{out}: name the clip .mkv (lossless, best for enrollment) or .mp4")
    run = ScriptRun(script)
    blendshapes, present = [], []
    sink: VideoFileSink | None = None
    window: PreviewSink | None = None
    source = open_source(config)
    if not isinstance(source, FrameSource):
        source.close()
        raise ConfigError("source.kind: recording needs a camera or a video file, not the demo")
    try:
        with open_tracker(unmirrored(config), store) as tracker:
            while not run.done:
                try:
                    frame = source.read(timeout=CAMERA_WAIT_S)
                except EOFError:
                    break
                if frame is None:
                    raise SourceError(f"camera {config.source.device} gave no frame for {CAMERA_WAIT_S:g} s; is another program using it?")
                if sink is None:
                    h, w = frame.rgb.shape[:2]
                    # The window first: without a display it refuses before the clip's file exists.
                    window = PreviewSink(w, h, source.fps, "VeilCam recording") if preview else None
                    sink = VideoFileSink(out, w, h, source.fps)
                sink.send(frame.rgb)
                state = tracker.track(frame.rgb, frame.media_time)
                blendshapes.append(state.blendshapes)
                present.append(state.present)
                progress = run.update(state, frame.media_time)
                current = run.current
                if window is not None and current is not None:
                    window.send(prompt_view(frame.rgb, current.prompt, len(run.outcomes), len(script), progress))
                if on_frame is not None:
                    on_frame(run, progress)
    finally:
        source.close()
        if sink is not None:
            sink.close()
        if window is not None:
            window.close()
    if sink is None:
        raise SourceError(f"{config.source.path or config.source.device}: the source gave no frames")
    shown = np.array(present)
    lacking = lacking_groups(np.array(blendshapes)[shown]) if shown.any() else {}
    return RecordResult(out, len(present), len(present) / source.fps, run, float(shown.mean()), lacking)
