"""Where the live pipeline gets restyle from.

Restyle (diffusion img2img of the camera image) sees camera pixels, so the
live pipeline only asks for it with privacy off and refuses it otherwise.
This module is the whole contract with the restyle component
(`daemon/restyle.py`): without the `restyle` extra installed, asking for
restyle fails with a clear "not available".

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

import dataclasses
import importlib
from dataclasses import dataclass, field

from .config import STYLE_PRESETS, Config
from .errors import VeilCamError
from .pipeline import Processor
from .report import RunStats

NOT_AVAILABLE = "restyle is not available: {missing} is not installed; install it with pip install 'veilcam[restyle]', or pick an avatar instead"


class RestyleUnavailableError(VeilCamError):
    """Restyle was asked for, but this build cannot do it."""


@dataclass(frozen=True)
class RestyleSupport:
    available: bool
    reason: str = ""  # why not, when unavailable
    styles: dict[str, str] = field(default_factory=dict)  # preset name -> prompt, for menus


def restyle_support(config: Config) -> RestyleSupport:
    """Whether restyle can be selected at all, and its style presets (called often: cache what is slow)."""
    try:
        for module in ("torch", "diffusers"):  # the slow imports, done here on purpose
            importlib.import_module(module)
    except ImportError as exc:
        return RestyleSupport(False, NOT_AVAILABLE.format(missing=exc.name or "a restyle package"))
    return RestyleSupport(True, styles={name: preset.prompt for name, preset in STYLE_PRESETS.items()})


def build_restyle_processor(config: Config, stats: RunStats, prompt: str) -> Processor:
    """The restyle processor for `prompt` (a preset name or a free prompt; empty: the configured style).

    Call it on the thread that will run it."""
    from .factory import model_store
    from .restyle import RestyleProcessor

    support = restyle_support(config)
    if not support.available:
        raise RestyleUnavailableError(support.reason)
    if prompt in STYLE_PRESETS:
        config = dataclasses.replace(config, restyle=dataclasses.replace(config.restyle, style=prompt, prompt=""))
    elif prompt:
        config = dataclasses.replace(config, restyle=dataclasses.replace(config.restyle, prompt=prompt))
    return RestyleProcessor(config, stats, model_store(config))
