"""Neural avatars: enrollment end to end at a tiny size on the CPU, the pack it makes, ONNX against torch, bad packs."""

from __future__ import annotations

import inspect
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import video_path
from packs import one_line, relist
from veilcam.daemon.avatar_pack import load_pack
from veilcam.daemon.avatars import build_renderer, find_avatar
from veilcam.daemon.config import Config, config_from_dict
from veilcam.daemon.enroll import QUALITY_FLOOR, enroll_neural_avatar, work_dir
from veilcam.daemon.errors import AvatarPackError, ConfigError
from veilcam.daemon.model_store import ModelStore
from veilcam.daemon.pack_files import encode_npz
from veilcam.daemon.pack_manifest import PackContext
from veilcam.daemon.pack_onnx import check_network
from veilcam.models.expression_response import CALIBRATED
from veilcam.models.expression_rest import resting_expression
from veilcam.models.expression_warp import WarpSettings, lacking_groups
from veilcam.models.face_state import BLENDSHAPE_INDEX, FaceState, identity_pose
from veilcam.models.neural_avatar_config import NeuralAvatarConfig, state_shapes
from veilcam.models.neural_avatar_net import NeuralAvatarNet
from veilcam.models.neural_runtime import OnnxRunner, export_onnx
from veilcam.models.renderer import FaceRenderer

