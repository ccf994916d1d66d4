"""Reading an avatar pack's files: from a folder or a zip, checked and decoded.

A pack is read, never extracted: a zip entry is only ever looked up by the
exact name the manifest lists, and the archive is refused outright if any
entry is absolute, climbs out with `..`, is a symlink, is encrypted or would
inflate past the size limits. Data files are decoded only after their sizes
are checked against what their kind allows (a PNG's header, an .npz's
members, a .safetensors header), so a hostile file cannot make VeilCam
allocate more than a pack may hold.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Mapping, Protocol

import cv2
import numpy as np

from .pack_manifest import MANIFEST, MAX_FILE_BYTES, MAX_PACK_BYTES, ArraySpec, ImageSpec, PackContext, quoted

MAX_ZIP_ENTRIES = 64
#: Entries that inflate more than this (and are over 1 MiB) are refused: real
#: pack data (PNG, float weights) barely compresses, a zip bomb inflates ~1000x.
MAX_COMPRESSION_RATIO = 100


# -- reading a folder or a zip ----------------------------------------------------
class Reader(Protocol):
    """Byte access to a pack's files by listed name, for a folder or a zip."""

    def size(self, name: str) -> int | None: ...

    def read(self, name: str, limit: int) -> bytes: ...

    def close(self) -> None: ...


