"""Output to a video file, for recording a session or checking the avatar offline.

The codec is MPEG-4 Part 2 ('mp4v'): the opencv-python wheels ship an FFmpeg
without a software H.264 encoder, so 'avc1' fails to open on machines without
a hardware encoder. mp4v opens everywhere the wheel runs and every player
reads it. A file named .mkv is written losslessly (FFV1) instead: a clip
recorded to learn an avatar from (`veilcam avatar record`) should not carry
a codec's blocks into what the network learns.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import SinkError
from .base import Sink

FOURCC = "mp4v"
LOSSLESS = {".mkv": "FFV1"}


def fourcc_for(path: Path) -> str:
    return LOSSLESS.get(path.suffix.lower(), FOURCC)


class VideoFileSink(Sink):
    """Writes every frame it is sent, in order; the file is complete after `close`."""

    def __init__(self, path: str | os.PathLike[str], width: int, height: int, fps: float) -> None:
        super().__init__(width, height, fps)
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            reason = "a file is in the way" if isinstance(e, (FileExistsError, NotADirectoryError)) else e.strerror
            raise SinkError(
                f"cannot create folder {self.path.parent} for video file {self.path}: "
                f"{reason or e}; choose another output path"
            ) from e
        if self.path.is_dir():
            raise SinkError(f"video output {self.path} is a folder; give a file name ending in .mp4")
        self._writer: cv2.VideoWriter | None = cv2.VideoWriter(
            str(self.path), cv2.VideoWriter_fourcc(*fourcc_for(self.path)), float(fps), (width, height)
        )
        if not self._writer.isOpened():
            self._writer = None
            raise SinkError(
                f"cannot write video file {self.path}: check that its folder is writable "
                "and that the name ends in .mp4 (or .mkv, lossless)"
            )

    def send(self, rgb: np.ndarray) -> None:
        # VideoWriter silently drops frames of the wrong size, which would only
        # show up as a short or empty file; fail loudly instead.
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"frame {rgb.shape} {rgb.dtype} does not match sink {self.height}x{self.width}x3 uint8"
            )
        if self._writer is None:
            raise RuntimeError(f"video file {self.path} is already closed")
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    @property
    def description(self) -> str:
        return f"video file {self.path} ({self.width}x{self.height} @ {self.fps:g} fps, {fourcc_for(self.path)})"
