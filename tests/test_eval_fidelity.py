"""`veilcam eval fidelity` end to end on a short real clip: render, track both, compare."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import read_frames, video_path
from veilcam.daemon import cli
from veilcam.daemon.eval_fidelity import ANGLES, BARELY_MOVES_STD, MEASURED, compare, format_table, head_angles
from veilcam.models.face_state import BLENDSHAPE_INDEX, FaceState, identity_pose

#: p3 from 8 s to 12 s: the talker opens and rounds her mouth, smiles, raises her
#: brows and blinks, so each of the measured shapes varies within the clip.
CLIP = slice(240, 360)

#: The floor for the mean correlation on this clip, rendered at 320x240. The full
#: videos at 1280x720 measure 0.84-0.93 (README); a 4 s clip at a quarter of the
#: size is noisier, and it scored 0.886 when written. 0.7 leaves room for a
#: different Mesa or MediaPipe build, and still fails on the faults that matter:
#: swapped eye sides, brows the tracker cannot see or a mouth that does not open
#: each drop one or two shapes towards 0 and the mean below it.
MEAN_FLOOR = 0.7
ANGLE_CEILING_DEG = 4.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "p3_clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (256, 256))
    for rgb in read_frames(video_path("p3"))[CLIP]:
        writer.write(cv2.cvtColor(cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_eval_fidelity_reports_correlations_angles_and_writes_the_video(clip, tmp_path, model_dir, capsys):
    report, out = tmp_path / "fidelity.json", tmp_path / "avatar.mp4"
    args = ["eval", "fidelity", "--source", str(clip), "--avatar", "human", "--json", str(report), "--out", str(out),
            "--output-width", "320", "--output-height", "240", "-q"]
    assert cli.main(args) == 0
    result = json.loads(report.read_text())
    assert result["avatar"] == "human" and result["frames"] == CLIP.stop - CLIP.start
    assert result["frames_compared"] >= 0.95 * result["frames"]
    assert set(result["correlation"]) == set(MEASURED)
    assert all(isinstance(r, float) for r in result["correlation"].values())
    assert result["mean_correlation"] == pytest.approx(np.mean(list(result["correlation"].values())), abs=1e-3)
    assert result["mean_correlation"] > MEAN_FLOOR, result["correlation"]
    assert set(result["angle_error_deg"]) == set(ANGLES)
    assert max(result["angle_error_deg"].values()) < ANGLE_CEILING_DEG, result["angle_error_deg"]
    frames = read_frames(out)
    assert len(frames) == result["frames"] and frames[0].shape == (240, 320, 3)
    printed = capsys.readouterr().out
    assert "mean" in printed and "mouthPucker" in printed and str(out) in printed


def test_eval_fidelity_runs_every_avatar_on_every_source_and_prints_the_summary(clip, tmp_path, model_dir, capsys, monkeypatch):
    """The README's table in one command: a Markdown row per (avatar, video), each run also in the JSON."""
    monkeypatch.chdir(tmp_path)  # the default video names land here
    report = tmp_path / "all.json"
    common = ["--output-width", "320", "--output-height", "240", "-q"]
    args = ["eval", "fidelity", "--source", str(clip), "--avatar", "human", "--avatar", "clay", "--json", str(report), *common]
    assert cli.main(args) == 0
    runs = json.loads(report.read_text())["runs"]
    assert [r["avatar"] for r in runs] == ["human", "clay"]
    assert all((tmp_path / f"{clip.stem}.{r['avatar']}.fidelity.mp4").exists() for r in runs)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| human |", "| clay |"))]
    assert [row.split("|")[1].strip() for row in rows] == ["human", "clay"]
    for row, run in zip(rows, runs):
        assert f"**{run['mean_correlation']:.3f}**" in row and clip.name in row
    assert cli.main(["eval", "fidelity", "--source", str(clip), "--avatar", "human", "--avatar", "clay", "--out", "x.mp4", *common]) == cli.EXIT_ERROR
    assert "--out names one video" in capsys.readouterr().err


def test_compare_on_known_signals():
    rng = np.random.default_rng(0)

    def states(scores: np.ndarray, yaw_deg: float) -> list[FaceState]:
        out = []
        for row in scores:
            pose = identity_pose()
            a = np.radians(yaw_deg)
            pose[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
            out.append(FaceState(True, row.astype(np.float32), pose, 0.0))
        return out

    driver = rng.random((50, 52))
    avatar = 0.5 * driver + 0.2  # same expressions, weaker and offset: correlation 1
    result = compare(states(driver, 10.0), states(avatar, 12.5))
    assert result["mean_correlation"] == pytest.approx(1.0)
    assert result["driver_std"]["jawOpen"] == pytest.approx(driver[:, BLENDSHAPE_INDEX["jawOpen"]].std(), abs=1e-4)
    assert result["angle_error_deg"]["yaw"] == pytest.approx(2.5, abs=1e-3)
    assert result["angle_error_deg"]["pitch"] == pytest.approx(0.0, abs=1e-3)
    assert compare(states(driver, 0.0)[:2], states(avatar, 0.0)[:2])["mean_correlation"] is None
    assert head_angles(identity_pose()) == pytest.approx([0, 0, 0])


def test_table_marks_expressions_the_driver_barely_moves():
    """A correlation over a driver that hardly moves measures noise; the table says which ones are."""
    rng = np.random.default_rng(1)
    driver = rng.random((60, 52))
    quiet = BLENDSHAPE_INDEX["browInnerUp"]
    driver[:, quiet] = 0.01 + 0.5 * BARELY_MOVES_STD * rng.random(60)
    avatar = driver + 0.05 * rng.random((60, 52))
    states = [[FaceState(True, row.astype(np.float32), identity_pose(), 0.0) for row in scores] for scores in (driver, avatar)]
    result = {"avatar": "human", "source": "p.mp4", "video": "out.mp4", **compare(*states)}
    assert result["driver_std"]["browInnerUp"] < BARELY_MOVES_STD < result["driver_std"]["jawOpen"]
    lines = format_table(result).splitlines()
    marked = [line.split()[0] for line in lines if line.endswith(" *")]
    assert marked == ["browInnerUp"]
    assert any(line.startswith("* the driver barely moves") for line in lines)
    result["driver_std"]["browInnerUp"] = 0.1
    assert "barely moves" not in format_table(result)
