"""A tiny randomly initialised diffusion model on disk, for the restyle tests.

Saved with `save_pretrained` in the diffusers layout and loaded back through
the real loader, so CI exercises the same code as a downloaded SD-Turbo.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from conftest import read_frames, video_path

SIZE = 64  # pixels: TINY_UNET's 8x8 latents
TOKENS = 16

# The CI machine has 2 cores shared with other work: OpenMP threads that spin
# while waiting make tiny models tens of times slower than one thread.
torch.set_num_threads(1)


def save_tiny_model(folder: Path) -> Path:
    from diffusers import EulerDiscreteScheduler

    from veilcam.models.random_components import SD_TURBO_SCHEDULER, TINY_UNET, offline_clip_tokenizer, random_text_encoder, random_unet

    tokenizer = offline_clip_tokenizer(TOKENS)
    random_unet(TINY_UNET).save_pretrained(folder / "unet")
    random_text_encoder(len(tokenizer.get_vocab()), TINY_UNET["cross_attention_dim"], TOKENS).save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    EulerDiscreteScheduler(**SD_TURBO_SCHEDULER).save_pretrained(folder / "scheduler")
    return folder


@lru_cache(maxsize=None)
def small_frames(key: str, count: int, step: int = 1) -> tuple[np.ndarray, ...]:
    """`count` frames of a shared video, `step` apart, scaled to SIZE x SIZE."""
    frames = read_frames(video_path(key))[: count * step : step]
    return tuple(cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for f in frames)
