"""A canary pattern painted into camera frames, and a detector for it.

If any output frame shows the canary, camera pixels leaked. The pattern is a
fine magenta/green checkerboard: both colours at once, in that saturation, do
not occur in any avatar look or in the placeholder card.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CELL = 8
BAND = 96  # width of the canary bands painted on the left and right edges
LOST = range(120, 210)  # the face-lost stretch of the shared clip


def canary(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    checker = ((x // CELL + y // CELL) % 2).astype(bool)
    img = np.empty((height, width, 3), np.uint8)
    img[checker] = (255, 0, 255)
    img[~checker] = (0, 255, 0)
    return img


def has_canary(rgb: np.ndarray, min_fraction: float = 0.002) -> bool:
    r, g, b = (rgb[..., i].astype(np.int16) for i in range(3))
    magenta = (r > 170) & (b > 170) & (g < 100)
    green = (g > 170) & (r < 100) & (b < 100)
    n = rgb.shape[0] * rgb.shape[1]
    return magenta.sum() > min_fraction * n and green.sum() > min_fraction * n


def write_canary_video(source: Path, out: Path) -> int:
    """Copy `source` with canary bands in the background of every frame and the
    whole frame replaced by the canary on the face-lost stretch."""
    cap = cv2.VideoCapture(str(source))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    count = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        pattern = canary(h, w)
        if count in LOST:
            rgb = pattern
        else:
            rgb[:, :BAND] = pattern[:, :BAND]
            rgb[:, w - BAND :] = pattern[:, w - BAND :]
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        count += 1
    cap.release()
    writer.release()
    return count
