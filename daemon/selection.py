"""What the live output shows: a mode, the avatar, the restyle prompt.

Config, control socket, CLI and tray all speak in `Selection`s, so "what is
on screen" is one value that can be compared, logged and reported.
"""

from __future__ import annotations

from dataclasses import dataclass

#: avatar: the selected avatar follows the face (privacy-safe).
#: restyle: the camera image restyled by diffusion (sees pixels; privacy off only).
#: placeholder: the card, camera still running (instant return).
#: pause: the card, camera released (its light goes off).
MODES = ("avatar", "restyle", "placeholder", "pause")
PIXEL_MODES = ("restyle",)  # modes whose processor sees camera pixels
RENDER_MODES = ("avatar", "restyle")  # modes with a processor (the others show the card)

CARD_MESSAGES = {"placeholder": "be right back", "pause": "camera paused"}


@dataclass(frozen=True)
class Selection:
    mode: str = "avatar"
    avatar: str = "porcelain"
    style: str = ""  # restyle prompt

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r} (choose one of {', '.join(MODES)})")

    @property
    def renders(self) -> bool:
        return self.mode in RENDER_MODES

    def privacy_refusal(self) -> str | None:
        """Why this selection cannot run in privacy mode, or None when it can."""
        if self.mode in PIXEL_MODES:
            return f"privacy mode is on: {self.mode} sees the camera image; turn privacy off to use it"
        return None
