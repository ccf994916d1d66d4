"""Avatar packs: a folder or a `.zip` holding a TOML manifest and data files.

Packs are shared between people, so every byte of one is untrusted input. They
are read, never extracted: a zip entry is only ever looked up by the exact
name the manifest lists, and the archive is refused outright if any entry is
absolute, climbs out with `..`, is a symlink, is encrypted or would inflate
past the size limits. Every listed file must match its size and sha256, and
each kind declares what its files must hold (array names, shapes and dtypes;
image sizes), so a renderer only ever sees data of the shape it was written
for. Any failure is one `AvatarPackError` line naming the pack, the file or
field, and what to do.

The manifest's schema is in `pack_manifest`, reading and decoding the files in
`pack_files`; this module loads, writes, removes and lists whole packs.

Writing is atomic: a pack is assembled and fully validated in a hidden temp
folder next to its destination, then renamed into place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from .errors import AvatarPackError
from .pack_files import Reader, decode_arrays, decode_image, open_pack_files
from .pack_onnx import CheckedNetwork, check_network
from .pack_manifest import (
    KIND_FIELDS,
    MANIFEST,
    MAX_DESCRIPTION,
    PREVIEW_SPEC,
    PackContext,
    PackFile,
    PackManifest,
    check_name,
    is_one_line,
    parse_manifest,
    quoted,
    render_manifest,
)

MAX_MANIFEST_BYTES = 64 << 10


@dataclass(frozen=True, eq=False)
class AvatarPack:
    """A fully verified pack: every file matched its checksum and holds what its kind needs."""

    path: Path
    manifest: PackManifest
    arrays: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)  # array fields, by key
    images: Mapping[str, np.ndarray] = field(default_factory=dict)  # image fields and "preview": RGB(A) uint8
    networks: Mapping[str, CheckedNetwork] = field(default_factory=dict)  # network fields: checked ONNX models


def _read_manifest(reader: Reader, where: PackContext) -> PackManifest:
    if reader.size(MANIFEST) is None:
        raise where.error(f"{MANIFEST} is missing", "this is not an avatar pack; remove it")
    raw = reader.read(MANIFEST, MAX_MANIFEST_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise where.error(f"{MANIFEST} is not UTF-8 text") from exc
    manifest = parse_manifest(text, where)
    for f in manifest.files:
        size = reader.size(f.path)
        if size is None:
            raise where.error(f"{f.path} is missing")
        if size != f.size:
            raise where.error(f"{f.path} has {size} bytes, the manifest says {f.size} (truncated or replaced)")
    return manifest


def read_manifest(path: Path) -> PackManifest:
    """The manifest, checked, and every listed file present with its listed size; no data is hashed or decoded."""
    where = PackContext(path)
    reader = open_pack_files(path, where)
    try:
        return _read_manifest(reader, where)
    finally:
        reader.close()


# -- loading and writing ----------------------------------------------------------
def load_pack(path: Path) -> AvatarPack:
    """Read and verify a whole pack: manifest, checksums, and the contents each kind needs."""
    where = PackContext(path)
    reader = open_pack_files(path, where)
    try:
        manifest = _read_manifest(reader, where)
        blobs: dict[str, bytes] = {}
        for f in manifest.files:
            data = reader.read(f.path, f.size)
            if len(data) != f.size:
                raise where.error(f"{f.path} has {len(data)} bytes, the manifest says {f.size} (truncated or replaced)")
            if hashlib.sha256(data).hexdigest() != f.sha256:
                raise where.error(f"{f.path} does not match its sha256 in the manifest (corrupt or modified)")
            blobs[f.path] = data
    finally:
        reader.close()
    arrays: dict[str, dict[str, np.ndarray]] = {}
    networks: dict[str, CheckedNetwork] = {}
    images = {"preview": decode_image(blobs[manifest.preview], PREVIEW_SPEC, f"preview {manifest.preview}", where)}
    for spec in KIND_FIELDS[manifest.kind]:
        file = manifest.fields[spec.key]
        what = f"{manifest.kind}.{spec.key} ({file})"
        if spec.network:
            networks[spec.key] = check_network(blobs[file], what, where)
        elif spec.image is not None:
            images[spec.key] = decode_image(blobs[file], spec.image, what, where)
        else:
            arrays[spec.key] = decode_arrays(blobs[file], file, spec.arrays, what, where)
    return AvatarPack(path, manifest, arrays, images, networks)


def check_new_pack(root: Path, name: str, description: str, replace: bool, replace_hint: str) -> None:
    """Before the slow work of making pack `name` under `root`: a safe name, a one-line
    description, and no pack of that name unless `replace` (`replace_hint` says how to ask for it)."""
    check_name(name)
    if not is_one_line(description):
        raise AvatarPackError(f"--description must be one line of at most {MAX_DESCRIPTION} characters")
    if not replace and ((root / name).exists() or (root / f"{name}.zip").exists()):
        raise AvatarPackError(f"avatar {name!r} already exists in {root}; choose another --name, or {replace_hint}")


def new_manifest(name: str, kind: str, fields: Mapping[str, str], files: Mapping[str, bytes], preview: str,
                 description: str = "", generator: str = "", version: int = 1, metrics: Mapping[str, float] | None = None) -> PackManifest:
    """A manifest for `files` (name -> bytes), dated now, with their sizes and checksums."""
    for key, value in (("description", description), ("generator", generator)):
        if not is_one_line(value):
            raise AvatarPackError(f"{key} {quoted(value)} must be one line of at most {MAX_DESCRIPTION} characters")
    listed = tuple(PackFile(p, hashlib.sha256(b).hexdigest(), len(b)) for p, b in sorted(files.items()))
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return PackManifest(check_name(name), kind, version, created, preview, listed, dict(fields), description, generator,
                        metrics=dict(metrics or {}))


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_pack(root: Path, manifest: PackManifest, files: Mapping[str, bytes], replace: bool = False) -> Path:
    """Write a pack folder `root/<name>` atomically and return it.

    The pack is written and verified with `load_pack` in a hidden temp folder
    under `root`, then renamed into place, so no reader ever sees half a pack
    and a pack that would be rejected is never installed.
    """
    dest = root / manifest.name
    if (dest.exists() or dest.with_suffix(".zip").exists()) and not replace:
        raise AvatarPackError(f"avatar {manifest.name!r} already exists in {root}; choose another --name or remove it first (`veilcam avatar remove {manifest.name}`)")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{manifest.name}-", dir=root))
    try:
        for name, data in files.items():
            _fsync_write(tmp / name, data)
        _fsync_write(tmp / MANIFEST, render_manifest(manifest).encode("utf-8"))
        load_pack(tmp)
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{manifest.name}-", dir=root))
            os.replace(dest, old / "pack")
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def remove_pack(path: Path) -> None:
    """Delete an installed pack: renamed away first, so it vanishes from listings at once even if deleting is slow."""
    trash = Path(tempfile.mkdtemp(prefix=f".del-{path.stem}-", dir=path.parent))
    os.replace(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


# -- installed packs --------------------------------------------------------------
@dataclass(frozen=True)
class InstalledPack:
    """One entry of the avatars folder: its manifest, or why it cannot be used."""

    path: Path
    name: str
    manifest: PackManifest | None
    error: str | None = None


def installed_packs(root: Path) -> list[InstalledPack]:
    """Every pack under `root`, sorted by name; a broken one comes back with its error instead of raising.

    Hidden entries (temp folders of a write in progress) are skipped. A pack
    is known by its folder name (or zip stem), which must equal its manifest
    name, so `find_avatar(name)` and the file on disk never disagree.
    """
    if not root.is_dir():
        return []
    packs: list[InstalledPack] = []
    seen: set[str] = set()
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not (path.is_dir() or path.suffix.lower() == ".zip"):
            continue
        name = path.stem if path.suffix.lower() == ".zip" and not path.is_dir() else path.name
        try:
            manifest = read_manifest(path)
            if manifest.name != name:
                raise AvatarPackError(f"avatar pack {path}: its manifest names it {manifest.name!r}; rename it to {manifest.name} or remove it")
            if name in seen:
                raise AvatarPackError(f"avatar pack {path}: another pack is already called {name!r}; remove one of them")
            packs.append(InstalledPack(path, name, manifest))
        except AvatarPackError as exc:
            packs.append(InstalledPack(path, name, None, str(exc)))
        seen.add(name)
    return packs
