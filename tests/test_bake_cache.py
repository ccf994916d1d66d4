"""Face-model bakes kept on disk (`bake_cache`): a later build reads them and draws exactly the same frame."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_file, tracked
from veilcam.daemon.bake_cache import DiskBake
from veilcam.models.face_model import load_face_model
from veilcam.models.facekit_looks import FACEKIT_LOOKS
from veilcam.models.facekit_renderer import FaceKitRenderer

W, H = 320, 180


@pytest.fixture(scope="module")
def model():
    return load_face_model(shared_file("models/ict_facekit/ict_facekit_compact.npz"))


def _frame(model, look, bake=None) -> np.ndarray:
    state = tracked("p2")[20]
    kwargs = {} if bake is None else {"bake": bake}
    with FaceKitRenderer(W, H, model, look, **kwargs) as r:
        return r.render(state).copy()


class CountingBake(DiskBake):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.computed: list[str] = []

    def __call__(self, name, inputs, compute):  # type: ignore[no-untyped-def]
        def counted() -> np.ndarray:
            self.computed.append(name)
            return compute()

        return super().__call__(name, inputs, counted)


def test_a_cached_bake_draws_the_same_frame_and_a_damaged_one_is_baked_again(model, tmp_path: Path) -> None:
    reference = _frame(model, "human")
    bake = CountingBake(tmp_path / "bakes")
    assert np.array_equal(_frame(model, "human", bake), reference)
    assert sorted(bake.computed) == ["facekit-atlas", "facekit-statics"]
    files = sorted((tmp_path / "bakes").glob("*.npy"))
    assert len(files) == 2

    bake.computed.clear()
    assert np.array_equal(_frame(model, "human", bake), reference)
    assert bake.computed == []  # both read from disk

    files[0].write_bytes(files[0].read_bytes()[:100])  # truncated: baked again, same result
    assert np.array_equal(_frame(model, "human", bake), reference)
    assert len(bake.computed) == 1


def test_a_different_look_or_identity_is_baked_anew(model, tmp_path: Path) -> None:
    bake = CountingBake(tmp_path / "bakes")
    _frame(model, "human", bake)
    bake.computed.clear()
    _frame(model, dataclasses.replace(FACEKIT_LOOKS["human"], lip_color="#ff0000"), bake)
    assert sorted(bake.computed) == ["facekit-atlas", "facekit-statics"]
    bake.computed.clear()
    identity = np.zeros(len(model.id_basis), np.float32)
    identity[0] = 2.0
    with FaceKitRenderer(W, H, model, "human", identity, bake=bake):
        pass
    assert sorted(bake.computed) == ["facekit-atlas", "facekit-statics"]
    painted = np.full((64, 64, 3), 200, np.uint8)  # a photo avatar's texture: the atlas depends on it too
    for colour in (200, 90):
        bake.computed.clear()
        painted[:] = colour
        with FaceKitRenderer(W, H, model, dataclasses.replace(FACEKIT_LOOKS["human"], texture=painted.copy()), bake=bake):
            pass
        assert bake.computed == ["facekit-atlas"]
