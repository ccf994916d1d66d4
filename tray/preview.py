"""`veilcam preview`: watch the virtual camera as a meeting app would see it.

It reads the virtual camera device itself (not a copy from the daemon), so
what it shows is exactly what Zoom or Teams receive.
"""

from __future__ import annotations

import cv2

from veilcam.daemon.control_client import ControlClient
from veilcam.daemon.errors import VeilCamError

WINDOW = "VeilCam preview (q or Esc closes)"


def show_preview() -> int:
    status = ControlClient().call("status")
    device = status.get("output_device")
    if not device:
        raise VeilCamError(f"the output is not a virtual camera ({status['output']}); nothing to preview")
    cap = cv2.VideoCapture(device)
    if not cap.isOpened():
        raise VeilCamError(f"cannot open {device} for reading; another app may hold it exclusively")
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                raise VeilCamError(f"{device} stopped delivering frames (VeilCam stopped?)")
            cv2.imshow(WINDOW, frame)
            key = cv2.waitKey(1) & 0xFF
            if key in (ord("q"), 27) or cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                return 0
    finally:
        cap.release()
        cv2.destroyAllWindows()
