"""Frame outputs: virtual camera, video file, preview window, tee and null sinks."""

from .base import Sink
from .null import NullSink
from .preview import PreviewSink
from .tee import TeeSink
from .video_file import VideoFileSink
from .virtual_camera import VirtualCameraSink, virtual_camera_backends

__all__ = [
    "NullSink",
    "PreviewSink",
    "Sink",
    "TeeSink",
    "VideoFileSink",
    "VirtualCameraSink",
    "virtual_camera_backends",
]
