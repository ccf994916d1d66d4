"""Teaching a neural avatar what its clip lacks (frames warped by the face model) and posing its brows so they read as
asked (a response measured on the avatar): real face model, real OpenGL, real MediaPipe."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_file
from veilcam.daemon.config import Config
from veilcam.daemon.factory import open_tracker
from veilcam.models.expression_response import CALIBRATED, FRAMES_PER_LEVEL, LEVELS, OLDER_LEVELS, ResponseInverse, measure_response
from veilcam.models.expression_warp import WARPABLE, ExpressionWarp, WarpSettings, fit_light, lacking_groups, moved_expression, relit, with_group
from veilcam.models.face_model import FaceRig, build_render_mesh, load_face_model
from veilcam.models.face_state import BLENDSHAPE_INDEX, NUM_BLENDSHAPES, FaceState, identity_pose
from veilcam.models.facekit_renderer import FaceKitRenderer
from veilcam.models.gl_context import create_headless_context
from veilcam.models.head_gbuffer import HeadCrop
from veilcam.models.neural_avatar_config import COVERED, GBUFFER_CHANNELS, NORMAL

BROWS = [BLENDSHAPE_INDEX[n] for n in CALIBRATED["brows up"]]


@pytest.fixture(scope="module")
def model():
    return load_face_model(shared_file("models/ict_facekit/ict_facekit_compact.npz"))


def test_a_group_the_clip_barely_shows_is_lacking_and_one_it_shows_is_not() -> None:
    rng = np.random.default_rng(0)
    clip = rng.uniform(0, 0.05, (300, NUM_BLENDSHAPES)).astype(np.float32)
    clip[::10, BLENDSHAPE_INDEX["eyeBlinkLeft"]] = clip[::10, BLENDSHAPE_INDEX["eyeBlinkRight"]] = 0.9  # blinks, a tenth of the time
    clip[5, BLENDSHAPE_INDEX["browInnerUp"]] = 0.9  # one brow raise in 300 frames is not enough to learn from
    clip[:, BLENDSHAPE_INDEX["browOuterUpLeft"]] = clip[:, BLENDSHAPE_INDEX["browOuterUpRight"]] = 0.8
    lacking = lacking_groups(clip)
    assert "blink" not in lacking and "blink left" not in lacking
    assert "brows up" in lacking and lacking["brows up"] < 0.1, "a group counts as shown only when all of it is"
    assert set(lacking) <= set(WARPABLE) and "pucker" in lacking
    assert lacking_groups(clip, WarpSettings(lacking_below=0.0)) == {}


def test_a_moved_expression_changes_only_the_groups_weights(model) -> None:
    scores = np.zeros(NUM_BLENDSHAPES, np.float32)
    scores[BLENDSHAPE_INDEX["mouthSmileLeft"]] = 0.6
    weights = model.expression_weights(scores)
    raised = with_group(scores, "brows up", 0.7)
    assert raised[BROWS].min() == pytest.approx(0.7) and raised[BLENDSHAPE_INDEX["mouthSmileLeft"]] == pytest.approx(0.6)
    moved = moved_expression(model, weights, scores, raised)
    changed = {model.exp_names[i] for i in np.flatnonzero(np.abs(moved - weights) > 1e-6)}
    assert changed and all(name.startswith("brow") for name in changed), changed


def test_the_warp_moves_each_pixel_with_its_skin(model) -> None:
    """Brows raised: the map at each brow vertex's new place points at its old place; where nothing moves, nothing does."""
    rig = FaceRig(model, None, build_render_mesh(model))
    crop = HeadCrop.for_rig(rig)
    size = 256
    rest = rig.pose(np.zeros(model.num_expressions, np.float32)).copy()
    scores = np.zeros(NUM_BLENDSHAPES, np.float32)
    raised = rig.pose(moved_expression(model, np.zeros(model.num_expressions, np.float32), scores, with_group(scores, "brows up", 1.0))).copy()
    rotation = np.eye(3, dtype=np.float32)
    ctx = create_headless_context()
    warp = ExpressionWarp(rig.mesh.triangles, len(rest), crop, size, ctx)
    try:
        still = warp.maps(rest, rest, rotation)
        moved = warp.maps(rest, raised, rotation)
    finally:
        warp.release()
        ctx.release()
    grid_y, grid_x = np.mgrid[0:size, 0:size]
    assert np.abs(still[0] - grid_x).max() < 0.01 and np.abs(still[1] - grid_y).max() < 0.01
    before, after = crop.to_crop(rest, rotation)[:, :2] * size - 0.5, crop.to_crop(raised, rotation)[:, :2] * size - 0.5
    shift = before[:, 1] - after[:, 1]  # pixels up
    brows = np.flatnonzero(shift > 0.6 * shift.max())
    assert shift.max() > 2.0, "a full brow raise moves the brows by pixels at this size"
    at = np.round(after[brows]).astype(int)
    error = np.hypot(moved[0][at[:, 1], at[:, 0]] - before[brows, 0], moved[1][at[:, 1], at[:, 0]] - before[brows, 1])
    assert np.median(error) < 0.75, "the moved pixel is read from where its skin was"
    assert np.array_equal(moved[0][:, :8], still[0][:, :8]), "the crop's edge (background) stays where it is"
    image = (np.arange(size * size, dtype=np.float32).reshape(size, size) % 251).astype(np.uint8)
    assert np.array_equal(ExpressionWarp.apply(image, still), image)
    assert not np.array_equal(ExpressionWarp.apply(image, moved), image)


