"""Loads the restyle models: UNet, text encoder, tokenizer and scheduler through
diffusers/transformers `from_pretrained`, TAESD through the model store.

`model` is a Hugging Face model id (looked up in the HF cache, downloaded
there when allowed) or a local folder in the diffusers layout. Only what the
stream uses is fetched: the full pipeline's VAE (TAESD replaces it) and the
legacy .bin copies are left out. Every failure is one `ModelFileError` line
that says what to download and where.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelFileError
from .model_store import ModelStore

if TYPE_CHECKING:  # torch takes seconds to import: only `load_diffusion_models` needs it
    import torch

    from veilcam.models.stream_diffusion import DiffusionModels

SUBFOLDERS = ("unet", "text_encoder", "tokenizer", "scheduler")
TAESD_FILES = ("taesd/taesd_encoder.safetensors", "taesd/taesd_decoder.safetensors")
_HUB_FILES = [
    "model_index.json",
    "scheduler/*",
    "tokenizer/*",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
]


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists()


def model_folder(model: str, allow_download: bool) -> Path:
    """The local folder holding `model`: itself, or its snapshot in the HF cache."""
    if _looks_like_path(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise ModelFileError(f"restyle.model: folder {folder} not found; give a folder with {', '.join(SUBFOLDERS)} (diffusers layout) or a Hugging Face model id")
        return folder
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(model, allow_patterns=_HUB_FILES, local_files_only=not allow_download))
    except Exception as exc:  # offline, unknown repo, gated, disk full: all mean "get the files another way"
        reason = " ".join((str(exc).splitlines() or [type(exc).__name__])[0].split())
        raise ModelFileError(
            f"restyle.model: cannot get {model} ({type(exc).__name__}: {reason}); download it into the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}) with `hf download {model} --include 'unet/*' 'text_encoder/*' 'tokenizer/*' 'scheduler/*'`, "
            f"or set restyle.model to a local folder with {', '.join(SUBFOLDERS)}"
        ) from exc


def load_diffusion_models(model: str, store: ModelStore, device: str | torch.device, dtype: torch.dtype, allow_download: bool = True) -> DiffusionModels:
    """All a stream needs, on `device` in `dtype`."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from veilcam.models.stream_diffusion import DiffusionModels
    from veilcam.models.taesd import load_taesd

    folder = model_folder(model, allow_download)
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype).to(device)
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype).to(device)
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as exc:  # missing files, bad JSON or configs
        reason = " ".join((str(exc).splitlines() or [type(exc).__name__])[0].split())
        raise ModelFileError(f"restyle.model: {folder} is not a usable diffusers model ({reason}); it needs {', '.join(SUBFOLDERS)}") from exc
    encoder, decoder = (store.resolve(name) for name in TAESD_FILES)
    try:
        vae = load_taesd(encoder, decoder, device=device, dtype=dtype)
    except ValueError as exc:
        raise ModelFileError(f"{exc}; delete it so VeilCam downloads it again") from exc
    return DiffusionModels(unet.eval().requires_grad_(False), vae, text_encoder.eval().requires_grad_(False), tokenizer, scheduler_config)
