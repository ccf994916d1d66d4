"""The pipeline end to end with real parts: MediaPipe, EGL rendering, a
registered pyvirtualcam backend, real video files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from canary import LOST, has_canary, write_canary_video
from conftest import read_frames, video_path
from recording_backend import OPENED
from veilcam.daemon.cli import main
from veilcam.daemon.compositor import Compositor
from veilcam.daemon.config import Config, config_from_dict
from veilcam.daemon.errors import PrivacyError
from veilcam.daemon.factory import make_filter, make_renderer, open_sink, open_source, processor_factory
from veilcam.daemon.pipeline import FrameProcessor, Pipeline
from veilcam.daemon.report import RunStats
from veilcam.models.face_state import FaceState
from veilcam.models.renderer import FaceRenderer

SMALL = ["--output-width", "320", "--output-height", "180"]
pytestmark = pytest.mark.usefixtures("model_dir")


@pytest.fixture(scope="module")
def canary_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("canary") / "canary.mp4"
    frames = write_canary_video(video_path("facelost"), out)
    assert frames == 340
    return out


def test_render_gives_one_output_frame_per_input_and_a_full_report(model_dir: Path, tmp_path: Path) -> None:
    out, report_path = tmp_path / "p4.mp4", tmp_path / "p4.json"
    assert main(["render", "--source", str(video_path("p4")), "--out", str(out), "--report", str(report_path), "-q", *SMALL]) == 0
    report = json.loads(report_path.read_text())
    assert report["frames_in"] == report["frames_out"] == 250
    assert len(read_frames(out)) == 250
    assert report["face_frames"] >= 245
    assert report["fps"] > 0
    for key in ("p50", "p95", "max"):
        assert report["latency_ms"][key] > 0
    for stage in ("decode", "track", "render", "sink"):
        assert report["stages_ms"][stage]["p50"] > 0 and report["stages_ms"][stage]["p95"] >= report["stages_ms"][stage]["p50"]
    frames = report["frames"]
    assert [f["index"] for f in frames] == list(range(250))
    with_face = [f for f in frames if f["face"]]
    assert len(with_face[0]["blendshapes"]) == 52 and "jawOpen" in with_face[0]["blendshapes"]


def test_render_never_shows_the_canary(model_dir: Path, tmp_path: Path, canary_video: Path) -> None:
    inputs = read_frames(canary_video)
    assert all(has_canary(f) for f in inputs), "the detector must see the canary in every input frame"
    out, report_path = tmp_path / "out.mp4", tmp_path / "r.json"
    assert main(["render", "--source", str(canary_video), "--out", str(out), "--report", str(report_path), "-q", *SMALL]) == 0
    outputs = read_frames(out)
    assert len(outputs) == len(inputs)
    assert not any(has_canary(f) for f in outputs)
    report = json.loads(report_path.read_text())
    assert not any(report["frames"][i]["face"] for i in LOST[3:-3])


def test_live_pipeline_to_virtual_camera_never_shows_the_canary(model_dir: Path, test_backend: str, canary_video: Path) -> None:
    config = config_from_dict(
        {
            "source": {"kind": "file", "path": str(canary_video), "realtime": True},
            "output": {"sink": "virtualcam", "backend": test_backend, "width": 320, "height": 180},
        },
        "test",
    )
    with open_source(config) as source, open_sink(config) as sink:
        pipeline = Pipeline(source, processor_factory(config, source), sink, config.output.fps)
        pipeline.start()
        assert pipeline.wait(timeout=60), "the source should reach its end"
        pipeline.stop()
    (cam,) = OPENED
    frames = [f.reshape(180, 320, 3) for f in cam.frames]
    assert len(frames) > 300  # ~11 s at 30 fps, placeholder phases included
    assert pipeline.stats.placeholders >= 3  # the "stopped" card at least
    leaked = [i for i, f in enumerate(frames) if has_canary(f)]
    assert not leaked, f"canary visible in output frames {leaked[:10]}"


class _Exploding(FaceRenderer):
    """A renderer that fails on every other frame: the output must fall back to the card."""

    def __init__(self, inner: FaceRenderer) -> None:
        super().__init__(inner.width, inner.height)
        self.inner, self.calls = inner, 0

    def render(self, state: FaceState) -> np.ndarray:
        self.calls += 1
        if self.calls % 2 == 0:
            raise RuntimeError("boom")
        return self.inner.render(state)

    def close(self) -> None:
        self.inner.close()


def test_renderer_errors_fall_back_to_the_card_and_output_keeps_its_rate(test_backend: str) -> None:
    config = config_from_dict({"source": {"kind": "demo"}, "output": {"sink": "virtualcam", "backend": test_backend, "width": 320, "height": 180}}, "test")
    renderers: list[_Exploding] = []

    def build(stats: RunStats) -> FrameProcessor:
        renderers.append(_Exploding(make_renderer(config)))
        return FrameProcessor(None, make_filter(config), renderers[0], Compositor(320, 180), stats)

    with open_sink(config) as sink:
        pipeline = Pipeline(open_source(config), build, sink, 30.0)
        pipeline.start()
        pipeline.wait(timeout=2.0)
        pipeline.stop()
    assert renderers[0].calls > 10
    assert pipeline.stats.errors > 5 and pipeline.stats.placeholders > 0
    times = np.array(OPENED[0].times)
    gaps = np.diff(times)
    assert gaps.max() < 0.1, "the output must keep coming while rendering fails"
    assert 0.025 < np.median(gaps) < 0.040


def test_pipeline_refuses_a_renderer_that_is_not_privacy_safe() -> None:
    class FrameRenderer:  # anything that is not a FaceRenderer
        def render(self, frame):  # pragma: no cover - never called
            return frame

    with pytest.raises(TypeError):
        FrameProcessor(None, make_filter(Config()), FrameRenderer(), Compositor(64, 36), RunStats())  # type: ignore[arg-type]


def test_run_demo_to_virtual_camera_at_size_format_and_rate(test_backend: str) -> None:
    t0 = time.perf_counter()
    assert main(["run", "--source", "demo", "--out", "virtualcam", "--output-backend", test_backend, "--duration", "3"]) == 0
    assert time.perf_counter() - t0 < 20
    (cam,) = OPENED
    assert (cam.width, cam.height, cam.fps) == (1280, 720, 30)
    assert cam.closed
    frames = [f.reshape(720, 1280, 3) for f in cam.frames]
    assert 75 <= len(frames) <= 110
    gaps = np.diff(cam.times)
    assert 0.028 < np.median(gaps) < 0.038
    # Mostly avatar frames, not the card: the avatar moves between frames.
    assert np.abs(frames[-10].astype(int) - frames[-5].astype(int)).mean() > 0.05


def test_run_demo_to_file(tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    assert main(["run", "--source", "demo", "--out", str(out), "--duration", "2", *SMALL]) == 0
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) >= 45
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (320, 180)


class _PixelProcessor:
    """Stands in for a processor that would see camera pixels (restyle)."""

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats
        self.closed = False

    def warm_up(self) -> None: ...

    def process(self, item):
        raise AssertionError("a pixel processor ran in privacy mode")

    def close(self) -> None:
        self.closed = True


def test_privacy_mode_refuses_a_processor_that_sees_pixels() -> None:
    built: list[_PixelProcessor] = []

    def make(stats: RunStats) -> _PixelProcessor:
        built.append(_PixelProcessor(stats))
        return built[-1]

    config = config_from_dict({"source": {"kind": "demo"}, "output": {"sink": "null", "width": 320, "height": 180}}, "test")
    with open_source(config) as source, open_sink(config) as sink:
        pipeline = Pipeline(source, make, sink, 30.0)
        with pytest.raises(PrivacyError, match="privacy mode is on"):
            pipeline.start()
    assert built and built[0].closed
