"""StreamDiffusion: real-time img2img of a video stream (Kodaira et al., arXiv 2312.12491).

Written from the paper, on diffusers' models (UNet2DConditionModel, AutoencoderTiny)
and schedulers (see `stream_schedule`). What it does per frame:

* Stream batch (sec. 3.2). Every frame goes through the same denoising steps
  `t_index_list`. Instead of running them one after the other for each frame,
  the stream keeps one partly denoised latent per step, each from a different
  frame, and runs one UNet call on all of them: the new frame's first step and
  the older frames' later steps. The frame leaving the last step is the output,
  so an n-step stream answers n-1 frames late, at the cost of one batched UNet
  call per frame. On the first frame the later slots are filled with that frame
  noised to their steps, so the output starts at once.
* Residual classifier-free guidance (sec. 3.3). CFG needs a negative noise
  estimate. "self" uses a virtual one that points back at the input frame's
  latent x0: eps_neg = (x_t - sqrt(alpha) x0) / sqrt(beta), at no UNet cost.
  "initialize" runs the UNet with the negative prompt once, at the frame's
  first step, turns that into a negative x0 estimate and uses it as above for
  the frame's later steps (one extra batch item). "none" does no guidance.
  eps = delta eps_neg + gamma (eps_cond - delta eps_neg).
* Stochastic similarity filter (sec. 3.4): see `similarity_filter`.
* Fixed noise: each slot has its own noise, drawn once per stream, used to
  noise the new frame and to re-noise between steps. Random noise per frame
  would make a still scene shimmer. Optionally, the output latent is blended
  with the previous one (`latent_blend`) to calm flicker further.
* Tiny VAE: TAESD (`AutoencoderTiny`) encodes and decodes.

For speed (sec. 3.5, on current PyTorch instead of TensorRT): every tensor a
step touches is allocated once; a step reads the frame from a fixed device
buffer and writes the result to another, so the whole step can be captured as
one CUDA graph and replayed. Per frame the host does one copy into pinned
memory, one asynchronous upload, one graph launch, one asynchronous download
and one wait: the only host synchronisation. Optionally the UNet and the VAE
are compiled with torch.compile first.

Pure compute: uint8 HxWx3 frames in and out, no threads, no I/O.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .similarity_filter import SimilarityFilter
from .stream_schedule import StreamSchedule, stream_schedule

CFG_TYPES = ("none", "self", "initialize")
WARMUP_STEPS = 3  # compile, autotune and allocate before a graph is captured


@dataclass(frozen=True)
class StreamSettings:
    """How a stream denoises; fixed for the stream's life (the prompt is not: see `set_prompt`)."""

    width: int = 512
    height: int = 512
    scheduler: str = "turbo"  # "turbo" (SD-Turbo) or "lcm" (LCM / LCM-LoRA models)
    t_index_list: tuple[int, ...] = (32, 45)
    num_inference_steps: int = 50
    cfg: str = "none"
    guidance_scale: float = 1.2
    delta: float = 1.0
    latent_blend: float = 0.0  # weight of the previous output latent, 0 = off
    similarity_threshold: float | None = None  # None = no similarity filter
    seed: int = 2
    compile: bool = False
    compile_mode: str = "default"  # torch.compile mode; "max-autotune-no-cudagraphs" tunes GEMMs (much longer compile)
    cuda_graph: bool = False


@dataclass
class DiffusionModels:
    """What a stream runs, on one device in one dtype (the text encoder may differ)."""

    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderTiny
    text_encoder: Any  # transformers CLIPTextModel
    tokenizer: Any  # transformers CLIPTokenizer
    scheduler_config: Mapping[str, Any]


