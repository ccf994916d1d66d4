"""The real MediaPipe model on the real shared videos."""

from __future__ import annotations

import numpy as np

from conftest import tracked
from veilcam.daemon.eval_fidelity import head_angles
from veilcam.models.face_filter import FaceFilter, FilterSettings
from veilcam.models.face_state import BLENDSHAPE_INDEX

FPS = 30.0


def _series(states, name: str) -> np.ndarray:
    return np.array([s.score(name) for s in states])


def test_faces_found_on_every_talking_head_video() -> None:
    for key in ("p1", "p2", "p3", "p4"):
        states = tracked(key)
        present = np.array([s.present for s in states])
        assert len(states) > 200
        assert present.mean() >= 0.99, f"{key}: face on only {present.mean():.1%} of frames"
        first = next(s for s in states if s.present)
        assert first.landmarks.shape == (478, 3)
        assert abs(np.linalg.det(first.head_pose[:3, :3])) > 0.1


def test_face_lost_clip_has_no_face_exactly_on_the_empty_room() -> None:
    present = np.array([s.present for s in tracked("facelost")])
    slack = 3
    assert not present[120 + slack : 210 - slack].any(), "a face was reported in the empty room"
    assert present[: 120 - slack].mean() >= 0.99
    assert present[210 + slack :].mean() >= 0.99


def test_p1_blinks_close_the_eyes() -> None:
    states = tracked("p1")
    blink = np.maximum(_series(states, "eyeBlinkLeft"), _series(states, "eyeBlinkRight"))
    for start_s, end_s in ((0.0, 1.2), (5.5, 7.0), (11.8, 13.3)):
        window = blink[int(start_s * FPS) : int(end_s * FPS)]
        assert window.max() > 0.5, f"no blink over 0.5 between {start_s}s and {end_s}s (max {window.max():.2f})"


SMOOTHED = FilterSettings(smooth_expressions=True)


def _filtered(states, settings: FilterSettings = FilterSettings()) -> list:
    face_filter = FaceFilter(settings)
    return [face_filter(s) for s in states]


def test_smoothed_expressions_keep_blinks_closing_fully() -> None:
    states = tracked("p1")
    raw = np.maximum(_series(states, "eyeBlinkLeft"), _series(states, "eyeBlinkRight"))
    smooth_states = _filtered(states, SMOOTHED)
    smooth = np.maximum(_series(smooth_states, "eyeBlinkLeft"), _series(smooth_states, "eyeBlinkRight"))
    for start_s, end_s in ((0.0, 1.2), (5.5, 7.0), (11.8, 13.3)):
        sl = slice(int(start_s * FPS), int(end_s * FPS))
        assert smooth[sl].max() >= 0.9 * raw[sl].max(), f"blink at {start_s}s damped to {smooth[sl].max():.2f} of {raw[sl].max():.2f}"


def _jitter(a: np.ndarray) -> float:
    """Mean absolute second difference: frame-to-frame shake, not motion."""
    return float(np.abs(a[2:] - 2 * a[1:-1] + a[:-2]).mean())


def _angles(states) -> np.ndarray:
    """(N, 3) yaw, pitch and roll in degrees, as `eval fidelity` reads them."""
    return np.array([head_angles(s.head_pose) for s in states])


def _yaw(states) -> np.ndarray:
    return _angles(states)[:, 0]


def test_expressions_pass_as_tracked_and_the_head_is_calmed() -> None:
    states = tracked("p4")
    out = _filtered(states)
    raw_b = np.array([s.blendshapes for s in states])
    np.testing.assert_array_equal(np.array([s.blendshapes for s in out]), np.clip(raw_b, 0, 1))
    assert _jitter(_yaw(out)) < 0.6 * _jitter(_yaw(states))


def test_smoothed_expressions_calm_jitter_on_a_calm_face() -> None:
    states = tracked("p4")
    raw_b = np.array([s.blendshapes for s in states])
    smooth_b = np.array([s.blendshapes for s in _filtered(states, SMOOTHED)])
    assert _jitter(smooth_b) < 0.8 * _jitter(raw_b)


def _lag_frames(raw: np.ndarray, smooth: np.ndarray) -> float:
    """The delay (frames, to a tenth) that best turns the raw series into the smoothed one."""
    t = np.arange(len(raw), dtype=float)
    shifts = np.arange(0.0, 3.01, 0.1)
    errors = [np.mean((np.interp(t - s, t, raw) - smooth)[5:] ** 2) for s in shifts]
    return float(shifts[int(np.argmin(errors))])


def test_smoothed_expressions_lag_by_under_half_a_frame() -> None:
    # Talking: every mouth shape and the brows move, fast and slow.
    states = tracked("p3")
    smooth = _filtered(states, SMOOTHED)
    for name in ("mouthSmileLeft", "mouthPucker", "browInnerUp", "jawOpen", "eyeBlinkLeft"):
        lag = _lag_frames(_series(states, name), _series(smooth, name))
        assert lag < 0.45, f"{name} lags by {lag:.1f} frames"


