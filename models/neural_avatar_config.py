"""The neural avatar network's architecture as data, readable without torch.

A pack stores the weights of one architecture; checking their names and
shapes needs only this module, so a laptop that renders through onnxruntime
never imports torch. `neural_avatar_net` builds the network from the same
config, and a test holds `state_shapes` to the network's real state dict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

#: The sides (pixels) of the square crops a neural avatar's network may draw: enrollment, the CLI and a pack's ONNX check all hold to them.
MIN_CROP, MAX_CROP = 32, 1024
#: G-buffer channels (`head_gbuffer`): atlas x, y (grid_sample's [-1, 1]), normal x, y, z (camera space), coverage.
GBUFFER_CHANNELS = 6
#: ... and where each is: the network, the G-buffer's renderer and enrollment's warps read them by these names.
UV, NORMAL, COVERED = slice(0, 2), slice(2, 5), 5
FILM_HIDDEN = 128


@dataclass(frozen=True)
class NeuralAvatarConfig:
    texture_channels: int = 12
    texture_size: int = 512  # the UV atlas, square: the model's four UV tiles in a 2×2 grid
    widths: tuple[int, ...] = (16, 32, 64, 128)  # encoder channels at 1/2, 1/4, 1/8, 1/16 of the output size
    code_size: int = 63  # the face model's expression weights (57) and the head rotation's first two columns (6)
    head_channels: int = 16  # the full-resolution per-pixel head

    @property
    def features(self) -> int:
        """Channels per pixel before the U-Net: the sampled texture, the normal and the coverage."""
        return self.texture_channels + GBUFFER_CHANNELS - 2

    @property
    def downsampling(self) -> int:
        """The output side must be a multiple of this."""
        return 2 ** len(self.widths)

    def to_dict(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def crop_size_problem(size: int, config: NeuralAvatarConfig = NeuralAvatarConfig()) -> str | None:
    """Why the network cannot draw `size`×`size` crops (its U-Net halves the side once per level), or None."""
    if not MIN_CROP <= size <= MAX_CROP or size % config.downsampling:
        return f"must be a multiple of {config.downsampling} from {MIN_CROP} to {MAX_CROP}"
    return None


def state_shapes(config: NeuralAvatarConfig) -> dict[str, tuple[int, ...]]:
    """The network's parameter names and shapes, as its state dict has them."""
    c = config
    shapes: dict[str, tuple[int, ...]] = {"texture": (1, c.texture_channels, c.texture_size, c.texture_size)}

    def conv(name: str, cin: int, cout: int, k: int = 3) -> None:
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        shapes[f"{name}.bias"] = (cout,)

    cin = c.features
    for i, w in enumerate(c.widths):
        conv(f"down.{i}.0", cin, w)
        cin = w
    conv("bottleneck.0", cin, cin)
    shapes.update({"film.0.weight": (FILM_HIDDEN, c.code_size), "film.0.bias": (FILM_HIDDEN,),
                   "film.2.weight": (2 * cin, FILM_HIDDEN), "film.2.bias": (2 * cin,)})
    for j, skip in enumerate(c.widths[-2::-1]):
        conv(f"up.{j}.0", cin + skip, skip)
        cin = skip
    conv("head.0", cin + c.features, c.head_channels, 1)
    conv("head.2", c.head_channels, 4, 1)
    return shapes
