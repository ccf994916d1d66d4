"""Restyle speed on a GPU: SD-Turbo-sized UNet (random weights) + real TAESD, 512x512.

Speed does not depend on weight values, so the full-size SD-Turbo UNet (SD 2.1
architecture, 865 M parameters) with random weights times like the real one.
Each frame is timed end to end on the host: a uint8 RGB frame in host memory
in, a uint8 RGB frame in host memory out (copy into pinned memory, upload,
encode, UNet, scheduler, decode, download, wait).

Modes: "eager" (plain PyTorch), "graph" (the step captured as one CUDA graph),
"compiled" (torch.compile, then the CUDA graph), "autotune" (the same with
GEMM autotuning: a much longer compile). Every non-eager mode is also checked
against eager on the same frames, including a prompt change. A case with
":2" runs two independent streams at once (two cameras, one thread and CUDA
stream each, shared weights): the GPU's capacity, where the one-stream cases
give what one camera sees.

    python benchmarks/restyle_bench.py --taesd DIR --video FILE --json OUT.json [--cases 1-step:compiled,...] [--breakdown]

Prints a table and writes JSON with median (p50), p95, mean and fps per case.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from veilcam.models.random_components import SD_TURBO_SCHEDULER, SD_TURBO_UNET, offline_clip_tokenizer, random_text_encoder, random_unet
from veilcam.models.stream_diffusion import DiffusionModels, StreamDiffusion, StreamSettings
from veilcam.models.taesd import load_taesd

SIZE = 512
STEPS = {"1-step": (32,), "2-step": (32, 45)}
COMPILE_MODES = {"compiled": "default", "autotune": "max-autotune-no-cudagraphs"}
DEFAULT_CASES = "1-step:eager,2-step:eager,1-step:compiled,2-step:compiled,1-step:compiled:2,2-step:compiled:2,1-step:graph,2-step:graph"
CHECK_FRAMES = 6


def build_models(taesd_dir: Path, device: str, dtype: torch.dtype) -> DiffusionModels:
    tokenizer = offline_clip_tokenizer(77)
    with torch.device(device):  # initialise on the GPU: seconds instead of a minute on the CPU
        unet = random_unet(SD_TURBO_UNET).to(dtype)
        text_encoder = random_text_encoder(len(tokenizer.get_vocab()), SD_TURBO_UNET["cross_attention_dim"], 77).to(dtype)
    vae = load_taesd(taesd_dir / "taesd_encoder.safetensors", taesd_dir / "taesd_decoder.safetensors", device=device, dtype=dtype)
    return DiffusionModels(unet.requires_grad_(False), vae, text_encoder.requires_grad_(False), tokenizer, SD_TURBO_SCHEDULER)


def load_frames(video: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(cv2.cvtColor(cv2.resize(bgr, (SIZE, SIZE)), cv2.COLOR_BGR2RGB)))
    if not frames:
        sys.exit(f"cannot read frames from {video}")
    return frames


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3), "max": round(float(a.max()), 3), "mean": round(float(a.mean()), 3)}


def timed_run(streams: list[StreamDiffusion], frames: list[np.ndarray], count: int) -> dict:
    """`count` frames through each stream; several streams run at once, one thread and CUDA stream each."""
    n = len(streams)
    latencies: list[list[float]] = [[] for _ in streams]
    barrier = threading.Barrier(n + 1)
    cuda_streams = [torch.cuda.Stream() if torch.cuda.is_available() else None for _ in streams]

    def work(i: int) -> None:
        with torch.cuda.stream(cuda_streams[i]) if cuda_streams[i] is not None else contextlib.nullcontext():
            for k in range(30):  # settle clocks and caches
                streams[i](frames[k % len(frames)])
            barrier.wait()
            for k in range(count):
                t0 = time.perf_counter()
                streams[i](frames[(k + 7 * i) % len(frames)])
                latencies[i].append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    gc.collect()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"frames": count * n, "fps": round(count * n / wall, 1), "latency_ms": stats([v for lat in latencies for v in lat])}


def capture_graph(part: Callable[[], object], warmup: int = 3) -> torch.cuda.CUDAGraph:
    """`part` captured as a CUDA graph, after `warmup` calls off the default stream
    (graph capture requires it; compiled code compiles and autotunes there)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            part()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        part()
    return graph


