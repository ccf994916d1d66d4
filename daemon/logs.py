"""The daemon's log file: `$XDG_STATE_HOME/veilcam/veilcam.log`, rotated.

A daemon started at login runs for weeks, so its log is capped (a few files
of `MAX_BYTES`), and it records what a user would ask about afterwards:
switches, faults, restarts, refused clients.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from . import paths

LOG_NAME = "veilcam.log"
MAX_BYTES = 1_000_000
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_file() -> Path:
    return paths.state_dir() / LOG_NAME


def attach_log_file(level: int = logging.INFO) -> logging.Handler:
    """Log to the rotating file from now on; returns the handler, to detach with `detach_log_file`."""
    path = log_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(level)
    root = logging.getLogger()
    console_level = root.getEffectiveLevel()
    for h in root.handlers:  # the console keeps the level it had
        if h.level == logging.NOTSET:
            h.setLevel(console_level)
    root.addHandler(handler)
    root.setLevel(min(console_level, level))
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
