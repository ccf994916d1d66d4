"""`veilcam doctor`: one line per thing VeilCam needs, OK or FAIL with the fix.

Checks read the system as it is (sysfs, /dev, EFI variables, the model store,
the config file, the running daemon) and never change it. `root` lets tests
point the Linux checks at a prepared tree.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import VeilCamError

SECURE_BOOT_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
LOOPBACK_INSTALL = "install v4l2loopback (Debian/Ubuntu: sudo apt install v4l2loopback-dkms), then "


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'} {self.name}: {self.detail}" + (f" -> fix: {self.fix}" if not self.ok and self.fix else "")


class Doctor:
    def __init__(self, config_path: Path | None = None, root: Path = Path("/"), system: str | None = None) -> None:
        self.config_path = config_path
        self.root = root
        self.system = system or platform.system()
        self._status = self._daemon_status()

    @staticmethod
    def _daemon_status() -> dict | None:
        from .control_client import ControlClient

        try:
            return ControlClient(timeout=2.0).call("status")
        except VeilCamError:
            return None

    def checks(self) -> list[Callable[[], Check]]:
        return [self.v4l2loopback, self.device_permissions, self.secure_boot, self.obs_camera, self.camera, self.gpu, self.model_files, self.config]

    def run(self) -> list[Check]:
        results = []
        for check in self.checks():
            try:
                results.append(check())
            except Exception as exc:  # a check that breaks is a finding, not a crash
                results.append(Check(check.__name__.replace("_", " "), False, f"could not check ({type(exc).__name__}: {exc})"))
        return results

    # -- virtual camera -------------------------------------------------------------------
    def _loopback_params(self) -> Path:
        return self.root / "sys/module/v4l2loopback/parameters"

    def _loopback_loaded(self) -> bool:
        return (self.root / "sys/module/v4l2loopback").is_dir()

    def v4l2loopback(self) -> Check:
        from .sinks.virtual_camera import LINUX_FIX

        name = "v4l2loopback"
        if self.system != "Linux":
            return Check(name, True, f"not needed on {self.system} (the OBS virtual camera is used)")
        if not self._loopback_loaded():
            return Check(name, False, "kernel module not loaded, so there is no virtual camera", LOOPBACK_INSTALL + LINUX_FIX.removeprefix("load v4l2loopback: "))
        caps_file = self._loopback_params() / "exclusive_caps"
        caps = caps_file.read_text().strip() if caps_file.exists() else ""
        if not caps.split(",")[0] in ("Y", "1"):
            return Check(name, False, f"loaded without exclusive_caps (={caps or '?'}), so Chrome, Zoom and Teams do not list it",
                         'sudo modprobe -r v4l2loopback && sudo modprobe v4l2loopback exclusive_caps=1 card_label="VeilCam"')
        return Check(name, True, "loaded with exclusive_caps=1")

    def device_permissions(self) -> Check:
        name = "device permissions"
        if self.system != "Linux":
            return Check(name, True, f"not applicable on {self.system}")
        devices = sorted((self.root / "dev").glob("video*"))
        if not devices:
            return Check(name, False, "no /dev/video* devices at all", "plug in a webcam and load v4l2loopback (see above)")
        denied = [d.name for d in devices if not os.access(d, os.R_OK | os.W_OK)]
        if denied:
            return Check(name, False, f"no read/write access to {', '.join(denied)}", "sudo usermod -aG video $USER, then log out and back in")
        return Check(name, True, f"read/write access to {', '.join(d.name for d in devices)}")

    def secure_boot(self) -> Check:
        name = "secure boot"
        if self.system != "Linux":
            return Check(name, True, f"not applicable on {self.system}")
        var = self.root / "sys/firmware/efi/efivars" / SECURE_BOOT_VAR
        try:
            enabled = var.read_bytes()[-1] == 1  # 4 attribute bytes, then the value
        except (OSError, IndexError):
            return Check(name, True, "off (or not an EFI system): kernel modules need no signature")
        if not enabled:
            return Check(name, True, "off: kernel modules need no signature")
        if self._loopback_loaded():
            return Check(name, True, "on, and v4l2loopback is loaded (its module is signed)")
        return Check(name, False, "on: an unsigned v4l2loopback module is refused by the kernel",
                     "enroll the DKMS signing key (sudo mokutil --import /var/lib/dkms/mok.pub), reboot, confirm the key, then load the module")

    def obs_camera(self) -> Check:
        from .sinks.virtual_camera import OBS_FIX

        name = "OBS virtual camera"
        if self.system not in ("Windows", "Darwin"):
            return Check(name, True, f"not needed on {self.system} (v4l2loopback provides the camera)")
        if self._status is not None:
            return Check(name, True, f"in use by the running VeilCam ({self._status['output']})")
        import pyvirtualcam

        try:
            pyvirtualcam.Camera(64, 64, 5, backend="obs").close()
        except Exception as exc:
            return Check(name, False, f"cannot open it ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", OBS_FIX)
        return Check(name, True, "installed and free")

    # -- camera, GPU, models, config ----------------------------------------------------------
    def camera(self) -> Check:
        from .config import load_config
        from .errors import SourceError
        from .sources.webcam import open_camera

        name = "camera"
        if self._status is not None:
            state = self._status["camera"]
            return Check(name, state != "disconnected", f"in use by the running VeilCam ({state})", "plug the webcam back in; VeilCam reconnects by itself")
        try:
            source = load_config(self.config_path).source
        except VeilCamError:
            return Check(name, True, "skipped: the config is invalid (see below)")
        if source.kind != "webcam":
            return Check(name, True, f"source is {source.kind!r}: no camera needed")
        try:
            cap = open_camera(source.device, source.width, source.height, source.fps)
        except SourceError as exc:
            return Check(name, False, str(exc).split(";")[0], "check `veilcam devices`, close other apps using the camera, or set [source] device")
        try:
            ok, _ = cap.read()
        finally:
            cap.release()
        if not ok:
            return Check(name, False, f"camera {source.device} opens but delivers no frames", "close other apps using it, or try another [source] device")
        return Check(name, True, f"camera {source.device} delivers frames")

    def gpu(self) -> Check:
        name = "GPU/CUDA"
        nvidia = (self.root / "proc/driver/nvidia").exists() or shutil.which("nvidia-smi") is not None
        if importlib.util.find_spec("torch") is None:
            if nvidia:
                return Check(name, False, "NVIDIA driver found but torch is not installed", "pip install torch (the CUDA build) for restyle and neural avatars")
            return Check(name, True, "no NVIDIA GPU: avatars run on the CPU (restyle and neural avatars need one)")
        import torch

        if torch.cuda.is_available():
            return Check(name, True, f"CUDA {torch.version.cuda} on {torch.cuda.get_device_name(0)}")
        if nvidia:
            return Check(name, False, f"NVIDIA driver found but torch {torch.__version__} cannot use CUDA",
                         "install the CUDA build of torch (https://pytorch.org/get-started/locally/)")
        return Check(name, True, f"no CUDA GPU (torch {torch.__version__}, CPU): avatars run on the CPU")

    def model_files(self) -> Check:
        from .config import load_config
        from .model_store import MODELS, ModelStore

        name = "model files"
        try:
            config_dir = load_config(self.config_path).models.dir
        except VeilCamError:
            config_dir = ""
        store = ModelStore.from_environment(Path(config_dir).expanduser() if config_dir else None, allow_download=False, progress=False)
        found = []
        for model in MODELS:
            try:
                found.append(str(store.resolve(model)))
            except VeilCamError as exc:
                return Check(name, False, str(exc).split(";")[0], "run `veilcam run` once while online, or " + str(exc).split(";", 1)[-1].strip())
        return Check(name, True, f"verified {', '.join(found)}")

    def config(self) -> Check:
        from . import paths
        from .avatars import find_avatar
        from .config import load_config

        name = "config"
        where = self.config_path or paths.config_file()
        try:
            config = load_config(self.config_path)
            find_avatar(config.avatar.name)
        except VeilCamError as exc:
            return Check(name, False, str(exc), f"edit {where}, or delete it to use the defaults")
        return Check(name, True, f"{where} is valid" if where.exists() else "no config file: defaults in use")


def cmd_doctor(args: argparse.Namespace) -> int:
    results = Doctor(args.config).run()
    for check in results:
        print(check.line())
    return 0 if all(c.ok for c in results) else 1


def add_doctor_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check the virtual camera, camera, GPU, model files and config, one line each")
    p.add_argument("--config", type=Path, help="config file to check (default: $XDG_CONFIG_HOME/veilcam/config.toml)")
    p.set_defaults(func=cmd_doctor)
