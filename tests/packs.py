"""Small valid avatar packs for tests: synthetic data, real pack format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from veilcam.daemon.avatar_pack import new_manifest, write_pack
from veilcam.daemon.pack_files import encode_npz, encode_png


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