SIZE = 32  # the network's crop: tiny, so a CI run trains a few dozen steps in seconds
STEPS = 100


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny enrollment from the shortest shared clip, first without --force (under the floor), then with it."""
    home = tmp_path_factory.mktemp("neural")
    patch = pytest.MonkeyPatch()
    patch.setenv("VEILCAM_MODEL_DIR", str(video_path("p4").parents[1] / "models"))
    patch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    patch.setenv("XDG_DATA_HOME", str(home / "data"))
    config = config_from_dict({"output": {"width": 640, "height": 360}, "avatar": {"neural_device": "cpu"}}, "test", Config())
    root = home / "data" / "veilcam" / "avatars"
    store = ModelStore.from_environment(progress=False)
    try:
        refused = enroll_neural_avatar(video_path("p4"), "tiny", config, store, root, device="cpu", minutes=30, size=SIZE,
                                       max_steps=STEPS, progress=False)
        saved = enroll_neural_avatar(video_path("p4"), "tiny", config, store, root, device="cpu", minutes=30, size=SIZE,
                                     max_steps=STEPS, force=True, progress=False)
        yield {"refused": refused, "saved": saved, "config": config, "root": root, "home": home}
    finally:
        patch.undo()


def test_tiny_enrollment_learns_and_makes_a_pack_that_loads(enrolled: dict) -> None:
    result = enrolled["saved"]
    assert result.pack is not None and result.pack.is_dir()
    pack = load_pack(result.pack)
    m = pack.manifest
    assert m.kind == "neural" and m.name == "tiny"
    assert m.metrics["steps"] == STEPS and m.metrics["size"] == SIZE
    assert m.metrics["train_frames"] > 100 and m.metrics["holdout_frames"] >= 1
    assert 0 < m.metrics["holdout_psnr_db"] < 60 and 0 < m.metrics["holdout_ssim"] <= 1
    assert pack.networks["network"].size == SIZE
    assert pack.images["loss_plot"].shape[1] > 64
    # The second run resumed the first's prepared data and checkpoint: the same network, measured the same.
    assert enrolled["refused"].metrics["holdout_psnr_db"] == m.metrics["holdout_psnr_db"]
    assert enrolled["refused"].resumed_step == 0 and result.resumed_step == STEPS
    # The clip's resting expression travels with the pack, for re-basing drivers onto it.
    data = np.load(work_dir(video_path("p4"), SIZE) / "data.npz")
    rest = pack.arrays["face"]["expression_rest"]
    assert np.array_equal(rest, resting_expression(data["clip_blendshapes"][data["clip_present"]]))
    assert rest[BLENDSHAPE_INDEX["eyeSquintLeft"]] > 0.2, "p4's eyes read as squinting even at rest"
    # p4 never raises its brows: training also saw its frames warped to raised brows, and to the other groups it lacks.
    lacking = lacking_groups(data["clip_blendshapes"][data["clip_present"]])
    warped, groups = data["warped"], data["warped_groups"]
    assert "brows up" in lacking and "brows up" in set(groups) and set(groups) <= set(lacking)
    assert result.lacking == tuple(sorted(set(groups))), "enrollment tells which expressions the clip lacked"
    real_train = len(data["train"]) - len(warped)
    assert len(warped) == round(WarpSettings().per_frame * real_train) == m.metrics["warped_frames"]
    assert np.isin(warped, data["train"]).all() and not np.isin(warped, data["holdout"]).any()
    assert warped.min() == len(data["crops"]) - len(warped), "warped frames follow the clip's own"


def test_restart_trains_from_the_start_instead_of_resuming(enrolled: dict) -> None:
    """After a finished run, a shorter run would only reload it; `restart` discards the checkpoint and trains anew."""
    config, root = enrolled["config"], enrolled["root"]
    store = ModelStore.from_environment(progress=False)
    kwargs = dict(device="cpu", minutes=30, size=SIZE, max_steps=STEPS // 2, force=True, progress=False)
    resumed = enroll_neural_avatar(video_path("p4"), "tiny_resumed", config, store, root, **kwargs)
    assert resumed.resumed_step == STEPS and resumed.metrics["steps"] == STEPS  # nothing left to train
    restarted = enroll_neural_avatar(video_path("p4"), "tiny_restarted", config, store, root, restart=True, **kwargs)
    assert restarted.resumed_step == 0 and restarted.metrics["steps"] == STEPS // 2
    assert load_pack(restarted.pack).manifest.metrics["steps"] == STEPS // 2


def test_training_loss_goes_down(enrolled: dict, tmp_path: Path) -> None:
    from veilcam.daemon.enroll import load_or_prepare, train, work_dir

    work = work_dir(video_path("p4"), SIZE)
    assert (work / "data.npz").is_file(), "enrollment keeps its prepared data for a resumed run"
    data = load_or_prepare(video_path("p4"), Config(), ModelStore.from_environment(progress=False), SIZE, work, False)
    _, history, steps, _, resumed = train(data, "cpu", 30, 75, 4, tmp_path, False)
    losses = [loss for _, loss in history]
    assert steps == 75 and len(losses) == 3 and resumed == 0
    assert losses[-1] < 0.8 * losses[0], losses


def test_under_the_floor_it_is_not_saved_without_force(enrolled: dict) -> None:
    refused = enrolled["refused"]
    assert refused.pack is None
    assert refused.below_floor and all(any(k in line for k in QUALITY_FLOOR) for line in refused.below_floor)


def test_neural_avatar_renders_from_a_face_state_only(enrolled: dict) -> None:
    entry = find_avatar("tiny")
    assert entry.kind == "neural"
    store = ModelStore.from_environment(progress=False)
    with build_renderer(entry, enrolled["config"], store) as renderer:
        assert isinstance(renderer, FaceRenderer) and renderer.privacy_safe
        assert list(inspect.signature(renderer.render).parameters) == ["state"]
        neutral = FaceState(True, np.zeros(52, np.float32), identity_pose(), 0.0)
        frame = renderer.render(neutral).copy()
        assert frame.shape == (360, 640, 4) and frame.dtype == np.uint8
        crop = renderer.last_crop
        assert crop is not None and crop.shape == (4, SIZE, SIZE)
        assert crop[3].max() > 0.5, "the trained network draws an opaque head"
        jaw = np.zeros(52, np.float32)
        jaw[BLENDSHAPE_INDEX["jawOpen"]] = 1.0
        renderer.render(FaceState(True, jaw, identity_pose(), 1 / 30))
        assert np.abs(renderer.last_crop - crop).max() > 0.01, "the expression reaches the picture"


def test_a_driver_at_rest_is_drawn_at_the_clips_rest(enrolled: dict) -> None:
    """A driver whose resting face reads as squinting and looking down is drawn as the enrolled person at rest; turned
    off, the renderer draws the tracked expression as it is."""
    entry = find_avatar("tiny")
    store = ModelStore.from_environment(progress=False)
    clip_rest = load_pack(entry.pack_dir).arrays["face"]["expression_rest"]
    driver_rest = np.zeros(52, np.float32)
    for name, value in (("eyeSquintLeft", 0.6), ("eyeSquintRight", 0.5), ("eyeLookDownLeft", 0.45), ("eyeLookDownRight", 0.45), ("browInnerUp", 0.8)):
        driver_rest[BLENDSHAPE_INDEX[name]] = value
    at_rest = FaceState(True, driver_rest, identity_pose(), 0.0, rest_blendshapes=driver_rest)
    enrolled_at_rest = FaceState(True, clip_rest, identity_pose(), 0.0)
    crops = {}
    for rebase in (True, False):
        config = config_from_dict({"avatar": {"neural_rebase_rest": rebase}}, "test", enrolled["config"])
        with build_renderer(entry, config, store) as renderer:
            for name, state in (("driver", at_rest), ("enrolled", enrolled_at_rest)):
                renderer.render(state)
                crops[rebase, name] = renderer.last_crop.copy()
    assert np.abs(crops[True, "driver"] - crops[True, "enrolled"]).max() < 1e-6
    assert np.abs(crops[False, "driver"] - crops[False, "enrolled"]).max() > 0.01


def test_calibrated_brows_are_posed_at_the_level_that_reads_as_asked(enrolled: dict) -> None:
    """With a measured response whose brows read nothing below 0.4 and 0.7 at full, a driver's 0.1 is drawn as 0.4
    would be uncalibrated, and a driver's 0.9 past full weight, as the brows' reach allows."""
    from veilcam.daemon.neural_avatar import make_neural_renderer

    pack = load_pack(find_avatar("tiny").pack_dir)
    face = dict(pack.arrays["face"])
    face["response_readings"] = np.array([[0.0, 0.0, 0.1, 0.3, 0.5, 0.7, 0.9]], np.float32)
    store = ModelStore.from_environment(progress=False)
    crops = {}
    for calibrated in (True, False):
        config = config_from_dict({"avatar": {"neural_calibrated_expressions": calibrated}}, "test", enrolled["config"])
        with make_neural_renderer(config, store, face, pack.arrays["weights"], pack.networks["network"]) as renderer:
            for score in (0.1, 0.4, 0.9, 1.0, 1.5):
                brows = np.zeros(52, np.float32)
                for name in CALIBRATED["brows up"]:
                    brows[BLENDSHAPE_INDEX[name]] = score
                renderer.render(FaceState(True, brows, identity_pose(), 0.0))
                crops[calibrated, score] = renderer.last_crop.copy()
    assert np.abs(crops[True, 0.1] - crops[False, 0.4]).max() < 1e-6
    assert np.abs(crops[False, 0.1] - crops[False, 0.4]).max() > 1e-3, "the brows' score reaches the picture"
    assert np.abs(crops[True, 0.9] - crops[False, 1.5]).max() < 1e-6, "a raise over the reading at full is posed past it"
    assert np.abs(crops[False, 1.0] - crops[False, 1.5]).max() > 1e-3, "past full weight is drawn, not cut back to full"


def test_a_config_written_before_the_calibration_covered_smiles_still_loads() -> None:
    """`neural_calibrated_brows` was renamed `neural_calibrated_expressions`; a file with the old key keeps working."""
    assert not config_from_dict({"avatar": {"neural_calibrated_brows": False}}, "old.toml").avatar.neural_calibrated_expressions
    assert config_from_dict({"avatar": {"neural_calibrated_expressions": True}}, "new.toml").avatar.neural_calibrated_expressions
    with pytest.raises(ConfigError, match="avatar.neural_calibrated_brow"):
        config_from_dict({"avatar": {"neural_calibrated_brow": True}}, "typo.toml")


def test_looking_down_turns_the_eyes_but_poses_the_face_models_lids_only_when_asked(enrolled: dict) -> None:
    """By default a look down reaches the picture through the eyeballs alone; `neural_look_down_lids` poses the face
    model's look-down shape (lowered lids) too. Looking straight, both draw the same."""
    from veilcam.models.neural_avatar_renderer import LOOK_DOWN

    entry = find_avatar("tiny")
    store = ModelStore.from_environment(progress=False)
    down = np.zeros(52, np.float32)
    down[LOOK_DOWN] = 0.8
    crops = {}
    for lids in (False, True):
        config = config_from_dict({"avatar": {"neural_look_down_lids": lids}}, "test", enrolled["config"])
        with build_renderer(entry, config, store) as renderer:
            for name, scores in (("straight", np.zeros(52, np.float32)), ("down", down)):
                renderer.render(FaceState(True, scores, identity_pose(), 0.0))
                crops[lids, name] = renderer.last_crop.copy()
    assert np.abs(crops[False, "straight"] - crops[True, "straight"]).max() < 1e-6
    assert np.abs(crops[False, "down"] - crops[False, "straight"]).max() > 1e-3, "the eyes turn down"
    assert np.abs(crops[True, "down"] - crops[False, "down"]).max() > 1e-3, "asked for, the lowered lids reach the picture"


