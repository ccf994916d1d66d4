"""A live pipeline on real parts, recorded: the canary video as the camera,
a registered pyvirtualcam backend as the virtual camera.

`LiveRig` runs a `LivePipeline` the way the daemon does and keeps what the
virtual camera received, with arrival times, so tests can tell which avatar,
card or leak each output frame was.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from canary import has_canary, write_canary_video
from conftest import video_path
from recording_backend import OPENED
from veilcam.daemon.avatars import build_renderer, find_avatar
from veilcam.daemon.config import Config, config_from_dict
from veilcam.daemon.factory import model_store, open_sink, open_source
from veilcam.daemon.live import LivePipeline, ProcessorBuilder, default_builder
from veilcam.daemon.placeholder import placeholder_card
from veilcam.daemon.selection import Selection
from veilcam.models.face_state import FaceState

W, H = 320, 180
CORNER = (slice(0, 12), slice(0, 12))


@pytest.fixture(scope="session")
def canary_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The face-lost clip with canary bands in every frame (and a full canary stretch)."""
    out = tmp_path_factory.mktemp("canary") / "canary.mp4"
    write_canary_video(video_path("facelost"), out)
    return out


def live_config(backend: str, source: dict | None = None, **sections: dict) -> Config:
    data = {
        "source": source or {"kind": "demo"},
        "output": {"sink": "virtualcam", "backend": backend, "width": W, "height": H},
        **sections,
    }
    return config_from_dict(data, "test")


def canary_source(path: Path) -> dict:
    return {"kind": "file", "path": str(path), "realtime": True, "loop": True}


def corner(rgb: np.ndarray) -> np.ndarray:
    return rgb[CORNER].reshape(-1, 3).mean(axis=0)


def look_corners(config: Config, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Corner colour of each avatar's backdrop, and of the card."""
    refs = {"card": corner(placeholder_card(W, H, ""))}
    store = model_store(config)
    for name in names:
        with build_renderer(find_avatar(name), config, store) as renderer:
            refs[name] = corner(renderer.render(FaceState.neutral(0.0))[..., :3])
    return refs


def classify(frame: np.ndarray, refs: dict[str, np.ndarray], tolerance: float = 6.0) -> str:
    """Which reference the frame's backdrop is, "canary" for a leak, "other" for anything else (black)."""
    if has_canary(frame):
        return "canary"
    c = corner(frame)
    name, ref = min(refs.items(), key=lambda kv: float(np.abs(kv[1] - c).max()))
    return name if float(np.abs(ref - c).max()) <= tolerance else "other"


class LiveRig:
    """Start a `LivePipeline` to the test backend; after the `with`, `frames` and `times` hold the output."""

    def __init__(self, config: Config, selection: Selection, wrap: Callable[[ProcessorBuilder], ProcessorBuilder] | None = None, reopen: bool = False) -> None:
        self.config = config
        self.selection = selection
        self.wrap = wrap or (lambda build: build)
        self.reopen = reopen
        self.frames: list[np.ndarray] = []
        self.times: np.ndarray = np.zeros(0)

    def __enter__(self) -> "LiveRig":
        self.source = open_source(self.config)
        self.sink = open_sink(self.config)
        reopen = (lambda: open_source(self.config)) if self.reopen else None
        self.live = LivePipeline(self.source, self.sink, self.config, self.selection, self.wrap(default_builder(self.source)), reopen)
        self.live.start()
        self.cam = OPENED[-1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()
        self.sink.close()
        self.frames = [f.reshape(H, W, 3) for f in self.cam.frames]
        self.times = np.array(self.cam.times)

    def wait_for(self, predicate, timeout: float = 20.0) -> None:
        """Poll until `predicate()` holds (the output is live, so this is how tests sync)."""
        deadline = time.perf_counter() + timeout
        while not predicate():
            assert time.perf_counter() < deadline, "timed out waiting for the live pipeline"
            time.sleep(0.02)

    def frames_sent(self) -> int:
        return len(self.cam.frames)

    def wait_frames(self, n: int, timeout: float = 20.0) -> None:
        """Until `n` more frames have reached the virtual camera."""
        target = self.frames_sent() + n
        self.wait_for(lambda: self.frames_sent() >= target, timeout)

    def wait_shown(self, refs: dict[str, np.ndarray], label: str, timeout: float = 20.0) -> None:
        """Until the newest frame at the virtual camera is `label` (an avatar, "card" or "canary")."""
        self.wait_for(lambda: bool(self.cam.frames) and classify(self.cam.frames[-1].reshape(H, W, 3), refs) == label, timeout)

    def labels(self, refs: dict[str, np.ndarray]) -> list[str]:
        return [classify(f, refs) for f in self.frames]

    def intervals(self) -> np.ndarray:
        return np.diff(self.times)


def segments(labels: list[str]) -> list[str]:
    """Run-length view of what was shown after start-up: ['porcelain', 'midnight', 'card'].
    A leading "starting" card (before the first frame was ready) is dropped."""
    out: list[str] = []
    for label in labels:
        if (out or label != "card") and (not out or out[-1] != label):
            out.append(label)
    return out