class StreamDiffusion:
    """One video stream restyled by a diffusion model.

    `__call__` takes a host uint8 (H, W, 3) RGB frame of the stream's size and
    returns one; the returned array is reused by the next call: copy it if you
    keep it.
    """

    def __init__(self, models: DiffusionModels, settings: StreamSettings, prompt: str, negative_prompt: str = "") -> None:
        s = settings
        if s.cfg not in CFG_TYPES:
            raise ValueError(f"unknown cfg {s.cfg!r} (choose one of {', '.join(CFG_TYPES)})")
        if s.width % 64 or s.height % 64:
            raise ValueError(f"frame size {s.width}x{s.height} must be a multiple of 64")
        if not 0.0 <= s.latent_blend < 1.0:
            raise ValueError(f"latent_blend must be in [0, 1), got {s.latent_blend}")
        self.settings = s
        self.models = models
        self.schedule: StreamSchedule = stream_schedule(models.scheduler_config, s.scheduler, s.t_index_list, s.num_inference_steps)
        param = next(models.unet.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.filter = SimilarityFilter(s.similarity_threshold, seed=s.seed) if s.similarity_threshold is not None else None
        self.frames_skipped = 0

        n, h, w = len(self.schedule), s.height // 8, s.width // 8
        dev, dt = self.device, self.dtype

        def column(values: tuple[float, ...]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float64).to(dev, dt).view(-1, 1, 1, 1)

        self._sqrt_alpha, self._sqrt_beta = column(self.schedule.sqrt_alpha), column(self.schedule.sqrt_beta)
        self._c_skip, self._c_out = column(self.schedule.c_skip), column(self.schedule.c_out)
        timesteps = self.schedule.timesteps
        if s.cfg == "initialize":  # batch item 0: the new frame under the negative prompt
            timesteps = timesteps[:1] + timesteps
        self._timesteps = torch.tensor(timesteps, dtype=torch.long, device=dev)
        generator = torch.Generator("cpu").manual_seed(s.seed)
        self.noise = torch.randn((n, 4, h, w), generator=generator, dtype=torch.float32).to(dev, dt)
        self._x_t = torch.zeros((n, 4, h, w), device=dev, dtype=dt)  # slot i: a frame at step i
        self._x0_ref = torch.zeros_like(self._x_t)  # slot i: that frame's x0 for the RCFG negative
        self._prev_latent = torch.zeros((1, 4, h, w), device=dev, dtype=dt)
        self._blend = torch.zeros((), device=dev, dtype=dt)  # 0 until there is a previous latent
        tokenizer_len = models.tokenizer.model_max_length
        width = models.text_encoder.config.hidden_size
        self._embeds = torch.zeros((len(timesteps), tokenizer_len, width), device=dev, dtype=dt)
        self._frame_in = torch.zeros((s.height, s.width, 3), dtype=torch.uint8, device=dev)
        self._frame_out = torch.zeros_like(self._frame_in)
        pinned = dev.type == "cuda"
        self._host_in = torch.zeros((s.height, s.width, 3), dtype=torch.uint8, pin_memory=pinned)
        self._host_out = torch.zeros_like(self._host_in, pin_memory=pinned)
        self._done = torch.cuda.Event() if dev.type == "cuda" else None

        self._unet: Callable[..., Any] = models.unet
        self._encoder: Callable[[torch.Tensor], torch.Tensor] = models.vae.encoder
        self._decoder: Callable[[torch.Tensor], torch.Tensor] = models.vae.decoder
        if s.compile:  # same results; fused q/k/v and channels-last convolutions are faster on GPUs
            if getattr(models.unet, "original_attn_processors", None) is None:  # not fused yet (another stream may have)
                models.unet.fuse_qkv_projections()
            for module in (models.unet, models.vae):
                module.to(memory_format=torch.channels_last)
            compile_args = dict(fullgraph=True, dynamic=False, mode=s.compile_mode)
            self._unet = torch.compile(models.unet, **compile_args)
            self._encoder = torch.compile(models.vae.encoder, **compile_args)
            self._decoder = torch.compile(models.vae.decoder, **compile_args)
        if dev.type == "cuda" and (s.compile or s.cuda_graph):
            torch.backends.cudnn.benchmark = True  # shapes never change: time the conv algorithms once, in warm-up
        self._graph: torch.cuda.CUDAGraph | None = None
        self._primed = False
        self._have_output = False
        self.set_prompt(prompt, negative_prompt)

    # -- public ----------------------------------------------------------------
    @torch.inference_mode()
    def set_prompt(self, prompt: str, negative_prompt: str = "") -> None:
        """Change the style; the next frame's first step already uses it (no reload, no recapture)."""
        cond = self._encode_text(prompt)
        self._embeds[-len(self.schedule):].copy_(cond.expand(len(self.schedule), -1, -1))
        if self.settings.cfg == "initialize":
            self._embeds[:1].copy_(self._encode_text(negative_prompt))

    def reset(self) -> None:
        """Start afresh at the next frame, as after a scene cut (the noise stays the same)."""
        self._primed = False
        self._have_output = False
        if self.filter is not None:
            self.filter.reset()

    @torch.inference_mode()
    def warm_up(self, progress: Callable[[str], None] = lambda _: None) -> None:
        """Run the step until compiled and warm, then capture it as a CUDA graph (when asked).

        Compiling the full-size UNet takes minutes on first use; torch caches
        the result on disk, so later runs take seconds. `progress` hears each phase.
        """
        cuda = self.device.type == "cuda"
        side = torch.cuda.Stream() if cuda else None
        if side is not None:  # warm up off the default stream, as graph capture requires
            side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side) if side is not None else nullcontext():
            self._frame_in.fill_(127)
            self._prime()
            for i in range(WARMUP_STEPS):
                progress(f"{'compiling and ' if self.settings.compile and i == 0 else ''}warming up the stream ({i + 1}/{WARMUP_STEPS})")
                self._step()
        if side is not None:
            torch.cuda.current_stream().wait_stream(side)
        if self.settings.cuda_graph and cuda and self._graph is None:
            progress("capturing the CUDA graph")
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._step()
            self._graph = graph
        if cuda:
            torch.cuda.synchronize()
        self.reset()

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray | torch.Tensor) -> np.ndarray:
        """Restyle one frame; a frame the similarity filter skips returns the last output again."""
        host = frame.numpy() if isinstance(frame, torch.Tensor) else frame
        expected = (self.settings.height, self.settings.width, 3)
        if not isinstance(host, np.ndarray) or host.shape != expected or host.dtype != np.uint8:
            shape = getattr(host, "shape", None)
            raise ValueError(f"expected a host uint8 frame of shape {expected}, got {type(frame).__name__} {shape}")
        if self.filter is not None and self.filter.should_skip(host):  # never the first frame: no reference yet
            self.frames_skipped += 1
            return self._host_out.numpy()
        np.copyto(self._host_in.numpy(), host)
        self._frame_in.copy_(self._host_in, non_blocking=True)
        if not self._primed:
            self._prime()
        if self._graph is not None:
            self._graph.replay()
        else:
            self._step()
        if not self._have_output:
            self._blend.fill_(self.settings.latent_blend)  # from now on there is a previous latent
            self._have_output = True
        self._host_out.copy_(self._frame_out, non_blocking=True)
        if self._done is not None:
            self._done.record()
            self._done.synchronize()  # the one wait per frame
        return self._host_out.numpy()

    # -- the step (device work only: graph-capturable) --------------------------
    def _encode_frame(self) -> torch.Tensor:
        image = self._frame_in.permute(2, 0, 1).unsqueeze(0).to(self.dtype)
        return self._encoder(image / 127.5 - 1.0)

    def _prime(self) -> None:
        """Fill the later slots with the current frame noised to their steps."""
        x0 = self._encode_frame()
        self._x_t[1:].copy_(self._sqrt_alpha[1:] * x0 + self._sqrt_beta[1:] * self.noise[1:])
        self._x0_ref[1:].copy_(x0.expand_as(self._x0_ref[1:]))
        self._blend.zero_()
        self._primed = True

    def _step(self) -> None:
        sa, sb, cfg = self._sqrt_alpha, self._sqrt_beta, self.settings.cfg
        x0_in = self._encode_frame()
        self._x_t[:1].copy_(sa[:1] * x0_in + sb[:1] * self.noise[:1])
        self._x0_ref[:1].copy_(x0_in)
        x_in = torch.cat([self._x_t[:1], self._x_t]) if cfg == "initialize" else self._x_t
        eps = self._unet(x_in, self._timesteps, encoder_hidden_states=self._embeds, return_dict=False)[0]
        if cfg == "initialize":  # the new frame's negative x0, from its one negative UNet pass
            eps_negative, eps = eps[:1], eps[1:]
            self._x0_ref[:1].copy_((self._x_t[:1] - sb[:1] * eps_negative) / sa[:1])
        if cfg != "none":
            eps_negative = self.settings.delta * (self._x_t - sa * self._x0_ref) / sb
            eps = eps_negative + self.settings.guidance_scale * (eps - eps_negative)
        x0 = self._c_out * (self._x_t - sb * eps) / sa + self._c_skip * self._x_t
        latent = torch.lerp(x0[-1:], self._prev_latent, self._blend)
        self._prev_latent.copy_(latent)
        if len(self.schedule) > 1:  # advance the stream: each slot's frame moves to the next step
            self._x_t[1:].copy_(sa[1:] * x0[:-1] + sb[1:] * self.noise[1:])
            self._x0_ref[1:].copy_(self._x0_ref[:-1].clone())
        image = self._decoder(latent)
        self._frame_out.copy_(((image[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).to(torch.uint8))

    def _encode_text(self, prompt: str) -> torch.Tensor:
        ids = self.models.tokenizer(prompt, padding="max_length", max_length=self.models.tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
        encoder = self.models.text_encoder
        return encoder(ids.to(encoder.device))[0].to(self.device, self.dtype)
