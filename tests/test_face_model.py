"""ICT-FaceKit face model: loading, the MediaPipe mapping, posing, eyes."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_file
from veilcam.models.face_model import (
    HIDDEN_MATERIALS,
    FaceRig,
    build_render_mesh,
    fit_sphere,
    ict_names_for,
    load_face_model,
)
from veilcam.models.face_state import BLENDSHAPE_INDEX, BLENDSHAPE_NAMES, NUM_BLENDSHAPES
from veilcam.models.gaze import gaze_rotations

COMPACT = "models/ict_facekit/ict_facekit_compact.npz"


@pytest.fixture(scope="module")
def model():
    return load_face_model(shared_file(COMPACT))


@pytest.fixture(scope="module")
def rig(model):
    return FaceRig(model)


def scores(**values: float) -> np.ndarray:
    w = np.zeros(NUM_BLENDSHAPES, np.float32)
    for name, v in values.items():
        w[BLENDSHAPE_INDEX[name]] = v
    return w


def test_loads_float32_and_evaluates_the_additive_model(model):
    assert model.neutral.dtype == model.id_basis.dtype == model.exp_basis.dtype == np.float32
    assert model.id_basis.shape == (100, model.num_vertices, 3) and model.num_expressions == 57
    rng = np.random.default_rng(1)
    a, w = rng.normal(size=100).astype(np.float32), rng.random(57).astype(np.float32)
    idx = rng.choice(model.num_vertices, 50, replace=False)
    expected = model.neutral[idx] + np.einsum("k,kvc->vc", a, model.id_basis[:, idx]) + np.einsum("j,jvc->vc", w, model.exp_basis[:, idx])
    np.testing.assert_allclose(model.evaluate(a, w, idx), expected, atol=1e-4)
    np.testing.assert_allclose(model.evaluate(a, w)[idx], expected, atol=1e-4)
    np.testing.assert_allclose(model.landmark_positions(a, w), model.evaluate(a, w)[model.landmarks68], atol=1e-5)


def test_mediapipe_mapping_follows_the_readme_rules(model):
    assert ict_names_for("browInnerUp") == ("browInnerUp_L", "browInnerUp_R")
    assert ict_names_for("cheekPuff") == ("cheekPuff_L", "cheekPuff_R")
    for direction in ("jawLeft", "jawRight", "mouthLeft", "mouthRight"):
        assert ict_names_for(direction) == (direction,)
    assert ict_names_for("eyeBlinkLeft") == ("eyeBlink_L",) and ict_names_for("mouthSmileRight") == ("mouthSmile_R",)
    assert ict_names_for("tongueOut") == ()
    m = model.mediapipe_to_ict
    official = [i for i, n in enumerate(model.exp_names) if n not in ("cheekRaiser_L", "cheekRaiser_R", "PupilDilate_L", "PupilDilate_R")]
    assert len(official) == 53 and np.all(m[official].sum(axis=1) == 1)  # every official shape driven once
    assert np.all(np.delete(m, official, axis=0) == 0)
    assert m[:, BLENDSHAPE_INDEX["tongueOut"]].sum() == 0
    w = model.expression_weights(scores(browInnerUp=0.7, jawLeft=0.4))
    assert w[model.exp_index["browInnerUp_L"]] == w[model.exp_index["browInnerUp_R"]] == pytest.approx(0.7)
    assert w[model.exp_index["jawLeft"]] == pytest.approx(0.4) and w[model.exp_index["jawRight"]] == 0


def test_mouth_close_acts_only_with_an_open_jaw(model):
    close = model.exp_index["mouthClose"]
    assert model.expression_weights(scores(mouthClose=0.6))[close] == 0
    assert model.expression_weights(scores(mouthClose=0.6, jawOpen=0.3))[close] == pytest.approx(0.3)
    assert model.expression_weights(scores(mouthClose=0.2, jawOpen=0.8))[close] == pytest.approx(0.2)


def test_jaw_open_lowers_the_chin(model):
    chin = model.landmarks68[8]
    rest, opened = model.evaluate(vertices=[chin]), model.evaluate(None, model.expression_weights(scores(jawOpen=1.0)), [chin])
    assert rest[0, 1] - opened[0, 1] > 2.0


def test_left_blink_closes_the_subjects_left_eye(model):
    # iBUG 68: 36-41 is the subject's right eye, 42-47 the left; ICT's left is +x
    lm = model.landmark_positions()
    assert lm[42:48, 0].min() > 0 > lm[36:42, 0].max()
    closed = model.landmark_positions(None, model.expression_weights(scores(eyeBlinkLeft=1.0)))

    def opening(points, upper, lower):
        return np.mean(points[list(upper), 1] - points[list(lower), 1])

    assert opening(lm, (43, 44), (47, 46)) > 0.5
    assert abs(opening(closed, (43, 44), (47, 46))) < 0.15
    assert opening(closed, (37, 38), (41, 40)) == pytest.approx(opening(lm, (37, 38), (41, 40)), abs=0.02)


def test_render_mesh_hides_the_helper_shells_and_splits_uv_seams(model):
    mesh = build_render_mesh(model)
    hidden = {model.material_names.index(n) for n in HIDDEN_MATERIALS}
    assert not hidden & set(np.unique(mesh.material).tolist())
    assert len(mesh.source) > len(np.unique(mesh.source))  # seam vertices are split
    assert mesh.uv.min() >= 0 and mesh.uv.max() <= 1
    assert mesh.triangles.max() < len(mesh.source)
    # every drawn vertex an expression moves is in the moving block
    assert np.abs(model.exp_basis[:, mesh.source[mesh.moving :]]).max() <= 1e-5
    assert np.abs(model.exp_basis[:, mesh.source[: mesh.moving]]).max(axis=(0, 2)).min() > 1e-5
    for (start, end), region in zip(mesh.eyeballs, ("eyeball_right", "eyeball_left")):
        lo, hi = model.regions[region]
        assert np.all((mesh.source[start:end] >= lo) & (mesh.source[start:end] < hi))


def test_rig_matches_the_model_with_the_identity_folded_in(model):
    identity = np.random.default_rng(2).normal(size=100).astype(np.float32)
    rig = FaceRig(model, identity)
    bs = np.random.default_rng(3).random(NUM_BLENDSHAPES).astype(np.float32) * 0.5
    blinks = [BLENDSHAPE_INDEX["eyeBlinkLeft"], BLENDSHAPE_INDEX["eyeBlinkRight"]]
    bs[blinks] = 0.0
    posed = rig.pose(model.expression_weights(bs))
    np.testing.assert_allclose(posed, model.evaluate(identity, model.expression_weights(bs))[rig.mesh.source], atol=1e-4)
    # A blink adds the rig's lid closure (eyelid_closure; test_photo_fit checks it closes):
    # the upper lids alone go further than the model's shape takes them, and down.
    bs[blinks] = 0.5
    extra = rig.pose(model.expression_weights(bs)) - model.evaluate(identity, model.expression_weights(bs))[rig.mesh.source]
    moved = np.abs(extra).max(axis=1) > 1e-4
    assert moved.any() and extra[moved, 1].sum() < 0
    pivots = rig.eye_pivots
    near_an_eye = np.linalg.norm(rig.rest[moved, None, :2] - pivots[None, :, :2], axis=2).min(axis=1) < 2.5
    assert near_an_eye.all() and np.all(rig.rest[moved, 1] > pivots[:, 1].min())


def test_eye_pivots_fit_the_sclera(model, rig):
    assert rig.eye_pivots[0, 0] < 0 < rig.eye_pivots[1, 0]
    np.testing.assert_allclose(rig.eye_pivots[1], (3.12, 3.60, 7.98), atol=0.05)  # the README's fit
    points = np.random.default_rng(4).normal(size=(200, 3))
    points = 2.0 * points / np.linalg.norm(points, axis=1, keepdims=True) + (1, 2, 3)
    centre, radius = fit_sphere(points)
    np.testing.assert_allclose(centre, (1, 2, 3), atol=1e-5) and pytest.approx(radius) == 2.0


def test_gaze_turns_both_eyeballs_about_their_pivots(model, rig):
    rest = rig.pose_blendshapes(scores()).copy()
    looking = rig.pose_blendshapes(scores(eyeLookOutLeft=0.8, eyeLookInRight=0.8)).copy()
    for k, (start, end) in enumerate(rig.mesh.eyeballs):
        before, after = rest[start:end], looking[start:end]
        front = np.argmax((before - rig.eye_pivots[k]) @ rig.eye_axes[k])  # the centre of the cornea
        assert after[front, 0] - before[front, 0] > 0.4  # both eyes turn towards +x (subject's left)
        np.testing.assert_allclose(np.linalg.norm(after - rig.eye_pivots[k], axis=1), np.linalg.norm(before - rig.eye_pivots[k], axis=1), atol=1e-4)
    up = gaze_rotations(scores(eyeLookUpLeft=1.0))
    assert (up[1] @ (0, 0, 1))[1] > 0.3 and np.allclose(up[0], np.eye(3))
    # the other shapes never move the eyeballs
    start, end = rig.mesh.eyeballs[0][0], rig.mesh.eyeballs[1][1]
    np.testing.assert_array_equal(rig.pose(model.expression_weights(np.ones(NUM_BLENDSHAPES)))[start:end], rest[start:end])


def test_a_broken_file_is_rejected_with_its_name(tmp_path, model):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_face_model(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, neutral=model.neutral)
    with pytest.raises(ValueError, match="partial.npz.*id_basis"):
        load_face_model(partial)
    wrong = tmp_path / "wrong.npz"
    with np.load(shared_file(COMPACT)) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["landmarks68"] = arrays["landmarks68"][:60]
    np.savez(wrong, **arrays)
    with pytest.raises(ValueError, match="wrong.npz: landmarks68"):
        load_face_model(wrong)


def test_all_mediapipe_names_are_known():
    assert len(BLENDSHAPE_NAMES) == NUM_BLENDSHAPES == 52


@pytest.mark.parametrize(
    ("shapes", "landmark", "axis", "sign"),
    [
        ({"mouthSmileLeft": 1.0}, 54, 1, +1),  # the subject's left mouth corner (+x) rises
        ({"mouthSmileRight": 1.0}, 48, 1, +1),
        ({"browInnerUp": 1.0}, 21, 1, +1),  # both inner brow ends rise
        ({"browInnerUp": 1.0}, 22, 1, +1),
        ({"browDownLeft": 1.0}, 24, 1, -1),
        ({"jawLeft": 1.0}, 8, 0, +1),  # a direction: the chin moves to the subject's left
        ({"jawRight": 1.0}, 8, 0, -1),
        ({"mouthLeft": 1.0}, 62, 0, +1),
        ({"mouthPucker": 1.0}, 62, 2, +1),  # lips push forward
        ({"jawForward": 1.0}, 8, 2, +1),
    ],
)
def test_each_blendshape_moves_its_region_the_right_way(model, shapes, landmark, axis, sign):
    rest = model.landmark_positions()[landmark, axis]
    moved = model.landmark_positions(None, model.expression_weights(scores(**shapes)))[landmark, axis]
    assert sign * (moved - rest) > 0.1


def test_cheek_puff_pushes_both_cheeks_out(model):
    rest = model.evaluate()
    puffed = model.evaluate(None, model.expression_weights(scores(cheekPuff=1.0)))
    moved = np.linalg.norm(puffed - rest, axis=1)
    left, right = moved[rest[:, 0] > 2].max(), moved[rest[:, 0] < -2].max()
    assert left > 0.3 and right > 0.3 and abs(left - right) < 0.1 * left
