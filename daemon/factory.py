"""Builds the pipeline's parts from a `Config`.

The only place that maps settings to constructors, so the CLI, the benchmark
and (later) the daemon build exactly the same thing from the same settings.
Every failure a user can cause comes out as a one-line `VeilCamError`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from veilcam.models.face_filter import FaceFilter, FilterSettings
from veilcam.models.landmarker import FaceLandmarker
from veilcam.models.renderer import FaceRenderer

from .avatars import FACE_LANDMARKER, build_renderer, find_avatar
from .compositor import Compositor
from .config import Config
from .errors import ConfigError, ModelFileError
from .memory import build_reserve_bytes, reserve_heap
from .model_store import ModelStore
from .sinks import NullSink, PreviewSink, TeeSink, VideoFileSink, VirtualCameraSink
from .sinks.base import Sink
from .pipeline import FrameProcessor, Processor
from .report import RunStats
from .sources.base import FrameSource, Source
from .sources.demo import DemoSource
from .sources.video_file import VideoFileSource
from .sources.webcam import WebcamSource
from .tracker_pool import TRACKERS, PooledTracker


def model_store(config: Config, download: bool = True) -> ModelStore:
    """The configured model store; `download=False` never downloads, whatever the config allows."""
    override = Path(config.models.dir).expanduser() if config.models.dir else None
    return ModelStore.from_environment(override, allow_download=config.models.download and download)


def open_tracker(config: Config, store: ModelStore | None = None) -> FaceLandmarker:
    path = (store or model_store(config)).resolve(FACE_LANDMARKER)
    try:
        return FaceLandmarker(path, mirror=config.tracker.mirror)
    except ValueError as exc:
        raise ModelFileError(f"{path}: MediaPipe cannot load this model ({exc}); delete it so VeilCam downloads it again") from exc


def lease_tracker(config: Config, store: ModelStore, source: Source) -> PooledTracker:
    """A tracker for a processor of `source`: a warm one from the process's pool when one
    that tracked this source (or nothing yet) is idle."""
    path = store.resolve(FACE_LANDMARKER)
    return TRACKERS.lease(path, config.tracker.mirror, lambda: open_tracker(config, store), stream=source)


def stock_for_switches(config: Config) -> None:
    """Prepare, at a quiet moment, what a cold avatar switch would otherwise pay for:
    a spare tracker in the pool (`TrackerPool.stock`), the face model with its
    render mesh and what its renderers share, computed once per process (50-150 ms
    on the first face-model switch), and heap memory for a build (`reserve_heap`).
    Nothing is downloaded for this: a missing model file is left to the switch
    that needs it."""
    store = model_store(config, download=False)
    TRACKERS.stock(store.resolve(FACE_LANDMARKER), config.tracker.mirror, lambda: open_tracker(config, store))
    from veilcam.models.facekit_renderer import prepare_shared

    from .facekit_avatar import face_model_and_mesh

    prepare_shared(*face_model_and_mesh(store))
    reserve_heap(build_reserve_bytes(config.output.width, config.output.height))


def make_filter(config: Config) -> FaceFilter:
    t = config.tracker
    return FaceFilter(FilterSettings(**{f.name: getattr(t, f.name) for f in dataclasses.fields(FilterSettings)}))


def open_source(config: Config, realtime: bool | None = None) -> Source:
    s = config.source
    if s.kind == "demo":
        return DemoSource(fps=s.fps)
    if s.kind == "file":
        if not s.path:
            raise ConfigError("source.path: no video file given (use --source FILE)")
        return VideoFileSource(Path(s.path).expanduser(), realtime=s.realtime if realtime is None else realtime, loop=s.loop)
    return WebcamSource(s.device, s.width, s.height, s.fps)


def make_renderer(config: Config, store: ModelStore | None = None) -> FaceRenderer:
    """The renderer of the configured avatar (`avatar.name`)."""
    return build_renderer(find_avatar(config.avatar.name), config, store or model_store(config))


def open_sink(config: Config, fps: float | None = None) -> Sink:
    o = config.output
    fps = fps or o.fps
    sink: Sink
    if o.sink == "virtualcam":
        sink = VirtualCameraSink(o.width, o.height, fps, device=o.device or None, backend=o.backend or None)
    elif o.sink == "file":
        sink = VideoFileSink(Path(o.path).expanduser(), o.width, o.height, fps)
    else:
        sink = NullSink(o.width, o.height, fps)
    if o.preview:
        try:
            sink = TeeSink(sink, PreviewSink(o.width, o.height, fps))
        except Exception:
            sink.close()
            raise
    return sink


def processor_factory(config: Config, source: Source) -> Callable[[RunStats], Processor]:
    """What turns `source`'s items into output frames as the config says (restyle or
    the avatar), built when (and on the thread where) it is called.

    Restyle in privacy mode is refused here, before any model is loaded.
    """
    if not config.restyle.enabled:
        return avatar_processor_factory(config, source)
    from .restyle import RestyleProcessor, check_restyle_allowed

    check_restyle_allowed(config)
    if not isinstance(source, FrameSource):
        raise ConfigError("restyle needs camera images: use a webcam or video source, not the demo")
    store = model_store(config)
    return lambda stats: RestyleProcessor(config, stats, store)


def avatar_processor_factory(config: Config, source: Source) -> Callable[[RunStats], FrameProcessor]:
    """The avatar's privacy-safe `FrameProcessor`, whatever `restyle.enabled` says (the live daemon selects modes itself)."""
    store = model_store(config)

    def build(stats: RunStats) -> FrameProcessor:
        tracker = lease_tracker(config, store, source) if isinstance(source, FrameSource) else None
        try:
            renderer = make_renderer(config, store)
        except BaseException:
            if tracker is not None:
                tracker.close()
            raise
        return FrameProcessor(tracker, make_filter(config), renderer, Compositor(config.output.width, config.output.height), stats)

    return build
