"""Errors a user can act on.

Anything raised as `VeilCamError` is printed by the CLI as one line (no
traceback) and ends with a non-zero exit: its message must name the file or
field at fault and say what to do.
"""


class VeilCamError(Exception):
    """An expected failure with a one-line, actionable message."""


class ModelFileError(VeilCamError):
    """A model file is missing, corrupt or cannot be downloaded."""


class ConfigError(VeilCamError):
    """A config value is invalid."""


class SourceError(VeilCamError):
    """A camera or video cannot be opened or read."""


class SinkError(VeilCamError):
    """An output (virtual camera, file, window) cannot be opened."""


class PrivacyError(VeilCamError):
    """Something that would see camera pixels was asked for while privacy mode is on."""


class AvatarPackError(VeilCamError):
    """An avatar pack is malformed, corrupt or unsafe to read."""


class PortraitError(VeilCamError):
    """A portrait cannot be made into a photo avatar (unreadable, no face)."""


class EnrollmentError(VeilCamError):
    """A video cannot be made into a neural avatar (unreadable, no face, below the quality floor)."""
