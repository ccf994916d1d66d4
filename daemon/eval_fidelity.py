"""`veilcam eval fidelity`: does the avatar show what the driver's face did?

The driver video is rendered through the avatar exactly as `veilcam render`
does (the product path: tracker, smoothing, renderer, compositor, video file),
then the same tracker reads the rendered video. Per blendshape, the Pearson
correlation between what the tracker saw on the driver and on the avatar says
whether people can read the expression from the avatar; the median head-angle
error says whether it turns as the driver did. Correlation ignores scale and
offset: an avatar that smiles less broadly but every time still scores high.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from veilcam.models.face_state import BLENDSHAPE_INDEX, FaceState

from .config import Config
from .report import write_report

#: The expressions the measure covers (ARKit names).
MEASURED = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "browInnerUp", "mouthPucker")
ANGLES = ("yaw", "pitch", "roll")
#: A driver expression whose score varies less than this (standard deviation, scores
#: 0..1) barely moves: the avatar shows it at a weight nobody can see, so its
#: correlation mostly measures tracker noise and how other expressions leak into it.
BARELY_MOVES_STD = 0.02


def head_angles(pose: np.ndarray) -> np.ndarray:
    """Yaw (about y), pitch (about x) and roll (about z) in degrees of a head pose, R = Ry Rx Rz."""
    r = pose[:3, :3]
    return np.degrees([math.atan2(r[0, 2], r[2, 2]), math.asin(float(np.clip(-r[1, 2], -1, 1))), math.atan2(r[1, 0], r[1, 1])])


def track_video(path: Path, config: Config, mirror: bool, desc: str, progress: bool) -> list[FaceState]:
    """Every frame's raw FaceState, in order (VIDEO mode, media timestamps)."""
    from .factory import open_tracker
    from .sources.video_file import VideoFileSource

    tracker_config = dataclasses.replace(config, tracker=dataclasses.replace(config.tracker, mirror=mirror))
    states = []
    with VideoFileSource(path, realtime=False) as video, open_tracker(tracker_config) as tracker:
        with tqdm(total=video.frame_count or None, unit="frame", desc=desc, disable=not progress, leave=False, file=sys.stderr) as bar:
            while True:
                try:
                    frame = video.read()
                except EOFError:
                    break
                states.append(tracker.track(frame.rgb, frame.media_time))
                bar.update()
    return states


def compare(driver: list[FaceState], avatar: list[FaceState]) -> dict[str, Any]:
    """Correlations and angle errors over the frames where both show a face."""
    pairs = [(d, a) for d, a in zip(driver, avatar) if d.present and a.present]
    result: dict[str, Any] = {"frames": len(driver), "frames_compared": len(pairs), "correlation": {}, "driver_std": {}}
    if len(pairs) < 3:
        result.update(mean_correlation=None, angle_error_deg=dict.fromkeys(ANGLES), angle_bias_deg=dict.fromkeys(ANGLES))
        result["correlation"] = dict.fromkeys(MEASURED)
        result["driver_std"] = dict.fromkeys(MEASURED)
        return result
    d = np.array([p[0].blendshapes for p in pairs])
    a = np.array([p[1].blendshapes for p in pairs])
    for name in MEASURED:
        x, y = d[:, BLENDSHAPE_INDEX[name]], a[:, BLENDSHAPE_INDEX[name]]
        defined = x.std() > 0 and y.std() > 0  # a constant signal has no correlation
        result["correlation"][name] = round(float(np.corrcoef(x, y)[0, 1]), 4) if defined else None
        result["driver_std"][name] = round(float(x.std()), 4)
    values = [v for v in result["correlation"].values() if v is not None]
    result["mean_correlation"] = round(float(np.mean(values)), 4) if values else None
    error = np.array([head_angles(q.head_pose) - head_angles(p.head_pose) for p, q in pairs])
    error = (error + 180.0) % 360.0 - 180.0
    result["angle_error_deg"] = {k: round(float(v), 3) for k, v in zip(ANGLES, np.median(np.abs(error), axis=0))}
    result["angle_bias_deg"] = {k: round(float(v), 3) for k, v in zip(ANGLES, np.median(error, axis=0))}
    return result


def evaluate(config: Config, source: Path, out: Path, progress: bool = True) -> dict[str, Any]:
    """Render `source` through `config.avatar.name` into `out`, track both, compare."""
    from .offline import render_video

    driver = track_video(source, config, config.tracker.mirror, "track driver", progress)
    render = render_video(config, source, out, progress=progress)
    avatar = track_video(out, config, False, "track avatar", progress)
    return {
        "source": str(source),
        "avatar": config.avatar.name,
        "video": str(out),
        "output_size": [config.output.width, config.output.height],
        **compare(driver, avatar),
        "render_ms": render["stages_ms"].get("render"),
    }