def test_weights_of_the_wrong_shape_or_truncated_are_rejected(enrolled: dict, tmp_path: Path) -> None:
    from safetensors.numpy import load as load_safetensors, save as save_safetensors

    good = enrolled["saved"].pack
    wrong = tmp_path / "wrong"
    shutil.copytree(good, wrong)
    weights = load_safetensors((good / "weights.safetensors").read_bytes())
    weights["head.2.weight"] = weights["head.2.weight"][:3]
    relist(wrong, "weights.safetensors", save_safetensors(weights))
    with pytest.raises(AvatarPackError) as exc:
        load_pack(wrong)
    one_line(exc, "weights.safetensors", "head.2.weight")

    truncated = tmp_path / "truncated"
    shutil.copytree(good, truncated)
    data = (good / "weights.safetensors").read_bytes()
    (truncated / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(AvatarPackError) as exc:
        load_pack(truncated)
    one_line(exc, "weights.safetensors", "truncated")

    relist(truncated, "weights.safetensors", data[: len(data) // 2])  # a manifest that agrees: the content check catches it
    with pytest.raises(AvatarPackError) as exc:
        load_pack(truncated)
    one_line(exc, "weights.safetensors")

    face = dict(np.load(good / "face.npz"))
    for array, bad in (("expression_rest", face["expression_rest"][:51]), ("response_readings", np.zeros((1, 5), np.float32))):
        broken = tmp_path / array
        shutil.copytree(good, broken)
        relist(broken, "face.npz", encode_npz({**face, array: bad}))
        with pytest.raises(AvatarPackError) as exc:
            load_pack(broken)
        one_line(exc, "face.npz", array)
    # Made before smiles were measured (the brows' row alone), and before the levels went past full weight.
    for rows in (1, 2):
        older = tmp_path / f"older_{rows}"
        shutil.copytree(good, older)
        readings = np.tile(np.linspace(0, 0.7, 6, dtype=np.float32), (rows, 1))
        relist(older, "face.npz", encode_npz({**face, "response_readings": readings}))
        assert load_pack(older).arrays["face"]["response_readings"].shape == (rows, 6)


def test_state_shapes_are_the_networks() -> None:
    net = NeuralAvatarNet()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == state_shapes(NeuralAvatarConfig())


def test_onnx_and_torch_agree() -> None:
    torch.manual_seed(1)
    net = NeuralAvatarNet().eval()
    with torch.no_grad():
        for p in net.parameters():  # weights far from their initial values, like trained ones
            p.add_(torch.randn_like(p) * 0.05)
    size = 64
    gbuffer = np.random.default_rng(0).uniform(-1, 1, (6, size, size)).astype(np.float32)
    gbuffer[5] = gbuffer[5] > 0
    code = np.random.default_rng(1).uniform(0, 1, 63).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(gbuffer[None]), torch.from_numpy(code[None]))[0].numpy()
        features = net.features(torch.from_numpy(gbuffer[None]))[0].numpy()
    model = export_onnx(net, size)
    assert check_network(model, "network.onnx", PackContext(Path("x"))).size == size
    assert len(model) < 4 << 20, "the learned texture stays out of the ONNX file (OpenGL samples it)"
    got = OnnxRunner(model, cuda=False, threads=1)(features, code)
    assert got.shape == (4, size, size)
    assert np.abs(got - expected).max() < 1e-4


def _tiny_graph(op: str = "Sigmoid", features_shape: tuple[int, ...] = (1, 16, 32, 32), domain: str = "") -> bytes:
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node(op, ["features"], ["pre"], domain=domain),
             helper.make_node("Slice", ["pre", "starts", "ends", "axes"], ["rgba"])]
    inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("starts", 0), ("ends", 4), ("axes", 1))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("features", TensorProto.FLOAT, features_shape),
                                            helper.make_tensor_value_info("code", TensorProto.FLOAT, (1, 63))],
                              [helper.make_tensor_value_info("rgba", TensorProto.FLOAT, (1, 4) + features_shape[2:])], inits)
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    buffer = io.BytesIO()
    onnx.save(helper.make_model(graph, opset_imports=opsets), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("model, needle", [
    (b"not an onnx file at all", "not a valid ONNX model"),
    (_tiny_graph("Relu6Custom", domain="com.example"), "operator set com.example"),
    (_tiny_graph("Softmax"), "operators a neural avatar never needs (Softmax)"),
    (_tiny_graph("Sigmoid", (1, 16, 32, 48)), "inputs and output"),
    (_tiny_graph("Sigmoid", (1, 6, 32, 32)), "inputs and output"),  # a G-buffer: a network from before OpenGL sampled the texture
])
def test_bad_networks_are_rejected(model: bytes, needle: str) -> None:
    assert check_network(_tiny_graph(), "network.onnx", PackContext(Path("p"))).size == 32  # the well-formed twin passes
    with pytest.raises(AvatarPackError) as exc:
        check_network(model, "network.onnx", PackContext(Path("p")))
    one_line(exc, "network.onnx", needle)


@pytest.mark.parametrize("opaque", [True, False])
def test_the_crop_is_placed_over_the_backdrop_like_float_compositing(opaque: bool) -> None:
    import cv2

    from veilcam.models.neural_avatar_renderer import place_crop

    rng = np.random.default_rng(3)
    alpha = rng.uniform(0, 1, (1, 24, 24)).astype(np.float32)
    alpha[:, :4] = 0.0  # a fully transparent band
    rgba = np.concatenate([rng.uniform(0, 1, (3, 24, 24)).astype(np.float32) * alpha, alpha])
    backdrop = rng.integers(0, 256, (60, 80, 4), dtype=np.uint8)
    backdrop[..., 3] = 255 if opaque else rng.integers(0, 256, (60, 80), dtype=np.uint8)
    frame = backdrop.copy()
    place_crop(frame, rgba, 30.0, 25.0, 48.0, opaque)  # twice the crop's size, partly off the top edge

    m = np.array([[2, 0, 6 + 0.5], [0, 2, 1 + 0.5]], np.float32)  # crop pixel i -> frame pixel 2 i + 6.5 (x), 2 i + 1.5 (y)
    placed = cv2.warpAffine(rgba.transpose(1, 2, 0), m, (80, 60), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    under = backdrop.astype(np.float32) / 255
    a, ua = placed[..., 3:4], under[..., 3:4]
    out_alpha = a + ua * (1 - a)
    colour = (placed[..., :3] + under[..., :3] * ua * (1 - a)) / np.maximum(out_alpha, 1e-6)
    expected = np.concatenate([colour, out_alpha], axis=2) * 255
    inside = np.zeros((60, 80), bool)
    inside[1:49, 6:54] = True  # the crop's extent: the reference's bilinear smear past its edges is not drawn
    covered = inside & (out_alpha[..., 0] > 0.3)  # where straight colour is defined well enough to compare in 8 bits
    assert np.abs(frame.astype(np.float32) - expected)[covered].max() <= 3.0
    assert np.array_equal(frame[:, :5], backdrop[:, :5]) and np.array_equal(frame[50:], backdrop[50:]), "outside the crop: untouched"
    if opaque:
        assert np.array_equal(frame[:8], backdrop[:8]), "under the crop's transparent band the backdrop stays exact"


@pytest.mark.parametrize("n", [12, 250, 354])
def test_held_out_frames_are_stretches_spread_over_the_clip_away_from_training(n: int) -> None:
    from veilcam.daemon.enroll_data import GUARD_FRAMES, HOLDOUT_FRACTION, holdout_split

    train, held = holdout_split(n)
    assert len(held) >= round(HOLDOUT_FRACTION * n) and len(held) <= round(HOLDOUT_FRACTION * n) + 4
    assert len(train) >= n - len(held) - 8 * GUARD_FRAMES and len(train) > 0
    gaps = np.abs(train[:, None] - held[None, :]).min()
    assert gaps > GUARD_FRAMES, "no trained frame is a near copy of a held-out one"
    if n >= 100:
        assert held.min() < n / 4 and held.max() > 3 * n / 4, "held-out stretches reach both ends of the clip"
        assert len(train) > 0.75 * n


def test_opengl_draws_the_g_buffer_and_samples_the_texture_as_torch_does(model_dir: Path) -> None:
    """The indexed G-buffer against the per-corner rasterizer, and its texture lookup against `NeuralAvatarNet.features`."""
    from veilcam.daemon.facekit_avatar import face_model_and_mesh
    from veilcam.models.attribute_raster import AttributeRasterizer
    from veilcam.models.face_model import FaceRig
    from veilcam.models.gaze import gaze_rotations
    from veilcam.models.head_gbuffer import HeadGBuffer, atlas_grid
    from veilcam.models.mask_rig import vertex_normals

    model, mesh = face_model_and_mesh(ModelStore.from_environment(progress=False))
    rig = FaceRig(model, np.random.default_rng(0).normal(0, 0.5, 100).astype(np.float32), mesh)
    gaze = np.zeros(52, np.float32)
    gaze[BLENDSHAPE_INDEX["eyeLookOutLeft"]] = 0.8
    weights = model.expression_weights(gaze)
    positions = rig.pose(weights, gaze_rotations(gaze))
    a = 0.3  # a head turned to one side: hidden faces must lose the depth test
    rotation = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], np.float32)
    size = 96
    torch.manual_seed(2)
    net = NeuralAvatarNet().eval()
    with AttributeRasterizer() as raster:
        plain = HeadGBuffer(rig, size, raster.ctx)
        gbuffer = plain.render(positions, rotation)
        tris = mesh.triangles
        normals = vertex_normals(positions, tris, mesh.source) @ rotation.T
        values, covered = raster.rasterize(plain.crop.to_crop(positions, rotation)[tris],
                                           np.concatenate([atlas_grid(rig)[tris], normals[tris]], axis=2), (size, size), depth_test=True)
        sampling = HeadGBuffer(rig, size, raster.ctx, net.texture.detach().numpy())
        features = sampling.render(positions, rotation)
        plain.release()
        sampling.release()
    assert covered.mean() > 0.25
    assert np.abs(gbuffer[:5] - values.transpose(2, 0, 1)).max() < 1e-5 and np.array_equal(gbuffer[5] > 0.5, covered)
    with torch.no_grad():
        expected = net.features(torch.from_numpy(gbuffer[None]))[0].numpy()
    assert features.shape == expected.shape == (NeuralAvatarConfig().features, size, size)
    assert np.abs(features - expected).max() < 1e-4


