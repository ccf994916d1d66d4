"""The neural avatar's network: a learned texture on the face model, read through a rasterized UV map, and a small U-Net.

Deferred neural rendering (Thies et al., 2019): the face model is rasterized
into a G-buffer (`head_gbuffer`: where each pixel sits on the model's UV
atlas, its normal, and whether the model covers it). A learnable texture of
feature vectors in the model's UV space is sampled there, so appearance
detail lives in the texture, attached to the skin, and moves with the geometry.
A compact U-Net turns those features, the normals and the expression code
into a premultiplied RGB image and its alpha. It has to draw what the mesh
does not model (hair, the inside of the mouth, shading of folds), which is why
it sees the expression code and why its bottleneck looks at the whole crop.

Speed drives the shape: a 256×256 frame must take a few milliseconds on a
laptop CPU through onnxruntime. Every 3×3 convolution runs at half the output
resolution or less; the full-resolution head is per-pixel (1×1), taking its
detail from the texture. The architecture is `NeuralAvatarConfig`
(`neural_avatar_config`), so a pack's arrays have known shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .neural_avatar_config import COVERED, FILM_HIDDEN, UV, NeuralAvatarConfig


def sample_texture(texture: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """`texture` (1, C, T, T) read bilinearly at `grid` (B, H, W, 2) in [-1, 1] with clamped edges: (B, C, H, W).

    grid_sample's bilinear, border-padded, align_corners=False lookup. When training it is written as four gathers
    of whole texels from a channels-last copy: grid_sample's backward scatters every channel into its own plane with
    atomics, which made it the largest part of a training step on the GPU, and a texel's channels side by side
    scatter together. Without gradients (rendering) grid_sample itself is used: its forward is one kernel where the
    gathers take a dozen (on an H200 the network took 1.67-1.71 ms for a 512² crop with the gathers, 1.45-1.51 ms
    with grid_sample).
    """
    _, c, th, tw = texture.shape
    b, h, w, _ = grid.shape
    # Texel coordinates in float32 whatever the network's precision: fp16 steps by half a texel at 256-511.
    coords = grid.float() if grid.dtype in (torch.float16, torch.bfloat16) else grid
    if not torch.is_grad_enabled():
        looked_up = F.grid_sample(texture.to(coords.dtype).expand(b, -1, -1, -1), coords, mode="bilinear", padding_mode="border", align_corners=False)
        return looked_up.to(texture.dtype)
    x = ((coords[..., 0] + 1) * tw - 1).mul(0.5).clamp(0, tw - 1).reshape(-1)
    y = ((coords[..., 1] + 1) * th - 1).mul(0.5).clamp(0, th - 1).reshape(-1)
    x0 = x.floor().clamp(max=tw - 2)
    y0 = y.floor().clamp(max=th - 2)
    fx, fy = (x - x0).unsqueeze(1).to(texture.dtype), (y - y0).unsqueeze(1).to(texture.dtype)
    top = y0.long() * tw + x0.long()
    texels = texture.reshape(c, th * tw).t()

    def at(index: torch.Tensor) -> torch.Tensor:
        return texels.index_select(0, index)  # its backward adds rows in place (index_add_), no sort

    row = at(top) * (1 - fx) + at(top + 1) * fx
    below = at(top + tw) * (1 - fx) + at(top + tw + 1) * fx
    return (row * (1 - fy) + below * fy).reshape(b, h, w, c).permute(0, 3, 1, 2)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


class NeuralAvatarNet(nn.Module):
    """(G-buffer (B, 6, S, S), code (B, code_size)) -> premultiplied RGBA (B, 4, S, S) in [0, 1]."""

    def __init__(self, config: NeuralAvatarConfig = NeuralAvatarConfig()) -> None:
        super().__init__()
        self.config = config
        c = config
        self.texture = nn.Parameter(torch.randn(1, c.texture_channels, c.texture_size, c.texture_size) * 0.1)
        features = c.features
        self.down = nn.ModuleList()
        cin = features
        for w in c.widths:
            self.down.append(_conv(cin, w, stride=2))
            cin = w
        self.bottleneck = _conv(cin, cin)
        # The code scales and shifts the bottleneck's channels (FiLM), which see the whole crop.
        self.film = nn.Sequential(nn.Linear(c.code_size, FILM_HIDDEN), nn.LeakyReLU(0.2), nn.Linear(FILM_HIDDEN, 2 * cin))
        self.up = nn.ModuleList()
        for skip in c.widths[-2::-1]:  # back up to half the output size, each level with its encoder's features
            self.up.append(_conv(cin + skip, skip))
            cin = skip
        self.head = nn.Sequential(nn.Conv2d(cin + features, c.head_channels, 1), nn.LeakyReLU(0.2), nn.Conv2d(c.head_channels, 4, 1))

    def features(self, gbuffer: torch.Tensor) -> torch.Tensor:
        """G-buffer -> per-pixel features (B, features, S, S): the learned texture where the model covers the pixel, the
        normal and the coverage. `head_gbuffer.HeadGBuffer` computes the same in OpenGL for the onnxruntime path."""
        coverage = gbuffer[:, COVERED:COVERED + 1]
        # Uncovered pixels all read the atlas' centre; their gradients are zero, but piled onto one texel they
        # serialise the backward pass's atomic adds, so they read spread-out texels instead.
        spread = torch.linspace(-1, 1, gbuffer.shape[-1], device=gbuffer.device, dtype=gbuffer.dtype)
        grid = torch.where(coverage > 0, gbuffer[:, UV], torch.stack(torch.meshgrid(spread, spread, indexing="xy"))).permute(0, 2, 3, 1)
        sampled = sample_texture(self.texture, grid) * coverage
        return torch.cat([sampled, gbuffer[:, UV.stop:]], dim=1)  # then the normal and the coverage

    def decode(self, x0: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Per-pixel features and the code -> premultiplied RGBA (B, 4, S, S) in [0, 1]."""
        skips = []
        x = x0
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.bottleneck(x)
        scale, shift = self.film(code).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        x = x * (1 + scale) + shift
        for layer, skip in zip(self.up, skips[-2::-1]):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = layer(torch.cat([x, skip], dim=1))
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        out = torch.sigmoid(self.head(torch.cat([x, x0], dim=1)))
        alpha = out[:, 3:4]
        return torch.cat([out[:, :3] * alpha, alpha], dim=1)

    def forward(self, gbuffer: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.decode(self.features(gbuffer), code)


class NeuralAvatarDecoder(nn.Module):
    """The network after the texture lookup, as exported to ONNX: (features (B, features, S, S), code) -> RGBA."""

    def __init__(self, net: NeuralAvatarNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.net.decode(features, code)
