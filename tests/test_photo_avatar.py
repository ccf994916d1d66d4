"""`veilcam avatar create --photo`: every shared portrait becomes a pack that loads and renders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import MODELS_DIR, shared_file
from veilcam.daemon.avatar_pack import load_pack
from veilcam.daemon.avatars import build_renderer, find_avatar, list_avatars
from veilcam.daemon.config import Config, config_from_dict
from veilcam.daemon.model_store import ModelStore
from veilcam.daemon.photo_avatar import create_photo_avatar, hex_rgb
from veilcam.models.face_state import BLENDSHAPE_INDEX, FaceState, identity_pose

#: Small sizes keep the suite fast: portraits at most this wide, textures this large.
PHOTO_WIDTH = 384
TEXTURE = 128


def small_portrait(name: str, folder: Path) -> Path:
    bgr = cv2.imread(str(shared_file(f"portraits/{name}.jpg")))
    scale = min(1.0, PHOTO_WIDTH / bgr.shape[1])
    path = folder / f"{name}.png"
    cv2.imwrite(str(path), cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    return path


@pytest.fixture
def avatars(model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "veilcam" / "avatars"


@pytest.mark.parametrize("name", ["s42", "s7", "s9", "s12", "d8"])
def test_every_shared_portrait_makes_a_pack_that_loads(name: str, avatars: Path, tmp_path: Path) -> None:
    """Photo, cartoon (s7) and painting (s9) alike: all five have a trackable face."""
    result = create_photo_avatar(small_portrait(name, tmp_path), name, Config(), ModelStore.from_environment(), avatars,
                                 texture_size=TEXTURE, progress=False)
    assert result.pack == avatars / name
    pack = load_pack(result.pack)
    assert pack.manifest.kind == "photo" and pack.manifest.name == name
    assert pack.images["albedo"].shape == (TEXTURE, TEXTURE, 3)
    assert pack.arrays["face"]["identity"].shape == (100,)
    np.testing.assert_array_equal(pack.arrays["face"]["identity"], result.fit.identity)
    preview = pack.images["preview"]
    # The preview is a rendered head: a face-sized blob with the skin's hue (lighting changes
    # its brightness) in front of the backdrop.
    def hue(rgb: np.ndarray) -> np.ndarray:
        return rgb / max(float(rgb.sum()), 1.0)

    skin = pack.arrays["face"]["skin_rgb"].astype(np.float32)
    h, w = preview.shape[:2]
    centre = np.median(preview[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3, :3].reshape(-1, 3), axis=0).astype(np.float32)
    corner = preview[:20, :20, :3].astype(np.float32).mean((0, 1))
    assert np.abs(centre - corner).max() > 30
    assert np.abs(hue(centre) - hue(skin)).max() < 0.05 < np.abs(hue(corner) - hue(skin)).max()
    assert set(result.seconds) == {"read", "track", "fit", "texture", "preview", "rest pose", "write"}
    assert [a.name for a in list_avatars()][-1] == name
    # The cartoon's and the painting's thin lips read as pressed at rest, and their avatars show no
    # pucker to the tracker (README, fidelity): `create` says so. The other faces' lips are relaxed.
    assert result.rest_mouth_press is not None
    assert result.lips_pressed_at_rest == (name in ("s7", "s9")), result.rest_mouth_press


def _crown(preview: np.ndarray) -> np.ndarray:
    """The colour at the top of the rendered head, in the middle."""
    column = preview[:, preview.shape[1] // 2, :3].astype(np.float32)
    top = int(np.argmax(np.abs(column - column[0]).max(axis=1) > 30))
    return np.median(column[top + 4 : top + 12], axis=0)


def test_hair_seen_above_the_forehead_is_worn_and_bare_scalp_stays_bald(avatars: Path, tmp_path: Path) -> None:
    from veilcam.daemon.photo_avatar import fitting_data, read_portrait, track_portrait
    from veilcam.daemon.facekit_avatar import open_face_model
    from veilcam.models.photo_texture import eye_distance, height_above_brows

    store = ModelStore.from_environment()
    path = small_portrait("s12", tmp_path)
    rgb = read_portrait(path)
    h, w = rgb.shape[:2]
    task = shared_file("models/face_landmarker.task")
    landmarks = track_portrait(rgb, task).landmarks * np.array([w, h, w], np.float32)
    contours = fitting_data(open_face_model(store), task).contours
    above = height_above_brows((h, w), landmarks, contours) / eye_distance(landmarks, contours) > 0.8
    results = {}
    for name, colour in (("red", (150, 30, 20)), ("bald", None)):
        painted = rgb.copy()
        painted[above] = colour if colour is not None else np.median(rgb[h // 2 : h // 2 + 10, w // 2 - 5 : w // 2 + 5], axis=(0, 1))
        photo = tmp_path / f"{name}.png"
        cv2.imwrite(str(photo), cv2.cvtColor(painted, cv2.COLOR_RGB2BGR))
        create_photo_avatar(photo, name, Config(), store, avatars, texture_size=TEXTURE, progress=False)
        results[name] = load_pack(avatars / name)
    red = results["red"].arrays["face"]
    np.testing.assert_allclose(red["hair_rgb"], (150, 30, 20), atol=2)
    crown = _crown(results["red"].images["preview"])
    assert crown[0] > 1.8 * crown[1], crown  # lit red hair on top of the head
    bald = results["bald"].arrays["face"]
    assert "hair_rgb" not in bald
    skin = bald["skin_rgb"].astype(np.float32)
    crown = _crown(results["bald"].images["preview"])
    assert np.abs(crown / crown.sum() - skin / skin.sum()).max() < 0.05, (crown, skin)


def _read_at_rest(name: str) -> FaceState:
    """What the tracker reads from the avatar `name` at rest, facing the camera."""
    from veilcam.daemon.compositor import Compositor
    from veilcam.daemon.factory import open_tracker

    store = ModelStore.from_environment()
    with build_renderer(find_avatar(name), Config(), store) as renderer:
        frame = Compositor(renderer.width, renderer.height).compose(renderer.render(FaceState.neutral(0.0, present=True)))
    with open_tracker(Config(), store) as tracker:
        states = [tracker.track(frame, k / 30.0) for k in range(4)]
    assert states[-1].present
    return states[-1]


def test_photo_avatar_at_rest_reads_as_upright_as_the_mean_face(avatars: Path, tmp_path: Path) -> None:
    """A face's proportions can read as a raised or lowered head; the pack's rest rotation
    turns the photo avatar so that, at rest, the tracker reads the same head pose from it as
    from the built-in head (the mean face)."""
    from veilcam.models.scene import nearest_rotation, rotation_degrees

    create_photo_avatar(small_portrait("s42", tmp_path), "me", Config(), ModelStore.from_environment(), avatars, texture_size=TEXTURE, progress=False)
    assert load_pack(avatars / "me").arrays["face"]["rest_rotation"].shape == (3, 3)

    def rest_pose(name: str) -> np.ndarray:
        return nearest_rotation(_read_at_rest(name).head_pose).astype(np.float64)

    assert rotation_degrees(rest_pose("me").T @ rest_pose("human")) < 0.5


def test_photo_avatar_at_rest_looks_ahead_as_the_mean_face_does(avatars: Path, tmp_path: Path) -> None:
    """The tracker reads where the eyes look from the irises in their openings: at rest the
    photo avatar's eyes must read as looking where the built-in head's do (see `eye_aim`)."""
    create_photo_avatar(small_portrait("s42", tmp_path), "me", Config(), ModelStore.from_environment(), avatars, texture_size=TEXTURE, progress=False)
    gaze = [i for name, i in BLENDSHAPE_INDEX.items() if name.startswith("eyeLook")]

    def rest_gaze(name: str) -> np.ndarray:
        return _read_at_rest(name).blendshapes[gaze]

    assert np.abs(rest_gaze("me") - rest_gaze("human")).max() < 0.1


def test_photo_avatar_renders_the_users_expressions(avatars: Path, tmp_path: Path) -> None:
    create_photo_avatar(small_portrait("s42", tmp_path), "me", Config(), ModelStore.from_environment(), avatars, texture_size=TEXTURE, progress=False)
    config = config_from_dict({"output": {"width": 320, "height": 240}, "avatar": {"name": "me"}}, "test")
    entry = find_avatar("me")
    assert entry.kind == "photo"

    def state(**scores: float) -> FaceState:
        b = np.zeros(52, np.float32)
        for k, v in scores.items():
            b[BLENDSHAPE_INDEX[k]] = v
        return FaceState(True, b, identity_pose(), 0.0)

    with build_renderer(entry, config, ModelStore.from_environment()) as renderer:
        assert renderer.privacy_safe
        rest = renderer.render(state()).copy()
        open_jaw = renderer.render(state(jawOpen=0.8)).copy()
    assert rest.shape == (240, 320, 4)
    changed = np.abs(open_jaw.astype(int) - rest.astype(int)).max(axis=2) > 40
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 100  # the mouth opened
    assert ys.mean() > 240 * 0.45  # in the lower half of the face, not everywhere


def test_create_from_the_command_line(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"), VEILCAM_MODEL_DIR=str(MODELS_DIR))
    photo = small_portrait("s12", tmp_path)
    report = tmp_path / "create.json"
    proc = subprocess.run([sys.executable, "-m", "veilcam.daemon.cli", "avatar", "create", "--photo", str(photo), "--name", "albert",
                           "--texture-size", str(TEXTURE), "--report", str(report)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "created avatar albert" in proc.stdout and "landmark fit: median" in proc.stdout
    import json

    data = json.loads(report.read_text())
    assert data["fit"]["median_per_eye_distance"] < 0.03 and data["total_s"] > 0
    # What hair the avatar wears is said, the same in the report, on screen and in the pack.
    face = load_pack(tmp_path / "data" / "veilcam" / "avatars" / "albert").arrays["face"]
    if "hair_rgb" in face:
        assert data["hair"] == hex_rgb(face["hair_rgb"]) and f"hair: {data['hair']}" in proc.stdout
    else:
        assert data["hair"] is None and "hair: none" in proc.stdout
    if "rest_rotation" in face:
        assert f"rest pose: turned {data['rest_turn_deg']:.1f}°" in proc.stdout
    else:
        assert data["rest_turn_deg"] is None and "rest pose: the tracker finds no face" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "veilcam.daemon.cli", "avatar", "create", "--photo", str(photo), "--name", "albert"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1 and "already exists" in proc.stderr and "--force" in proc.stderr
