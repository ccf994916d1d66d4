"""How a face-model avatar looks: the built-in looks, and the knobs they turn.

A look needs no weights or files: skin, lips, brows, eyes and hair are painted
procedurally on the model (`facekit_paint`), or taken from an albedo texture
(`FaceLook.texture`, e.g. a photo projected into the model's UV space).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import Background, Gradient

STYLES = ("skin", "clay", "toon")


@dataclass(frozen=True, eq=False)
class FaceLook:
    """Colours are sRGB hex strings.

    `style` picks the shading: "skin" (soft wrap lighting with a warm
    subsurface tint and a skin sheen), "clay" (matte, one material, carved
    features) or "toon" (banded light, ink outline).

    `texture`, when given, is the albedo of the face skin: an (H, W, 3) uint8
    RGB image laid out in UV tile 0 of the model (material M_Face), row 0 at the
    top (v = 1), as `facekit_bake.uv_position_map` lays out its texels. It
    replaces the painted skin, lips and brows of the face; the rest of the head
    keeps `skin_color` (set it to the texture's skin tone), and the painted hair
    covers both, the texture where it reaches into the face tile.
    """

    style: str = "skin"
    skin_color: str = "#d9a88c"
    lip_color: str = "#b0626a"
    lip_strength: float = 0.75
    brow_color: str = "#3b2a22"
    brow_strength: float = 0.9
    hair_color: str | None = "#2e221c"  # None: bald
    blush_color: str = "#d47f78"
    blush: float = 0.25
    lash_color: str = "#1c1512"
    iris_color: str = "#5a3d26"
    sclera_color: str = "#e9e4df"
    teeth_color: str = "#e8e0d0"
    gum_color: str = "#9a4a52"
    mouth_color: str = "#3a1618"
    specular: float = 0.35
    gloss: float = 40.0
    subsurface: float = 0.5
    outline: float = 0.0  # toon ink line strength
    key_light: str = "#fff3e6"
    fill_light: str = "#b8c4d8"
    rim_light: str = "#dce6ff"
    rim_strength: float = 0.35
    sky_color: str = "#a4aebd"
    ground_color: str = "#6b5a52"
    background: Background = Gradient("#5d6877", "#20252d")
    backdrop_glow: float = 0.3
    backdrop_shadow: float = 0.35
    texture: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"unknown face look style {self.style!r}; choose one of {', '.join(STYLES)}")
        if self.texture is not None:
            t = self.texture
            if t.ndim != 3 or t.shape[2] != 3 or t.dtype != np.uint8 or min(t.shape[:2]) < 16:
                raise ValueError(f"face texture must be an (H, W, 3) uint8 RGB image of at least 16x16, got {t.dtype} {t.shape}")


FACEKIT_LOOKS: dict[str, FaceLook] = {
    "human": FaceLook(),
    "clay": FaceLook(
        style="clay",
        skin_color="#b9805f",
        lip_color="#9c5d48",
        lip_strength=0.35,
        brow_color="#6e4331",
        brow_strength=0.55,
        hair_color=None,
        blush=0.0,
        lash_color="#5a3627",
        iris_color="#5e3a2a",
        sclera_color="#c99a7c",
        teeth_color="#d2b49c",
        gum_color="#8e5443",
        mouth_color="#3a1d15",
        specular=0.08,
        gloss=12.0,
        subsurface=0.0,
        key_light="#fff0dd",
        fill_light="#a8b6cc",
        rim_light="#ffe2c4",
        rim_strength=0.25,
        sky_color="#b7b2aa",
        ground_color="#5e4a3e",
        background=Gradient("#d8d2c6", "#8f8676"),
        backdrop_glow=0.15,
        backdrop_shadow=0.45,
    ),
    "toon": FaceLook(
        style="toon",
        skin_color="#ffd2b0",
        lip_color="#e0586a",
        lip_strength=0.8,
        brow_color="#4a2c1e",
        brow_strength=1.0,
        hair_color="#e0833a",
        blush_color="#ff8c8c",
        blush=0.45,
        lash_color="#20140f",
        iris_color="#2f7fd6",
        sclera_color="#ffffff",
        teeth_color="#ffffff",
        gum_color="#e06a78",
        mouth_color="#6a1f2e",
        specular=0.5,
        gloss=60.0,
        subsurface=0.0,
        outline=1.0,
        key_light="#fff6ea",
        fill_light="#c8d6f0",
        rim_light="#ffffff",
        rim_strength=0.5,
        sky_color="#c0d4f0",
        ground_color="#a08070",
        background=Gradient("#7fd0e8", "#3a78c8"),
        backdrop_glow=0.25,
        backdrop_shadow=0.25,
    ),
}
