"""`veilcam devices`: which cameras and virtual cameras this machine has."""

from __future__ import annotations

import sys
from pathlib import Path

from .sinks import virtual_camera_backends

PROBE_INDICES = range(5)


def _linux_video_devices() -> list[tuple[str, str, bool]]:
    """(device path, name, is a loopback device) for each /dev/videoN."""
    found = []
    root = Path("/sys/class/video4linux")
    for entry in sorted(root.glob("video*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 0):
        name_file = entry / "name"
        name = name_file.read_text(errors="replace").strip() if name_file.exists() else "?"
        loopback = "/virtual/" in str(entry.resolve())
        found.append((f"/dev/{entry.name}", name, loopback))
    return found


def _probe_indices() -> list[str]:
    import cv2

    from .sources.webcam import _quiet_opencv

    _quiet_opencv()
    found = []
    for i in PROBE_INDICES:
        cap = cv2.VideoCapture(i)
        if cap.isOpened():
            found.append(str(i))
        cap.release()
    return found


def describe_devices() -> str:
    lines = ["Cameras:"]
    if sys.platform.startswith("linux"):
        devices = _linux_video_devices()
        cams = [d for d in devices if not d[2]]
        loops = [d for d in devices if d[2]]
        lines += [f"  {path}  {name}" for path, name, _ in cams] or ["  none found"]
        lines.append("Virtual cameras (v4l2loopback):")
        lines += [f"  {path}  {name}" for path, name, _ in loops] or [
            '  none: sudo modprobe v4l2loopback exclusive_caps=1 card_label="VeilCam"'
        ]
    else:
        lines += [f"  index {i}" for i in _probe_indices()] or ["  none found"]
    backends = virtual_camera_backends()
    lines.append("Virtual-camera backends: " + (", ".join(backends) if backends else "none for this platform"))
    return "\n".join(lines)
