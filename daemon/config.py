"""All of VeilCam's settings, in one typed place.

The TOML file (`$XDG_CONFIG_HOME/veilcam/config.toml`) and the command line
set the same fields: every field here becomes a `--section-field` flag, so no
option exists in one and not the other. Values are checked once, here, and a
bad one is reported as a single line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from veilcam.models.face_filter import FilterSettings

from .errors import ConfigError
from . import paths

_FILTER = FilterSettings()  # smoothing defaults live with the filter, beside the reasoning behind them


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None, lo: float | None = None, hi: float | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "lo": lo, "hi": hi})


@dataclass(frozen=True)
class SourceConfig:
    kind: str = _opt("webcam", "where faces come from", ("webcam", "file", "demo"))
    device: str = _opt("0", "webcam index or device path (/dev/video2)")
    path: str = _opt("", "video file for kind=file")
    width: int = _opt(640, "requested camera width", lo=160, hi=3840)
    height: int = _opt(480, "requested camera height", lo=120, hi=2160)
    fps: float = _opt(30.0, "requested camera frame rate", lo=1, hi=240)
    loop: bool = _opt(False, "restart a video file at its end")
    realtime: bool = _opt(True, "pace a video file at its own frame rate (off: as fast as possible)")


@dataclass(frozen=True)
class TrackerConfig:
    mirror: bool = _opt(False, "move the avatar like a mirror image (the user's left stays the avatar's left)")
    smooth_expressions: bool = _opt(_FILTER.smooth_expressions, "smooth expressions and eyelids too, at the cut-offs below (off: as tracked, which lags less; MediaPipe smooths its landmarks itself)")
    blend_min_cutoff: float = _opt(_FILTER.blend_min_cutoff, "expression smoothing cut-off at rest, Hz (lower = smoother)", lo=0.05, hi=30)
    blink_min_cutoff: float = _opt(_FILTER.blink_min_cutoff, "eyelid/jaw smoothing cut-off at rest, Hz", lo=0.05, hi=30)
    blend_beta: float = _opt(_FILTER.blend_beta, "how fast expression smoothing opens up with speed", lo=0, hi=100)
    pose_min_cutoff: float = _opt(_FILTER.pose_min_cutoff, "head pose smoothing cut-off at rest, Hz", lo=0.05, hi=30)
    pose_beta: float = _opt(_FILTER.pose_beta, "how fast pose smoothing opens up with speed", lo=0, hi=100)
    grace_s: float = _opt(_FILTER.grace_s, "seconds to hold the last expression when the face is lost", lo=0, hi=10)
    ease_s: float = _opt(_FILTER.ease_s, "seconds to ease to neutral after that", lo=0, hi=10)
    return_s: float = _opt(_FILTER.return_s, "seconds to ease from the avatar on screen to your face when it comes back", lo=0, hi=10)


@dataclass(frozen=True)
class AvatarConfig:
    name: str = _opt("porcelain", "avatar to show: a built-in or an installed pack (`veilcam avatar list`)")
    background_image: str = _opt("", "image file to use as the background instead of the look's")
    neural_device: str = _opt("auto", "where neural avatars run: cuda (torch on an NVIDIA GPU), cpu (onnxruntime) or auto (cuda when present)",
                              ("auto", "cuda", "cpu"))
    neural_rebase_rest: bool = _opt(True, "neural avatars show your expressions relative to your resting face, re-based onto the enrolled person's (off: as tracked)")
    neural_calibrated_expressions: bool = _opt(True, "neural avatars pose their brows and smiles so the tracker reads them as strong as yours, as measured at enrollment (off: posed with your scores)")
    neural_look_down_lids: bool = _opt(False, "neural avatars also lower the face model's lids when you look down (off: the eyes turn down and the network draws the lids as it learned them; on, they read as half shut)")


@dataclass(frozen=True)
class PrivacyConfig:
    enabled: bool = _opt(True, "privacy mode: only avatars that never see the camera image may reach the output")


@dataclass(frozen=True)
class OutputConfig:
    sink: str = _opt("virtualcam", "where frames go", ("virtualcam", "file", "null"))
    width: int = _opt(1280, "output width", lo=160, hi=3840)
    height: int = _opt(720, "output height", lo=120, hi=2160)
    fps: float = _opt(30.0, "output frame rate (constant)", lo=1, hi=120)
    device: str = _opt("", "virtual camera device (/dev/video10); empty: the first free one")
    backend: str = _opt("", "pyvirtualcam backend (v4l2loopback, obs, unitycapture); empty: the platform default")
    path: str = _opt("veilcam.mp4", "output video for sink=file")
    preview: bool = _opt(False, "also show the output in a window")


@dataclass(frozen=True)
class ModelsConfig:
    dir: str = _opt("", "folder with model files, searched before the user cache (env: VEILCAM_MODEL_DIR)")
    download: bool = _opt(True, "download missing model files from their official source")


@dataclass(frozen=True)
class DaemonConfig:
    watchdog_s: float = _opt(0.5, "show the card and restart the avatar when one frame takes longer than this (or 5x the recent median frame time, if longer), seconds", lo=0.1, hi=10)
    fallback_avatar: str = _opt("porcelain", "lighter avatar to fall back to when the GPU runs out of memory")
    warm_avatars: int = _opt(1, "previous avatars kept loaded, so switching back is instant", lo=0, hi=4)


@dataclass(frozen=True)
class StylePreset:
    """A restyle look: a prompt and how far to move from the camera image.

    `strength` is img2img strength for one step (0.5: start half way into the
    noise); `t_index_list` names the steps out of `num_inference_steps`
    instead, for a multi-step stream batch. Exactly one of them is set.
    """

    prompt: str
    strength: float | None = None
    t_index_list: tuple[int, ...] = ()

    def steps(self, num_inference_steps: int) -> tuple[int, ...]:
        """The step indices: `t_index_list`, or the one step where img2img at `strength` starts."""
        if self.t_index_list:
            return self.t_index_list
        if self.strength is None:
            raise ValueError("a style needs a strength or a t_index_list")
        return (min(num_inference_steps - 1, round(num_inference_steps * (1 - self.strength))),)


STYLE_PRESETS: dict[str, StylePreset] = {
    "oil-painting": StylePreset("an oil painting portrait, thick impasto brush strokes, rich warm colors", t_index_list=(32, 45)),
    "anime": StylePreset("anime portrait, cel shading, clean line art, vibrant colors", strength=0.5),
    "cyberpunk": StylePreset("cyberpunk portrait, neon lights, futuristic city at night, cinematic", t_index_list=(28, 42)),
    "pencil-sketch": StylePreset("pencil sketch portrait, graphite, cross hatching, white paper", strength=0.45),
    "watercolor": StylePreset("watercolor portrait, soft washes, paper texture, pastel colors", t_index_list=(32, 45)),
}


@dataclass(frozen=True)
class RestyleConfig:
    """The diffusion restyle (daemon/restyle.py); only usable with privacy off."""

    enabled: bool = _opt(False, "restyle the camera image with a diffusion model instead of an avatar (NOT privacy-safe: needs privacy off)")
    model: str = _opt("stabilityai/sd-turbo", "diffusers model: Hugging Face id (HF cache) or local folder")
    scheduler: str = _opt("turbo", "turbo: SD-Turbo one/few-step; lcm: SD 1.5 + LCM-LoRA / LCM models", ("turbo", "lcm"))
    style: str = _opt("oil-painting", "style preset (prompt and steps)", tuple(STYLE_PRESETS))
    prompt: str = _opt("", "custom prompt instead of the style's")
    negative_prompt: str = _opt("", "negative prompt (used by cfg=initialize)")
    t_index_list: tuple[int, ...] = _opt((), "custom denoising steps out of num_inference_steps, e.g. 32,45; empty: the style's", lo=0, hi=999)
    num_inference_steps: int = _opt(50, "length of the schedule the steps are picked from", lo=1, hi=1000)
    cfg: str = _opt("none", "residual classifier-free guidance", ("none", "self", "initialize"))
    guidance_scale: float = _opt(1.2, "guidance strength for cfg self/initialize", lo=0, hi=20)
    delta: float = _opt(1.0, "weight of the virtual negative noise in residual CFG", lo=0, hi=2)
    # Raw cosine similarity (the paper's measure) of consecutive webcam frames is about 0.999
    # even while the user talks, so the paper's 0.98 would freeze a moving face: only a
    # nearly still picture (sensor noise, > 0.9995) should be skipped.
    similarity_threshold: float = _opt(0.9995, "skip frames this similar (cosine) to the last processed one, stochastically; 1: never skip", lo=0, hi=1)
    latent_blend: float = _opt(0.0, "blend each output latent with the previous one (less flicker, some ghosting)", lo=0, hi=0.95)
    width: int = _opt(512, "width the model works at (multiple of 64)", lo=64, hi=2048)
    height: int = _opt(512, "height the model works at (multiple of 64)", lo=64, hi=2048)
    device: str = _opt("auto", "torch device: auto (cuda when available), cuda, cuda:1, cpu")
    dtype: str = _opt("auto", "auto: float16 on GPU, float32 on CPU", ("auto", "float16", "bfloat16", "float32"))
    compile: bool = _opt(True, "torch.compile and one CUDA graph per frame (GPU only; the first run compiles for minutes, later runs reuse the cache)")
    seed: int = _opt(2, "seed of the stream's fixed noise", lo=0, hi=2**31 - 1)

    def preset(self) -> StylePreset:
        """The style in effect: the named preset with any custom prompt or steps applied."""
        base = STYLE_PRESETS[self.style]
        return StylePreset(self.prompt or base.prompt, None, self.t_index_list or base.steps(self.num_inference_steps))


@dataclass(frozen=True)
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    avatar: AvatarConfig = field(default_factory=AvatarConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    restyle: RestyleConfig = field(default_factory=RestyleConfig)


INT_LIST = "tuple[int, ...]"  # the one non-scalar field type: TOML [32, 45], flag "32,45"
SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]
#: Keys an earlier VeilCam wrote, read under their new names: a config file keeps working after a rename.
RENAMED: dict[tuple[str, str], str] = {("avatar", "neural_calibrated_brows"): "neural_calibrated_expressions"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _coerce(where: str, key: str, f: dataclasses.Field, value: Any) -> Any:
    """Check one value against its field; `where` names the file or the flag."""
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    ok = {
        "bool": isinstance(value, bool),
        "int": _is_int(value),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        INT_LIST: isinstance(value, (list, tuple)) and all(_is_int(v) for v in value),
    }[kind]
    if not ok:
        raise ConfigError(f"{where}: {key} must be a {'list of integers' if kind == INT_LIST else kind}, got {value!r}")
    if kind == "float":
        value = float(value)
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if kind == INT_LIST:
        value = tuple(value)
    if meta.get("lo") is not None and not all(meta["lo"] <= v <= meta["hi"] for v in (value if kind == INT_LIST else (value,))):
        raise ConfigError(f"{where}: {key} must be between {meta['lo']:g} and {meta['hi']:g}, got {value!r}")
    return value


def config_from_dict(data: dict[str, Any], where: str, base: Config | None = None) -> Config:
    """Overlay `data` ({section: {key: value}}) on `base`; unknown keys are errors."""
    config = base or Config()
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        known = {f.name: f for f in fields(SECTIONS[section])}
        changes = {}
        for key, value in values.items():
            key = RENAMED.get((section, key), key)
            if key not in known:
                raise ConfigError(f"{where}: unknown key {section}.{key} (known: {', '.join(known)})")
            changes[key] = _coerce(where, f"{section}.{key}", known[key], value)
        config = dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **changes)})
    return config


def load_config(path: Path | None = None) -> Config:
    """The user's config file, or defaults when there is none (an explicit path must exist)."""
    explicit = path is not None
    path = path or paths.config_file()
    if not path.exists():
        if explicit:
            raise ConfigError(f"{path}: config file not found")
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix or delete the file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
    return config_from_dict(data, str(path))


def flag_name(section: str, key: str) -> str:
    return f"--{section}-{key.replace('_', '-')}"