def graph_replay_ms(part: Callable[[], object], reps: int = 200) -> np.ndarray:
    """GPU time (CUDA events, ms) of each of `reps` replays of `part`'s CUDA graph:
    the part's own time, without the host's launch cost."""
    graph = capture_graph(part)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return np.asarray(times)


def gpu_breakdown(stream: StreamDiffusion, reps: int = 200) -> dict[str, float]:
    """Median GPU time of each part of a frame, each replayed as its own CUDA graph: where the
    time goes. "unet_beside_taesd" runs the UNet with the TAESD decoder and encoder of
    neighbouring frames on a second CUDA stream in the same graph: what pipelining frames
    across streams could save at most."""

    def graph_ms(part) -> float:
        return round(float(np.median(graph_replay_ms(part, reps))), 3)

    s = stream
    second = torch.cuda.Stream()

    def unet() -> None:
        s._unet(s._x_t, s._timesteps, encoder_hidden_states=s._embeds, return_dict=False)

    def unet_beside_taesd() -> None:
        main = torch.cuda.current_stream()
        second.wait_stream(main)
        with torch.cuda.stream(second):
            s._decoder(s._prev_latent)
            s._encode_frame()
        unet()
        main.wait_stream(second)

    with torch.inference_mode():
        return {
            "unet": graph_ms(unet),
            "taesd_encoder": graph_ms(s._encode_frame),
            "taesd_decoder": graph_ms(lambda: s._decoder(s._prev_latent)),
            "whole_step": graph_ms(s._step),
            "unet_beside_taesd": graph_ms(unet_beside_taesd),
        }


KERNEL_KINDS = (  # (kind, words in the kernel's name), first match wins
    ("attention", ("sdpa", "flash", "fmha", "attention")),
    ("triton (fused elementwise and norms)", ("triton",)),
    ("convolution", ("fprop", "conv", "implicit_gemm")),
    ("matrix multiply", ("gemm", "nvjet", "cutlass", "xmma")),
)


def unet_kernels(stream: StreamDiffusion, reps: int = 10) -> dict:
    """GPU time of one UNet call by kind of kernel (profiler over replays of its CUDA graph),
    and how many kernels it launches: what a faster UNet would have to shrink."""
    from torch.profiler import ProfilerActivity, profile

    s = stream
    with torch.inference_mode():
        graph = capture_graph(lambda: s._unet(s._x_t, s._timesteps, encoder_hidden_states=s._embeds, return_dict=False), warmup=1)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                graph.replay()
            torch.cuda.synchronize()
    kinds: dict[str, float] = {}
    launches = 0.0
    for event in prof.key_averages():
        if event.device_time_total <= 0:
            continue
        name = event.key.lower()
        kind = next((k for k, words in KERNEL_KINDS if any(w in name for w in words)), "other (memsets, copies)")
        kinds[kind] = kinds.get(kind, 0.0) + event.device_time_total / reps / 1000
        launches += event.count / reps
    return {"ms_by_kind": {k: round(v, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])}, "kernels": int(round(launches))}


