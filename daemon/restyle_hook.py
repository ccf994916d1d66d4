"""Where the live pipeline gets restyle from.

Restyle (diffusion img2img of the camera image) sees camera pixels, so the
live pipeline only asks for it with privacy off and refuses it otherwise.
This module is the whole contract with the restyle component
(`daemon/restyle.py`): without its libraries, asking for restyle fails with
a clear "not available" that says what is missing.

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
import functools
import importlib.util
from dataclasses import dataclass, field

from .config import STYLE_PRESETS, Config
from .errors import VeilCamError
from .pipeline import Processor
from .report import RunStats

NOT_AVAILABLE = "restyle is not available"


class RestyleUnavailableError(VeilCamError):
    """Restyle was asked for, but this build cannot do it."""


@dataclass(frozen=True)
class RestyleSupport:
    available: bool
    reason: str = ""  # why not, when unavailable
    styles: dict[str, str] = field(default_factory=dict)  # preset name -> prompt, for menus


@functools.lru_cache(maxsize=1)
def _missing_libraries() -> str:
    """Why the restyle libraries cannot load ('' when they are installed); looks, does not import."""
    missing = [name for name in ("torch", "diffusers", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{NOT_AVAILABLE}: the restyle extra is not installed (missing {', '.join(missing)}; pip install 'veilcam[restyle]')"
    return ""


@functools.lru_cache(maxsize=1)
def _import_libraries() -> None:
    """The heavy imports, once: tens of seconds of CPU on a small machine, holding the GIL."""
    import torch  # noqa: F401
    from diffusers import AutoencoderTiny, EulerDiscreteScheduler, LCMScheduler, UNet2DConditionModel  # noqa: F401
    from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401


def restyle_support(config: Config) -> RestyleSupport:
    """Whether restyle can be selected: its libraries are installed (a missing model
    is reported when restyle is built, as one line saying what to download).

    The libraries are imported here (once), before the output starts, so a
    switch to restyle does not stall the output: every start pays for them,
    even one that never leaves the avatar.
    """
    missing = _missing_libraries()
    if missing:
        return RestyleSupport(False, missing)
    _import_libraries()
    return RestyleSupport(True, styles={name: style.prompt for name, style in STYLE_PRESETS.items()})


def build_restyle_processor(config: Config, stats: RunStats, prompt: str) -> Processor:
    """The restyle processor for `prompt`: a style preset's name, a free prompt, or
    empty for the configured style. Call it on the thread that will run it.

    The live pipeline is the authority on privacy here: privacy can be turned
    off over the control socket without the config changing, and the live
    pipeline calls this only with privacy off (and drops restyle's frames the
    moment privacy comes back on). So the config is passed on with privacy off.
    """
    from .factory import model_store
    from .restyle import RestyleProcessor

    restyle = config.restyle
    if prompt in STYLE_PRESETS:
        restyle = dataclasses.replace(restyle, style=prompt, prompt="")
    elif prompt:
        restyle = dataclasses.replace(restyle, prompt=prompt)
    unlocked = dataclasses.replace(config, restyle=restyle, privacy=dataclasses.replace(config.privacy, enabled=False))
    return RestyleProcessor(unlocked, stats, model_store(config))