def _dome_gbuffer(size: int, tilt: float = 0.0) -> np.ndarray:
    """A G-buffer of a dome facing the camera, its normals turned up by `tilt` radians, covering a disc."""
    gbuffer = np.zeros((GBUFFER_CHANNELS, size, size), np.float32)
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size * 2 - 1
    r2 = x * x + y * y
    nx, ny, nz = x, -y, np.sqrt(np.clip(1 - r2, 0, 1))
    c, s = np.cos(tilt), np.sin(tilt)
    gbuffer[NORMAL] = np.stack([nx, c * ny + s * nz, c * nz - s * ny])
    gbuffer[COVERED] = r2 < 0.8
    return gbuffer


def test_moved_skin_is_relit_as_it_turns_under_the_frames_own_light() -> None:
    size = 64
    before = _dome_gbuffer(size)
    light = np.array([0.3, 0.05, 0.35, 0.25], np.float32)  # lit from above
    luminance = light[0] + np.tensordot(light[1:], before[NORMAL], axes=1)
    image = np.repeat(np.clip(luminance * 255, 0, 255)[..., None], 3, axis=2).astype(np.uint8)
    fitted = fit_light(image, before)
    assert fitted == pytest.approx(light, abs=0.01), "the light is read back from the frame's shading"
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32)
    still = (grid_x, grid_y)
    unchanged = relit(image, fitted, before, before, still)
    assert np.abs(unchanged.astype(int) - image).max() <= 1, "skin that does not turn keeps its brightness"
    turned_up = relit(image, fitted, before, _dome_gbuffer(size, tilt=0.3), still)
    covered = before[COVERED] > 0.5
    gain = turned_up[covered].astype(float).mean() - image[covered].astype(float).mean()
    assert gain > 10, "skin turned towards the light gets brighter"
    turned_down = relit(image, fitted, before, _dome_gbuffer(size, tilt=-0.3), still)
    assert turned_down[covered].astype(float).mean() < image[covered].astype(float).mean() - 10
    assert np.array_equal(turned_up[~covered], image[~covered]), "what the model does not cover is left as it is"


