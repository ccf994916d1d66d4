"""`veilcam avatar record`: the prompt script on synthetic face states, and a real recording from a shared clip."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import read_frames, video_path
from veilcam.daemon.cli import main
from veilcam.daemon.config import Config, config_from_dict
from veilcam.daemon.enroll_data import unmirrored
from veilcam.daemon.errors import ConfigError, SinkError
from veilcam.daemon.eval_fidelity import track_video
from veilcam.daemon.model_store import ModelStore
from veilcam.daemon.record import prompt_view, record_clip
from veilcam.daemon.record_script import SCRIPT, Prompt, ScriptRun
from veilcam.models.expression_warp import lacking_groups
from veilcam.models.face_state import BLENDSHAPE_INDEX, NUM_BLENDSHAPES, FaceState, identity_pose

FPS = 30.0
BLINK = ("eyeBlinkLeft", "eyeBlinkRight")


def face(t: float, yaw_deg: float = 0.0, present: bool = True, **scores: float) -> FaceState:
    b = np.zeros(NUM_BLENDSHAPES, np.float32)
    for name, v in scores.items():
        b[BLENDSHAPE_INDEX[name]] = v
    pose = identity_pose()
    a = math.radians(yaw_deg)
    pose[:3, :3] = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], np.float32)
    return FaceState(present, b, pose, t)


def feed(run: ScriptRun, states: list[FaceState]) -> None:
    for s in states:
        run.update(s, s.timestamp)


def test_a_prompt_held_long_enough_ends_early_and_the_next_begins() -> None:
    run = ScriptRun((Prompt("Close your eyes", BLINK, hold_s=0.5, limit_s=6.0), Prompt("Relax", limit_s=1.0)))
    # Eyes half closed for a second (under the target), then closed.
    feed(run, [face(i / FPS, eyeBlinkLeft=0.3, eyeBlinkRight=0.3) for i in range(30)])
    assert run.outcomes[0].end_s is None and run.outcomes[0].best == pytest.approx(0.3)
    feed(run, [face(1 + i / FPS, eyeBlinkLeft=0.8, eyeBlinkRight=0.7) for i in range(30)])
    first = run.outcomes[0]
    assert first.met and first.verdict() == "done" and first.best == pytest.approx(0.7)
    assert first.end_s == pytest.approx(1.5, abs=1.5 / FPS), "it ends once held 0.5 s (15 frames), not at its limit"
    assert run.outcomes[1].start_s == first.end_s and not run.done
    feed(run, [face(2 + i / FPS) for i in range(40)])
    assert run.done and run.outcomes[1].met and run.outcomes[1].end_s == pytest.approx(first.end_s + 1.0, abs=1 / FPS)


def test_one_eye_or_a_lost_face_does_not_count_and_the_prompt_times_out() -> None:
    run = ScriptRun((Prompt("Close your eyes", BLINK, limit_s=2.0),))
    feed(run, [face(i / FPS, eyeBlinkLeft=0.9, eyeBlinkRight=0.1) for i in range(30)])  # a wink
    feed(run, [face(1 + i / FPS, present=False, eyeBlinkLeft=0.9, eyeBlinkRight=0.9) for i in range(31)])
    outcome = run.outcomes[0]
    assert run.done and not outcome.met and outcome.end_s == pytest.approx(2.0)
    assert outcome.verdict() == "not reached (best 0.10 of 0.5)"


def test_a_head_turn_counts_from_where_the_head_was_both_ways() -> None:
    prompt = Prompt("Turn your head", axis="yaw", turn_deg=20.0, limit_s=8.0)
    # Seated 30 degrees off the camera's axis: turning 25 degrees one way only is not enough.
    one_way = ScriptRun((prompt,))
    feed(one_way, [face(i / FPS, yaw_deg=30 + 25 * math.sin(math.pi * i / 60)) for i in range(61)])
    assert one_way.outcomes[0].end_s is None and one_way.outcomes[0].best < 1
    both = ScriptRun((prompt,))
    feed(both, [face(i / FPS, yaw_deg=30 + 25 * math.sin(2 * math.pi * i / 90)) for i in range(91)])
    assert both.done and both.outcomes[0].met and both.outcomes[0].best >= 20


def test_the_script_asks_for_what_warps_cannot_make() -> None:
    asked = {c for p in SCRIPT for c in p.channels}
    assert {"jawOpen", "mouthPucker", "mouthSmileLeft", "eyeLookDownLeft", "browInnerUp", "eyeBlinkLeft"} <= asked
    together = [set(p.channels) for p in SCRIPT]
    assert {"mouthPucker", "mouthSmileLeft", "mouthSmileRight"} in together, "puckering while smiling, which no warp shows"
    assert {p.axis for p in SCRIPT} >= {"yaw", "pitch"}
    assert all(p.limit_s > p.hold_s for p in SCRIPT)


@pytest.fixture(scope="module")
def config() -> Config:
    return config_from_dict({"source": {"kind": "file", "path": str(video_path("p2")), "realtime": False}}, "test", Config())


def test_recording_a_clip_keeps_its_frames_untouched_and_judges_it_as_enrollment_does(config: Config, tmp_path: Path, model_dir: Path) -> None:
    store = ModelStore.from_environment(progress=False)
    script = (Prompt("Look at the camera", limit_s=1.0), Prompt("Close your eyes", BLINK, hold_s=0.3, limit_s=5.0),
              Prompt("Raise your eyebrows", ("browInnerUp",), limit_s=2.0))
    seen = []
    result = record_clip(config, tmp_path / "clip.mkv", store, script=script, on_frame=lambda run, p: seen.append((len(run.outcomes), p)))
    run = result.run
    # p2 closes her eyes within the limit and never raises her brows (its shared clip's tracking says so).
    assert run.done and [o.met for o in run.outcomes] == [True, True, False]
    assert run.outcomes[1].end_s < 1.0 + 5.0 and run.outcomes[2].best < 0.5
    assert run.outcomes[2].end_s == pytest.approx(run.outcomes[1].end_s + 2.0, abs=1.5 / FPS)
    # Recording stops when the script does, and every recorded frame is the source's, losslessly.
    source = read_frames(video_path("p2"))
    recorded = read_frames(result.path)
    assert result.frames == len(recorded) == len(seen) < len(source)
    assert len(recorded) == pytest.approx(run.outcomes[-1].end_s * FPS + 1, abs=1)
    assert all(np.array_equal(a, b) for a, b in zip(recorded, source))
    assert 0 <= min(p for _, p in seen) and max(p for _, p in seen) <= 1
    # What the clip lacks is what enrollment would find tracking it.
    states = track_video(result.path, unmirrored(config), False, "", False)
    tracked = np.array([s.blendshapes for s in states if s.present])
    assert result.face_fraction == pytest.approx(len(tracked) / len(states))
    assert set(result.lacking) == set(lacking_groups(tracked)) and "brows up" in result.lacking


def test_the_preview_shows_a_mirrored_copy_with_the_prompt(config: Config) -> None:
    frame = read_frames(video_path("p2"))[0]
    before = frame.copy()
    view = prompt_view(frame, SCRIPT[1], 2, len(SCRIPT), 0.5)
    assert np.array_equal(frame, before), "the prompt never reaches the recorded frame"
    h = frame.shape[0]
    assert np.array_equal(view[h // 2:], frame[h // 2:, ::-1]), "below the banner, the image as in a mirror"
    assert not np.array_equal(view[:20], frame[:20, ::-1])


def test_bad_recording_requests_get_one_line_errors(config: Config, tmp_path: Path, capsys: pytest.CaptureFixture, model_dir: Path) -> None:
    store = ModelStore.from_environment(progress=False)
    existing = tmp_path / "clip.mkv"
    existing.write_bytes(b"keep me")
    with pytest.raises(ConfigError, match="already exists.*--replace"):
        record_clip(config, existing, store)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(ConfigError, match=r"clip\.avi.*\.mkv"):
        record_clip(config, tmp_path / "clip.avi", store)
    demo = config_from_dict({"source": {"kind": "demo"}}, "test", Config())
    with pytest.raises(ConfigError, match="demo"):
        record_clip(demo, tmp_path / "demo.mkv", store)
    assert main(["avatar", "record", "--video", str(video_path("p2")), "--out", str(existing)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(existing) in err[0]


def test_the_record_command_prompts_and_summarises(tmp_path: Path, capsys: pytest.CaptureFixture, model_dir: Path) -> None:
    out = tmp_path / "p2.mkv"
    assert main(["avatar", "record", "--video", str(video_path("p2")), "--out", str(out)]) == 0
    text = capsys.readouterr().out.replace("\r", "\n")
    assert "1. Look at the camera with a relaxed face" in text and "done" in text
    assert "not reached (best" in text, "p2 never raises her brows"
    assert "enrollment will warp frames for: brows up" in text
    assert "the source ended during prompt" in text and f"veilcam avatar enroll --video {out}" in text
    assert len(read_frames(out)) > 300


def test_the_preview_window_opens_on_a_real_display(tmp_path: Path, model_dir: Path) -> None:
    assert shutil.which("xvfb-run"), "install xvfb (see .ci/run)"
    out = tmp_path / "previewed.mkv"
    done = subprocess.run(["xvfb-run", "-a", sys.executable, "-m", "veilcam.daemon.cli", "avatar", "record", "--video", str(video_path("p2")),
                           "--out", str(out), "--preview", "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(read_frames(out)) == len(read_frames(video_path("p2")))


def test_a_preview_without_a_display_refuses_before_the_clip_exists(config: Config, tmp_path: Path, model_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "clip.mkv"
    with pytest.raises(SinkError, match="no display"):
        record_clip(config, out, ModelStore.from_environment(progress=False), preview=True)
    assert not out.exists(), "a second try needs no --replace"
