"""Training the neural avatar: the loss, the quality measures, one optimisation step.

The network draws premultiplied RGBA; the clip gives a frame crop and a matte.
Colour is compared premultiplied (so the background of the clip never
matters), alpha against the matte (cross-entropy), and the structure (SSIM) of
both composited over the same grey. The measures reported for held-out frames are computed
the same way, inside the matte only, so a background the avatar never draws
neither helps nor hurts them.

The eyes with their brows and the mouth weigh more in the colour and
structure terms (`FEATURE_WEIGHT`): they are what a viewer, and the tracker
that measures fidelity, reads an expression from, on a few percent of the
crop. Weighed like every other pixel, a lid's few rows count as much as a
strand of hair. Driven by a calm clip (p4), four networks trained alike
read its small brow movements at correlations of 0.60-0.90; weighted four
times, six read 0.83-0.85 and the clip's mean rose from 0.891 to 0.900
(twice: 0.886; eight times: 0.893, and one held-out PSNR under 27 dB).
At four, held-out PSNR (unweighted) followed how many steps the machine
trained more than the weighting (README, stop 31).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .neural_avatar_net import NeuralAvatarNet

#: The grey both images are composited over for SSIM and PSNR.
BACKDROP = 0.5
SSIM_WEIGHT = 0.2
ALPHA_WEIGHT = 1.0
#: The learning rate decays along a cosine to this fraction of its start.
FINAL_LR_FRACTION = 0.05
#: Augmentation against memorising the training frames: each crop, its G-buffer and
#: matte move together by up to this fraction of the side, and the expression code
#: gets noise of this standard deviation (the code could otherwise name a frame).
SHIFT_FRACTION = 0.04
CODE_NOISE = 0.05
#: ... and are scaled together by up to this fraction about the crop's centre.
SCALE_FRACTION = 0.15
#: How many times a pixel of the eye, brow and mouth regions (`feature_weights`) weighs in the colour and SSIM terms.
FEATURE_WEIGHT = 4.0
#: A region's weight falls from full to none between these distances from its centre (1: its ellipse's rim).
FEATURE_EDGE = (0.75, 1.25)


def feature_weights(ellipses: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) per-pixel loss weights: 1, and `FEATURE_WEIGHT` inside any of each sample's ellipses (B, R, 4:
    centre x, y and radii x, y in pixels), fading over `FEATURE_EDGE`."""
    ys = torch.arange(height, device=ellipses.device, dtype=torch.float32).view(1, 1, -1, 1)
    xs = torch.arange(width, device=ellipses.device, dtype=torch.float32).view(1, 1, 1, -1)
    e = ellipses.float()[..., None, None]
    distance = torch.sqrt(((xs - e[:, :, 0]) / e[:, :, 2]) ** 2 + ((ys - e[:, :, 1]) / e[:, :, 3]) ** 2)
    inner, outer = FEATURE_EDGE
    inside = ((outer - distance) / (outer - inner)).clamp(0, 1).amax(dim=1, keepdim=True)
    return 1 + (FEATURE_WEIGHT - 1) * inside


def augment(gbuffer: torch.Tensor, code: torch.Tensor, target: torch.Tensor, matte: torch.Tensor,
            weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same random shift and scale for each sample's G-buffer (nearest: UVs must not blend across edges), crop,
    matte and loss weights; noise on the code."""
    b, _, h, w = gbuffer.shape
    shift = (torch.rand(b, 2, device=gbuffer.device) * 2 - 1) * 2 * SHIFT_FRACTION
    theta = torch.zeros(b, 2, 3, device=gbuffer.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 + (torch.rand(b, device=gbuffer.device) * 2 - 1) * SCALE_FRACTION
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    gbuffer = F.grid_sample(gbuffer, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    image = F.grid_sample(torch.cat([target, matte, weight], dim=1), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return gbuffer, code + CODE_NOISE * torch.randn_like(code), image[:, :3], image[:, 3:4], image[:, 4:]


def _gaussian_kernel(device: torch.device, dtype: torch.dtype, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004, 11×11 Gaussian window) of images in [0, 1], averaged over channels: (B, 1, H, W).

    The window is separable, so the five local means are two 1-D passes over all of them at once: an 11×11
    depthwise convolution per mean took a fifth of a training step on the GPU."""
    c = a.shape[1]
    g = _gaussian_kernel(a.device, a.dtype)
    pad = len(g) // 2
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    blurred = F.pad(stack, (pad,) * 4, mode="replicate")
    blurred = F.conv2d(blurred, g.view(1, 1, 1, -1).expand(5 * c, 1, 1, len(g)), groups=5 * c)
    blurred = F.conv2d(blurred, g.view(1, 1, -1, 1).expand(5 * c, 1, len(g), 1), groups=5 * c)
    mu_a, mu_b, aa, bb, ab = blurred.chunk(5, dim=1)
    var_a = aa - mu_a**2
    var_b = bb - mu_b**2
    cov = ab - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=1, keepdim=True)


