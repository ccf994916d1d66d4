"""The avatar pack manifest: its schema, what each kind's files must hold, and one-line errors.

`manifest.toml` in a pack:

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

Parsing is strict (types, names, unknown fields, cross references), because a
manifest comes from whoever made the pack: see `avatar_pack`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from veilcam.models.expression_response import CALIBRATED, LEVELS as RESPONSE_LEVELS, OLDER_LEVELS
from veilcam.models.face_state import NUM_BLENDSHAPES

from .errors import AvatarPackError

SCHEMA_VERSION = 1
MANIFEST = "manifest.toml"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
FILE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
ARRAY_SUFFIXES = (".npz", ".safetensors")
IMAGE_SUFFIXES = (".png",)
NETWORK_SUFFIXES = (".onnx",)
MAX_DESCRIPTION = 200
MAX_FILE_BYTES = 512 << 20
MAX_PACK_BYTES = 1 << 30


# -- what a kind's files must hold ------------------------------------------------
@dataclass(frozen=True)
class ArraySpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name
    required: bool = True  # False: packs made before the array existed still load
    older_shapes: tuple[tuple[int, ...], ...] = ()  # the shapes packs made before it grew still have


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
    arrays: tuple[ArraySpec, ...] = ()  # an .npz or .safetensors file with these arrays and no others
    image: ImageSpec | None = None  # a .png file
    network: bool = False  # an .onnx file (checked by `pack_onnx`)

    @property
    def suffixes(self) -> tuple[str, ...]:
        if self.network:
            return NETWORK_SUFFIXES
        return IMAGE_SUFFIXES if self.image is not None else ARRAY_SUFFIXES


PREVIEW_SPEC = ImageSpec(channels=(3, 4), min_side=16, max_side=2048)

#: Identity coefficients of the ICT-FaceKit Light model (`models/face_model.py` NUM_IDENTITY).
PHOTO_IDENTITY_MODES = 100


def _neural_weights() -> tuple[ArraySpec, ...]:
    from veilcam.models.neural_avatar_config import NeuralAvatarConfig, state_shapes

    return tuple(ArraySpec(name, shape, "float32") for name, shape in state_shapes(NeuralAvatarConfig()).items())


#: Kind -> the files its manifest table names, and what each must hold. A pack
#: of a kind not listed here is refused (made by a newer VeilCam).
KIND_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    # A face fitted to one portrait: its identity coefficients, skin colour (for
    # the head around the face), hair colour (absent: bald) and rest rotation
    # (absent: none), and the photo projected into the face model's face tile
    # (UV tile 0) as the skin texture.
    "photo": (
        FieldSpec("face", arrays=(ArraySpec("identity", (PHOTO_IDENTITY_MODES,), "float32"), ArraySpec("skin_rgb", (3,), "uint8"),
                                  ArraySpec("hair_rgb", (3,), "uint8", required=False),
                                  ArraySpec("rest_rotation", (3, 3), "float32", required=False))),
        FieldSpec("albedo", image=ImageSpec(channels=(3,), min_side=64, max_side=8192, aspect=1.0)),
    ),
    # A renderer learned from a video of one person: the identity fitted to the
    # clip and the turn from MediaPipe's head frame to the face model's, the
    # network's weights (for torch on a GPU) and the same network as ONNX (for
    # onnxruntime), and the training loss as a plot. `expression_rest` and
    # `response_readings` (absent in packs made before them): the clip's resting
    # blendshapes (`expression_rest`) and how the avatar's brows and smiles read
    # (`expression_response`; packs made before smiles were measured hold the brows' row alone, and packs made before
    # the levels went past full weight the first `OLDER_LEVELS` levels).
    "neural": (
        FieldSpec("face", arrays=(ArraySpec("identity", (PHOTO_IDENTITY_MODES,), "float32"), ArraySpec("model_rotation", (3, 3), "float32"),
                                  ArraySpec("expression_rest", (NUM_BLENDSHAPES,), "float32", required=False),
                                  ArraySpec("response_readings", (len(CALIBRATED), len(RESPONSE_LEVELS)), "float32", required=False,
                                            older_shapes=((1, OLDER_LEVELS), (len(CALIBRATED), OLDER_LEVELS))))),
        FieldSpec("weights", arrays=_neural_weights()),
        FieldSpec("network", network=True),
        FieldSpec("loss_plot", image=ImageSpec(channels=(3, 4), min_side=64, max_side=4096)),
    ),
}

#: Kind -> the numbers its `[kind.metrics]` table may hold (all optional): how
#: the avatar measured when it was made, shown by `veilcam avatar show`.
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "neural": ("holdout_psnr_db", "holdout_ssim", "fidelity_mean", "train_frames", "warped_frames", "holdout_frames", "steps", "train_seconds",
               "enroll_seconds", "size"),
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
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)  # `[kind.metrics]`, see KIND_METRICS

    def file(self, path: str) -> PackFile:
        return next(f for f in self.files if f.path == path)


def quoted(value: object, limit: int = 60) -> str:
    """An untrusted value, quoted and cut short, safe to put in a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PackContext:
    """Names one pack in its one-line errors, and says what to do about it."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path = path
        self.name = name

    @property
    def fix(self) -> str:
        target = self.name or self.path.name
        return f"re-create the avatar or remove it (`veilcam avatar remove {target}`)"

    def error(self, what: str, fix: str | None = None) -> AvatarPackError:
        return AvatarPackError(f"avatar pack {self.path}: {what}; {fix or self.fix}")


def _check_file_name(where: PackContext, what: str, value: object) -> str:
    if not isinstance(value, str) or not FILE_PATTERN.fullmatch(value) or ".." in value:
        raise where.error(f"{what} {quoted(value)} is not a plain file name (letters, digits, '.', '_', '-'; no folders)")
    return value


def check_name(name: str) -> str:
    """An avatar name safe to use as a folder name and a CLI argument."""
    if not NAME_PATTERN.fullmatch(name):
        raise AvatarPackError(f"avatar name {quoted(name)} is not allowed: use 1-64 letters, digits, '_' or '-', starting with a letter or digit")
    return name


def is_one_line(text: str) -> bool:
    """Short, printable, no line breaks: safe to show in a listing."""
    return len(text) <= MAX_DESCRIPTION and not any(ord(c) < 32 or ord(c) == 127 for c in text)


def _require(where: PackContext, data: dict, key: str, kind: type | tuple[type, ...], label: str) -> object:
    if key not in data:
        raise where.error(f"manifest field '{key}' is missing")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise where.error(f"manifest field '{key}' must be {label}, got {quoted(value)}")
    return value


def parse_manifest(text: str, where: PackContext) -> PackManifest:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise where.error(f"{MANIFEST} is not valid TOML ({exc})") from exc
    schema = _require(where, data, "schema", int, "an integer")
    if schema != SCHEMA_VERSION:
        if isinstance(schema, int) and schema > SCHEMA_VERSION:
            raise where.error(f"manifest schema {schema} is newer than this VeilCam reads ({SCHEMA_VERSION})", "update VeilCam")
        raise where.error(f"manifest schema {quoted(schema)} is not supported (expected {SCHEMA_VERSION})")
    name = _require(where, data, "name", str, "a string")
    if not NAME_PATTERN.fullmatch(name):
        raise where.error(f"manifest field 'name' {quoted(name)} is not a safe avatar name (1-64 letters, digits, '_' or '-')")
    where.name = name
    kind = _require(where, data, "kind", str, "a string")
    if kind not in KIND_FIELDS:
        raise where.error(f"manifest field 'kind' {quoted(kind)} is not a kind this VeilCam knows ({', '.join(sorted(KIND_FIELDS))})",
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
        raise where.error(f"manifest field 'preview' {quoted(preview)} must be a .png file")

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
            raise where.error(f"manifest [[files]] entry {i + 1} has unknown field {quoted(sorted(unknown)[0])}")
        path = _check_file_name(where, f"[[files]] entry {i + 1} path", entry["path"])
        if path == MANIFEST or not path.endswith(ARRAY_SUFFIXES + IMAGE_SUFFIXES + NETWORK_SUFFIXES):
            raise where.error(f"[[files]] entry {i + 1} path {quoted(path)} must be a .npz, .safetensors, .onnx or .png file")
        digest, size = entry["sha256"], entry["size"]
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise where.error(f"[[files]] entry {path}: sha256 must be 64 lowercase hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_FILE_BYTES:
            raise where.error(f"[[files]] entry {path}: size must be between 1 and {MAX_FILE_BYTES} bytes, got {quoted(size)}")
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
    metric_names = KIND_METRICS.get(kind, ())
    unknown = set(table) - {s.key for s in specs} - ({"metrics"} if metric_names else set())
    if unknown:
        raise where.error(f"[{kind}] has unknown field {quoted(sorted(unknown)[0])} (expected {', '.join(s.key for s in specs)})")
    metrics = _parse_metrics(where, kind, table.get("metrics", {}), metric_names)
    fields: dict[str, str] = {}
    for spec in specs:
        if spec.key not in table:
            raise where.error(f"manifest field '{kind}.{spec.key}' is missing")
        path = _check_file_name(where, f"manifest field '{kind}.{spec.key}'", table[spec.key])
        if not path.endswith(spec.suffixes):
            raise where.error(f"manifest field '{kind}.{spec.key}' {quoted(path)} must be a {' or '.join(spec.suffixes)} file")
        if path not in listed:
            raise where.error(f"{kind}.{spec.key} names {path}, which is not in [[files]]")
        fields[spec.key] = path

    known = {"schema", "name", "kind", "version", "created", "description", "generator", "preview", "files", kind}
    unknown = set(data) - known
    if unknown:
        raise where.error(f"manifest has unknown field {quoted(sorted(unknown)[0])}")
    return PackManifest(name, kind, version, created, preview, tuple(files), fields, description, generator, schema, metrics)


def _parse_metrics(where: PackContext, kind: str, table: object, names: tuple[str, ...]) -> dict[str, float]:
    if not isinstance(table, dict):
        raise where.error(f"[{kind}.metrics] must be a table of numbers")
    metrics: dict[str, float] = {}
    for key, value in table.items():
        if key not in names:
            raise where.error(f"[{kind}.metrics] has unknown field {quoted(key)} (expected {', '.join(names)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise where.error(f"[{kind}.metrics] {key} must be a finite number, got {quoted(value)}")
        metrics[key] = float(value)
    return metrics


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
    if m.metrics:
        lines += ["", f"[{m.kind}.metrics]"] + [f"{key} = {float(value)!r}" for key, value in m.metrics.items()]
    for f in m.files:
        lines += ["", "[[files]]", f"path = {_toml_string(f.path)}", f"sha256 = {_toml_string(f.sha256)}", f"size = {f.size}"]
    return "\n".join(lines) + "\n"
