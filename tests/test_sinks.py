"""Sinks against real components: a registered pyvirtualcam backend, a real
mp4 written and decoded by OpenCV, and the real display check."""

from __future__ import annotations

import glob
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import pyvirtualcam
from pyvirtualcam.camera import BACKENDS
from pyvirtualcam.util import decode_fourcc

from conftest import read_frames
from recording_backend import OPENED, TEST_DEVICE
from veilcam.daemon.errors import SinkError
from veilcam.daemon.sinks import (
    NullSink,
    PreviewSink,
    Sink,
    TeeSink,
    VideoFileSink,
    VirtualCameraSink,
    virtual_camera_backends,
)

class FailingBackend:
    def __init__(self, **kw: object):
        raise RuntimeError("Virtual camera device /dev/video7 is already in use.")


def pattern(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Distinct values per pixel and channel, so any reordering or channel swap shows."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x + seed) % 256, (y * 3 + seed) % 256, (x * 7 + y * 5 + seed) % 256], axis=-1).astype(
        np.uint8
    )


def gradient(width: int, height: int, index: int) -> np.ndarray:
    """Smooth image (codec-friendly) whose blue level encodes the frame index."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = x * 255 // (width - 1)
    img[..., 1] = y * 255 // (height - 1)
    img[..., 2] = 20 + index * 10
    return img


# --- virtual camera ---------------------------------------------------------


@pytest.mark.parametrize("size", [(1280, 720), (640, 360)])
def test_virtual_camera_frames_arrive_at_size_and_unchanged(test_backend, size):
    width, height = size
    sent = [pattern(width, height, seed) for seed in range(3)]
    with VirtualCameraSink(width, height, 30, backend=test_backend) as sink:
        for frame in sent:
            sink.send(frame)
    (opened,) = OPENED
    assert (opened.width, opened.height, opened.fps) == (width, height, 30)
    assert opened.closed
    assert len(opened.frames) == 3
    for got, want in zip(opened.frames, sent):
        # The backend gets a flat, C-contiguous uint8 buffer in the RGB pixel format.
        assert got.dtype == np.uint8 and got.ndim == 1 and got.flags.c_contiguous
        assert got.size == width * height * 3
        np.testing.assert_array_equal(got.reshape(height, width, 3), want)


def test_virtual_camera_hands_backend_rgb_fourcc(test_backend):
    with VirtualCameraSink(640, 360, 30, backend=test_backend):
        pass
    assert decode_fourcc(OPENED[0].fourcc) == "raw " == pyvirtualcam.PixelFormat.RGB.value


def test_virtual_camera_description_names_device_and_backend(test_backend):
    sink = VirtualCameraSink(640, 360, 30, device=TEST_DEVICE, backend=test_backend)
    sink.close()
    assert OPENED[0].device == TEST_DEVICE
    assert TEST_DEVICE in sink.description and test_backend in sink.description


def test_virtual_camera_passes_frames_through_at_caller_rate(test_backend):
    """Pacing is the caller's: frames reach the backend when sent, not re-timed."""
    fps = 30
    frame = pattern(640, 360)
    with VirtualCameraSink(640, 360, fps, backend=test_backend) as sink:
        start = time.perf_counter()
        for i in range(30):
            delay = start + i / fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sink.send(frame)
    intervals = np.diff(OPENED[0].times)
    assert len(intervals) == 29
    assert 0.025 <= statistics.median(intervals) <= 0.040


def test_virtual_camera_unknown_backend_is_one_line(test_backend):
    with pytest.raises(SinkError) as e:
        VirtualCameraSink(backend="no-such-backend")
    msg = str(e.value)
    assert "\n" not in msg and "no-such-backend" in msg and test_backend in msg


def test_virtual_camera_unknown_device_is_one_line(test_backend):
    with pytest.raises(SinkError) as e:
        VirtualCameraSink(640, 360, 30, device="/dev/video42", backend=test_backend)
    msg = str(e.value)
    assert "\n" not in msg and "/dev/video42" in msg and "does not exist" in msg
    assert ("modprobe v4l2loopback" if platform.system() == "Linux" else "OBS") in msg


def test_virtual_camera_all_backends_failing_is_one_line(test_backend):
    pyvirtualcam.register_backend("veilcam-failing", FailingBackend)
    try:
        with pytest.raises(SinkError) as e:
            VirtualCameraSink(640, 360, 30, device="/dev/video7")
    finally:
        BACKENDS.pop("veilcam-failing")
    msg = str(e.value)
    assert "\n" not in msg and "already in use" in msg and "does not exist" in msg
    assert "close the program already using it" in msg


