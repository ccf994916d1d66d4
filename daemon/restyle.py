"""Restyle: the camera image itself, redrawn live by a diffusion model.

This is the one processor that puts (a transformation of) camera pixels on the
output, so it is not privacy-safe: it refuses to be built while privacy mode
is on, and the pipeline refuses it too. It has the same duck interface as
`FrameProcessor` (`process`, `warm_up`, `close`, `stats`) and is otherwise
unrelated to it: it is not a `FaceRenderer` and never pretends to be one.

Per frame: center-crop the camera frame to the model's aspect, scale it to the
model's size, restyle it (`StreamDiffusion`), then fit the result into the
output frame (bars where the aspects differ, nothing is cut twice).
"""

from __future__ import annotations

import os
import sys
import threading
import time

import cv2
import numpy as np

from veilcam.models.face_state import FaceState

from . import paths
from .config import STYLE_PRESETS, Config, RestyleConfig
from .errors import ConfigError, PrivacyError
from .model_store import ModelStore
from .pipeline import OutputFrame
from .report import RunStats
from .sources.base import CameraFrame

REFUSED = (
    "restyle shows your camera image (restyled) and is not privacy-safe, so privacy mode refuses it; "
    "to use it anyway, turn privacy off: --no-privacy-enabled (or privacy.enabled = false)"
)


def check_restyle_allowed(config: Config) -> None:
    """Raise the one-line refusal when restyle is asked for in privacy mode."""
    if config.privacy.enabled:
        raise PrivacyError(REFUSED)


def _torch_device_and_dtype(r: RestyleConfig):
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if r.device == "auto" else r.device
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"restyle.device: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"restyle.device: {device} asked for, but PyTorch sees no CUDA GPU (use auto or cpu)")
    name = r.dtype if r.dtype != "auto" else ("float16" if device.type == "cuda" else "float32")
    return device, getattr(torch, name)


def _center_crop(rgb: np.ndarray, aspect: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    if w / h > aspect:
        cw = round(h * aspect)
        return rgb[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    ch = round(w / aspect)
    return rgb[(h - ch) // 2 : (h - ch) // 2 + ch]


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    shrink = width < rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def fit_into(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """`rgb` scaled to fit inside width x height, centered on black."""
    h, w = rgb.shape[:2]
    scale = min(width / w, height / h)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - sh) // 2, (width - sw) // 2
    out[y : y + sh, x : x + sw] = _resize(rgb, sw, sh)
    return out


class RestyleProcessor:
    """Camera frame in, restyled output frame out."""

    def __init__(self, config: Config, stats: RunStats, store: ModelStore) -> None:
        check_restyle_allowed(config)
        import torch

        from veilcam.models.stream_diffusion import StreamDiffusion, StreamSettings

        from .diffusion_models import load_diffusion_models

        r = config.restyle
        if r.width % 64 or r.height % 64:
            raise ConfigError(f"restyle.width/height: {r.width}x{r.height} must both be multiples of 64")
        device, dtype = _torch_device_and_dtype(r)
        if r.compile and device.type == "cuda":
            # Compiled kernels are cached here and reused by the next run (seconds instead of minutes).
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(paths.cache_dir() / "torch-inductor"))
        style = r.preset()
        models = load_diffusion_models(r.model, store, device, dtype, allow_download=config.models.download)
        settings = StreamSettings(
            width=r.width,
            height=r.height,
            scheduler=r.scheduler,
            t_index_list=style.t_index_list,
            num_inference_steps=r.num_inference_steps,
            cfg=r.cfg,
            guidance_scale=r.guidance_scale,
            delta=r.delta,
            latent_blend=r.latent_blend,
            similarity_threshold=r.similarity_threshold if r.similarity_threshold < 1 else None,
            seed=r.seed,
            compile=r.compile and device.type == "cuda",
            cuda_graph=r.compile and device.type == "cuda",
        )
        try:
            self.stream: StreamDiffusion | None = StreamDiffusion(models, settings, style.prompt, r.negative_prompt)
        except ValueError as exc:  # steps outside the schedule, a v-prediction model, ...
            raise ConfigError(f"restyle: {exc}") from exc
        self._torch = torch
        self.config = config
        self.stats = stats
        self._pending_prompt: tuple[str, str] | None = None
        self._lock = threading.Lock()

    def set_prompt(self, prompt: str, negative_prompt: str = "") -> None:
        """Change the prompt (or a style preset's name: its prompt; its steps stay) from
        any thread; the worker applies it before its next frame."""
        if prompt in STYLE_PRESETS:
            prompt = STYLE_PRESETS[prompt].prompt
        with self._lock:
            self._pending_prompt = (prompt, negative_prompt)

    def warm_up(self) -> None:
        self.stream.warm_up(lambda message: print(f"veilcam: restyle: {message}", file=sys.stderr, flush=True))

    def process(self, item: CameraFrame | FaceState) -> OutputFrame:
        if not isinstance(item, CameraFrame):
            raise ConfigError("restyle needs camera images: use a webcam or video source, not the demo")
        with self._lock:
            pending, self._pending_prompt = self._pending_prompt, None
        if pending is not None:
            self.stream.set_prompt(*pending)
        self.stats.stage("decode", item.decode_ms)
        self.stats.record_frame(item.index, False, None)
        r, o = self.config.restyle, self.config.output
        t0 = time.perf_counter()
        model_in = _resize(_center_crop(item.rgb, r.width / r.height), r.width, r.height)
        styled = self.stream(model_in)
        t1 = time.perf_counter()
        rgb = fit_into(styled, o.width, o.height)
        t2 = time.perf_counter()
        self.stats.stage("render", (t1 - t0) * 1000)
        self.stats.stage("composite", (t2 - t1) * 1000)
        return OutputFrame(rgb, item.timestamp, t2, item.index)

    def close(self) -> None:
        """Free the GPU memory now, not whenever the garbage collector runs."""
        self.stream = None
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
