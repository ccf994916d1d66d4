"""Restyle in the daemon: privacy refusal, model errors, config, offline render
and the live pipeline, with the tiny random model and the real TAESD."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli_run import error_line
from conftest import MODELS_DIR, read_frames, video_path
from tiny_diffusion import SIZE, save_tiny_model
from veilcam.daemon.config import STYLE_PRESETS, Config, RestyleConfig, config_from_dict
from veilcam.daemon.errors import ModelFileError, PrivacyError
from veilcam.daemon.factory import model_store, open_sink, open_source, processor_factory
from veilcam.daemon.offline import render_video
from veilcam.daemon.pipeline import FrameProcessor, Pipeline
from veilcam.daemon.report import RunStats
from veilcam.daemon.restyle import RestyleProcessor

pytestmark = [
    pytest.mark.usefixtures("model_dir"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]
OUTPUT = {"width": 160, "height": 120}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="module")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 12 frames of p1 (a real webcam clip), to keep CPU time small."""
    path = tmp_path_factory.mktemp("video") / "p1_short.mp4"
    frames = read_frames(video_path("p1"))[:12]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (frames[0].shape[1], frames[0].shape[0]))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _config(tiny_model: Path, privacy: bool = False, **restyle) -> Config:
    values = {"enabled": True, "model": str(tiny_model), "width": SIZE, "height": SIZE, "device": "cpu", "similarity_threshold": 1.0, **restyle}
    return config_from_dict({"restyle": values, "privacy": {"enabled": privacy}, "output": OUTPUT, "models": {"download": False}}, "test")


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def _veilcam(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
                "VEILCAM_MODEL_DIR": str(MODELS_DIR), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "veilcam.daemon.cli", *args], capture_output=True, text=True, env=full_env, timeout=300)


# -- privacy ------------------------------------------------------------------------
def test_restyle_is_refused_in_privacy_mode(tiny_model: Path) -> None:
    config = _config(tiny_model, privacy=True)
    with pytest.raises(PrivacyError) as err:
        RestyleProcessor(config, RunStats(), model_store(config))
    msg = _one_line(err)
    assert "not privacy-safe" in msg and "--no-privacy-enabled" in msg
    with open_source(config_from_dict({"source": {"kind": "file", "path": str(video_path("p4"))}}, "test", config)) as source:
        with pytest.raises(PrivacyError):  # refused before any model is loaded or frame read
            processor_factory(config, source)


def test_pipeline_in_privacy_mode_refuses_a_restyle_processor(tiny_model: Path, short_video: Path) -> None:
    config = config_from_dict({"source": {"kind": "file", "path": str(short_video)}, "output": {"sink": "null"}}, "test", _config(tiny_model))
    built: list[RestyleProcessor] = []

    def make(stats: RunStats) -> RestyleProcessor:
        built.append(RestyleProcessor(config, stats, model_store(config)))
        return built[-1]

    with open_source(config) as source, open_sink(config) as sink:
        pipeline = Pipeline(source, make, sink, 30.0, privacy=True)
        with pytest.raises(PrivacyError, match="privacy mode is on"):
            pipeline.start()
    assert built and built[0].stream is None  # closed unused


def test_cli_refuses_restyle_without_privacy_off(tmp_path: Path, tiny_model: Path) -> None:
    proc = _veilcam(["render", "--mode", "restyle", "--restyle-model", str(tiny_model), "--source", str(video_path("p4")), "--out", str(tmp_path / "o.mp4")], tmp_path)
    line = error_line(proc)
    assert "privacy" in line and "--no-privacy-enabled" in line
    assert not (tmp_path / "o.mp4").exists()


# -- missing models -------------------------------------------------------------------
def test_missing_local_model_folder_is_one_clear_line(tmp_path: Path) -> None:
    config = _config(tmp_path / "no-such-model")
    with pytest.raises(ModelFileError) as err:
        RestyleProcessor(config, RunStats(), model_store(config))
    msg = _one_line(err)
    assert "restyle.model" in msg and str(tmp_path / "no-such-model") in msg and "not found" in msg


