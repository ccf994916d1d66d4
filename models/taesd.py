"""TAESD, the tiny SD autoencoder, from the upstream `nn.Sequential` weights.

Upstream TAESD (madebyollin/taesd) saves its encoder and decoder as bare
`nn.Sequential` state dicts (`0.weight`, `1.conv.0.weight`, ...). Diffusers'
`AutoencoderTiny` holds the same layers under `encoder.layers.N` and
`decoder.layers.N`, except that the upstream decoder starts with a parameter-
free Clamp at index 0, which diffusers applies in `forward` instead: decoder
indices shift down by one. The mapping is checked strictly (every key used,
every parameter set, shapes equal), so a wrong file fails on load and not as a
garbage image later.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file


def _renamed(state: dict[str, torch.Tensor], prefix: str, index_shift: int) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        index, _, rest = key.partition(".")
        if not index.isdigit() or not rest:
            raise ValueError(f"unexpected key {key!r}: not a bare nn.Sequential TAESD state dict")
        out[f"{prefix}.layers.{int(index) - index_shift}.{rest}"] = value
    return out


def load_taesd(encoder_path: Path, decoder_path: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """An `AutoencoderTiny` (SD 1.x/2.x latents) with the weights in the two files.

    The tensors are cast and assigned on load (`assign=True`), so the model is
    built in `dtype` on `device` without a second copy. Raises ValueError
    naming the file when its tensors do not fit the model.
    """
    from diffusers import AutoencoderTiny  # heavy import, kept local

    vae = AutoencoderTiny()  # the default config is TAESD's for SD 1.x/2.x
    expected = vae.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for path, prefix, shift in ((encoder_path, "encoder", 0), (decoder_path, "decoder", 1)):
        try:
            state = _renamed(load_file(str(path)), prefix, shift)
        except Exception as exc:  # safetensors raises several types for a bad file
            raise ValueError(f"{path}: not a TAESD {prefix} safetensors file ({exc})") from exc
        wanted = {k for k in expected if k.startswith(prefix + ".")}
        if set(state) != wanted:
            missing, extra = sorted(wanted - set(state)), sorted(set(state) - wanted)
            raise ValueError(f"{path}: TAESD {prefix} keys do not match (missing {missing[:3]}, unexpected {extra[:3]})")
        for key, value in state.items():
            if value.shape != expected[key].shape:
                raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
        loaded.update({k: v.to(device=device, dtype=dtype) for k, v in state.items()})
    vae.load_state_dict(loaded, strict=True, assign=True)
    return vae.eval().requires_grad_(False)
