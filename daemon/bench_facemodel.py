"""`veilcam bench-facemodel`: per-frame cost of the face model and of avatar renderers.

Times the two halves of a face-model frame on the demo motion: mesh evaluation
(MediaPipe scores -> ICT weights -> posed vertices with turned eyes) and
`render` (evaluation, upload, raster, resolve, read-back) at the output size.
Renderers are timed interleaved, frame by frame, so a busy machine slows them
all alike and their comparison stays fair.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from veilcam.models.demo_motion import DemoMotion
from veilcam.models.gaze import gaze_rotations

from .config import Config
from .report import summary_ms, write_report


def run(config: Config, avatars: list[str], frames: int, warmup: int = 10) -> dict[str, Any]:
    from .facekit_avatar import face_model_and_mesh
    from .factory import make_renderer, model_store
    from veilcam.models.face_model import FaceRig

    store = model_store(config)
    model, mesh = face_model_and_mesh(store)
    rig = FaceRig(model, mesh=mesh)
    motion = DemoMotion()
    states = [motion(i / 30.0) for i in range(frames + warmup)]

    evaluation = []
    for i, state in enumerate(states):
        t0 = time.perf_counter()
        rig.pose(model.expression_weights(state.blendshapes), gaze_rotations(state.blendshapes))
        if i >= warmup:
            evaluation.append(time.perf_counter() - t0)

    renderers = {name: make_renderer(dataclasses.replace(config, avatar=dataclasses.replace(config.avatar, name=name)), store) for name in avatars}
    times: dict[str, list[float]] = {name: [] for name in avatars}
    try:
        for i, state in enumerate(states):
            for name, renderer in renderers.items():
                t0 = time.perf_counter()
                renderer.render(state)
                if i >= warmup:
                    times[name].append(time.perf_counter() - t0)
    finally:
        for renderer in renderers.values():
            renderer.close()
    return {
        "frames": frames,
        "output_size": [config.output.width, config.output.height],
        "vertices": len(rig.mesh.source),
        "triangles": len(rig.mesh.triangles),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "eval_ms": summary_ms(np.asarray(evaluation) * 1000, 3),
        "render_ms": {name: summary_ms(np.asarray(samples) * 1000, 3) for name, samples in times.items()},
    }


def format_table(report: dict[str, Any]) -> str:
    w, h = report["output_size"]
    lines = [f"{'part':<28}{'p50 ms':>10}{'p95 ms':>10}", f"{'face model evaluation':<28}{report['eval_ms']['p50']:>10.2f}{report['eval_ms']['p95']:>10.2f}"]
    for name, s in report["render_ms"].items():
        lines.append(f"{f'render {name} {w}x{h}':<28}{s['p50']:>10.2f}{s['p95']:>10.2f}")
    lines.append(f"\n{report['frames']} frames; face model mesh: {report['vertices']} vertices, {report['triangles']} triangles drawn at most")
    return "\n".join(lines)


def cmd_bench_facemodel(args: argparse.Namespace) -> int:
    from .cli import resolve_config

    config = resolve_config(args)
    report = run(config, [a for a in args.avatars.split(",") if a], args.frames)
    print(format_table(report))
    if args.json:
        write_report(report, Path(args.json))
    return 0


def add_parser(sub: argparse._SubParsersAction, add_config_flags: Any) -> None:
    parser = sub.add_parser("bench-facemodel", help="time face-model evaluation and avatar rendering (table + JSON)")
    parser.add_argument("--avatars", default="human,clay,toon,porcelain", help="comma-separated avatars to render (default: the face-model looks and the porcelain mask)")
    parser.add_argument("--frames", type=int, default=200, help="frames to time (default: 200)")
    parser.add_argument("--json", help="write the report JSON here")
    add_config_flags(parser)
    parser.set_defaults(func=cmd_bench_facemodel)
