"""The `neural` avatar kind's renderer, built from a verified pack.

The pack holds what enrollment learned (`daemon/enroll.py`): the identity of
the face model, the network's weights and the same network as ONNX. Nothing
of the enrollment clip is in it, and the renderer takes a `FaceState` only.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from veilcam.models.face_state import NUM_BLENDSHAPES
from veilcam.models.neural_avatar_config import NeuralAvatarConfig
from veilcam.models.renderer import FaceRenderer

from .avatar_pack import load_pack
from .avatars import AvatarEntry, _background_image
from .config import Config
from .errors import AvatarPackError, ConfigError
from .facekit_avatar import face_model_and_mesh
from .model_store import ModelStore
from .pack_onnx import CheckedNetwork

KIND = "neural"


def make_neural_renderer(config: Config, store: ModelStore, face: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray],
                         network: CheckedNetwork) -> FaceRenderer:
    """A renderer for a neural avatar's parts (a pack's, or a fresh enrollment's), on `config.avatar.neural_device`.
    Call it on the thread that will render. ImportError: no onnxruntime (or torch, for cuda)."""
    from veilcam.models.neural_avatar_renderer import BACKDROP_LOOK, NeuralAvatarRenderer  # OpenGL loads here
    from veilcam.models.neural_runtime import cuda_available, open_runner

    device = config.avatar.neural_device
    if device == "cuda" and not cuda_available():
        raise ConfigError("avatar.neural_device: cuda asked for, but torch sees no NVIDIA GPU; use auto or cpu")
    runner = open_runner(network.model, weights, NeuralAvatarConfig(), device)
    # A pack made before enrollment kept the clip's rest takes its person to rest at 0, as the built-in looks do.
    rest = face.get("expression_rest", np.zeros(NUM_BLENDSHAPES, np.float32)) if config.avatar.neural_rebase_rest else None
    response = face.get("response_readings") if config.avatar.neural_calibrated_expressions else None  # older packs: not measured
    model, mesh = face_model_and_mesh(store)
    background = _background_image(config.avatar.background_image)
    try:
        return NeuralAvatarRenderer(config.output.width, config.output.height, model, mesh, face["identity"], runner, network.size,
                                    face["model_rotation"], weights["texture"], BACKDROP_LOOK.background if background is None else background, rest,
                                    response, config.avatar.neural_look_down_lids)
    except RuntimeError as exc:  # no OpenGL
        raise ConfigError(f"avatar: cannot render ({exc})") from exc


def build_neural_renderer(entry: AvatarEntry, config: Config, store: ModelStore) -> FaceRenderer:
    assert entry.pack_dir is not None
    pack = load_pack(entry.pack_dir)
    try:
        return make_neural_renderer(config, store, pack.arrays["face"], pack.arrays["weights"], pack.networks["network"])
    except ImportError as exc:
        raise AvatarPackError(f"avatar pack {pack.path}: neural avatars need onnxruntime ({exc}); install it: pip install 'veilcam[neural]'") from exc
