"""Send one frame stream to two sinks, e.g. the virtual camera plus a preview."""

from __future__ import annotations

import numpy as np

from .base import Sink


class TeeSink(Sink):
    """Owns both sinks: closing the tee closes them."""

    def __init__(self, primary: Sink, secondary: Sink) -> None:
        if (primary.width, primary.height) != (secondary.width, secondary.height):
            raise ValueError(
                f"tee sinks differ in size: {primary.description} is {primary.width}x{primary.height}, "
                f"{secondary.description} is {secondary.width}x{secondary.height}"
            )
        super().__init__(primary.width, primary.height, primary.fps)
        self.primary = primary
        self.secondary = secondary

    def send(self, rgb: np.ndarray) -> None:
        # Primary first: if the secondary (usually a preview) fails, the camera
        # has still received the frame.
        self.primary.send(rgb)
        self.secondary.send(rgb)

    def close(self) -> None:
        try:
            self.primary.close()
        finally:
            self.secondary.close()

    @property
    def description(self) -> str:
        return f"{self.primary.description} + {self.secondary.description}"
