"""The tray icon for each state, drawn (no image files to ship or theme).

A lens ring in the state's colour with a small badge: a shield while
privacy mode is on, an eye when it is off (the camera image may be shown),
pause bars, a question mark for no face, a cross when VeilCam is not running.
"""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw

SIZE = 64
STATES = ("privacy", "running", "paused", "no face", "stopped")
COLOURS = {
    "privacy": (46, 160, 98),
    "running": (214, 88, 60),
    "paused": (128, 136, 150),
    "no face": (226, 165, 40),
    "stopped": (90, 90, 96),
}


def _badge(draw: ImageDraw.ImageDraw, state: str) -> None:
    x0, y0, s = 34, 34, 28
    draw.ellipse((x0, y0, x0 + s, y0 + s), fill=(250, 250, 250))
    c = COLOURS[state]
    cx, cy = x0 + s // 2, y0 + s // 2
    if state == "privacy":
        draw.polygon([(cx - 8, cy - 9), (cx + 8, cy - 9), (cx + 8, cy), (cx, cy + 10), (cx - 8, cy)], fill=c)
    elif state == "running":
        draw.ellipse((cx - 10, cy - 6, cx + 10, cy + 6), outline=c, width=3)
        draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=c)
    elif state == "paused":
        draw.rectangle((cx - 7, cy - 8, cx - 2, cy + 8), fill=c)
        draw.rectangle((cx + 2, cy - 8, cx + 7, cy + 8), fill=c)
    elif state == "no face":
        draw.arc((cx - 7, cy - 10, cx + 7, cy + 2), 180, 90, fill=c, width=3)
        draw.line((cx, cy + 2, cx, cy + 5), fill=c, width=3)
        draw.ellipse((cx - 2, cy + 7, cx + 2, cy + 11), fill=c)
    else:
        draw.line((cx - 7, cy - 7, cx + 7, cy + 7), fill=c, width=4)
        draw.line((cx - 7, cy + 7, cx + 7, cy - 7), fill=c, width=4)


@lru_cache(maxsize=None)
def icon_image(state: str) -> Image.Image:
    if state not in COLOURS:
        raise ValueError(f"unknown tray state {state!r}")
    img = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    c = COLOURS[state]
    draw.ellipse((4, 4, 52, 52), outline=c, width=7)
    draw.ellipse((20, 20, 36, 36), fill=c)
    _badge(draw, state)
    return img
