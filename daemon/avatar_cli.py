"""`veilcam avatar list|show|create|remove`: manage the avatar catalog from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import paths
from .errors import AvatarPackError, ConfigError

if TYPE_CHECKING:
    from .avatars import AvatarEntry


def _entry_or_error(name: str) -> "AvatarEntry":
    """The avatar called `name`, broken packs included (show and remove work on them)."""
    from .avatars import list_avatars

    avatars = list_avatars()
    for entry in avatars:
        if entry.name == name:
            return entry
    raise ConfigError(f"no avatar called {name!r} (see `veilcam avatar list`)")


def cmd_list(args: argparse.Namespace) -> int:
    from .avatars import list_avatars

    avatars = list_avatars()
    width = max(len(a.name) for a in avatars)
    kinds = max(len(a.kind) for a in avatars)
    for a in avatars:
        detail = a.description if a.error is None else f"BROKEN: {a.error}"
        print(f"{a.name:<{width}}  {a.kind:<{kinds}}  {detail}")
    print(f"\nInstalled packs live in {paths.avatars_dir()}", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .avatar_pack import load_pack

    entry = _entry_or_error(args.name)
    if entry.pack_dir is None:
        print(f"name:        {entry.name}\nkind:        {entry.kind} (built in)\ndescription: {entry.description}")
        return 0
    if entry.error:
        raise AvatarPackError(entry.error)
    pack = load_pack(entry.pack_dir)  # verifies every checksum
    m = pack.manifest
    preview = entry.pack_dir / m.preview if entry.pack_dir.is_dir() else f"{entry.pack_dir} -> {m.preview}"
    lines = [
        f"name:        {m.name}",
        f"kind:        {m.kind}",
        f"version:     {m.version}",
        f"created:     {m.created.isoformat()}",
        f"description: {m.description or '-'}",
        f"made by:     {m.generator or '-'}",
        f"location:    {entry.pack_dir}",
        f"preview:     {preview}",
        "files:       " + ", ".join(f"{f.path} ({f.size:,} bytes)" for f in m.files),
        "checksums:   all match",
    ]
    if m.metrics:
        lines.append("measured:    " + ", ".join(f"{k} {v:g}" for k, v in m.metrics.items()))
    print("\n".join(lines))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from .avatar_pack import remove_pack

    entry = _entry_or_error(args.name)
    if entry.pack_dir is None:
        raise ConfigError(f"{entry.name!r} is a built-in avatar and cannot be removed")
    remove_pack(entry.pack_dir)
    print(f"removed avatar {entry.name} ({entry.pack_dir})")
    return 0


def _new_avatar_name(name: str) -> str:
    """`--name` for a new pack: a safe name that no built-in avatar has."""
    from .avatars import builtin_avatars
    from .pack_manifest import check_name

    check_name(name)
    if name in {a.name for a in builtin_avatars()}:
        raise ConfigError(f"--name {name}: that is a built-in avatar's name; choose another")
    return name


def cmd_create(args: argparse.Namespace) -> int:
    from .config import load_config
    from .factory import model_store
    from .photo_avatar import create_photo_avatar, hex_rgb

    name = _new_avatar_name(args.name)
    config = load_config(args.config)
    result = create_photo_avatar(Path(args.photo), name, config, model_store(config), paths.avatars_dir(), texture_size=args.texture_size,
                                 description=args.description, replace=args.force, progress=not args.quiet)
    if args.report:
        from .report import write_report

        write_report(result.to_report(), Path(args.report))
    if not args.quiet:
        print(f"created avatar {name} in {result.pack}")
        print(f"  landmark fit: median {result.fit_error_px:.2f} px, 90th percentile {result.fit_error_p90_px:.2f} px "
              f"(eyes {result.eye_distance_px:.0f} px apart)")
        if result.hair_rgb is None:
            print("  hair: none (the photo shows skin, hair close to the skin's colour, or too little above the forehead)")
        else:
            print(f"  hair: {hex_rgb(result.hair_rgb)}, the colour the photo shows above the forehead")
        if result.rest_turn_deg is None:
            print("  rest pose: the tracker finds no face in the avatar, so it is not turned")
        else:
            print(f"  rest pose: turned {result.rest_turn_deg:.1f}° to face the camera as the built-in head does")
        if result.lips_pressed_at_rest:
            print(f"  note: at rest the avatar's lips read as pressed together (mouthPress {result.rest_mouth_press:.2f}), so its puckers "
                  "will barely show; a photo with relaxed lips works better")
        print("  time: " + ", ".join(f"{stage} {s:.2f} s" for stage, s in result.seconds.items()))
        print(f"  use it: veilcam run --avatar-name {name}")
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    from veilcam.models.expression_warp import WarpSettings

    from .config import load_config
    from .enroll import QUALITY_FLOOR, enroll_neural_avatar
    from .factory import model_store

    name = _new_avatar_name(args.name)
    if importlib.util.find_spec("torch") is None:  # training needs it; rendering does not
        raise ConfigError("enrolling a neural avatar trains a network and needs torch: pip install torch (the build for your GPU), then 'veilcam[neural]'")
    config = load_config(args.config)
    result = enroll_neural_avatar(Path(args.video), name, config, model_store(config), paths.avatars_dir(), device=args.device,
                                  minutes=args.minutes, size=args.size, max_steps=args.steps, force=args.force, replace=args.replace,
                                  description=args.description, progress=not args.quiet, restart=args.restart,
                                  warp=None if args.no_warp else WarpSettings())
    if args.report:
        from .report import write_report

        write_report({"name": name, "pack": str(result.pack) if result.pack else None, "device": result.device,
                      "resumed_from_step": result.resumed_step, "metrics": result.metrics, "lacking": list(result.lacking),
                      "below_floor": result.below_floor, "seconds": {k: round(v, 2) for k, v in result.seconds.items()}}, Path(args.report))
    m = result.metrics
    if not args.quiet:
        print(f"held-out frames ({m['holdout_frames']:.0f}): PSNR {m['holdout_psnr_db']:.2f} dB, SSIM {m['holdout_ssim']:.3f} inside the matte")
        print(f"expression fidelity on the clip: {m.get('fidelity_mean', float('nan')):.3f} (mean correlation, as `veilcam eval fidelity`)")
        print(f"trained {m['steps']:.0f} steps in {m['train_seconds']:.0f} s on {result.device}; enrollment took {m['enroll_seconds']:.0f} s")
        if result.resumed_step:
            print(f"  continued the training saved for this clip at step {result.resumed_step} (--restart trains from the start)")
        if result.lacking:
            print(f"  the clip barely shows: {', '.join(result.lacking)}; trained also on {m['warped_frames']:.0f} of its frames warped to them "
                  "(a clip that shows them teaches them better: `veilcam avatar record` asks for each)")
    if result.pack is None:
        floor = ", ".join(f"{k} {v:g}" for k, v in QUALITY_FLOOR.items())
        print(f"veilcam: error: not saved, under the quality floor ({'; '.join(result.below_floor)}; floor: {floor}); "
              "record a longer, evenly lit clip or train longer (--minutes), or save it anyway with --force", file=sys.stderr)
        return 1
    if not args.quiet:
        if result.below_floor:
            print(f"  saved with --force although under the floor: {'; '.join(result.below_floor)}")
        print(f"created avatar {name} in {result.pack}")
        print(f"  use it: veilcam run --avatar-name {name}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from .config import load_config
    from .factory import model_store
    from .record import record_clip
    from .record_script import ScriptRun, meter

    config = load_config(args.config)
    source = dataclasses.replace(config.source, kind="file", path=str(args.video), realtime=False) if args.video else \
        dataclasses.replace(config.source, kind="webcam", device=args.camera or config.source.device)
    config = dataclasses.replace(config, source=source)
    shown = [0]

    def on_frame(run: ScriptRun, progress: float) -> None:
        if args.quiet:
            return
        while shown[0] < len(run.outcomes) and run.outcomes[shown[0]].end_s is not None:  # prompts that ended since
            outcome = run.outcomes[shown[0]]
            shown[0] += 1
            print(f"\r  {shown[0]:>2}. {outcome.prompt.text:<52} {outcome.verdict():<40}", flush=True)
        if run.current is not None:
            print(f"\r  {len(run.outcomes):>2}. {run.current.prompt.text:<52} [{meter(progress)}]", end="", flush=True)

    if not args.quiet:
        print(f"recording to {args.out}; follow the prompts (one face in view, good light, look at the camera between them)")
    result = record_clip(config, Path(args.out), model_store(config), preview=args.preview, replace=args.replace, on_frame=on_frame)
    if not args.quiet:
        print(f"\nrecorded {result.frames} frames ({result.seconds:.1f} s) to {result.path}; face found in {result.face_fraction:.0%} of them")
        missed = [o.prompt.text for o in result.run.outcomes if o.end_s is not None and not o.met and not o.prompt.timed]
        if missed:
            print("  not reached: " + "; ".join(missed))
        if result.lacking:
            print("  enrollment will warp frames for: " + ", ".join(sorted(result.lacking)) + " (the clip barely shows them; showing them teaches them better)")
        if not result.run.done:
            print(f"  the source ended during prompt {len(result.run.outcomes)} of {len(result.run.script)}")
        print(f"  next: veilcam avatar enroll --video {result.path} --name NAME")
    return 0


def _enroll_size(value: str) -> int:
    from veilcam.models.neural_avatar_config import crop_size_problem

    size = int(value)
    problem = crop_size_problem(size)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return size


def _texture_size(value: str) -> int:
    size = int(value)
    if size < 64 or size > 4096 or size & (size - 1):
        raise argparse.ArgumentTypeError("must be a power of two from 64 to 4096")
    return size


def add_avatar_commands(sub: argparse._SubParsersAction) -> None:
    """Register `veilcam avatar ...` on the top-level subparsers."""
    avatar = sub.add_parser("avatar", help="list, show, create, record a clip for, enroll and remove avatars")
    commands = avatar.add_subparsers(dest="avatar_command", required=True, metavar="ACTION")

    p = commands.add_parser("list", help="built-in avatars and installed packs")
    p.set_defaults(func=cmd_list)

    p = commands.add_parser("show", help="details of one avatar (checks a pack's files)")
    p.add_argument("name")
    p.set_defaults(func=cmd_show)

    p = commands.add_parser("remove", help="delete an installed pack")
    p.add_argument("name")
    p.set_defaults(func=cmd_remove)

    from .photo_avatar import DEFAULT_TEXTURE_SIZE

    p = commands.add_parser("create", help="make an avatar from one portrait photo")
    p.add_argument("--photo", required=True, help="portrait photo (JPEG or PNG): one face, looking at the camera")
    p.add_argument("--name", required=True, help="avatar name: letters, digits, '_' or '-'")
    p.add_argument("--description", default="", help="a line shown by `veilcam avatar list`")
    p.add_argument("--texture-size", type=_texture_size, default=DEFAULT_TEXTURE_SIZE,
                   help=f"face texture size in pixels, a power of two (default: {DEFAULT_TEXTURE_SIZE})")
    p.add_argument("--force", action="store_true", help="replace an existing pack of that name")
    p.add_argument("--report", help="write the fit error and stage times as JSON here")
    p.add_argument("--config", type=Path, help="config file (for the model settings)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    p.set_defaults(func=cmd_create)

    from .enroll import DEFAULT_MINUTES, DEFAULT_SIZE

    p = commands.add_parser("enroll", help="learn a photoreal neural avatar from a short video of one person (needs torch)")
    p.add_argument("--video", required=True, help="a clip of the persona: face in view, good light, some expressions and head turns")
    p.add_argument("--name", required=True, help="avatar name: letters, digits, '_' or '-'")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="where to train (default: cuda when present)")
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help=f"training time budget (default: {DEFAULT_MINUTES:g})")
    p.add_argument("--steps", type=int, help="stop after this many training steps (default: only the time budget)")
    p.add_argument("--restart", action="store_true",
                   help="train from the start instead of continuing the training saved for this clip (its prepared data is kept)")
    p.add_argument("--size", type=_enroll_size, default=DEFAULT_SIZE, help=f"the network's square crop in pixels (default: {DEFAULT_SIZE})")
    p.add_argument("--no-warp", action="store_true",
                   help="train on the clip's frames alone, without frames warped to the expressions it lacks (raised brows, closed eyes, ...)")
    p.add_argument("--description", default="", help="a line shown by `veilcam avatar list`")
    p.add_argument("--force", action="store_true", help="save the avatar even if it measures under the quality floor")
    p.add_argument("--replace", action="store_true", help="replace an existing pack of that name")
    p.add_argument("--report", help="write the measures and stage times as JSON here")
    p.add_argument("--config", type=Path, help="config file (for the model settings)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    p.set_defaults(func=cmd_enroll)

    p = commands.add_parser("record", help="record a clip for `avatar enroll`, prompting for each expression the avatar should learn")
    p.add_argument("--out", required=True, type=Path, help="the clip to write: .mkv (lossless, best) or .mp4")
    p.add_argument("--camera", help="webcam index or device path (default: the configured source.device)")
    p.add_argument("--video", type=Path, help="follow the script on a video file instead of the camera (to check a clip)")
    p.add_argument("--preview", action="store_true", help="show the camera with the prompts in a window")
    p.add_argument("--replace", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--config", type=Path, help="config file (camera and model settings)")
    p.add_argument("-q", "--quiet", action="store_true", help="no prompts or summary on the terminal")
    p.set_defaults(func=cmd_record)
