"""`veilcam avatar enroll`: a neural avatar learned from a short video of one person.

Stages: the clip becomes training data (`enroll_data`: tracking, one identity,
per-frame fits, head crops, mattes, G-buffers); the network (`models/
neural_avatar_net`) trains on all but a tenth of the clip (stretches spread
over it), on CUDA when present; the held-out frames measure it (PSNR and SSIM
inside the matte); the avatar, driven by the clip's own tracking, is tracked
again to measure expression fidelity as `veilcam eval fidelity` does; then
the pack is written, unless the measures are under the quality floor and
`--force` was not given.

Training is resumable: the prepared data and a checkpoint (every
CHECKPOINT_EVERY_S) are kept in the user cache under the clip's content hash
and the training settings, so running the same command again continues (a
larger --minutes trains on from where the last run stopped); `restart`
trains from the start instead, keeping the prepared data.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from veilcam.models.expression_response import CONTEXTS, measure_response
from veilcam.models.expression_rest import resting_expression
from veilcam.models.expression_warp import WarpSettings
from veilcam.models.face_state import FaceState
from veilcam.models.renderer import rgb_of

from . import paths
from .config import Config
from .enroll_data import EnrollmentData, prepare_enrollment, spread_evenly, unmirrored
from .errors import EnrollmentError
from .eval_fidelity import compare
from .model_store import ModelStore
from .pack_files import encode_npz, encode_png

KIND = "neural"
FACE_FILE, WEIGHTS_FILE, NETWORK_FILE, LOSS_FILE, PREVIEW_FILE = "face.npz", "weights.safetensors", "network.onnx", "loss.png", "preview.png"
DEFAULT_SIZE = 256
DEFAULT_MINUTES = 4.0
#: Below these the avatar is not saved without --force: a blurry or wrong-coloured head
#: (PSNR, SSIM in the matte on held-out frames), or one whose expressions do not read (fidelity).
QUALITY_FLOOR = {"holdout_psnr_db": 24.0, "holdout_ssim": 0.80, "fidelity_mean": 0.70}
CHECKPOINT_EVERY_S = 30.0
#: Bump when the prepared data or the training changes in a way the settings do not show.
_DATA_VERSION = 7
LOSS_EVERY = 25  # steps between loss readings (each waits for the GPU)


@dataclass(frozen=True)
class EnrollResult:
    name: str
    pack: Path | None  # None: not saved (under the floor, no --force)
    metrics: dict[str, float]
    below_floor: list[str]  # "holdout_psnr_db 22.1 < 24.0", ...
    device: str
    seconds: dict[str, float] = field(default_factory=dict)
    resumed_step: int = 0  # > 0: training continued a checkpoint saved at this step
    lacking: tuple[str, ...] = ()  # the expressions the clip barely shows, which training saw as warped frames


def work_dir(video: Path, size: int, warp: WarpSettings | None = WarpSettings()) -> Path:
    """Where a clip's prepared data and checkpoints live: named by its content, the crop size and the warp settings."""
    with open(video, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256")
    key = f"{_DATA_VERSION} {size} {digest.hexdigest()} {warp}"
    return paths.cache_dir() / "enroll" / hashlib.sha256(key.encode()).hexdigest()[:24]


def load_or_prepare(video: Path, config: Config, store: ModelStore, size: int, work: Path, progress: bool,
                    warp: WarpSettings | None = WarpSettings()) -> EnrollmentData:
    cached = work / "data.npz"
    try:
        with np.load(cached, allow_pickle=False) as f:
            return EnrollmentData.from_arrays({k: f[k] for k in f.files})
    except (OSError, KeyError, ValueError):
        pass  # not prepared yet, or damaged
    data = prepare_enrollment(video, config, store, size, progress, warp)
    try:
        work.mkdir(parents=True, exist_ok=True)
        paths.write_atomically(cached, lambda fh: np.savez(fh, **data.to_arrays()))
    except OSError:
        pass  # a read-only cache only costs preparing again
    return data


def pick_device(device: str) -> str:
    from veilcam.models.neural_runtime import cuda_available

    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise EnrollmentError("--device cuda: torch sees no NVIDIA GPU; use --device auto or cpu")
    return device


def train(data: EnrollmentData, device: str, minutes: float, max_steps: int | None, batch: int, work: Path, progress: bool,
          restart: bool = False, seed: int = 0) -> tuple[Any, list[tuple[float, float]], int, float, int]:
    """Train on `data.train`, continuing the checkpoint in `work` unless `restart`; returns
    (net on the CPU, [(seconds, loss)], steps, seconds, the step the checkpoint had reached or 0)."""
    import torch

    from veilcam.models.neural_avatar_net import NeuralAvatarNet
    from veilcam.models.neural_training import NeuralAvatarTrainer

    torch.manual_seed(seed)
    dev = torch.device(device)
    n = len(data.train)
    crops = torch.from_numpy(data.crops[data.train]).to(dev)
    mattes = torch.from_numpy(data.mattes[data.train]).to(dev)
    gbuffers = torch.from_numpy(data.gbuffers[data.train]).to(dev)
    codes = torch.from_numpy(data.codes[data.train]).to(dev)
    features = torch.from_numpy(data.features[data.train]).to(dev)
    net = NeuralAvatarNet().to(dev)
    trainer = NeuralAvatarTrainer(net)
    budget = minutes * 60.0
    steps_goal = max_steps if max_steps is not None else 10**9
    step, elapsed_before, history = 0, 0.0, []
    checkpoint = work / f"checkpoint-b{batch}.pt"
    if restart:
        try:
            checkpoint.unlink(missing_ok=True)
        except OSError as exc:
            raise EnrollmentError(f"cannot delete the saved training {checkpoint} to restart: {exc.strerror or exc}; delete it yourself") from exc
    if checkpoint.is_file():
        try:
            state = torch.load(checkpoint, map_location=dev, weights_only=True)
            trainer.load_state_dict(state["trainer"])
            step, elapsed_before = int(state["step"]), float(state["seconds"])
            history = [tuple(h) for h in state["history"]]
        except (RuntimeError, KeyError, ValueError, EOFError):
            step, elapsed_before, history = 0, 0.0, []  # damaged or from another version: start over
    resumed = step
    start = time.perf_counter()
    last_save = start

    def seconds() -> float:
        return elapsed_before + time.perf_counter() - start

    def save() -> None:
        try:
            work.mkdir(parents=True, exist_ok=True)
            torch.save({"trainer": trainer.state_dict(), "step": step, "seconds": seconds(), "history": history}, checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
        except OSError:
            pass  # no checkpoint: an interrupted run starts over

    total = max_steps if max_steps is not None else None
    with tqdm(total=total, initial=step, unit="step", desc="train", disable=not progress, leave=False, file=sys.stderr) as bar:
        pending = []
        while step < steps_goal and seconds() < budget:
            idx = torch.randint(0, n, (batch,), device=dev)
            target = crops[idx].permute(0, 3, 1, 2).float() / 255
            matte = mattes[idx].unsqueeze(1).float() / 255
            progress_fraction = max(step / steps_goal, seconds() / budget)
            pending.append(trainer.step(gbuffers[idx].float(), codes[idx], target, matte, features[idx], progress_fraction))
            step += 1
            bar.update()
            if step % LOSS_EVERY == 0 or step == steps_goal:
                loss = float(torch.stack(pending).mean())
                pending = []
                history.append((seconds(), loss))
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if time.perf_counter() - last_save > CHECKPOINT_EVERY_S:
                save()
                last_save = time.perf_counter()
    save()
    return net.cpu().eval(), history, step, seconds(), resumed


def holdout_measures(net: Any, data: EnrollmentData) -> tuple[float, float]:
    """PSNR (dB) and SSIM inside the matte on the held-out frames."""
    import torch

    from veilcam.models.neural_training import psnr_and_ssim_in_matte

    held = data.holdout
    with torch.inference_mode():
        pred = torch.cat([net(torch.from_numpy(data.gbuffers[held[i:i + 8]].astype(np.float32)), torch.from_numpy(data.codes[held[i:i + 8]]))
                          for i in range(0, len(held), 8)])
    target = torch.from_numpy(data.crops[held]).permute(0, 3, 1, 2).float() / 255
    matte = torch.from_numpy(data.mattes[held]).unsqueeze(1).float() / 255
    return psnr_and_ssim_in_matte(pred, target, matte)


def loss_plot(history: list[tuple[float, float]]) -> np.ndarray:
    from .soak_plot import line_panel

    t = [h[0] for h in history]
    loss = [math.log10(max(h[1], 1e-6)) for h in history]
    bgr = line_panel("training loss (log10)", t, {"loss": loss}, False, None, None, value_format=".2f")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def self_fidelity(renderer: Any, driver: list[FaceState], config: Config, progress: bool) -> dict[str, Any]:
    """The avatar driven by the clip's own tracking, tracked again: `eval fidelity`'s measure without a video file in between."""
    from .factory import open_tracker

    rendered = []
    with open_tracker(config) as tracker:
        for state in tqdm(driver, unit="frame", desc="fidelity", disable=not progress, leave=False, file=sys.stderr):
            frame = renderer.render(state)
            rendered.append(tracker.track(rgb_of(frame), state.timestamp))
    return compare(driver, rendered)


def _model_rotation(store: ModelStore) -> np.ndarray:
    """MediaPipe's head rotation -> the face model's, as the per-frame fits start from it (`face_fit`)."""
    from .avatars import FACE_LANDMARKER
    from .facekit_avatar import open_face_model
    from .photo_avatar import fitting_data

    return fitting_data(open_face_model(store), store.resolve(FACE_LANDMARKER)).correspondence.canonical_to_model.T.astype(np.float32)


def _preview_image(frame: np.ndarray, side: int = 512) -> np.ndarray:
    rgb = rgb_of(frame)
    scale = side / max(rgb.shape[:2])
    return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb


def _metric_floor_failures(metrics: dict[str, float]) -> list[str]:
    return [f"{k} {metrics[k]:.3g} < {floor:g}" for k, floor in QUALITY_FLOOR.items()
            if k in metrics and not (metrics[k] >= floor)]


def enroll_neural_avatar(video: Path, name: str, config: Config, store: ModelStore, root: Path, device: str = "auto",
                         minutes: float = DEFAULT_MINUTES, size: int = DEFAULT_SIZE, max_steps: int | None = None, batch: int | None = None,
                         force: bool = False, replace: bool = False, description: str = "", progress: bool = True,
                         restart: bool = False, warp: WarpSettings | None = WarpSettings()) -> EnrollResult:
    """Make the neural avatar `name` from `video` and install it under `root` (see the module docstring).
    `warp`: how the clip's frames are warped to the expressions it lacks, or None for none (`expression_warp`)."""
    from safetensors.numpy import save as save_safetensors

    from veilcam.models.neural_avatar_config import crop_size_problem
    from veilcam.models.neural_runtime import export_onnx

    from .avatar_pack import check_new_pack, new_manifest, write_pack
    from .factory import open_tracker
    from .neural_avatar import make_neural_renderer
    from .pack_onnx import CheckedNetwork
    from .photo_avatar import veilcam_version

    check_new_pack(root, name, description, replace, "--replace it")
    problem = crop_size_problem(size)
    if problem:
        raise EnrollmentError(f"--size {size}: {problem}")
    if not video.is_file():
        raise EnrollmentError(f"{video}: video not found")
    device = pick_device(device)
    batch = batch or (16 if device == "cuda" else 4)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    work = work_dir(video, size, warp)
    data = load_or_prepare(video, config, store, size, work, progress, warp)
    seconds["prepare"] = time.perf_counter() - t0

    t = time.perf_counter()
    net, history, steps, train_seconds, resumed = train(data, device, minutes, max_steps, batch, work, progress, restart)
    seconds["train"] = time.perf_counter() - t
    if len(history) < 1:
        raise EnrollmentError(f"training stopped before its first {LOSS_EVERY} steps; give it more time (--minutes) or steps")

    t = time.perf_counter()
    psnr, ssim = holdout_measures(net, data)
    network = export_onnx(net, size)
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    face = {"identity": data.identity.astype(np.float32), "model_rotation": _model_rotation(store),
            "expression_rest": resting_expression(data.clip_blendshapes[data.clip_present])}
    seconds["measure"] = time.perf_counter() - t

    # How the avatar's brows and smiles read in the clip's own poses (`expression_response`), then its fidelity with
    # them calibrated: the avatar as the product renders it (onnxruntime or torch, as configured), driven by the clip.
    t = time.perf_counter()
    present = [s for s in data.clip_states() if s.present]
    contexts = [present[i] for i in spread_evenly(len(present), CONTEXTS)]
    with make_neural_renderer(config, store, face, weights, CheckedNetwork(network, size)) as renderer, \
            open_tracker(unmirrored(config), store) as tracker:
        readings = measure_response(renderer.render, tracker.track, contexts)
    if np.all(np.isfinite(readings)):  # else the tracker lost the avatar at some level: they stay uncalibrated
        face["response_readings"] = readings
    files = {FACE_FILE: encode_npz(face), WEIGHTS_FILE: save_safetensors(weights), NETWORK_FILE: network, LOSS_FILE: encode_png(loss_plot(history))}
    with make_neural_renderer(config, store, face, weights, CheckedNetwork(network, size)) as renderer:
        fidelity = self_fidelity(renderer, data.clip_states(), unmirrored(config), progress)
        preview = renderer.render(FaceState.neutral(0.0, present=True)).copy()
    seconds["fidelity"] = time.perf_counter() - t

    metrics = {"holdout_psnr_db": round(psnr, 3), "holdout_ssim": round(ssim, 4), "train_frames": float(len(data.train) - len(data.warped)),
               "warped_frames": float(len(data.warped)),
               "holdout_frames": float(len(data.holdout)), "steps": float(steps), "train_seconds": round(train_seconds, 1), "size": float(size)}
    if fidelity["mean_correlation"] is not None:
        metrics["fidelity_mean"] = round(float(fidelity["mean_correlation"]), 4)
    lacking = tuple(sorted(set(data.warped_groups.tolist())))
    below = _metric_floor_failures(metrics)
    if fidelity["mean_correlation"] is None:
        below.append("fidelity_mean: the tracker found no face in the avatar")
    metrics["enroll_seconds"] = round(time.perf_counter() - t0, 1)
    seconds["total"] = metrics["enroll_seconds"]
    if below and not force:
        return EnrollResult(name, None, metrics, below, device, seconds, resumed, lacking)
    files[PREVIEW_FILE] = encode_png(_preview_image(preview))
    manifest = new_manifest(name, KIND, {"face": FACE_FILE, "weights": WEIGHTS_FILE, "network": NETWORK_FILE, "loss_plot": LOSS_FILE}, files,
                            PREVIEW_FILE, description, generator=f"veilcam {veilcam_version()}", metrics=metrics)
    pack = write_pack(root, manifest, files, replace=replace)
    return EnrollResult(name, pack, metrics, below, device, seconds, resumed, lacking)