def test_incomplete_model_folder_names_what_is_missing(tmp_path: Path, tiny_model: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "unet").symlink_to(tiny_model / "unet")
    config = _config(broken)
    with pytest.raises(ModelFileError) as err:
        RestyleProcessor(config, RunStats(), model_store(config))
    msg = _one_line(err)
    assert str(broken) in msg and "text_encoder" in msg


def test_offline_without_the_model_says_what_to_download_and_where(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 or no network
    config = config_from_dict({"restyle": {"model": "stabilityai/sd-turbo"}, "models": {"download": True}}, "test", _config(tiny_model))
    with pytest.raises(ModelFileError) as err:
        RestyleProcessor(config, RunStats(), model_store(config))
    msg = _one_line(err)
    assert "restyle.model" in msg and "hf download stabilityai/sd-turbo" in msg and str(tmp_path / "hub") in msg


# -- config -----------------------------------------------------------------------------
def test_styles_and_custom_steps() -> None:
    for name, style in STYLE_PRESETS.items():
        assert (style.strength is None) != (not style.t_index_list), name  # exactly one of the two
        steps = RestyleConfig(style=name).preset().t_index_list
        assert steps and all(0 <= s < 50 for s in steps) and list(steps) == sorted(set(steps))
    assert RestyleConfig(style="anime").preset().t_index_list == (25,)  # strength 0.5 of 50 steps
    custom = config_from_dict({"restyle": {"style": "anime", "prompt": "a marble statue", "t_index_list": [20, 40]}}, "test").restyle.preset()
    assert custom.prompt == "a marble statue" and custom.t_index_list == (20, 40)


def test_restyle_flags(tmp_path: Path) -> None:
    from veilcam.daemon.cli import build_parser, resolve_config

    args = build_parser().parse_args(["render", "--source", "x.mp4", "--out", "o.mp4", "--mode", "restyle", "--no-privacy-enabled",
                                      "--restyle-t-index-list", "30,44", "--restyle-style", "cyberpunk", "--config", str(tmp_path / "none.toml")])
    (tmp_path / "none.toml").write_text("")
    config = resolve_config(args)
    assert config.restyle.enabled and not config.privacy.enabled
    assert config.restyle.preset().t_index_list == (30, 44) and "cyberpunk" in config.restyle.preset().prompt
    proc = _veilcam(["render", "--source", "x.mp4", "--out", "o.mp4", "--restyle-t-index-list", "3x"], tmp_path)
    assert proc.returncode == 2 and "--restyle-t-index-list" in proc.stderr and "integers" in proc.stderr


# -- running ----------------------------------------------------------------------------
def test_render_restyles_every_frame_and_reports_flicker(tmp_path: Path, tiny_model: Path, short_video: Path) -> None:
    out = tmp_path / "styled.mp4"
    report = render_video(_config(tiny_model, latent_blend=0.2), short_video, out, progress=False)
    frames_in = read_frames(short_video)
    frames_out = read_frames(out)
    assert report["frames_in"] == report["frames_out"] == len(frames_out) == 12
    assert frames_out[0].shape == (OUTPUT["height"], OUTPUT["width"], 3)
    # Pillarboxed square: black bars left and right, a picture in the middle.
    assert frames_out[5][:, :15].max() < 30 and frames_out[5][:, 30:130].std() > 10
    # It is restyled, not the camera image: compare with the input cropped and fitted the same way.
    from veilcam.daemon.restyle import _center_crop, fit_into

    plain = fit_into(_center_crop(frames_in[5], 1.0), OUTPUT["width"], OUTPUT["height"])
    assert np.abs(frames_out[5].astype(int) - plain).mean() > 10
    assert report["flicker"] == pytest.approx(report["output_frame_diff"] / report["input_frame_diff"], rel=1e-3)
    assert report["flicker"] > 0 and report["stages_ms"]["render"]["p50"] > 0


def test_live_pipeline_runs_restyle_with_privacy_off(tiny_model: Path, short_video: Path) -> None:
    config = config_from_dict({"source": {"kind": "file", "path": str(short_video), "realtime": False}, "output": {"sink": "null"}}, "test", _config(tiny_model))
    with open_source(config) as source, open_sink(config) as sink:
        pipeline = Pipeline(source, processor_factory(config, source), sink, 30.0, privacy=False)
        pipeline.start()
        try:
            assert pipeline.wait(timeout=120)  # the source ends
        finally:
            pipeline.stop()
    stats = pipeline.stats
    assert stats.errors == 0 and stats.frames_in >= 1 and stats.frames_out > stats.placeholders


def test_processor_prompt_change_from_another_thread(tiny_model: Path, short_video: Path) -> None:
    import threading

    from veilcam.daemon.sources.video_file import VideoFileSource

    config = _config(tiny_model, t_index_list=[30])
    with VideoFileSource(short_video, realtime=False) as video:
        items = [video.read() for _ in range(3)]
    changed = RestyleProcessor(config, RunStats(), model_store(config))
    same = RestyleProcessor(config, RunStats(), model_store(config))
    for item in items[:2]:
        assert np.array_equal(changed.process(item).rgb, same.process(item).rgb)
    setter = threading.Thread(target=changed.set_prompt, args=("a bronze statue",))
    setter.start()
    setter.join()
    assert np.abs(changed.process(items[2]).rgb.astype(int) - same.process(items[2]).rgb).mean() > 1


# -- the daemon ---------------------------------------------------------------------------
def test_run_mode_restyle_is_refused_in_privacy_mode_before_anything_opens(tmp_path: Path) -> None:
    line = error_line(_veilcam(["run", "--mode", "restyle", "--source", "/dev/video99", "--out", "null", "--duration", "1"], tmp_path))
    assert "not privacy-safe" in line and "/dev/video99" not in line  # refused before the camera is opened


def test_daemon_runs_restyle_takes_a_new_style_and_drops_it_when_privacy_comes_on(tiny_model: Path, short_video: Path) -> None:
    import time

    from daemon_rig import running_daemon
    from veilcam.daemon.control_client import ControlClient

    source = {"source": {"kind": "file", "path": str(short_video), "loop": True}, "output": {"sink": "null", **OUTPUT},
              "daemon": {"watchdog_s": 10.0}}  # a CPU frame of the tiny model can take over the default 0.5 s on a busy machine
    config = config_from_dict(source, "test", _config(tiny_model))
    with running_daemon(lambda: config) as daemon:
        client = ControlClient()
        status = client.call("status")
        assert (status["mode"], status["privacy"]) == ("restyle", False)
        assert status["restyle"]["available"] and set(status["restyle"]["styles"]) == set(STYLE_PRESETS)
        assert client.call("set_style", prompt="a bronze statue")["style"] == "a bronze statue"
        deadline = time.perf_counter() + 60
        while daemon.live.stats.frames_out - daemon.live.stats.placeholders < 3 and time.perf_counter() < deadline:
            time.sleep(0.1)
        assert daemon.live.stats.frames_out - daemon.live.stats.placeholders >= 3, "restyled frames reach the output"
        client.call("set_privacy", enabled=True)
        assert daemon.live.selection.mode == "avatar"  # restyle is gone the moment privacy is on
        assert not isinstance(daemon.live.processor, RestyleProcessor)
        # Let the avatar finish building: a runner still starting when the test ends would outlive it.
        deadline = time.perf_counter() + 60
        while not isinstance(daemon.live.processor, FrameProcessor) and time.perf_counter() < deadline:
            time.sleep(0.1)
        assert isinstance(daemon.live.processor, FrameProcessor)