def test_the_texture_gather_is_grid_samples_lookup_forwards_and_backwards() -> None:
    """`sample_texture` replaces grid_sample in training for speed; it must be the same bilinear, border-clamped lookup."""
    import torch.nn.functional as F

    from veilcam.models.neural_avatar_net import sample_texture

    torch.manual_seed(0)
    texture = torch.randn(1, 5, 16, 24, dtype=torch.float64, requires_grad=True)
    grid = torch.rand(2, 9, 7, 2, dtype=torch.float64) * 2.6 - 1.3  # inside, on and beyond the edges
    grid[0, 0, :4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    ours = sample_texture(texture, grid)
    theirs = F.grid_sample(texture.expand(2, -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=False)
    assert ours.shape == theirs.shape == (2, 5, 9, 7)
    assert torch.allclose(ours, theirs, atol=1e-12)
    upstream = torch.randn_like(ours)
    (ours_grad,) = torch.autograd.grad((ours * upstream).sum(), texture)
    (theirs_grad,) = torch.autograd.grad((theirs * upstream).sum(), texture)
    assert torch.allclose(ours_grad, theirs_grad, atol=1e-12)
    # Rendering (no gradients) takes grid_sample itself; it must be the same lookup as the gathers.
    with torch.no_grad():
        assert torch.allclose(sample_texture(texture, grid), ours, atol=1e-12)
    # In half precision (the CUDA runner renders without gradients) the lookup must still land between the right
    # texels of a wide texture, along either path.
    wide = torch.randn(1, 4, 8, 512)
    across = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 700), torch.tensor([0.1]), indexing="xy"), dim=-1)[None]
    exact = sample_texture(wide, across.half().float()).detach()
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            half = sample_texture(wide.half(), across.half()).float()
        assert (half - exact).abs().max() < 0.02, f"grad enabled: {grad}"