class _DirReader:
    def __init__(self, root: Path, where: PackContext) -> None:
        self.root = root
        self.where = where

    def size(self, name: str) -> int | None:
        try:
            st = os.lstat(self.root / name)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.where.error(f"cannot read {name} ({exc.strerror})") from exc
        if stat.S_ISLNK(st.st_mode):
            raise self.where.error(f"{name} is a symlink; packs must hold plain files")
        if not stat.S_ISREG(st.st_mode):
            raise self.where.error(f"{name} is not a regular file")
        return st.st_size

    def read(self, name: str, limit: int) -> bytes:
        size = self.size(name)
        if size is None:
            raise self.where.error(f"{name} is missing")
        if size > limit:
            raise self.where.error(f"{name} is larger than {limit} bytes")
        try:
            fd = os.open(self.root / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as fh:
                return fh.read(limit + 1)
        except OSError as exc:
            raise self.where.error(f"cannot read {name} ({exc.strerror})") from exc

    def close(self) -> None:
        pass


def check_zip_entries(infos: list[zipfile.ZipInfo], where: PackContext) -> None:
    """Refuse archives that could escape a folder or exhaust memory if anything unpacked them."""
    if len(infos) > MAX_ZIP_ENTRIES:
        raise where.error(f"archive has {len(infos)} entries (at most {MAX_ZIP_ENTRIES})")
    total = 0
    names: set[str] = set()
    for info in infos:
        name = info.filename
        if name in names:
            raise where.error(f"archive holds {quoted(name)} twice")
        names.add(name)
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
            raise where.error(f"archive entry {quoted(name)} has an absolute path", "do not use this file: it may be malicious")
        if "\\" in name or ".." in name.split("/"):
            raise where.error(f"archive entry {quoted(name)} points outside the pack (path traversal)", "do not use this file: it may be malicious")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise where.error(f"archive entry {quoted(name)} is a symlink; packs must hold plain files")
        if info.flag_bits & 0x1:
            raise where.error(f"archive entry {quoted(name)} is encrypted")
        if info.file_size > MAX_FILE_BYTES:
            raise where.error(f"archive entry {quoted(name)} inflates to {info.file_size} bytes (at most {MAX_FILE_BYTES})")
        if info.file_size > 1 << 20 and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise where.error(f"archive entry {quoted(name)} inflates {info.file_size // max(info.compress_size, 1)}x (a zip bomb?)",
                              "do not use this file: it may be malicious")
        total += info.file_size
    if total > MAX_PACK_BYTES:
        raise where.error(f"archive inflates to {total} bytes (at most {MAX_PACK_BYTES})")


class _ZipReader:
    """Reads listed names from a zip: its manifest sits at the top or inside one top-level folder."""

    def __init__(self, path: Path, where: PackContext) -> None:
        self.where = where
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise where.error(f"not a readable zip archive ({exc})") from exc
        try:
            infos = self.zf.infolist()
            check_zip_entries(infos, where)
            self.entries = {i.filename: i for i in infos if not i.is_dir()}
            if MANIFEST in self.entries:
                self.prefix = ""
            else:
                tops = {n.split("/", 1)[0] for n in self.entries}
                top = next(iter(tops)) if len(tops) == 1 else ""
                if not top or f"{top}/{MANIFEST}" not in self.entries:
                    raise where.error(f"archive has no {MANIFEST} at its top level or in a single top-level folder")
                self.prefix = f"{top}/"
        except BaseException:
            self.zf.close()
            raise

    def size(self, name: str) -> int | None:
        info = self.entries.get(self.prefix + name)
        return None if info is None else info.file_size

    def read(self, name: str, limit: int) -> bytes:
        info = self.entries.get(self.prefix + name)
        if info is None:
            raise self.where.error(f"{name} is missing from the archive")
        if info.file_size > limit:
            raise self.where.error(f"{name} is larger than {limit} bytes")
        try:
            return self.zf.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise self.where.error(f"{name} is corrupt inside the archive ({exc})") from exc

    def close(self) -> None:
        self.zf.close()


def open_pack_files(path: Path, where: PackContext) -> Reader:
    """A reader for a pack folder or .zip; a zip's entries are all checked first."""
    if path.is_dir():
        return _DirReader(path, where)
    if path.suffix.lower() == ".zip" and path.is_file():
        return _ZipReader(path, where)
    if not path.exists():
        raise where.error("not found", "check the path or run `veilcam avatar list`")
    raise where.error("is neither a pack folder nor a .zip", "point at a folder with a manifest.toml or a .zip of one")


# -- decoding data files ----------------------------------------------------------
def _png_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the IHDR chunk, read before decoding so a huge image is refused unread."""
    if len(data) < 33 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, color


def decode_image(data: bytes, spec: ImageSpec, what: str, where: PackContext) -> np.ndarray:
    try:
        width, height, depth, _ = _png_header(data)
    except ValueError as exc:
        raise where.error(f"{what} is not a PNG image") from exc
    if not (spec.min_side <= width <= spec.max_side and spec.min_side <= height <= spec.max_side):
        raise where.error(f"{what} is {width}x{height}; each side must be {spec.min_side}-{spec.max_side} pixels")
    if spec.aspect is not None and abs(width / height - spec.aspect) > 1e-6:
        raise where.error(f"{what} is {width}x{height}; its width must be {spec.aspect:g} times its height")
    if depth != 8:
        raise where.error(f"{what} has {depth}-bit channels; use 8-bit")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.shape[:2] != (height, width):
        raise where.error(f"{what} cannot be decoded (truncated or corrupt PNG)")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels not in spec.channels:
        raise where.error(f"{what} has {channels} channels; expected {' or '.join(map(str, spec.channels))}")
    if channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif channels == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def encode_png(image: np.ndarray) -> bytes:
    """RGB(A) or grey uint8 -> PNG bytes."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def encode_npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npz_arrays(data: bytes, specs: tuple[ArraySpec, ...], what: str, where: PackContext) -> dict[str, np.ndarray]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise where.error(f"{what} is not a readable .npz archive (truncated or corrupt)") from exc
    expected = {f"{s.name}.npy": s for s in specs}
    with zf:
        for info in zf.infolist():
            spec = expected.get(info.filename)
            if spec is None:
                raise where.error(f"{what} holds an unexpected array {quoted(info.filename)} (expected {', '.join(s.name for s in specs)})")
            if info.file_size > np.dtype(spec.dtype).itemsize * int(np.prod(spec.shape)) + 4096:
                raise where.error(f"{what}: array '{spec.name}' is larger than a {spec.dtype} array of shape {spec.shape}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {name: z[name] for name in z.files if f"{name}.npy" in expected}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise where.error(f"{what} cannot be read as .npz ({exc})") from exc


_SAFETENSORS_DTYPES = {"F16": "float16", "F32": "float32", "F64": "float64", "I8": "int8", "I16": "int16",
                       "I32": "int32", "I64": "int64", "U8": "uint8", "BOOL": "bool"}


def _safetensors_arrays(data: bytes, what: str, where: PackContext) -> dict[str, np.ndarray]:
    """Safetensors: an 8-byte little-endian header length, a JSON header, then the raw tensors."""
    try:
        (n,) = struct.unpack("<Q", data[:8])
        if n > len(data) - 8:
            raise ValueError("header runs past the end of the file")
        header = json.loads(data[8 : 8 + n])
        body = memoryview(data)[8 + n :]
        arrays = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
            shape = tuple(int(d) for d in info["shape"])
            start, end = (int(x) for x in info["data_offsets"])
            if not 0 <= start <= end <= len(body) or end - start != dtype.itemsize * int(np.prod(shape)):
                raise ValueError(f"tensor {name!r} has bad data offsets")
            arrays[name] = np.frombuffer(body[start:end], dtype.newbyteorder("<")).reshape(shape)
        return arrays
    except KeyError as exc:
        raise where.error(f"{what} has an unsupported or missing tensor field {exc}") from exc
    except (ValueError, TypeError, struct.error, AttributeError) as exc:
        raise where.error(f"{what} is not a readable .safetensors file ({exc})") from exc


def decode_arrays(data: bytes, path: str, specs: tuple[ArraySpec, ...], what: str, where: PackContext) -> dict[str, np.ndarray]:
    arrays = _npz_arrays(data, specs, what, where) if path.endswith(".npz") else _safetensors_arrays(data, what, where)
    for spec in specs:
        if spec.name not in arrays:
            if not spec.required:
                continue
            raise where.error(f"{what} has no array '{spec.name}'")
        a = arrays[spec.name]
        if a.shape not in (spec.shape, *spec.older_shapes) or a.dtype != np.dtype(spec.dtype):
            raise where.error(f"{what}: array '{spec.name}' is {a.dtype} {a.shape}, expected {spec.dtype} {spec.shape}")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise where.error(f"{what}: array '{spec.name}' holds NaN or infinite values")
    extra = set(arrays) - {s.name for s in specs}
    if extra:
        raise where.error(f"{what} holds an unexpected array {quoted(sorted(extra)[0])}")
    return arrays
