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

Layout (`manifest.toml`):

    schema = 1
    name = "alice"
    kind = "photo"
    version = 1
    created = 2025-05-01T10:00:00+00:00
    description = "..."          # optional
    generator = "veilcam 0.1.0"  # optional
    preview = "preview.png"

    [photo]                      # the kind's own fields: each names a listed file
    face = "face.npz"
    albedo = "albedo.png"

    [[files]]                    # every data file, preview included
    path = "face.npz"
    sha256 = "..."
    size = 1234

Writing is atomic: a pack is assembled and fully validated in a hidden temp
folder next to its destination, then renamed into place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import stat
import struct
import tempfile
import tomllib
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol

import cv2
import numpy as np

from .errors import AvatarPackError

SCHEMA_VERSION = 1
MANIFEST = "manifest.toml"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
FILE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
ARRAY_SUFFIXES = (".npz", ".safetensors")
IMAGE_SUFFIXES = (".png",)
MAX_DESCRIPTION = 200
MAX_MANIFEST_BYTES = 64 << 10
MAX_FILE_BYTES = 512 << 20
MAX_PACK_BYTES = 1 << 30
MAX_ZIP_ENTRIES = 64
#: Entries that inflate more than this (and are over 1 MiB) are refused: real
#: pack data (PNG, float weights) barely compresses, a zip bomb inflates ~1000x.
MAX_COMPRESSION_RATIO = 100
_HASH_CHUNK = 1 << 20


# -- what a kind's files must hold ------------------------------------------------
@dataclass(frozen=True)
class ArraySpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name


@dataclass(frozen=True)
class ImageSpec:
    channels: tuple[int, ...]  # allowed channel counts (1 = grey, 3 = RGB, 4 = RGBA)
    min_side: int
    max_side: int
    aspect: float | None = None  # width / height when fixed


@dataclass(frozen=True)
class FieldSpec:
    """A kind-specific manifest field that names one data file, and what that file must hold."""

    key: str
    arrays: tuple[ArraySpec, ...] = ()  # an .npz or .safetensors file with exactly these arrays
    image: ImageSpec | None = None  # a .png file

    @property
    def suffixes(self) -> tuple[str, ...]:
        return IMAGE_SUFFIXES if self.image is not None else ARRAY_SUFFIXES


PREVIEW_SPEC = ImageSpec(channels=(3, 4), min_side=16, max_side=2048)

#: Identity coefficients of the ICT-FaceKit Light model (`models/face_model.py` NUM_IDENTITY).
PHOTO_IDENTITY_MODES = 100

#: Kind -> the files its manifest table names, and what each must hold. A pack
#: of a kind not listed here is refused (made by a newer VeilCam).
KIND_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    # A face fitted to one portrait: its identity coefficients and skin colour
    # (for the head around the face), and the photo projected into the face
    # model's face tile (UV tile 0) as the skin texture.
    "photo": (
        FieldSpec("face", arrays=(ArraySpec("identity", (PHOTO_IDENTITY_MODES,), "float32"), ArraySpec("skin_rgb", (3,), "uint8"))),
        FieldSpec("albedo", image=ImageSpec(channels=(3,), min_side=64, max_side=8192, aspect=1.0)),
    ),
}


# -- manifest -------------------------------------------------------------------
@dataclass(frozen=True)
class PackFile:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class PackManifest:
    name: str
    kind: str
    version: int
    created: dt.datetime | dt.date
    preview: str
    files: tuple[PackFile, ...]
    fields: Mapping[str, str]  # kind field -> file name
    description: str = ""
    generator: str = ""
    schema: int = SCHEMA_VERSION

    def file(self, path: str) -> PackFile:
        return next(f for f in self.files if f.path == path)


@dataclass(frozen=True, eq=False)
class AvatarPack:
    """A fully verified pack: every file matched its checksum and holds what its kind needs."""

    path: Path
    manifest: PackManifest
    arrays: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)  # array fields, by key
    images: Mapping[str, np.ndarray] = field(default_factory=dict)  # image fields and "preview": RGB(A) uint8


def _show(value: object, limit: int = 60) -> str:
    """An untrusted value, quoted and cut short, safe to put in a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Where:
    """Builds the one-line errors for one pack."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path = path
        self.name = name

    @property
    def fix(self) -> str:
        target = self.name or self.path.name
        return f"re-create the avatar or remove it (`veilcam avatar remove {target}`)"

    def error(self, what: str, fix: str | None = None) -> AvatarPackError:
        return AvatarPackError(f"avatar pack {self.path}: {what}; {fix or self.fix}")


