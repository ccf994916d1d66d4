"""TAESD from the real shared weights, mapped onto diffusers' AutoencoderTiny."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from conftest import shared_file
from veilcam.models.taesd import load_taesd


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_real_taesd_reconstructs_a_portrait() -> None:
    vae = load_taesd(shared_file("models/taesd/taesd_encoder.safetensors"), shared_file("models/taesd/taesd_decoder.safetensors"))
    rgb = cv2.cvtColor(cv2.imread(str(shared_file("portraits/d8.jpg"))), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.inference_mode():
        latents = vae.encode(x).latents
        y = vae.decode(latents).sample
    out = ((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert latents.shape == (1, 4, 32, 32)
    # SD latents: roughly unit spread, values within TAESD's [-3, 3] clamp.
    assert 0.4 < float(latents.std()) < 1.5 and float(latents.abs().max()) < 4
    # Measured 27.4 dB; random weights give about 6 dB.
    assert _psnr(out, rgb) > 25.0


def test_taesd_in_half_precision_on_load() -> None:
    vae = load_taesd(shared_file("models/taesd/taesd_encoder.safetensors"), shared_file("models/taesd/taesd_decoder.safetensors"), dtype=torch.bfloat16)
    assert {p.dtype for p in vae.parameters()} == {torch.bfloat16}


def test_wrong_file_is_named(tmp_path) -> None:
    decoder = shared_file("models/taesd/taesd_decoder.safetensors")
    with pytest.raises(ValueError, match="taesd_decoder.safetensors.*encoder"):
        load_taesd(decoder, decoder)  # a decoder where the encoder belongs
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_taesd(junk, decoder)
