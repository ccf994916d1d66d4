"""Per-user directories, following the XDG base directory spec, and writing files into them safely."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through a temporary file in its folder that is then renamed over
    it: a reader (another process too) never sees half a file, and a failed write
    leaves nothing behind. Creates the folder; raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def runtime_dir() -> Path:
    """Per-user, per-boot files: the control socket, lock and PID file.

    $XDG_RUNTIME_DIR is private to the user (0700) by spec; without it, a
    0700 folder in the temp dir takes its place, refused if another user owns it.
    """
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        path = Path(base) / "veilcam"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path
    path = Path(tempfile.gettempdir()) / f"veilcam-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{path}: not a private folder of this user; remove it or set XDG_RUNTIME_DIR")
    return path
