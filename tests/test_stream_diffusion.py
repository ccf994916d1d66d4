"""StreamDiffusion on CPU: a tiny random UNet and text encoder loaded through the
real loader, the real TAESD, real video frames.

The reference for the stream batch is written independently, one frame at a
time, on diffusers' own scheduler code (`LCMScheduler.step`,
`EulerDiscreteScheduler.step`, `add_noise`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from conftest import MODELS_DIR
from tiny_diffusion import SIZE, save_tiny_model, small_frames
from veilcam.daemon.diffusion_models import load_diffusion_models
from veilcam.daemon.model_store import ModelStore
from veilcam.models.stream_diffusion import DiffusionModels, StreamDiffusion, StreamSettings
from veilcam.models.stream_schedule import stream_schedule

PROMPT = "an oil painting, thick brush strokes"
# diffusers' Euler scheduler builds its sigmas with an old NumPy idiom.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-sd"))


def _load(folder: Path, cache: Path) -> DiffusionModels:
    store = ModelStore(MODELS_DIR, cache, allow_download=False, progress=False)
    return load_diffusion_models(str(folder), store, "cpu", torch.float32, allow_download=False)


@pytest.fixture(scope="module")
def models(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> DiffusionModels:
    return _load(model_folder, tmp_path_factory.mktemp("cache"))


def _settings(**kwargs) -> StreamSettings:
    return StreamSettings(width=SIZE, height=SIZE, **kwargs)


def _run(stream: StreamDiffusion, frames) -> list[np.ndarray]:
    return [stream(f).copy() for f in frames]


# -- stream batch equivalence --------------------------------------------------
def _reference(models: DiffusionModels, settings: StreamSettings, noise: torch.Tensor, frame: np.ndarray, prompt: str, negative: str = "") -> np.ndarray:
    """One frame through all its steps, alone: what the stream batch must reproduce."""
    from diffusers import EulerDiscreteScheduler, LCMScheduler

    def embed(text: str) -> torch.Tensor:
        tok = models.tokenizer
        ids = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
        return models.text_encoder(ids)[0]

    def fresh(cls):
        scheduler = cls.from_config(models.scheduler_config, **({"timestep_spacing": "trailing"} if cls is EulerDiscreteScheduler else {}))
        scheduler.set_timesteps(settings.num_inference_steps)
        return scheduler

    kind = LCMScheduler if settings.scheduler == "lcm" else EulerDiscreteScheduler
    timesteps = [int(fresh(kind).timesteps[i]) for i in settings.t_index_list]
    alphas = fresh(LCMScheduler).alphas_cumprod
    cond, uncond = embed(prompt), embed(negative)
    with torch.inference_mode():
        image = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 127.5 - 1
        x0_in = models.vae.encoder(image)
        x = fresh(LCMScheduler).add_noise(x0_in, noise[:1], torch.tensor([timesteps[0]]))
        x0_negative = x0_in
        for i, t in enumerate(timesteps):
            a = alphas[t]
            eps = models.unet(x, t, encoder_hidden_states=cond).sample
            if settings.cfg == "initialize" and i == 0:
                eps_uncond = models.unet(x, t, encoder_hidden_states=uncond).sample
                x0_negative = (x - (1 - a).sqrt() * eps_uncond) / a.sqrt()
            if settings.cfg != "none":  # residual CFG, the paper's formula
                virtual = settings.delta * (x - a.sqrt() * x0_negative) / (1 - a).sqrt()
                eps = virtual + settings.guidance_scale * (eps - virtual)
            if settings.scheduler == "lcm":
                x0 = fresh(LCMScheduler).step(eps, t, x).denoised
            else:  # Euler works on x / sqrt(alpha) and feeds the UNet x again
                euler = fresh(EulerDiscreteScheduler)
                x0 = euler.step(eps, float(euler.timesteps[settings.t_index_list[i]]), x / a.sqrt()).pred_original_sample
            if i + 1 < len(timesteps):
                x = fresh(LCMScheduler).add_noise(x0, noise[i + 1 : i + 2], torch.tensor([timesteps[i + 1]]))
        out = models.vae.decoder(x0)
    return ((out[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).to(torch.uint8).numpy()


@pytest.mark.parametrize(
    "scheduler,cfg,t_index_list",
    [("lcm", "self", (10, 25, 40)), ("turbo", "initialize", (32, 45)), ("turbo", "none", (25,))],
)
def test_stream_batch_matches_frame_by_frame(models, scheduler, cfg, t_index_list) -> None:
    settings = _settings(scheduler=scheduler, cfg=cfg, t_index_list=t_index_list, guidance_scale=1.6, delta=0.8)
    frames = small_frames("p2", 6, step=10)
    stream = StreamDiffusion(models, settings, PROMPT, negative_prompt="blurry")
    outputs = _run(stream, frames)
    lag = len(t_index_list) - 1  # the stream answers n-1 frames late
    for k in range(lag, len(frames)):
        expected = _reference(models, settings, stream.noise, frames[k - lag], PROMPT, "blurry")
        diff = np.abs(outputs[k].astype(int) - expected.astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.05, (k, diff.max(), diff.mean())
    # Not vacuous: the frames differ from each other and the output is not the input.
    assert np.abs(outputs[-1].astype(int) - outputs[-2]).mean() > 1
    assert np.abs(outputs[-1].astype(int) - frames[-1 - lag]).mean() > 5


def test_compiled_stream_matches_eager_across_a_prompt_change(models, model_folder, tmp_path) -> None:
    """The GPU path compiles the step (fused q/k/v, channels-last convolutions); it must
    give eager's frames, and a prompt set after compiling must show without a recompile."""
    frames = small_frames("p3", 6, step=8)
    settings = _settings(t_index_list=(32, 45), cfg="self")

    def run(stream: StreamDiffusion) -> list[np.ndarray]:
        stream.warm_up()
        graphs = counters["stats"]["unique_graphs"]
        out = _run(stream, frames[:3])
        stream.set_prompt("a pencil sketch")
        out += _run(stream, frames[3:])
        assert counters["stats"]["unique_graphs"] == graphs  # compiled once, in warm-up
        return out

    eager = run(StreamDiffusion(models, settings, PROMPT))
    # Own copy of the weights: compiling fuses q/k/v and makes them channels-last.
    compiled_stream = StreamDiffusion(_load(model_folder, tmp_path), replace(settings, compile=True), PROMPT)
    compiled = run(compiled_stream)
    assert isinstance(compiled_stream._unet, torch._dynamo.eval_frame.OptimizedModule)
    assert counters["stats"]["unique_graphs"] > 0  # the count run() checks does move
    for k, (a, b) in enumerate(zip(eager, compiled)):
        diff = np.abs(a.astype(int) - b)
        assert diff.max() <= 2 and diff.mean() < 0.1, (k, diff.max(), diff.mean())
    # Not vacuous: in eager, the new prompt changes the frame right after it.
    unchanged = _run(StreamDiffusion(models, settings, PROMPT), frames)
    assert np.abs(eager[3].astype(int) - unchanged[3]).mean() > 1


