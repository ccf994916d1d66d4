"""Fits a renderer's RGBA image to the sink: size, letterbox, alpha, RGB.

Renderers draw their own background (it is part of an avatar's look), so the
common case is an opaque image of exactly the sink size and costs one colour
conversion; only other sizes or transparent pixels pay for more.
"""

from __future__ import annotations

import cv2
import numpy as np

from veilcam.models.renderer import rgb_of


class Compositor:
    def __init__(self, width: int, height: int, matte_rgb: tuple[int, int, int] = (18, 21, 28)) -> None:
        self.width, self.height = width, height
        self.matte = np.array(matte_rgb, np.uint8)

    def compose(self, rgba: np.ndarray) -> np.ndarray:
        """(h, w, 4) uint8 straight-alpha image -> (height, width, 3) uint8 RGB."""
        h, w = rgba.shape[:2]
        if (w, h) != (self.width, self.height):
            return self._letterbox(rgba)
        alpha = rgba[:, :, 3]
        if int(alpha.min()) == 255:
            return rgb_of(rgba)
        return self._over_matte(rgba)

    def _over_matte(self, rgba: np.ndarray) -> np.ndarray:
        a = rgba[:, :, 3:4].astype(np.uint16)
        rgb = rgba[:, :, :3].astype(np.uint16)
        out = (rgb * a + self.matte.astype(np.uint16) * (255 - a) + 127) // 255
        return out.astype(np.uint8)

    def _letterbox(self, rgba: np.ndarray) -> np.ndarray:
        h, w = rgba.shape[:2]
        scale = min(self.width / w, self.height / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        fitted = self._over_matte(cv2.resize(rgba, (nw, nh), interpolation=interp))
        out = np.empty((self.height, self.width, 3), np.uint8)
        out[:] = self.matte
        x0, y0 = (self.width - nw) // 2, (self.height - nh) // 2
        out[y0 : y0 + nh, x0 : x0 + nw] = fitted
        return out