def test_the_inverse_response_skips_the_dead_zone_and_reads_as_asked() -> None:
    readings = np.array([[0.05, 0.05, 0.2, 0.44, 0.6, 0.66]], np.float32)  # nothing reads until 0.4 (a pack of six levels)
    inverse = ResponseInverse(readings)
    scores = np.zeros(NUM_BLENDSHAPES, np.float32)
    scores[BLENDSHAPE_INDEX["jawOpen"]] = 0.3
    for asked, posed in ((0.0, 0.0), (0.1, 0.2), (0.2, 0.4), (0.44, 0.6), (0.66, 1.0), (0.9, 1.0)):
        scores[BROWS] = asked
        out = inverse(scores)
        assert out[BROWS] == pytest.approx([posed] * len(BROWS), abs=1e-6)
        assert out[BLENDSHAPE_INDEX["jawOpen"]] == pytest.approx(0.3), "channels not calibrated are left alone"
    asked = np.linspace(0, 1, 101)
    posed = [inverse(np.full(NUM_BLENDSHAPES, a, np.float32))[BROWS[0]] for a in asked]
    assert np.all(np.diff(posed) >= 0), "stronger asked, stronger posed"
    flat = ResponseInverse(np.full((len(CALIBRATED), len(LEVELS)), 0.3, np.float32))
    assert np.array_equal(flat(scores), scores), "a response that never rises calibrates nothing"
    for bad in (np.zeros((1, 5), np.float32), np.zeros((1, 8), np.float32), np.full((1, len(LEVELS)), np.nan, np.float32),
                np.zeros((len(CALIBRATED) + 1, len(LEVELS)), np.float32), np.zeros(len(LEVELS), np.float32)):
        with pytest.raises(ValueError, match="response readings"):
            ResponseInverse(bad)


def test_smiles_are_calibrated_as_their_own_group_and_a_pack_of_brows_alone_leaves_them_as_asked() -> None:
    smiles = [BLENDSHAPE_INDEX[n] for n in CALIBRATED["smile"]]
    brows_row = [0.0, 0.1, 0.2, 0.4, 0.6, 0.8]
    smile_row = [0.0, 0.02, 0.14, 0.43, 0.69, 0.81]  # a neural avatar's, measured in its clip's poses
    scores = np.zeros(NUM_BLENDSHAPES, np.float32)
    scores[BROWS] = 0.2
    scores[smiles] = 0.14
    both = ResponseInverse(np.array([brows_row, smile_row], np.float32))(scores)
    assert both[smiles] == pytest.approx([0.4, 0.4], abs=1e-6), "a smile asked to read 0.14 is posed at 0.4"
    assert both[BROWS] == pytest.approx([0.4] * len(BROWS), abs=1e-6)
    older = ResponseInverse(np.array([brows_row], np.float32))(scores)
    assert older[BROWS] == pytest.approx([0.4] * len(BROWS), abs=1e-6)
    assert older[smiles] == pytest.approx([0.14, 0.14]), "a pack that measured only the brows leaves the smiles alone"


def test_each_group_is_posed_up_to_its_reach_and_no_further() -> None:
    """Brows whose full raise reads 0.5 are posed past full weight for a stronger raise; smiles stop at full."""
    smiles = [BLENDSHAPE_INDEX[n] for n in CALIBRATED["smile"]]
    assert list(LEVELS[:OLDER_LEVELS]) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    brows_row = [0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.8]
    smile_row = [0.0, 0.02, 0.14, 0.43, 0.69, 0.8, 0.95]
    inverse = ResponseInverse(np.array([brows_row, smile_row], np.float32))
    scores = np.zeros(NUM_BLENDSHAPES, np.float32)
    for asked, brows_posed, smile_posed in ((0.5, 1.0, 0.6 + 0.2 * (0.5 - 0.43) / (0.69 - 0.43)), (0.65, 1.25, 0.6 + 0.2 * (0.65 - 0.43) / (0.69 - 0.43)),
                                            (0.9, 1.5, 1.0), (1.0, 1.5, 1.0)):
        scores[BROWS] = asked
        scores[smiles] = asked
        out = inverse(scores)
        assert out[BROWS] == pytest.approx([brows_posed] * len(BROWS), abs=1e-5), asked
        assert out[smiles] == pytest.approx([smile_posed] * len(smiles), abs=1e-5), asked
    older = ResponseInverse(np.array([brows_row[:OLDER_LEVELS]], np.float32))
    scores[BROWS] = 0.9
    assert older(scores)[BROWS] == pytest.approx([1.0] * len(BROWS)), "a pack measured up to full poses up to full"


