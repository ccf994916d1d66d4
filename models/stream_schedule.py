"""The per-step constants of a StreamDiffusion stream, from a diffusers scheduler config.

A stream denoises every frame through the same few steps (`t_index_list`
picks them out of an `num_inference_steps` schedule), so every constant a step
needs is fixed for the stream's life and computed once, here:

    x_t  = sqrt_alpha * x0 + sqrt_beta * eps              (forward process)
    x0^  = c_out * (x_t - sqrt_beta * eps^) / sqrt_alpha + c_skip * x_t

"lcm" takes the timesteps and the consistency-model boundary scalings
(c_skip, c_out) from diffusers' `LCMScheduler` (SD 1.5 + LCM-LoRA, LCM
distilled models). "turbo" is the SD-Turbo path: adversarially distilled
models predict x0 directly from the noise estimate (c_skip 0, c_out 1), on
the "trailing" timesteps of diffusers' `EulerDiscreteScheduler`; with one
step this is plain SD-Turbo img2img, and with more it re-noises the estimate
between steps, as the ADD paper's multi-step sampling does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

SCHEDULERS = ("turbo", "lcm")


@dataclass(frozen=True)
class StreamSchedule:
    """One entry per stream slot, the noisiest (first) step first."""

    timesteps: tuple[int, ...]
    sqrt_alpha: tuple[float, ...]
    sqrt_beta: tuple[float, ...]
    c_skip: tuple[float, ...]
    c_out: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.timesteps)


def stream_schedule(scheduler_config: Mapping[str, Any], kind: str, t_index_list: tuple[int, ...], num_inference_steps: int) -> StreamSchedule:
    """Constants for the steps `t_index_list` of an `num_inference_steps` schedule.

    Raises ValueError for an unknown kind, a model that does not predict noise,
    or step indices that are not strictly increasing within the schedule.
    """
    from diffusers import EulerDiscreteScheduler, LCMScheduler  # heavy import, kept local

    if kind not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {kind!r} (choose one of {', '.join(SCHEDULERS)})")
    prediction = scheduler_config.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        raise ValueError(f"the model predicts {prediction!r}; the stream supports epsilon-prediction models (SD-Turbo, SD 1.5)")
    if not t_index_list or any(b <= a for a, b in zip(t_index_list, t_index_list[1:])):
        raise ValueError(f"t_index_list {list(t_index_list)} must be non-empty and strictly increasing")
    if t_index_list[0] < 0 or t_index_list[-1] >= num_inference_steps:
        raise ValueError(f"t_index_list {list(t_index_list)} must lie in [0, {num_inference_steps - 1}] (num_inference_steps {num_inference_steps})")

    if kind == "lcm":
        scheduler = LCMScheduler.from_config(scheduler_config)
        scheduler.set_timesteps(num_inference_steps, original_inference_steps=max(num_inference_steps, scheduler.config.original_inference_steps))
    else:
        scheduler = EulerDiscreteScheduler.from_config(scheduler_config, timestep_spacing="trailing")
        scheduler.set_timesteps(num_inference_steps)
    timesteps = tuple(int(round(float(scheduler.timesteps[i]))) for i in t_index_list)
    alphas = [float(scheduler.alphas_cumprod[t]) for t in timesteps]
    if kind == "lcm":
        scalings = [scheduler.get_scalings_for_boundary_condition_discrete(t) for t in timesteps]
    else:
        scalings = [(0.0, 1.0)] * len(timesteps)
    return StreamSchedule(
        timesteps=timesteps,
        sqrt_alpha=tuple(a**0.5 for a in alphas),
        sqrt_beta=tuple((1 - a) ** 0.5 for a in alphas),
        c_skip=tuple(float(s) for s, _ in scalings),
        c_out=tuple(float(o) for _, o in scalings),
    )
