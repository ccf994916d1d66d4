"""What a few more levers do to the compiled SD-Turbo UNet on a GPU (the restyle benchmark's
UNet, random weights), each in its own process so inductor's settings cannot leak between them:

    base          what the stream does: fused q/k/v, channels-last, torch.compile (default mode)
    freeze_t      + inductor freezing, the timesteps a constant: the time embedding is folded
    fp8_freeze_t  + every linear layer in fp8 (Hopper): weights scaled per output channel,
                  activations quantised per row at run time, torch._scaled_mm
    deep_cache    DeepCache's shallow branch (Ma et al., CVPR 2024): on a cached frame only the
                  UNet's outermost level runs (time embedding, conv_in, the first down block
                  without its downsampler, the last up block, conv_out); the last up block's
                  input comes from the previous full call. Timed alone: the full calls are base.

Each variant: median and p95 GPU time of one UNet call replayed as a CUDA graph, at batch 1
(one step) and 2 (the two-step stream batch); base also times TAESD at batch 1 and 2.

    python benchmarks/restyle_unet_levers.py --taesd DIR --json OUT.json [--variants base,freeze_t,...]

Prints a table and writes JSON. These levers were measured and not adopted: see the README.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import restyle_bench  # noqa: E402  (a sibling script, not a package)

VARIANTS = ("base", "freeze_t", "fp8_freeze_t", "deep_cache")


def relative_error(y: torch.Tensor, reference: torch.Tensor, digits: int) -> float:
    """|y - reference| / |reference| over the whole tensor, rounded."""
    return round(float((y.float() - reference.float()).norm() / reference.float().norm()), digits)


def graph_ms(fn) -> list[float]:
    """[median, p95] GPU time (ms) of `fn` replayed as a CUDA graph."""
    times = restyle_bench.graph_replay_ms(fn)
    return [round(float(np.median(times)), 4), round(float(np.percentile(times, 95)), 4)]


class Fp8Linear(torch.nn.Module):
    """A linear layer in fp8 e4m3: rowwise scales for activations, per-channel for weights."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1, keepdim=True) / 448.0).clamp(min=1e-12)
        self.register_buffer("weight_fp8", (w / scale).to(torch.float8_e4m3fn))
        self.register_buffer("weight_scale", scale.t().contiguous())  # (1, out)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        scale = (rows.abs().amax(dim=1, keepdim=True).float() / 448.0).clamp(min=1e-12)
        quantised = (rows.float() / scale).to(torch.float8_e4m3fn).contiguous()
        y = torch._scaled_mm(quantised, self.weight_fp8.t(), scale_a=scale, scale_b=self.weight_scale, out_dtype=torch.bfloat16).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], y.shape[-1])


def to_fp8(module: torch.nn.Module) -> int:
    count = 0
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear) and child.in_features % 16 == 0 and child.out_features % 16 == 0:
            setattr(module, name, Fp8Linear(child))
            count += 1
        else:
            count += to_fp8(child)
    return count


class ShallowBranch(torch.nn.Module):
    """DeepCache's cached-frame call: the outermost level of `unet`, fed the deep features
    (the last up block's input) of an earlier full call."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, e: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        u = self.unet
        temb = u.time_embedding(u.time_proj(t).to(x.dtype))
        h = u.conv_in(x)
        skips = (h,)
        first = u.down_blocks[0]
        for resnet, attention in zip(first.resnets, first.attentions):
            h = attention(resnet(h, temb), encoder_hidden_states=e, return_dict=False)[0]
            skips += (h,)
        h = u.up_blocks[-1](hidden_states=deep, temb=temb, res_hidden_states_tuple=skips, encoder_hidden_states=e)
        return u.conv_out(u.conv_act(u.conv_norm_out(h)))


def deep_features(unet: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A full call's output and the last up block's input (what DeepCache keeps)."""
    kept: list[torch.Tensor] = []
    hook = unet.up_blocks[-1].register_forward_pre_hook(lambda _m, _a, kw: kept.append(kw["hidden_states"]), with_kwargs=True)
    try:
        out = unet(x, t, encoder_hidden_states=e, return_dict=False)[0]
    finally:
        hook.remove()
    return out, kept[0]