def test_the_response_of_the_built_in_head_rises_with_its_brows(model, model_dir) -> None:
    """Measured for real: the human look rendered at each level, read by MediaPipe."""
    with FaceKitRenderer(640, 480, model, "human") as renderer, open_tracker(Config()) as tracker:
        readings = measure_response(renderer.render, tracker.track)
    assert readings.shape == (len(CALIBRATED), len(LEVELS)) and np.all(np.isfinite(readings))
    assert readings[0, -1] > readings[0, 0] + 0.3, readings
    assert np.all(np.diff(readings[0]) > -0.05), readings


def test_the_response_is_measured_in_each_context_the_clip_gives(model, model_dir) -> None:
    """Each level is posed in each context (its head pose and other expressions kept, the group at the level) and the
    reading is the mean over them: the human look under real MediaPipe, its renders recorded as asked."""
    turned = identity_pose()
    angle = np.radians(25.0)
    turned[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    talking = np.zeros(NUM_BLENDSHAPES, np.float32)
    talking[BLENDSHAPE_INDEX["jawOpen"]] = 0.4
    talking[BROWS] = 0.9  # the context's own brows are replaced by each level
    contexts = [FaceState(True, talking, turned, 5.0), FaceState(True, np.zeros(NUM_BLENDSHAPES, np.float32), identity_pose(), 9.0)]
    asked: list[FaceState] = []
    with FaceKitRenderer(640, 480, model, "human") as renderer, open_tracker(Config()) as tracker:
        def render(state: FaceState) -> np.ndarray:
            asked.append(state)
            return renderer.render(state)

        readings = measure_response(render, tracker.track, contexts)
    assert readings.shape == (len(CALIBRATED), len(LEVELS)) and np.all(np.isfinite(readings))
    assert readings[0, -1] > readings[0, 0] + 0.2, readings
    block = len(LEVELS) * len(contexts) * FRAMES_PER_LEVEL
    assert len(asked) == len(CALIBRATED) * block
    for g, names in enumerate(CALIBRATED.values()):  # one group after the other, each in every context
        first = BLENDSHAPE_INDEX[names[0]]
        posed = [(s.blendshapes[first], s.blendshapes[BLENDSHAPE_INDEX["jawOpen"]], s.head_pose[0, 2]) for s in asked[g * block:(g + 1) * block]]
        expected = [(level, c.blendshapes[BLENDSHAPE_INDEX["jawOpen"]], c.head_pose[0, 2]) for level in LEVELS for c in contexts]
        assert np.allclose(sorted(set(posed)), sorted(expected)), f"{names}: every level in every context, nothing else"
    assert len({round(s.timestamp, 3) for s in asked}) == len(asked), "the tracker sees time move on"


def test_warps_are_planned_from_trained_frames_only_and_the_same_every_time() -> None:
    from veilcam.daemon.enroll_data import plan_warps

    rng = np.random.default_rng(1)
    clip = rng.uniform(0, 0.05, (200, NUM_BLENDSHAPES)).astype(np.float32)
    train = np.arange(0, 200, 2)
    rows, groups, scores = plan_warps(clip, train, WarpSettings())
    assert len(rows) == len(groups) == len(scores) == round(WarpSettings().per_frame * len(train))
    assert np.isin(rows, train).all() and set(groups) <= set(lacking_groups(clip))
    assert scores.min() >= WarpSettings().min_score and scores.max() <= 1.0
    again = plan_warps(clip, train, WarpSettings())
    assert np.array_equal(rows, again[0]) and np.array_equal(groups, again[1]) and np.array_equal(scores, again[2])
    assert all(len(x) == 0 for x in plan_warps(clip, train, None)), "--no-warp: the clip's frames alone"
