"""The ceramic mask avatar: canonical mesh loading, blendshape rig, headless rendering."""

from __future__ import annotations

import zipfile
from pathlib import Path

import moderngl
import numpy as np
import pytest

from conftest import assert_all_differ, shared_file
from veilcam.models import gl_context
from veilcam.models.canonical_mesh import METADATA_ENTRY, load_canonical_mesh
from veilcam.models.face_state import BLENDSHAPE_INDEX, NUM_BLENDSHAPES, FaceState, identity_pose
from veilcam.models.mask_renderer import MASK_LOOKS, MaskLook, MaskRenderer
from veilcam.models.mask_rig import MaskGeometry

TASK = shared_file("models/face_landmarker.task")  # missing shared data fails the module: CI always has it
W, H = 640, 360


def weights(**scores: float) -> np.ndarray:
    w = np.zeros(NUM_BLENDSHAPES, np.float32)
    for name, value in scores.items():
        w[BLENDSHAPE_INDEX[name]] = value
    return w


def state(yaw_deg: float = 0.0, **scores: float) -> FaceState:
    pose = identity_pose()
    a = np.radians(yaw_deg)
    pose[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    return FaceState(present=True, blendshapes=weights(**scores), head_pose=pose, timestamp=0.0)


@pytest.fixture(scope="module")
def mesh():
    return load_canonical_mesh(TASK)


@pytest.fixture(scope="module")
def geometry(mesh):
    return MaskGeometry.from_mesh(mesh)


@pytest.fixture(scope="module")
def rig(geometry):
    return geometry.rig


@pytest.fixture(scope="module")
def renderer(geometry):
    with MaskRenderer(W, H, geometry) as r:
        yield r


@pytest.fixture(scope="module")
def cutout(geometry):
    """A renderer with no backdrop: alpha marks exactly the mask's pixels."""
    with MaskRenderer(W, H, geometry, MaskLook(background=None)) as r:
        yield r


def render(r: MaskRenderer, s: FaceState) -> np.ndarray:
    return r.render(s).astype(np.int16)  # a copy: the renderer reuses its buffer


# --- canonical mesh ----------------------------------------------------------------------------


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    v, vt, f = [], [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "v":
            v.append([float(x) for x in parts[1:4]])
        elif parts and parts[0] == "vt":
            vt.append([float(x) for x in parts[1:3]])
        elif parts and parts[0] == "f":
            f.append([[int(i) - 1 for i in corner.split("/")] for corner in parts[1:4]])
    faces = np.array(f)
    return np.array(v), np.array(vt), faces[:, :, 0], faces[:, :, 1]


def test_canonical_mesh_matches_the_obj_file(mesh):
    v, vt, tris, uv_tris = read_obj(shared_file("face_geometry/canonical_face_model.obj"))
    assert mesh.vertices.shape == (468, 3) and mesh.vertices.dtype == np.float32
    assert mesh.uvs.shape == (468, 2) and mesh.triangles.shape == (898, 3) and mesh.triangles.dtype == np.int32
    np.testing.assert_allclose(mesh.vertices, v, atol=1e-5)
    np.testing.assert_array_equal(mesh.triangles, tris)
    # the OBJ stores its own UV list with v flipped; per corner the two agree
    np.testing.assert_allclose(mesh.uvs[mesh.triangles] * (1, -1) + (0, 1), vt[uv_tris], atol=1e-5)


def test_corrupt_bundles_raise_value_error(tmp_path):
    not_zip = tmp_path / "not_a_zip.task"
    not_zip.write_bytes(b"hello")
    no_entry = tmp_path / "no_entry.task"
    with zipfile.ZipFile(no_entry, "w") as z:
        z.writestr("other.bin", b"")
    garbage = tmp_path / "garbage.task"
    with zipfile.ZipFile(garbage, "w") as z:
        z.writestr(METADATA_ENTRY, b"\x0a\xff\xff\xff\xff\x0f\x01")  # field 1, length far past the end
    truncated = tmp_path / "truncated.task"
    with zipfile.ZipFile(TASK) as src, zipfile.ZipFile(truncated, "w") as z:
        z.writestr(METADATA_ENTRY, src.read(METADATA_ENTRY)[:5000])
    for path, words in [
        (tmp_path / "missing.task", "cannot read"),
        (not_zip, "not a zip"),
        (no_entry, METADATA_ENTRY),
        (garbage, "past the end"),
        (truncated, "past the end"),
    ]:
        with pytest.raises(ValueError, match=words) as info:
            load_canonical_mesh(path)
        assert str(path) in str(info.value)


# --- rig ---------------------------------------------------------------------------------------


def test_holes_are_cut_for_eyes_and_mouth(mesh, rig):
    assert len(rig.triangles) < len(mesh.triangles)
    open_edges = {tuple(sorted(e)) for loop in (*rig.eye_loops, rig.mouth_loop) for e in zip(loop, np.roll(loop, -1))}
    half = np.concatenate([rig.triangles[:, [0, 1]], rig.triangles[:, [1, 2]], rig.triangles[:, [2, 0]]])
    counts: dict[tuple[int, int], int] = {}
    for a, b in half.tolist():
        counts[(min(a, b), max(a, b))] = counts.get((min(a, b), max(a, b)), 0) + 1
    assert all(counts[e] == 1 for e in open_edges)  # each contour is now a boundary


def test_jaw_open_drops_the_chin_and_keeps_the_nose(rig):
    neutral, open_ = rig.evaluate(weights()), rig.evaluate(weights(jawOpen=1.0))
    assert neutral.vertices[152, 1] - open_.vertices[152, 1] >= 1.5
    assert np.linalg.norm(open_.vertices[1] - neutral.vertices[1]) < 0.1
    assert np.linalg.norm(open_.vertices[13] - neutral.vertices[13]) < 0.1  # the upper lip stays


def test_left_blink_closes_the_subjects_left_eye_only(rig):
    neutral, blink = rig.evaluate(weights()), rig.evaluate(weights(eyeBlinkLeft=1.0))
    assert neutral.vertices[386, 1] - neutral.vertices[374, 1] > 0.5  # open before
    assert abs(blink.vertices[386, 1] - blink.vertices[374, 1]) < 0.1
    np.testing.assert_allclose(blink.vertices[[159, 145]], neutral.vertices[[159, 145]], atol=1e-4)


def test_left_smile_raises_and_widens_the_left_corner_only(rig):
    neutral, smile = rig.evaluate(weights()), rig.evaluate(weights(mouthSmileLeft=1.0))
    assert smile.vertices[291, 1] - neutral.vertices[291, 1] > 0.3
    assert smile.vertices[291, 0] - neutral.vertices[291, 0] > 0.3  # left is +x: outwards
    np.testing.assert_allclose(smile.vertices[61], neutral.vertices[61], atol=1e-3)


def test_right_controls_mirror_the_left_ones(rig):
    left = rig.evaluate(weights(mouthSmileLeft=1.0, browDownLeft=0.7)).vertices
    right = rig.evaluate(weights(mouthSmileRight=1.0, browDownRight=0.7)).vertices
    np.testing.assert_allclose(right, left[rig.mirror] * (-1, 1, 1), atol=1e-4)


def test_gaze_follows_the_look_blendshapes(rig):
    forward = np.array([0.0, 0.0, 1.0])
    right_eye, left_eye = rig.evaluate(weights(eyeLookInLeft=1.0, eyeLookOutRight=1.0)).eye_rotations @ forward
    assert left_eye[0] < -0.3 and right_eye[0] < -0.3  # both towards -x: the left eye's nose side
    up = rig.evaluate(weights(eyeLookUpLeft=1.0, eyeLookUpRight=1.0)).eye_rotations @ forward
    assert (up[:, 1] > 0.3).all()


def test_normals_are_unit_and_face_the_camera_at_the_nose(rig):
    frame = rig.evaluate(np.full(NUM_BLENDSHAPES, 0.4, np.float32))
    np.testing.assert_allclose(np.linalg.norm(frame.normals, axis=1), 1.0, atol=1e-4)
    assert frame.normals[1, 2] > 0.8
    assert np.isfinite(frame.vertices).all()


# --- rendering ---------------------------------------------------------------------------------


def test_headless_context_is_gl33_or_better():
    ctx = gl_context.create_headless_context()
    try:
        assert ctx.version_code >= 330
    finally:
        ctx.release()


def test_missing_egl_gives_an_actionable_error(monkeypatch):
    def fail(**_: object) -> None:
        raise Exception("libEGL.so not loaded")

    monkeypatch.setattr(moderngl, "create_context", fail)
    with pytest.raises(RuntimeError, match="libegl1 libegl-mesa0 libgl1-mesa-dri"):
        gl_context.create_headless_context()


def test_neutral_render_is_opaque_with_a_plausible_mask(renderer, cutout):
    img = render(renderer, state())
    assert img.shape == (H, W, 4)
    assert (img[..., 3] == 255).all()
    centre = img[H // 2 - 10 : H // 2 + 11, W // 2 - 10 : W // 2 + 11, :3].mean(axis=(0, 1))
    backdrop = img[H // 2 - 10 : H // 2 + 11, :21, :3].mean(axis=(0, 1))
    assert np.abs(centre - backdrop).mean() > 30

    alpha = render(cutout, state())[..., 3]
    rows, cols = np.nonzero(alpha > 0)
    height = (rows.max() - rows.min()) / H
    assert 0.4 < height < 0.65  # webcam framing: the face is about half the frame
    assert 0.05 < (alpha > 0).mean() < 0.3
    assert abs((cols.min() + cols.max()) / 2 - W / 2) < 0.05 * W  # centred


def test_jaw_open_shows_a_dark_mouth(renderer):
    def dark(img: np.ndarray) -> int:
        luma = img[..., :3] @ np.array([0.3, 0.6, 0.1])
        return int((luma[H // 2 :, W // 3 : 2 * W // 3] < 40).sum())  # lower middle of the frame

    assert dark(render(renderer, state(jawOpen=1.0))) > dark(render(renderer, state())) + 0.003 * W * H


def test_left_blink_changes_only_the_image_right_half(renderer):
    diff = np.abs(render(renderer, state(eyeBlinkLeft=1.0)) - render(renderer, state())).max(axis=2) > 10
    right, left = diff[:, W // 2 :].sum(), diff[:, : W // 2].sum()
    assert right > 100
    assert left <= 0.02 * right


def test_head_yaw_changes_the_image(renderer):
    assert np.abs(render(renderer, state(yaw_deg=25)) - render(renderer, state())).mean() > 2


def test_head_translation_moves_the_mask_a_little_then_recentres(geometry):
    with MaskRenderer(W, H, geometry, MaskLook(background=None)) as r:

        def centre_x(x_cm: float, t: float) -> float:
            pose = identity_pose()
            pose[0, 3] = x_cm
            return float(np.nonzero(r.render(FaceState(True, weights(), pose, t))[..., 3])[1].mean())

        start = centre_x(0.0, 0.0)
        moved = centre_x(10.0, 0.1) - start  # a 10 cm step would move a tracked head ~100 px
        assert 5 < moved < 0.1 * W
        for i in range(2, 100):
            last = centre_x(10.0, 0.2 * i)
        assert abs(last - start) < 2


def test_looks_differ(geometry):
    images = {}
    for name in MASK_LOOKS:
        with MaskRenderer(W, H, geometry, name) as r:
            images[name] = render(r, state())
    assert_all_differ(images, 10)


def test_no_background_leaves_the_corners_transparent(cutout):
    alpha = render(cutout, state())[..., 3]
    assert (alpha[[0, 0, -1, -1], [0, -1, 0, -1]] == 0).all()
    assert alpha[H // 2, W // 2] == 255


def test_background_image_fills_the_frame(geometry):
    image = np.zeros((90, 120, 3), np.uint8)
    image[..., 0] = 200  # red
    with MaskRenderer(W, H, geometry, MaskLook(background=image, backdrop_glow=0.0, backdrop_shadow=0.0)) as r:
        img = render(r, state())
    corner = img[5, 5]
    assert corner[0] > 120 and corner[1] < 30 and corner[2] < 30 and corner[3] == 255


def test_unknown_look_is_rejected(geometry):
    with pytest.raises(ValueError, match="porcelain"):
        MaskRenderer(W, H, geometry, "no-such-look")


def test_renderers_sharing_one_geometry_do_not_disturb_each_other(geometry, renderer):
    """The daemon shares one MaskGeometry between all mask renderers of a process."""
    smile, blink = state(mouthSmileLeft=1.0, mouthSmileRight=1.0), state(eyeBlinkLeft=1.0, jawOpen=0.6)
    alone = render(renderer, smile)
    with MaskRenderer(W, H, geometry) as other:
        other_alone = render(other, blink)
        for _ in range(2):  # interleaved: each keeps its own vertex rows
            assert np.array_equal(render(renderer, smile), alone)
            assert np.array_equal(render(other, blink), other_alone)
    assert np.abs(alone.astype(int) - other_alone).mean() > 1