def num(v: float | None, fmt: str) -> str:
    """`v` formatted, or "n/a" for a figure a run could not measure."""
    return "n/a" if v is None else format(v, fmt)


def format_table(result: dict[str, Any]) -> str:
    lines = [f"avatar {result['avatar']} on {Path(result['source']).name}: {result['frames_compared']} of {result['frames']} frames compared",
             f"{'blendshape':<18}{'correlation':>12}{'driver std':>12}"]
    quiet = False
    for name, r in result["correlation"].items():
        std = result["driver_std"][name]
        mark = " *" if std is not None and std < BARELY_MOVES_STD else ""
        quiet |= bool(mark)
        lines.append(f"{name:<18}{num(r, '>12.3f'):>12}{num(std, '>12.3f'):>12}{mark}")
    lines.append(f"{'mean':<18}{num(result['mean_correlation'], '>12.3f'):>12}")
    if quiet:
        lines.append(f"* the driver barely moves this expression (std < {BARELY_MOVES_STD}): its correlation mostly measures tracker noise")
    lines.append("")
    lines.append(f"{'head angle':<18}{'median |error| deg':>20}")
    for k in ANGLES:
        lines.append(f"{k:<18}{num(result['angle_error_deg'][k], '>20.2f'):>20}")
    lines.append(f"\nrendered video: {result['video']}")
    return "\n".join(lines)


SUMMARY_NAMES = {"jawOpen": "jawOpen", "eyeBlinkLeft": "blink L", "eyeBlinkRight": "blink R", "mouthSmileLeft": "smile L",
                 "mouthSmileRight": "smile R", "browInnerUp": "browInnerUp", "mouthPucker": "pucker"}


def format_summary(results: list[dict[str, Any]]) -> str:
    """One Markdown row per (avatar, video): the README's fidelity table, as measured."""
    lines = ["| avatar | video | " + " | ".join(SUMMARY_NAMES[n] for n in MEASURED) + " | **mean** | yaw ° | pitch ° | roll ° |",
             "|---|---|" + "---:|" * (len(MEASURED) + 4)]
    for r in results:
        cells = [num(r["correlation"][n], ".2f") for n in MEASURED]
        mean = r["mean_correlation"]
        angles = [num(r["angle_error_deg"][k], ".1f") for k in ANGLES]
        lines.append(f"| {r['avatar']} | {Path(r['source']).name} | " + " | ".join(cells)
                     + f" | **{num(mean, '.3f')}** | " + " | ".join(angles) + " |")
    return "\n".join(lines)


def cmd_eval_fidelity(args: argparse.Namespace) -> int:
    from .cli import resolve_config
    from .config import config_from_dict
    from .errors import ConfigError

    pairs = [(avatar, Path(source)) for avatar in args.avatars for source in args.sources]
    if args.out and len(pairs) > 1:
        raise ConfigError("--out names one video; with several --source or --avatar leave it out (each goes to SOURCE_STEM.AVATAR.fidelity.mp4)")
    results = []
    for avatar, source in pairs:
        config = config_from_dict({"avatar": {"name": avatar}}, "command line", resolve_config(args))
        out = Path(args.out) if args.out else Path(f"{source.stem}.{avatar}.fidelity.mp4")
        results.append(evaluate(config, source, out, progress=not args.quiet))
        print(format_table(results[-1]) + "\n", flush=True)
    if len(results) > 1:
        print(format_summary(results))
    if args.json:
        write_report(results[0] if len(results) == 1 else {"runs": results}, Path(args.json))
    return 0


def add_parser(sub: argparse._SubParsersAction, add_config_flags: Any) -> None:
    group = sub.add_parser("eval", help="measure the avatar against the driver video").add_subparsers(dest="eval_command", required=True, metavar="EVAL")
    fidelity = group.add_parser("fidelity", help="render a video through an avatar, track both, correlate expressions and head angles")
    fidelity.add_argument("--source", dest="sources", required=True, action="append", help="driver video file (repeat for several)")
    fidelity.add_argument("--avatar", dest="avatars", required=True, action="append", help="avatar name (`veilcam avatar list`; repeat for several)")
    fidelity.add_argument("--json", help="write the result JSON here (several runs: {\"runs\": [...]})")
    fidelity.add_argument("--out", help="rendered video, for one source and avatar (default: SOURCE_STEM.AVATAR.fidelity.mp4 here)")
    fidelity.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_config_flags(fidelity)
    fidelity.set_defaults(func=cmd_eval_fidelity)
