"""Randomly initialised diffusion components, for the benchmark and CI.

Two places need a UNet and a text encoder without the real weights: the GPU
benchmark (speed does not depend on weight values, so the full-size SD-Turbo
architecture with random weights times the same as the real model) and the CPU
tests (no downloads in CI, and a tiny model keeps them fast). Both build them
here, so they use the same configs; the tests save them with
`save_pretrained` and load them back through the real loading code.
"""

from __future__ import annotations

import string
from typing import Any

import torch

# SD-Turbo's UNet is SD 2.1's (base, 512 px): 865 M parameters.
SD_TURBO_UNET: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
)

# The smallest UNet with the same structure (cross-attention down and up blocks).
TINY_UNET: dict[str, Any] = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=(2, 4),
    norm_num_groups=8,
    use_linear_projection=True,
)

# SD-Turbo's scheduler (diffusers EulerDiscreteScheduler, SD 2.1 noise schedule).
SD_TURBO_SCHEDULER: dict[str, Any] = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    prediction_type="epsilon",
    steps_offset=1,
    timestep_spacing="trailing",
)


def offline_clip_tokenizer(max_length: int):
    """A CLIP tokenizer whose vocabulary is single characters: built without any file or download."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits + ",.-'!":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def random_text_encoder(vocab_size: int, hidden_size: int, max_length: int, layers: int = 1, seed: int = 0):
    """A small CLIP text encoder whose output width fits a UNet's cross-attention."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        max_position_embeddings=max_length,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config).eval()


def random_unet(config: dict[str, Any], seed: int = 0):
    """A UNet2DConditionModel with random weights (diffusers' own initialisation)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**config).eval()
