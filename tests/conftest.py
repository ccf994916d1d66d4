"""Shared fixtures: the real test data next to the repo, and tracked videos.

`../shared/data` is always present in CI: a missing file there is a failure,
never a skip.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest
import pyvirtualcam
from pyvirtualcam.camera import BACKENDS

from recording_backend import OPENED, TEST_BACKEND, RecordingBackend

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MODELS_DIR = SHARED / "models"
VIDEOS = {
    "p1": "p1_man_glasses_webcam_14s.mp4",
    "p2": "p2_woman_expressions_headmotion_12s.mp4",
    "p3": "p3_woman_talking_15s.mp4",
    "p4": "p4_man_glasses_smiles_8s.mp4",
    "facelost": "facelost_p4_cut_to_empty_room_11s.mp4",
}


def shared_file(relative: str) -> Path:
    path = SHARED / relative
    assert path.is_file(), f"missing shared test data {path}: tests need ../shared/data next to the repo"
    return path


def video_path(key: str) -> Path:
    return shared_file(f"video/{VIDEOS[key]}")


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    assert frames, f"could not decode {path}"
    return frames


def assert_all_differ(images: dict[str, np.ndarray], min_mean_diff: float) -> None:
    """Every pair of named images differs by more than `min_mean_diff` on average (looks must not blur together)."""
    names = list(images)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(images[a].astype(np.float32) - images[b]).mean() > min_mean_diff, (a, b)


@lru_cache(maxsize=None)
def tracked(key: str, mirror: bool = False) -> tuple:
    """Raw FaceStates for every frame of a shared video (tracked once per session)."""
    from veilcam.models.landmarker import FaceLandmarker

    states = []
    with FaceLandmarker(shared_file("models/face_landmarker.task"), mirror=mirror) as tracker:
        for i, rgb in enumerate(read_frames(video_path(key))):
            states.append(tracker.track(rgb, i / 30.0))
    return tuple(states)


@pytest.fixture
def model_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Models resolve from shared data; the user cache is a temp dir, never ~/.cache."""
    shared_file("models/face_landmarker.task")
    monkeypatch.setenv("VEILCAM_MODEL_DIR", str(MODELS_DIR))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return MODELS_DIR


@pytest.fixture
def test_backend():
    """Registers the recording backend; yields its name."""
    OPENED.clear()
    pyvirtualcam.register_backend(TEST_BACKEND, RecordingBackend)
    yield TEST_BACKEND
    BACKENDS.pop(TEST_BACKEND, None)
    OPENED.clear()


@pytest.fixture(autouse=True)
def private_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Every test (and every process it starts) gets its own runtime and state dirs:
    daemons lock, log and listen there, never in the real user's. The runtime dir
    is short, as Unix socket paths must be."""
    runtime = Path(tempfile.mkdtemp(prefix="vc-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    yield runtime
    shutil.rmtree(runtime, ignore_errors=True)