def outputs_with_prompt_change(stream: StreamDiffusion, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The first frames, with a new prompt half way: the same sequence for every mode."""
    stream.reset()
    stream.set_prompt("an oil painting")
    out = []
    for i, frame in enumerate(frames[:CHECK_FRAMES]):
        if i == CHECK_FRAMES // 2:
            stream.set_prompt("a pencil sketch")
        out.append(stream(frame).copy())
    stream.reset()
    return out


def run_case(spec: str, models: DiffusionModels, frames: list[np.ndarray], count: int, references: dict[str, list[np.ndarray]], breakdown: bool = False) -> dict:
    """One case, "STEPS:MODE[:STREAMS]", e.g. "1-step:compiled:2"."""
    steps_name, mode, *rest = spec.split(":")
    n_streams = int(rest[0]) if rest else 1
    case: dict = {"case": spec, "steps": steps_name, "t_index_list": list(STEPS[steps_name]), "mode": mode, "streams": n_streams}
    settings = StreamSettings(
        width=SIZE, height=SIZE, t_index_list=STEPS[steps_name], cfg="none",
        compile=mode in COMPILE_MODES, compile_mode=COMPILE_MODES.get(mode, "default"), cuda_graph=mode != "eager",
    )
    streams = [StreamDiffusion(models, settings, "an oil painting") for _ in range(n_streams)]
    t0 = time.perf_counter()
    for stream in streams:
        stream.warm_up(lambda msg: print(f"[{spec} {time.perf_counter() - t0:6.1f} s] {msg}", flush=True))
    case["warm_up_s"] = round(time.perf_counter() - t0, 1)
    outputs = outputs_with_prompt_change(streams[0], frames)
    if mode == "eager":
        references[steps_name] = outputs
    elif steps_name in references:
        diffs = [np.abs(a.astype(int) - b) for a, b in zip(outputs, references[steps_name])]
        case["vs_eager"] = {"mean_abs": round(float(np.mean([d.mean() for d in diffs])), 3), "max_abs": int(max(d.max() for d in diffs))}
    case.update(timed_run(streams, frames, count))
    if breakdown and torch.cuda.is_available() and n_streams == 1:
        case["gpu_ms"] = gpu_breakdown(streams[0])
        case["unet_kernels"] = unet_kernels(streams[0])
    return case


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taesd", type=Path, required=True, help="folder with taesd_encoder/decoder.safetensors")
    parser.add_argument("--video", type=Path, required=True, help="video to take frames from")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=300, help="timed frames per stream and case")
    parser.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated STEPS:MODE[:STREAMS] (modes: eager, graph, " + ", ".join(COMPILE_MODES) + ")")
    parser.add_argument("--device", default="cuda", help="cuda (fp16) or cpu (fp32, for a dry run)")
    parser.add_argument("--breakdown", action="store_true", help="also time UNet, TAESD encoder and decoder alone on the GPU, and the UNet's kernels by kind (one-stream cases)")
    args = parser.parse_args()

    import diffusers

    dtype = torch.float16 if args.device == "cuda" else torch.float32
    frames = load_frames(args.video, 64)
    t0 = time.perf_counter()
    models = build_models(args.taesd, args.device, dtype)
    print(f"models built in {time.perf_counter() - t0:.1f} s", flush=True)
    result: dict = {
        "what": "StreamDiffusion img2img 512x512, host uint8 frame -> host uint8 frame, SD-Turbo UNet (random weights) + TAESD, fp16",
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "cases": [],
    }
    references: dict[str, list[np.ndarray]] = {}
    for spec in args.cases.split(","):
        try:
            case = run_case(spec, models, frames, args.frames, references, args.breakdown)
        except Exception as exc:  # one failing case must not lose the others' numbers
            case = {"case": spec, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        print(json.dumps(case), flush=True)
        result["cases"].append(case)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    return 0


def print_table(result: dict) -> None:
    print(f"\n{result['what']}\n{result['gpu']}, torch {result['torch']}, CUDA {result['cuda']}, diffusers {result['diffusers']}")
    print(f"{'case':<22}{'fps':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'warm-up s':>11}{'vs eager':>12}")
    for c in result["cases"]:
        name = c["case"]
        if "error" in c:
            print(f"{name:<22} error: {c['error'][:200]}")
            continue
        lat = c["latency_ms"]
        check = f"{c['vs_eager']['mean_abs']:.2f}/{c['vs_eager']['max_abs']}" if "vs_eager" in c else "-"
        print(f"{name:<22}{c['fps']:>8.1f}{lat['p50']:>9.2f}{lat['p95']:>9.2f}{lat['max']:>9.2f}{c['warm_up_s']:>11.1f}{check:>12}")
        if "gpu_ms" in c:
            print("    GPU ms (median): " + ", ".join(f"{part} {ms:.2f}" for part, ms in c["gpu_ms"].items()))
        if "unet_kernels" in c:
            k = c["unet_kernels"]
            print(f"    UNet, {k['kernels']} kernels, ms: " + ", ".join(f"{kind} {ms:.2f}" for kind, ms in k["ms_by_kind"].items()))


if __name__ == "__main__":
    sys.exit(main())