def test_first_frames_answer_at_once_from_primed_slots(models) -> None:
    stream = StreamDiffusion(models, _settings(t_index_list=(20, 35, 45)), PROMPT)
    first = stream(small_frames("p2", 1)[0]).copy()
    assert first.std() > 5  # a picture, not the zero-initialised buffer


def test_warm_up_leaves_no_trace(models) -> None:
    frames = small_frames("p4", 3, step=15)
    settings = _settings(cfg="self", latent_blend=0.3)
    cold = _run(StreamDiffusion(models, settings, PROMPT), frames)
    warmed = StreamDiffusion(models, settings, PROMPT)
    warmed.warm_up()
    assert all(np.array_equal(a, b) for a, b in zip(cold, _run(warmed, frames)))


# -- similarity filter ---------------------------------------------------------
def test_similarity_filter_skips_identical_frames_not_different_ones(models) -> None:
    a, b = small_frames("p1", 1)[0], small_frames("p3", 1)[0]
    stream = StreamDiffusion(models, _settings(similarity_threshold=0.98), PROMPT)
    reference = StreamDiffusion(models, _settings(), PROMPT)
    out_a = stream(a).copy()
    for _ in range(4):
        assert np.array_equal(stream(a), out_a)
    assert stream.frames_skipped == 4
    out_b = stream(b).copy()
    assert stream.frames_skipped == 4  # a different person: processed
    reference(a)
    assert np.array_equal(out_b, reference(b))  # and exactly as without the filter
    stream(b)
    assert stream.frames_skipped == 5


