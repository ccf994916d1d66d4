"""Small valid avatar packs for tests: synthetic data, real pack format."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from veilcam.daemon.avatar_pack import new_manifest, write_pack
from veilcam.daemon.pack_files import encode_npz, encode_png
from veilcam.daemon.pack_manifest import MANIFEST


def pack_files(identity: np.ndarray | None = None) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    ident = rng.normal(size=100).astype(np.float32) if identity is None else identity
    face = {"identity": ident, "skin_rgb": np.array([200, 160, 140], np.uint8)}
    albedo = rng.integers(0, 255, (64, 64, 3), np.uint8)
    preview = np.full((32, 32, 3), 128, np.uint8)
    return {"face.npz": encode_npz(face), "albedo.png": encode_png(albedo), "preview.png": encode_png(preview)}


def make_pack(root: Path, name: str = "alice", files: dict[str, bytes] | None = None, description: str = "") -> Path:
    files = files or pack_files()
    manifest = new_manifest(name, "photo", {"face": "face.npz", "albedo": "albedo.png"}, files, "preview.png", description)
    return write_pack(root, manifest, files)


def rewrite_manifest(pack: Path, edit) -> None:
    path = pack / MANIFEST
    path.write_text(edit(path.read_text()))


def relist(pack: Path, name: str, data: bytes) -> None:
    """Replace a data file and make the manifest agree with it, so only the content check can catch it."""
    (pack / name).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    def edit(text: str) -> str:
        block = re.search(rf'path = "{re.escape(name)}"\nsha256 = "[0-9a-f]+"\nsize = \d+', text)
        assert block
        return text.replace(block.group(0), f'path = "{name}"\nsha256 = "{digest}"\nsize = {len(data)}')

    rewrite_manifest(pack, edit)


def one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(exc.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message