def test_half_precision_keeps_the_texture_lookup_in_float32() -> None:
    """The CUDA runner's arithmetic, on the CPU: the half network on a float32 G-buffer stays close to the float32
    network; rounding the G-buffer to half first (as the runner once did) moves the texture lookup visibly."""
    from veilcam.models.neural_runtime import half_precision_forward

    torch.manual_seed(0)
    net = NeuralAvatarNet().eval()
    with torch.no_grad():
        for p in net.parameters():  # weights far from their initial values, like trained ones
            p.add_(torch.randn_like(p) * 0.05)
        net.texture.normal_(0, 1.0)  # a learned texture changes from texel to texel
    rng = np.random.default_rng(0)
    gbuffer = torch.from_numpy(rng.uniform(-1, 1, (1, 6, 64, 64)).astype(np.float32))
    gbuffer[:, 5] = 1.0  # covered everywhere: every pixel reads the texture
    code = torch.from_numpy(rng.uniform(0, 1, (1, 63)).astype(np.float32))
    with torch.no_grad():
        exact = net(gbuffer, code)
        net.half()
        ours = (half_precision_forward(net, gbuffer, code).float() - exact).abs().max()
        rounded_first = (half_precision_forward(net, gbuffer.half().float(), code).float() - exact).abs().max()
    assert ours < 0.002, ours
    assert rounded_first > 0.005, rounded_first  # the error the float32 G-buffer avoids is there to be caught