def measure(variant: str, taesd: Path) -> dict:
    torch.backends.cudnn.benchmark = True
    result: dict = {"variant": variant}
    models = restyle_bench.build_models(taesd, "cuda", torch.float16)
    unet, vae = models.unet, models.vae
    unet.fuse_qkv_projections()
    unet.to(memory_format=torch.channels_last)
    vae.to(memory_format=torch.channels_last)
    if "freeze" in variant:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
    if "fp8" in variant:
        result["fp8_linears"] = to_fp8(unet)
    const_t = variant.endswith("_t")
    for batch in (1, 2):
        x = torch.randn(batch, 4, 64, 64, device="cuda", dtype=torch.float16)
        t = torch.full((batch,), 500, device="cuda", dtype=torch.long)
        e = torch.randn(batch, 77, 1024, device="cuda", dtype=torch.float16)

        if variant == "deep_cache":
            with torch.inference_mode():
                full, deep = deep_features(unet, x, t, e)
                shallow = torch.compile(ShallowBranch(unet), fullgraph=True, dynamic=False)
                t0 = time.perf_counter()
                y = shallow(x, t, e, deep)
                torch.cuda.synchronize()
                result[f"compile_s_b{batch}"] = round(time.perf_counter() - t0, 1)
                # With the cache from the same input the branch must give the full call's output.
                result[f"split_rel_err_b{batch}"] = relative_error(y, full, 5)
                result[f"unet_b{batch}"] = graph_ms(lambda: shallow(x, t, e, deep))
            continue

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.unet = unet
                self.register_buffer("t", t)

            def forward(self, x, t_in, e_in):
                return self.unet(x, self.t if const_t else t_in, encoder_hidden_states=e_in, return_dict=False)[0]

        compiled = torch.compile(Wrapped(), fullgraph=True, dynamic=False)
        t0 = time.perf_counter()
        with torch.inference_mode():
            reference = unet(x, t, encoder_hidden_states=e, return_dict=False)[0] if "fp8" in variant else None
            for _ in range(2):
                y = compiled(x, t, e)
            torch.cuda.synchronize()
            result[f"compile_s_b{batch}"] = round(time.perf_counter() - t0, 1)
            result[f"unet_b{batch}"] = graph_ms(lambda: compiled(x, t, e))
            if reference is not None:
                result[f"fp8_rel_err_b{batch}"] = relative_error(y, reference, 4)
    if variant == "base":
        for batch in (1, 2):
            image = torch.randn(batch, 3, 512, 512, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
            latent = torch.randn(batch, 4, 64, 64, device="cuda", dtype=torch.float16)
            encoder = torch.compile(vae.encoder, fullgraph=True, dynamic=False)
            decoder = torch.compile(vae.decoder, fullgraph=True, dynamic=False)
            with torch.inference_mode():
                result[f"taesd_enc_b{batch}"] = graph_ms(lambda: encoder(image))
                result[f"taesd_dec_b{batch}"] = graph_ms(lambda: decoder(latent))
    return result


def print_row(r: dict) -> None:
    if "error" in r:
        print(f"{r['variant']:<14} error: {r['error'][-200:]}", flush=True)
        return
    print(f"{r['variant']:<14}{r['unet_b1'][0]:>13.3f}{r['unet_b1'][1]:>8.3f}{r['unet_b2'][0]:>13.3f}{r['unet_b2'][1]:>8.3f}{r['compile_s_b1']:>11.1f}", flush=True)
    extras = {k: v for k, v in r.items() if k.startswith(("taesd", "fp8", "split"))}
    if extras:
        print("    " + ", ".join(f"{k} {v}" for k, v in extras.items()), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taesd", type=Path, required=True, help="folder with taesd_encoder/decoder.safetensors")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process measuring one variant
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.taesd)), flush=True)
        return 0
    print(f"{'variant':<14}{'UNet b1 p50':>13}{'p95':>8}{'UNet b2 p50':>13}{'p95':>8}{'compile s':>11}", flush=True)
    results = []
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            sys.exit(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")
        child = subprocess.run([sys.executable, __file__, "--taesd", str(args.taesd), "--json", str(args.json), "--one", variant], capture_output=True, text=True)
        lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
        r = json.loads(lines[-1]) if child.returncode == 0 and lines else {"variant": variant, "error": child.stderr[-2000:]}
        results.append(r)
        args.json.write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "variants": results}, indent=1) + "\n")
        print_row(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
