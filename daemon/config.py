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

from .errors import ConfigError
from . import paths


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
    blend_min_cutoff: float = _opt(1.0, "expression smoothing cut-off at rest, Hz (lower = smoother)", lo=0.05, hi=30)
    blink_min_cutoff: float = _opt(6.0, "eyelid/jaw smoothing cut-off at rest, Hz", lo=0.05, hi=30)
    blend_beta: float = _opt(2.0, "how fast expression smoothing opens up with speed", lo=0, hi=100)
    pose_min_cutoff: float = _opt(1.0, "head pose smoothing cut-off at rest, Hz", lo=0.05, hi=30)
    pose_beta: float = _opt(0.3, "how fast pose smoothing opens up with speed", lo=0, hi=100)
    grace_s: float = _opt(0.5, "seconds to hold the last expression when the face is lost", lo=0, hi=10)
    ease_s: float = _opt(1.0, "seconds to ease to neutral after that", lo=0, hi=10)


@dataclass(frozen=True)
class AvatarConfig:
    name: str = _opt("porcelain", "avatar to show: a built-in or an installed pack (`veilcam avatar list`)")
    background_image: str = _opt("", "image file to use as the background instead of the look's")


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
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    avatar: AvatarConfig = field(default_factory=AvatarConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]


def _coerce(where: str, key: str, f: dataclasses.Field, value: Any) -> Any:
    """Check one value against its field; `where` names the file or the flag."""
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }[kind]
    if not ok:
        raise ConfigError(f"{where}: {key} must be a {kind}, got {value!r}")
    if kind == "float":
        value = float(value)
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if meta.get("lo") is not None and not meta["lo"] <= value <= meta["hi"]:
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
