"""The neutral card shown whenever there is no avatar frame to show.

It is drawn from nothing but its size and message, so showing it can never
leak a camera pixel: this is what "fail closed" falls back to.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

_TOP = np.array([38, 44, 58], np.float32)
_BOTTOM = np.array([18, 21, 28], np.float32)
_TEXT = (232, 236, 242)
_SUBTEXT = (150, 158, 172)


def _centered(img: np.ndarray, text: str, y: int, scale: float, color: tuple[int, int, int], thickness: int) -> None:
    font = cv2.FONT_HERSHEY_DUPLEX
    (w, _), _ = cv2.getTextSize(text, font, scale, thickness)
    cv2.putText(img, text, ((img.shape[1] - w) // 2, y), font, scale, color, thickness, cv2.LINE_AA)


@lru_cache(maxsize=16)
def placeholder_card(width: int, height: int, message: str = "") -> np.ndarray:
    """An (height, width, 3) RGB card with the wordmark and an optional status line."""
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    img = np.ascontiguousarray(np.broadcast_to(_TOP * (1 - ramp) + _BOTTOM * ramp, (height, width, 3)).astype(np.uint8))
    unit = height / 720.0
    cx, cy = width // 2, int(height * 0.42)
    # A simple camera-lens glyph with a veil: a ring and a soft arc.
    cv2.circle(img, (cx, cy), int(58 * unit), (110, 124, 150), max(1, int(6 * unit)), cv2.LINE_AA)
    cv2.circle(img, (cx, cy), int(22 * unit), (170, 182, 204), -1, cv2.LINE_AA)
    cv2.ellipse(img, (cx, cy), (int(90 * unit), int(90 * unit)), 0, 200, 340, (90, 102, 126), max(1, int(4 * unit)), cv2.LINE_AA)
    _centered(img, "VeilCam", int(cy + 130 * unit), 1.9 * unit, _TEXT, max(1, int(2 * unit + 0.5)))
    if message:
        _centered(img, message, int(cy + 185 * unit), 0.8 * unit, _SUBTEXT, 1)
    img.setflags(write=False)
    return img