def _check_file_name(where: _Where, what: str, value: object) -> str:
    if not isinstance(value, str) or not FILE_PATTERN.fullmatch(value) or ".." in value:
        raise where.error(f"{what} {_show(value)} is not a plain file name (letters, digits, '.', '_', '-'; no folders)")
    return value


def check_name(name: str) -> str:
    """An avatar name safe to use as a folder name and a CLI argument."""
    if not NAME_PATTERN.fullmatch(name):
        raise AvatarPackError(f"avatar name {_show(name)} is not allowed: use 1-64 letters, digits, '_' or '-', starting with a letter or digit")
    return name


def is_one_line(text: str) -> bool:
    """Short, printable, no line breaks: safe to show in a listing."""
    return len(text) <= MAX_DESCRIPTION and not any(ord(c) < 32 or ord(c) == 127 for c in text)


def _require(where: _Where, data: dict, key: str, kind: type | tuple[type, ...], label: str) -> object:
    if key not in data:
        raise where.error(f"manifest field '{key}' is missing")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise where.error(f"manifest field '{key}' must be {label}, got {_show(value)}")
    return value


def parse_manifest(text: str, where: _Where) -> PackManifest:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise where.error(f"{MANIFEST} is not valid TOML ({exc})") from exc
    schema = _require(where, data, "schema", int, "an integer")
    if schema != SCHEMA_VERSION:
        if isinstance(schema, int) and schema > SCHEMA_VERSION:
            raise where.error(f"manifest schema {schema} is newer than this VeilCam reads ({SCHEMA_VERSION})", "update VeilCam")
        raise where.error(f"manifest schema {_show(schema)} is not supported (expected {SCHEMA_VERSION})")
    name = _require(where, data, "name", str, "a string")
    if not NAME_PATTERN.fullmatch(name):
        raise where.error(f"manifest field 'name' {_show(name)} is not a safe avatar name (1-64 letters, digits, '_' or '-')")
    where.name = name
    kind = _require(where, data, "kind", str, "a string")
    if kind not in KIND_FIELDS:
        raise where.error(f"manifest field 'kind' {_show(kind)} is not a kind this VeilCam knows ({', '.join(sorted(KIND_FIELDS))})",
                          "update VeilCam or re-create the avatar")
    version = _require(where, data, "version", int, "an integer")
    if version < 1:
        raise where.error(f"manifest field 'version' must be 1 or more, got {version}")
    created = _require(where, data, "created", (dt.datetime, dt.date), "a TOML date-time")
    description = data.get("description", "")
    generator = data.get("generator", "")
    for key, value in (("description", description), ("generator", generator)):
        if not isinstance(value, str) or not is_one_line(value):
            raise where.error(f"manifest field '{key}' must be one line of at most {MAX_DESCRIPTION} characters")
    preview = _check_file_name(where, "manifest field 'preview'", _require(where, data, "preview", str, "a file name"))
    if not preview.endswith(IMAGE_SUFFIXES):
        raise where.error(f"manifest field 'preview' {_show(preview)} must be a .png file")

    raw_files = _require(where, data, "files", list, "a list of [[files]] tables")
    files: list[PackFile] = []
    for i, entry in enumerate(raw_files):
        if not isinstance(entry, dict):
            raise where.error(f"manifest [[files]] entry {i + 1} must be a table")
        for key in ("path", "sha256", "size"):
            if key not in entry:
                raise where.error(f"manifest [[files]] entry {i + 1} has no {key}")
        unknown = set(entry) - {"path", "sha256", "size"}
        if unknown:
            raise where.error(f"manifest [[files]] entry {i + 1} has unknown field {_show(sorted(unknown)[0])}")
        path = _check_file_name(where, f"[[files]] entry {i + 1} path", entry["path"])
        if path == MANIFEST or not path.endswith(ARRAY_SUFFIXES + IMAGE_SUFFIXES):
            raise where.error(f"[[files]] entry {i + 1} path {_show(path)} must be a .npz, .safetensors or .png file")
        digest, size = entry["sha256"], entry["size"]
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise where.error(f"[[files]] entry {path}: sha256 must be 64 lowercase hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_FILE_BYTES:
            raise where.error(f"[[files]] entry {path}: size must be between 1 and {MAX_FILE_BYTES} bytes, got {_show(size)}")
        if any(f.path == path for f in files):
            raise where.error(f"[[files]] lists {path} twice")
        files.append(PackFile(path, digest, size))
    if sum(f.size for f in files) > MAX_PACK_BYTES:
        raise where.error(f"files add up to more than {MAX_PACK_BYTES >> 20} MiB")
    listed = {f.path for f in files}
    if preview not in listed:
        raise where.error(f"preview {preview} is not in [[files]]")

    specs = KIND_FIELDS[kind]
    table = _require(where, data, kind, dict, f"a [{kind}] table")
    unknown = set(table) - {s.key for s in specs}
    if unknown:
        raise where.error(f"[{kind}] has unknown field {_show(sorted(unknown)[0])} (expected {', '.join(s.key for s in specs)})")
    fields: dict[str, str] = {}
    for spec in specs:
        if spec.key not in table:
            raise where.error(f"manifest field '{kind}.{spec.key}' is missing")
        path = _check_file_name(where, f"manifest field '{kind}.{spec.key}'", table[spec.key])
        if not path.endswith(spec.suffixes):
            raise where.error(f"manifest field '{kind}.{spec.key}' {_show(path)} must be a {' or '.join(spec.suffixes)} file")
        if path not in listed:
            raise where.error(f"{kind}.{spec.key} names {path}, which is not in [[files]]")
        fields[spec.key] = path

    known = {"schema", "name", "kind", "version", "created", "description", "generator", "preview", "files", kind}
    unknown = set(data) - known
    if unknown:
        raise where.error(f"manifest has unknown field {_show(sorted(unknown)[0])}")
    return PackManifest(name, kind, version, created, preview, tuple(files), fields, description, generator, schema)


def _toml_string(value: str) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes; DEL is the one control JSON leaves raw.
    return json.dumps(value, ensure_ascii=True).replace("\x7f", "\\u007f")


def render_manifest(m: PackManifest) -> str:
    created = m.created.isoformat()
    lines = [
        f"schema = {m.schema}",
        f"name = {_toml_string(m.name)}",
        f"kind = {_toml_string(m.kind)}",
        f"version = {m.version}",
        f"created = {created}",
    ]
    if m.description:
        lines.append(f"description = {_toml_string(m.description)}")
    if m.generator:
        lines.append(f"generator = {_toml_string(m.generator)}")
    lines += [f"preview = {_toml_string(m.preview)}", "", f"[{m.kind}]"]
    lines += [f"{key} = {_toml_string(path)}" for key, path in m.fields.items()]
    for f in m.files:
        lines += ["", "[[files]]", f"path = {_toml_string(f.path)}", f"sha256 = {_toml_string(f.sha256)}", f"size = {f.size}"]
    return "\n".join(lines) + "\n"


# -- reading a folder or a zip ----------------------------------------------------
class _Reader(Protocol):
    """Byte access to a pack's files by listed name, for a folder or a zip."""

    def size(self, name: str) -> int | None: ...

    def read(self, name: str, limit: int) -> bytes: ...

    def close(self) -> None: ...


class _DirReader:
    def __init__(self, root: Path, where: _Where) -> None:
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


def check_zip_entries(infos: list[zipfile.ZipInfo], where: _Where) -> None:
    """Refuse archives that could escape a folder or exhaust memory if anything unpacked them."""
    if len(infos) > MAX_ZIP_ENTRIES:
        raise where.error(f"archive has {len(infos)} entries (at most {MAX_ZIP_ENTRIES})")
    total = 0
    names: set[str] = set()
    for info in infos:
        name = info.filename
        if name in names:
            raise where.error(f"archive holds {_show(name)} twice")
        names.add(name)
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
            raise where.error(f"archive entry {_show(name)} has an absolute path", "do not use this file: it may be malicious")
        if "\\" in name or ".." in name.split("/"):
            raise where.error(f"archive entry {_show(name)} points outside the pack (path traversal)", "do not use this file: it may be malicious")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise where.error(f"archive entry {_show(name)} is a symlink; packs must hold plain files")
        if info.flag_bits & 0x1:
            raise where.error(f"archive entry {_show(name)} is encrypted")
        if info.file_size > MAX_FILE_BYTES:
            raise where.error(f"archive entry {_show(name)} inflates to {info.file_size} bytes (at most {MAX_FILE_BYTES})")
        if info.file_size > 1 << 20 and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise where.error(f"archive entry {_show(name)} inflates {info.file_size // max(info.compress_size, 1)}x (a zip bomb?)",
                              "do not use this file: it may be malicious")
        total += info.file_size
    if total > MAX_PACK_BYTES:
        raise where.error(f"archive inflates to {total} bytes (at most {MAX_PACK_BYTES})")


class _ZipReader:
    """Reads listed names from a zip: its manifest sits at the top or inside one top-level folder."""

    def __init__(self, path: Path, where: _Where) -> None:
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


def _open(path: Path, where: _Where) -> _Reader:
    if path.is_dir():
        return _DirReader(path, where)
    if path.suffix.lower() == ".zip" and path.is_file():
        return _ZipReader(path, where)
    if not path.exists():
        raise where.error("not found", "check the path or run `veilcam avatar list`")
    raise where.error("is neither a pack folder nor a .zip", "point at a folder with a manifest.toml or a .zip of one")


def _read_manifest(reader: _Reader, where: _Where) -> PackManifest:
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
    where = _Where(path)
    reader = _open(path, where)
    try:
        return _read_manifest(reader, where)
    finally:
        reader.close()


# -- decoding data files ----------------------------------------------------------
def _png_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the IHDR chunk, read before decoding so a huge image is refused unread."""
    if len(data) < 33 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, color


def decode_image(data: bytes, spec: ImageSpec, what: str, where: _Where) -> np.ndarray:
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


def _npz_arrays(data: bytes, specs: tuple[ArraySpec, ...], what: str, where: _Where) -> dict[str, np.ndarray]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise where.error(f"{what} is not a readable .npz archive (truncated or corrupt)") from exc
    expected = {f"{s.name}.npy": s for s in specs}
    with zf:
        for info in zf.infolist():
            spec = expected.get(info.filename)
            if spec is None:
                raise where.error(f"{what} holds an unexpected array {_show(info.filename)} (expected {', '.join(s.name for s in specs)})")
            if info.file_size > np.dtype(spec.dtype).itemsize * int(np.prod(spec.shape)) + 4096:
                raise where.error(f"{what}: array '{spec.name}' is larger than a {spec.dtype} array of shape {spec.shape}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {name: z[name] for name in z.files if f"{name}.npy" in expected}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise where.error(f"{what} cannot be read as .npz ({exc})") from exc


_SAFETENSORS_DTYPES = {"F16": "float16", "F32": "float32", "F64": "float64", "I8": "int8", "I16": "int16",
                       "I32": "int32", "I64": "int64", "U8": "uint8", "BOOL": "bool"}


def _safetensors_arrays(data: bytes, what: str, where: _Where) -> dict[str, np.ndarray]:
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


def decode_arrays(data: bytes, path: str, specs: tuple[ArraySpec, ...], what: str, where: _Where) -> dict[str, np.ndarray]:
    arrays = _npz_arrays(data, specs, what, where) if path.endswith(".npz") else _safetensors_arrays(data, what, where)
    for spec in specs:
        if spec.name not in arrays:
            raise where.error(f"{what} has no array '{spec.name}'")
        a = arrays[spec.name]
        if a.shape != spec.shape or a.dtype != np.dtype(spec.dtype):
            raise where.error(f"{what}: array '{spec.name}' is {a.dtype} {a.shape}, expected {spec.dtype} {spec.shape}")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise where.error(f"{what}: array '{spec.name}' holds NaN or infinite values")
    extra = set(arrays) - {s.name for s in specs}
    if extra:
        raise where.error(f"{what} holds an unexpected array {_show(sorted(extra)[0])}")
    return arrays


# -- loading and writing ----------------------------------------------------------
def load_pack(path: Path) -> AvatarPack:
    """Read and verify a whole pack: manifest, checksums, and the contents each kind needs."""
    where = _Where(path)
    reader = _open(path, where)
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
    images = {"preview": decode_image(blobs[manifest.preview], PREVIEW_SPEC, f"preview {manifest.preview}", where)}
    for spec in KIND_FIELDS[manifest.kind]:
        file = manifest.fields[spec.key]
        what = f"{manifest.kind}.{spec.key} ({file})"
        if spec.image is not None:
            images[spec.key] = decode_image(blobs[file], spec.image, what, where)
        else:
            arrays[spec.key] = decode_arrays(blobs[file], file, spec.arrays, what, where)
    return AvatarPack(path, manifest, arrays, images)


def new_manifest(name: str, kind: str, fields: Mapping[str, str], files: Mapping[str, bytes], preview: str,
                 description: str = "", generator: str = "", version: int = 1) -> PackManifest:
    """A manifest for `files` (name -> bytes), dated now, with their sizes and checksums."""
    for key, value in (("description", description), ("generator", generator)):
        if not is_one_line(value):
            raise AvatarPackError(f"{key} {_show(value)} must be one line of at most {MAX_DESCRIPTION} characters")
    listed = tuple(PackFile(p, hashlib.sha256(b).hexdigest(), len(b)) for p, b in sorted(files.items()))
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return PackManifest(check_name(name), kind, version, created, preview, listed, dict(fields), description, generator)


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
