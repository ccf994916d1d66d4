"""Start-up bakes kept on disk: a face-model look's occlusion, albedo and painted face.

Baking them takes most of a cold avatar switch (hundreds of draw calls and
read-backs, and NumPy painting, much of it holding the GIL, so the output
thread stalls meanwhile). They depend only on the look, the mesh and the model,
so they are stored in the user cache under a digest of exactly those inputs
and of the code that computes them: a later load is one file read, and a change
of any input or of that code computes them afresh. A missing, damaged or
unwritable entry only costs the computation.
"""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .paths import write_atomically

log = logging.getLogger(__name__)

#: Modules whose code computes the bakes: their source is part of every key.
BAKE_MODULES = ("veilcam.models.facekit_bake", "veilcam.models.facekit_paint", "veilcam.models.facekit_renderer")


@lru_cache(maxsize=1)
def _code_digest() -> bytes:
    import importlib

    h = hashlib.sha256()
    for name in BAKE_MODULES:
        h.update(Path(importlib.import_module(name).__file__).read_bytes())  # type: ignore[arg-type]
    return h.digest()


def bake_key(name: str, inputs: Sequence[np.ndarray | str]) -> str:
    h = hashlib.sha256(_code_digest() + name.encode() + b"\0")
    for item in inputs:
        if isinstance(item, str):
            h.update(b"s" + item.encode() + b"\0")
        else:
            a = np.ascontiguousarray(item)
            h.update(f"a{a.dtype.str}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()[:32]


class DiskBake:
    """A `facekit_renderer.Bake` that keeps results as .npy files in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, name: str, inputs: Sequence[np.ndarray | str], compute: Callable[[], np.ndarray]) -> np.ndarray:
        path = self.folder / f"{name}-{bake_key(name, inputs)}.npy"
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)  # mapped: uploads read the page cache directly
        except (OSError, ValueError, EOFError):
            pass  # not baked yet, or damaged: bake it again
        result = compute()
        try:
            write_atomically(path, lambda f: np.save(f, result, allow_pickle=False))
        except OSError as exc:  # a read-only cache only costs the bake next time
            log.info("cannot keep the %s bake in %s: %s", name, self.folder, exc)
        return result
