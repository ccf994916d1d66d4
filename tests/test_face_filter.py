"""The face-lost rule and pose smoothing, on synthetic states (exact timing)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from veilcam.daemon.config import config_from_dict
from veilcam.daemon.factory import make_filter
from veilcam.models.demo_motion import DemoMotion
from veilcam.models.expression_rest import RestEstimator, RestSettings, rebase
from veilcam.models.face_filter import FaceFilter, FilterSettings
from veilcam.models.face_state import BLENDSHAPE_INDEX, FaceState

SETTINGS = FilterSettings(grace_s=0.5, ease_s=1.0)


def _smiling(t: float, yaw_deg: float = 20.0) -> FaceState:
    w = np.zeros(52, np.float32)
    w[BLENDSHAPE_INDEX["mouthSmileLeft"]] = 0.8
    pose = np.eye(4, dtype=np.float32)
    a = np.radians(yaw_deg)
    pose[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    pose[:3, 3] = [2.0, -1.0, -40.0]
    return FaceState(True, w, pose, t)


def _yaw_deg(state: FaceState) -> float:
    return float(np.degrees(np.arctan2(state.head_pose[0, 2], state.head_pose[2, 2])))


def test_face_lost_holds_then_eases_to_neutral() -> None:
    f = FaceFilter(SETTINGS)
    for i in range(30):
        f(_smiling(i / 30))
    lost_at = 1.0
    held = f(FaceState.neutral(lost_at))
    assert not held.present
    assert held.score("mouthSmileLeft") > 0.75 and abs(_yaw_deg(held) - 20) < 1
    still_held = f(FaceState.neutral(lost_at + 0.45))
    assert still_held.score("mouthSmileLeft") > 0.75
    halfway = f(FaceState.neutral(lost_at + 1.0))
    assert 0.1 < halfway.score("mouthSmileLeft") < 0.7
    assert 2 < _yaw_deg(halfway) < 18
    done = f(FaceState.neutral(lost_at + 1.6))
    assert done.blendshapes.max() == 0.0
    assert abs(_yaw_deg(done)) < 0.5
    # The head stays where it was; it only turns back to the camera.
    np.testing.assert_allclose(done.head_pose[:3, 3], [2.0, -1.0, -40.0], atol=0.2)


@pytest.mark.parametrize("smooth_expressions", [False, True])
def test_reacquired_face_continues_from_what_is_on_screen(smooth_expressions: bool) -> None:
    f = FaceFilter(dataclasses.replace(SETTINGS, smooth_expressions=smooth_expressions))
    for i in range(30):
        f(_smiling(i / 30))
    for i in range(90):  # 3 s lost: fully neutral
        f(FaceState.neutral(1.0 + i / 30))
    back = f(_smiling(4.0, yaw_deg=-30))
    assert back.present
    # No pop: the first frame back is still close to the neutral on screen.
    assert back.score("mouthSmileLeft") < 0.7
    assert _yaw_deg(back) > -25
    for i in range(1, 30):
        back = f(_smiling(4.0 + i / 30, yaw_deg=-30))
    assert back.score("mouthSmileLeft") > 0.75 and abs(_yaw_deg(back) + 30) < 2


def test_no_face_ever_gives_neutral() -> None:
    out = FaceFilter(SETTINGS)(FaceState.neutral(0.0))
    assert not out.present and out.blendshapes.max() == 0.0


def test_demo_motion_blinks_talks_and_sways() -> None:
    motion = DemoMotion()
    states = [motion(i / 30) for i in range(30 * 20)]
    blink = np.array([s.score("eyeBlinkLeft") for s in states])
    jaw = np.array([s.score("jawOpen") for s in states])
    yaw = np.array([_yaw_deg(s) for s in states])
    assert (blink > 0.95).sum() >= 3  # several full blinks in 20 s
    assert jaw.max() > 0.3 and (jaw < 0.01).mean() > 0.1  # talking with pauses
    assert yaw.max() - yaw.min() > 8
    assert motion(3.7).blendshapes.tolist() == motion(3.7).blendshapes.tolist()


def test_the_rest_is_the_faces_most_relaxed_tenth_and_follows_a_new_face() -> None:
    """A face resting at squint 0.5 that smiles now and then: its rest is the squint, never the smile, and after the
    window another face's rest replaces it. Re-based onto a clip resting at 0.1, rest maps to 0.1 and full to full."""
    settings = RestSettings(window_s=10.0)
    rest = RestEstimator(settings)
    squint, smile = BLENDSHAPE_INDEX["eyeSquintLeft"], BLENDSHAPE_INDEX["mouthSmileLeft"]
    rng = np.random.default_rng(0)
    for i in range(300):  # 10 s at 30 fps, smiling a third of the time
        w = np.zeros(52, np.float32)
        w[squint] = 0.5 + 0.02 * rng.standard_normal()
        w[smile] = 0.9 if i % 3 == 0 else 0.0
        r = rest.update(w, i / 30)
    assert abs(r[squint] - 0.47) < 0.02 and r[smile] == 0.0
    for i in range(300, 600):  # a new face, resting at squint 0.1, smiling all the time
        w = np.zeros(52, np.float32)
        w[squint], w[smile] = 0.1, 0.3
        r = rest.update(w, i / 30)
    assert abs(r[squint] - 0.1) < 1e-6 and abs(r[smile] - 0.3) < 1e-6

    driver = np.full(52, 0.4, np.float32)
    target = np.full(52, 0.1, np.float32)
    for value, expected in ((0.4, 0.1), (1.0, 1.0), (0.7, 0.55), (0.2, 0.1)):
        assert np.allclose(rebase(np.full(52, value, np.float32), driver, target), expected)


def test_the_filter_tells_renderers_the_faces_rest_also_when_it_is_lost() -> None:
    f = FaceFilter(SETTINGS)
    for i in range(60):
        shown = f(_smiling(i / 30))
    assert shown.rest_blendshapes is not None and shown.rest_blendshapes[BLENDSHAPE_INDEX["mouthSmileLeft"]] > 0.75
    lost = f(FaceState.neutral(2.5))
    assert not lost.present and np.array_equal(lost.rest_blendshapes, shown.rest_blendshapes)


def test_the_config_files_tracker_settings_reach_the_filter() -> None:
    config = config_from_dict({"tracker": {"smooth_expressions": True, "blend_min_cutoff": 4.0, "return_s": 0.4}}, "test")
    assert make_filter(config).settings == FilterSettings(smooth_expressions=True, blend_min_cutoff=4.0, return_s=0.4)