def test_ssim_is_the_gaussian_windowed_measure() -> None:
    """The separable SSIM against the textbook one (an 11×11 window), and its ends: 1 for equal images, near 0 for unrelated ones."""
    import torch.nn.functional as F

    from veilcam.models.neural_training import ssim_map

    torch.manual_seed(0)
    a = torch.rand(2, 3, 40, 40, dtype=torch.float64)
    b = (a + 0.2 * torch.randn_like(a)).clamp(0, 1)
    x = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    window = (g[:, None] * g[None, :] / g.sum() ** 2).expand(3, 1, 11, 11)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (5,) * 4, mode="replicate"), window, groups=3)

    mu_a, mu_b = blur(a), blur(b)
    va, vb, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    textbook = (((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))).mean(1, keepdim=True)
    ours = ssim_map(a, b)
    assert torch.allclose(ours, textbook, atol=1e-10)
    assert torch.allclose(ssim_map(a, a), torch.ones_like(ours)) and ssim_map(a, torch.rand_like(a)).mean() < 0.1



def test_augmentation_moves_the_g_buffer_crop_and_matte_together() -> None:
    """Shift and scale must be one transform for all three, or the network learns a misplaced face."""
    from veilcam.models.neural_training import augment

    torch.manual_seed(0)
    size = 64
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((xx - 30) ** 2 + (yy - 34) ** 2) < 15**2).float()[None, None].expand(8, 1, -1, -1)
    gbuffer = torch.zeros(8, 6, size, size)
    gbuffer[:, 5:6] = disc  # coverage
    code = torch.zeros(8, 63)
    gbuffer_out, code_out, target_out, matte_out, weight_out = augment(gbuffer, code, disc.expand(-1, 3, -1, -1).clone(), disc.clone(),
                                                                       1 + disc)
    coverage = gbuffer_out[:, 5]
    moved = (coverage != disc[:, 0]).float().mean(dim=(1, 2))
    assert (moved > 0.005).all(), "every sample is moved"
    sizes = coverage.sum(dim=(1, 2))
    assert sizes.max() / sizes.min() > 1.1, "and scaled by different amounts"
    edges = (matte_out[:, 0] > 0.05) & (matte_out[:, 0] < 0.95)  # bilinear blends the matte's rim, nearest does not
    agree = (coverage == (matte_out[:, 0] > 0.5).float()) | edges
    assert agree.all() and torch.equal(target_out[:, :1] > 0.5, matte_out > 0.5) and torch.allclose(weight_out, 1 + matte_out)
    assert 0 < (code_out - code).std() < 0.2


