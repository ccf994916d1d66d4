"""Per-user directories, following the XDG base directory spec."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "veilcam"


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache") / "veilcam"


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / "veilcam"


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "veilcam"


def avatars_dir() -> Path:
    """Where installed avatar packs live (one folder or .zip per avatar)."""
    return data_dir() / "avatars"


def config_file() -> Path:
    return config_dir() / "config.toml"