def composites(pred: torch.Tensor, target: torch.Tensor, matte: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both over the grey backdrop: `pred` premultiplied RGBA, `target` RGB, `matte` (B, 1, H, W), all in [0, 1]."""
    return pred[:, :3] + (1 - pred[:, 3:4]) * BACKDROP, target * matte + (1 - matte) * BACKDROP


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, matte: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`weight` (B, 1, H, W) weighs the colour and SSIM terms per pixel; each is divided by its mean, so the loss
    keeps the scale the learning rate was chosen for."""
    norm = weight.mean()
    colour = ((pred[:, :3] - target * matte).abs() * weight).mean() / norm
    # Cross-entropy, not L1, for alpha: L1 pulls every pixel the network cannot yet tell apart
    # towards the median, which is background, and drives the sigmoid into saturation, where
    # no gradient brings it back (an all-transparent avatar). Cross-entropy pulls towards the
    # mean, and its gradient on the logit is simply alpha - matte.
    alpha = F.binary_cross_entropy(pred[:, 3:4].clamp(1e-6, 1 - 1e-6), matte)
    a, b = composites(pred, target, matte)
    return colour + ALPHA_WEIGHT * alpha + SSIM_WEIGHT * ((1 - ssim_map(a, b)) * weight).mean() / norm


def psnr_and_ssim_in_matte(pred: torch.Tensor, target: torch.Tensor, matte: torch.Tensor) -> tuple[float, float]:
    """PSNR (dB) and SSIM over the pixels where the matte is over one half, pooled over the batch."""
    a, b = composites(pred.float(), target.float(), matte.float())
    inside = (matte > 0.5).float()
    count = inside.sum()
    if count < 1:
        return float("nan"), float("nan")
    mse = (((a - b) ** 2).mean(dim=1, keepdim=True) * inside).sum() / count
    ssim = (ssim_map(a, b) * inside).sum() / count
    return 10 * math.log10(1.0 / max(float(mse), 1e-12)), float(ssim)


class NeuralAvatarTrainer:
    """Adam with a cosine decay over the run's progress (steps or time, whichever is further along)."""

    def __init__(self, net: NeuralAvatarNet, lr: float = 2e-3) -> None:
        self.net = net
        self.base_lr = lr
        self.optimizer = torch.optim.Adam(net.parameters(), lr=lr)

    def step(self, gbuffer: torch.Tensor, code: torch.Tensor, target: torch.Tensor, matte: torch.Tensor, features: torch.Tensor,
             progress: float) -> torch.Tensor:
        """One update on a batch; `features`: each sample's eye, brow and mouth ellipses (`feature_weights`);
        `progress` in [0, 1] sets the learning rate. Returns the loss
        (a tensor on the device: reading it waits for the GPU, so the caller reads it now and then)."""
        lr = self.base_lr * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0))))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        weight = feature_weights(features, target.shape[2], target.shape[3])
        gbuffer, code, target, matte, weight = augment(gbuffer, code, target, matte, weight)
        autocast = torch.autocast("cuda", torch.bfloat16) if gbuffer.is_cuda else torch.autocast("cpu", enabled=False)
        with autocast:
            pred = self.net(gbuffer, code)
        loss = reconstruction_loss(pred.float(), target, matte, weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def state_dict(self) -> dict[str, object]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.net.load_state_dict(state["net"])  # type: ignore[arg-type]
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