def test_similarity_filter_skips_in_proportion_to_similarity() -> None:
    from veilcam.models.similarity_filter import SimilarityFilter

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    filt = SimilarityFilter(0.9, seed=1)
    assert filt.should_skip(base) is False  # the first frame is the reference
    noisy = np.clip(base.astype(int) + rng.integers(-60, 61, base.shape), 0, 255).astype(np.uint8)
    similarity = filt.similarity(noisy)
    expected = (similarity - 0.9) / 0.1
    assert 0.2 < expected < 0.8  # the noise puts it inside the stochastic band
    skips = 0
    for _ in range(400):
        skipped = filt.should_skip(noisy)
        skips += skipped
        if not skipped:  # `noisy` became the reference: make it `base` again
            filt.reset()
            filt.should_skip(base)
    assert abs(skips / 400 - expected) < 0.1
    with pytest.raises(ValueError, match="threshold"):
        SimilarityFilter(1.0)


# -- prompt change ---------------------------------------------------------------
def test_new_prompt_takes_effect_within_two_frames_without_reload(models) -> None:
    frames = small_frames("p3", 6, step=8)
    settings = _settings(t_index_list=(32, 45))
    old, new = "an oil painting", "a pencil sketch"
    unchanged = _run(StreamDiffusion(models, settings, old), frames)
    fresh = _run(StreamDiffusion(models, settings, new), frames)
    stream = StreamDiffusion(models, settings, old)
    unet = stream.models.unet
    switched = _run(stream, frames[:3])
    stream.set_prompt(new)
    switched += _run(stream, frames[3:])
    assert stream.models.unet is unet
    assert all(np.array_equal(a, b) for a, b in zip(switched[:3], unchanged[:3]))
    assert np.abs(switched[3].astype(int) - unchanged[3]).mean() > 1  # the first frame after already changes
    for k in (4, 5):  # from the second frame on, exactly as if the new prompt had always been set
        assert np.array_equal(switched[k], fresh[k])


# -- temporal consistency ----------------------------------------------------------
def _flicker(frames: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(b.astype(int) - a).mean() for a, b in zip(frames, frames[1:])]))


def test_latent_blend_calms_flicker(models) -> None:
    frames = [f for pair in zip(small_frames("p1", 4, step=30), small_frames("p2", 4, step=30)) for f in pair]  # a cut at every frame
    plain = _run(StreamDiffusion(models, _settings(t_index_list=(30,)), PROMPT), frames)
    blended = _run(StreamDiffusion(models, _settings(t_index_list=(30,), latent_blend=0.7), PROMPT), frames)
    assert np.array_equal(plain[0], blended[0])  # nothing to blend with yet
    assert _flicker(blended) < 0.7 * _flicker(plain)


# -- schedules and settings ---------------------------------------------------------
def test_turbo_and_lcm_schedules(models) -> None:
    turbo = stream_schedule(models.scheduler_config, "turbo", (32, 45), 50)
    assert turbo.timesteps == (359, 99) and turbo.c_skip == (0.0, 0.0) and turbo.c_out == (1.0, 1.0)
    lcm = stream_schedule(models.scheduler_config, "lcm", (32, 45), 50)
    assert lcm.timesteps == (359, 99) and 0 < lcm.c_skip[1] < 1e-5 and 0.999 < lcm.c_out[1] < 1
    for a, b in zip(turbo.sqrt_alpha, turbo.sqrt_beta):
        assert a**2 + b**2 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        stream_schedule(models.scheduler_config, "turbo", (45, 32), 50)
    with pytest.raises(ValueError, match="must lie in"):
        stream_schedule(models.scheduler_config, "turbo", (32, 50), 50)
    with pytest.raises(ValueError, match="epsilon"):
        stream_schedule({**models.scheduler_config, "prediction_type": "v_prediction"}, "turbo", (32,), 50)


def test_bad_frames_and_settings_are_refused(models) -> None:
    stream = StreamDiffusion(models, _settings(), PROMPT)
    with pytest.raises(ValueError, match=r"\(64, 64, 3\)"):
        stream(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        stream(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="cfg"):
        StreamDiffusion(models, _settings(cfg="full"), PROMPT)
    with pytest.raises(ValueError, match="multiple of 64"):
        StreamDiffusion(models, StreamSettings(width=100, height=64), PROMPT)