def test_smoothing_lets_the_head_nod() -> None:
    # p2 turns and nods its head: the avatar's head follows within two frames.
    states = tracked("p2")
    smooth = _filtered(states)
    raw, smoothed = _angles(states), _angles(smooth)
    for k, name in enumerate(("yaw", "pitch")):
        lag = _lag_frames(raw[:, k], smoothed[:, k])
        assert lag < 2.0, f"{name} lags by {lag:.1f} frames"


def test_mirror_option_keeps_the_users_own_sides() -> None:
    # p2 winks: one eye closes alone, so left and right are distinguishable.
    normal, mirrored = tracked("p2"), tracked("p2", mirror=True)
    nl, nr = _series(normal, "eyeBlinkLeft"), _series(normal, "eyeBlinkRight")
    ml = _series(mirrored, "eyeBlinkLeft")
    assert np.abs(nl - nr).max() > 0.3, "the clip should contain a wink"
    same_side = np.corrcoef(ml, nl)[0, 1]
    other_side = np.corrcoef(ml, nr)[0, 1]
    assert same_side > 0.9 and same_side > other_side + 0.05, (same_side, other_side)
    # The head itself is mirrored: yaw changes sign.
    yaw_n = np.array([np.arctan2(s.head_pose[0, 2], s.head_pose[2, 2]) for s in normal if s.present])
    yaw_m = np.array([np.arctan2(s.head_pose[0, 2], s.head_pose[2, 2]) for s in mirrored if s.present])
    n = min(len(yaw_n), len(yaw_m))
    assert np.corrcoef(yaw_n[:n], -yaw_m[:n])[0, 1] > 0.9


def test_blendshape_order_matches_mediapipe_names() -> None:
    states = tracked("p3")
    # Talking: the jaw opens well beyond rest at some point.
    assert _series(states, "jawOpen").max() > 0.3
    assert states[0].blendshapes[BLENDSHAPE_INDEX["tongueOut"]] == 0.0


def test_direct_call_gives_the_public_api_numbers_exactly() -> None:
    """The fast path (models/mediapipe_direct.py) must be active on the pinned mediapipe and change no number."""
    from conftest import read_frames, shared_file, video_path
    from veilcam.models.landmarker import FaceLandmarker

    task = shared_file("models/face_landmarker.task")
    with FaceLandmarker(task, mirror=True) as direct, FaceLandmarker(task, mirror=True) as public:
        assert direct.direct, "mediapipe's internals changed: the direct path fell back to the public API"
        public._direct = None
        lost = found = 0
        for i, rgb in enumerate(read_frames(video_path("facelost"))):
            a, b = direct.track(rgb, i / 30.0), public.track(rgb, i / 30.0)
            assert a.present == b.present, f"frame {i}"
            if not a.present:
                lost += 1
                continue
            found += 1
            np.testing.assert_array_equal(a.landmarks, b.landmarks, err_msg=f"frame {i}")
            np.testing.assert_array_equal(a.blendshapes, b.blendshapes, err_msg=f"frame {i}")
            np.testing.assert_array_equal(a.head_pose, b.head_pose, err_msg=f"frame {i}")
            assert a.landmarks.dtype == b.landmarks.dtype == np.float32
    assert lost > 60 and found > 150


def test_a_restarted_clock_tracks_like_a_fresh_tracker() -> None:
    """A tracker that already followed one stream (a pooled tracker, the next video, a reopened
    source) must track the next stream as a fresh one does, though its clock starts at 0 again."""
    from conftest import read_frames, shared_file, video_path
    from veilcam.models.landmarker import FaceLandmarker

    task = shared_file("models/face_landmarker.task")
    first, second = read_frames(video_path("p2"))[:60], read_frames(video_path("p1"))[:90]
    with FaceLandmarker(task) as reused, FaceLandmarker(task) as fresh:
        for i, rgb in enumerate(first):
            reused.track(rgb, i / 30.0)
        a = np.array([reused.track(rgb, i / 30.0).blendshapes for i, rgb in enumerate(second)])
        b = np.array([fresh.track(rgb, i / 30.0).blendshapes for i, rgb in enumerate(second)])
    jaw, blink = BLENDSHAPE_INDEX["jawOpen"], BLENDSHAPE_INDEX["eyeBlinkLeft"]
    settled = np.abs(a[10:] - b[10:])  # once MediaPipe has settled on the new face (clamped clocks: mean 0.09, max 0.4)
    assert settled.mean() < 0.01 and settled.max() < 0.06
    for k in (jaw, blink):
        assert np.corrcoef(a[:, k], b[:, k])[0, 1] > 0.99
