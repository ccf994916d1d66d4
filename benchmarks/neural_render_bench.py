"""How fast a neural avatar renders: the network alone at each size, and whole frames driven by a video.

The network's speed does not depend on its weights, so it
uses a freshly initialised one (exported to ONNX for onnxruntime). Runners:
`onnx` (onnxruntime on the CPU, the laptop path) and `cuda` (torch, half
precision, on an NVIDIA GPU). "network" is one call from the runner's host
input (per-pixel features for onnxruntime, the G-buffer for torch) to a host
RGBA crop (uploads and downloads included); "frame" is the whole
`NeuralAvatarRenderer.render` at the output size: posing the face model, its
G-buffer (with the texture lookup, for onnxruntime), the network, and placing
the crop on the backdrop.

    python benchmarks/neural_render_bench.py --runner onnx --sizes 256 --video ../shared/data/video/p1_man_glasses_webcam_14s.mp4 --json neural_cpu.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from veilcam.daemon.report import summary_ms, write_report


def _timed(fn, rounds: int, warmup: int) -> dict[str, Any]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return summary_ms(np.array(out), 3)


def main() -> None:
    import torch

    from veilcam.models.neural_avatar_config import GBUFFER_CHANNELS, NeuralAvatarConfig
    from veilcam.models.neural_avatar_net import NeuralAvatarNet
    from veilcam.models.neural_runtime import OnnxRunner, TorchCudaRunner, export_onnx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", choices=("onnx", "cuda"), default="onnx")
    parser.add_argument("--sizes", default="256", help="network crop sizes, comma-separated (default 256)")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: up to 4)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--video", type=Path, help="drive whole frames with this video's tracking (first size only)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = NeuralAvatarConfig()
    net = NeuralAvatarNet(config).eval()
    weights = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[dict[str, Any]] = []
    runners = {}
    for size in sizes:
        runner = OnnxRunner(export_onnx(net, size), cuda=False, threads=args.threads) if args.runner == "onnx" else TorchCudaRunner(weights, config)
        runners[size] = runner
        rng = np.random.default_rng(0)
        pixels = rng.uniform(-1, 1, (config.features if runner.takes_features else GBUFFER_CHANNELS, size, size)).astype(np.float32)
        code = rng.uniform(0, 1, config.code_size).astype(np.float32)
        rows.append({"what": "network", "size": size, "runner": runner.name, **_timed(lambda: runner(pixels, code), args.rounds, 20)})
    if args.video is not None:
        from veilcam.daemon.config import Config
        from veilcam.daemon.eval_fidelity import track_video
        from veilcam.daemon.facekit_avatar import face_model_and_mesh
        from veilcam.daemon.model_store import ModelStore
        from veilcam.models.neural_avatar_renderer import NeuralAvatarRenderer

        states = [s for s in track_video(args.video, Config(), False, "track", False) if s.present]
        model, mesh = face_model_and_mesh(ModelStore.from_environment(progress=False))
        size = sizes[0]
        renderer = NeuralAvatarRenderer(args.width, args.height, model, mesh, np.zeros(100, np.float32), runners[size], size,
                                        np.eye(3, dtype=np.float32), weights["texture"])
        frames = iter(states * (args.rounds // len(states) + 2))
        stats = _timed(lambda: renderer.render(next(frames)), args.rounds, 10)
        renderer.close()
        rows.append({"what": f"frame {args.width}x{args.height}", "size": size, "runner": runners[size].name, **stats})

    print(f"{'what':<20}{'size':>6}  {'runner':<40}{'p50 ms':>9}{'p95 ms':>9}")
    for r in rows:
        print(f"{r['what']:<20}{r['size']:>6}  {r['runner']:<40}{r['p50']:>9.2f}{r['p95']:>9.2f}")
    if args.json:
        write_report({"rows": rows, "rounds": args.rounds}, args.json)


if __name__ == "__main__":
    main()