def test_the_loss_weighs_the_eyes_brows_and_mouth_more() -> None:
    """An error inside a feature ellipse costs FEATURE_WEIGHT times what the same error costs elsewhere."""
    from veilcam.models.neural_training import FEATURE_WEIGHT, feature_weights, reconstruction_loss

    size = 64
    ellipses = torch.tensor([[[16.0, 16.0, 12.0, 12.0], [48.0, 20.0, 6.0, 4.0]]])  # centre x, y, radii x, y
    weight = feature_weights(ellipses, size, size)
    assert weight[0, 0, 16, 16] == FEATURE_WEIGHT and weight[0, 0, 20, 48] == FEATURE_WEIGHT
    assert weight[0, 0, 20, 48 + 8] == 1 and weight[0, 0, 50, 50] == 1, "past 1.25 radii it is an ordinary pixel"
    assert 1 < weight[0, 0, 20, 48 + 6] < FEATURE_WEIGHT, "the rim fades"
    matte = torch.ones(1, 1, size, size)
    target = torch.full((1, 3, size, size), 0.5)
    perfect = torch.cat([target, matte], dim=1)

    def cost(y: int, x: int) -> float:
        pred = perfect.clone()
        pred[:, :3, y - 1:y + 2, x - 1:x + 2] += 0.2
        return float(reconstruction_loss(pred, target, matte, weight) - reconstruction_loss(perfect, target, matte, weight))

    inside, outside = cost(16, 16), cost(50, 50)  # both with SSIM's window inside what they are weighed by
    assert inside / outside == pytest.approx(FEATURE_WEIGHT, rel=0.02)