@pytest.mark.skipif(
    platform.system() != "Linux" or bool(glob.glob("/dev/video*")), reason="needs Linux without video devices"
)
def test_real_v4l2loopback_missing_gives_modprobe_hint():
    with pytest.raises(SinkError) as e:
        VirtualCameraSink(backend="v4l2loopback")
    msg = str(e.value)
    assert "\n" not in msg
    assert 'sudo modprobe v4l2loopback exclusive_caps=1 card_label="VeilCam"' in msg


def test_backends_list_registered(test_backend):
    names = virtual_camera_backends()
    assert test_backend in names
    if platform.system() == "Linux":
        assert "v4l2loopback" in names


# --- video file -------------------------------------------------------------


def test_video_file_roundtrip(tmp_path: Path):
    width, height, n = 320, 240, 20
    path = tmp_path / "sub" / "dir" / "out.mp4"  # parent created by the sink
    sent = [gradient(width, height, i) for i in range(n)]
    with VideoFileSink(path, width, height, 30) as sink:
        for frame in sent:
            sink.send(frame)
        assert str(path) in sink.description

    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    cap.release()
    decoded = read_frames(path)
    assert len(decoded) == n
    for got, want in zip(decoded, sent):
        assert got.shape == (height, width, 3)
        # Lossy codec: close, not equal. The blue level also checks order and RGB->BGR.
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 10


def test_video_file_named_mkv_is_lossless(tmp_path: Path):
    """An enrollment clip (`veilcam avatar record`) must not carry a codec's blocks: .mkv is FFV1, bit for bit."""
    rng = np.random.default_rng(0)
    sent = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(5)]  # noise: no lossy codec keeps it
    with VideoFileSink(tmp_path / "clip.MKV", 64, 48, 30) as sink:
        for frame in sent:
            sink.send(frame)
        assert "FFV1" in sink.description
    decoded = read_frames(tmp_path / "clip.MKV")
    assert len(decoded) == len(sent) and all(np.array_equal(a, b) for a, b in zip(decoded, sent))


def test_video_file_parent_is_a_file(tmp_path: Path):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    with pytest.raises(SinkError) as e:
        VideoFileSink(blocker / "out.mp4", 320, 240, 30)
    assert "\n" not in str(e.value) and str(blocker) in str(e.value)


def test_video_file_path_is_a_folder(tmp_path: Path):
    with pytest.raises(SinkError) as e:
        VideoFileSink(tmp_path, 320, 240, 30)
    assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)


def test_video_file_writer_cannot_open(tmp_path: Path):
    path = tmp_path / "out.unknownext"
    with pytest.raises(SinkError) as e:
        VideoFileSink(path, 320, 240, 30)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_video_file_rejects_wrong_frame_size(tmp_path: Path):
    with VideoFileSink(tmp_path / "out.mp4", 320, 240, 30) as sink:
        with pytest.raises(ValueError):
            sink.send(np.zeros((240, 321, 3), np.uint8))


# --- preview, null, tee -----------------------------------------------------


@pytest.mark.skipif(platform.system() != "Linux", reason="display variables are a Linux notion")
def test_preview_without_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError) as e:
        PreviewSink(640, 360, 30)
    msg = str(e.value)
    assert "\n" not in msg and "no display" in msg and "--preview" in msg


def test_null_sink_counts():
    sink = NullSink(64, 48, 30)
    for _ in range(5):
        sink.send(np.zeros((48, 64, 3), np.uint8))
    sink.close()
    assert sink.frames_sent == 5


class RecordingSink(Sink):
    def __init__(self, width: int, height: int, fps: float) -> None:
        super().__init__(width, height, fps)
        self.frames: list[np.ndarray] = []
        self.closed = False

    def send(self, rgb: np.ndarray) -> None:
        self.frames.append(rgb)

    def close(self) -> None:
        self.closed = True


def test_tee_sends_to_both_and_closes_both(test_backend):
    camera = VirtualCameraSink(64, 48, 30, backend=test_backend)
    second = RecordingSink(64, 48, 30)
    frame = pattern(64, 48)
    with TeeSink(camera, second) as tee:
        tee.send(frame)
        tee.send(frame)
        assert camera.description in tee.description
    assert len(OPENED[0].frames) == 2 and len(second.frames) == 2
    np.testing.assert_array_equal(OPENED[0].frames[0].reshape(48, 64, 3), frame)
    assert OPENED[0].closed and second.closed


def test_tee_rejects_mismatched_sizes():
    with pytest.raises(ValueError):
        TeeSink(NullSink(64, 48, 30), NullSink(32, 24, 30))
