"""Where the live pipeline gets restyle from.

Restyle (diffusion img2img of the camera image) sees camera pixels, so the
live pipeline only asks for it with privacy off and refuses it otherwise.
This module is the whole contract with the restyle component: until that is
part of the build, asking for restyle fails with a clear "not available".

A restyle processor is a `Processor` (`process(CameraFrame) -> OutputFrame`,
`warm_up`, `close`, `stats`) built and used on one thread; if it has
`set_prompt(prompt)`, a new style prompt is applied without a rebuild.

The daemon calls `restyle_support` once before its output starts: import
torch and diffusers there (or at module level), never in
`build_restyle_processor`, which runs while the avatar is live. Importing
torch blocks every other thread for seconds at a stretch (2-4 s measured on
the 2-core machine), so the output would stall.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import Config
from .errors import VeilCamError
from .pipeline import Processor
from .report import RunStats

NOT_AVAILABLE = "restyle is not available in this VeilCam build (the diffusion restyle component is not installed); pick an avatar instead"


class RestyleUnavailableError(VeilCamError):
    """Restyle was asked for, but this build cannot do it."""


@dataclass(frozen=True)
class RestyleSupport:
    available: bool
    reason: str = ""  # why not, when unavailable
    styles: dict[str, str] = field(default_factory=dict)  # preset name -> prompt, for menus


def restyle_support(config: Config) -> RestyleSupport:
    """Whether restyle can be selected at all, and its style presets (called often: cache what is slow)."""
    return RestyleSupport(False, NOT_AVAILABLE)


def build_restyle_processor(config: Config, stats: RunStats, prompt: str) -> Processor:
    """The restyle processor for `prompt`; call it on the thread that will run it."""
    raise RestyleUnavailableError(NOT_AVAILABLE)