def test_enrollment_places_the_weighted_regions_on_each_frames_eyes_and_mouth(enrolled: dict) -> None:
    """The ellipses follow the fitted face in every frame: eyes apart and above the mouth, and a broader mouth when it smiles."""
    data = np.load(work_dir(video_path("p4"), SIZE) / "data.npz")
    f = data["features"]
    assert f.shape == (len(data["crops"]), 3, 4) and np.isfinite(f).all()
    assert ((f[:, :, :2] > 0) & (f[:, :, :2] < SIZE)).all() and (f[:, :, 2:] > 0).all()
    left, right, mouth = f[:, 0], f[:, 1], f[:, 2]
    assert (right[:, 0] - left[:, 0] > 0.15 * SIZE).all() and (left[:, 0] < mouth[:, 0]).all() and (mouth[:, 0] < right[:, 0]).all()
    assert (np.maximum(left[:, 1], right[:, 1]) < mouth[:, 1] - 0.1 * SIZE).all()
    clip = data["clip_blendshapes"][data["clip_present"]]
    n = len(clip)
    smile = clip[:, BLENDSHAPE_INDEX["mouthSmileLeft"]] + clip[:, BLENDSHAPE_INDEX["mouthSmileRight"]]
    assert np.corrcoef(smile, mouth[:n, 2] / (right[:n, 0] - left[:n, 0]))[0, 1] > 0.5
