"""MediaPipe's canonical face mesh, read from the face landmarker bundle.

The `.task` bundle is a zip that holds `geometry_pipeline_metadata_landmarks.binarypb`,
a serialized `GeometryPipelineMetadata` protobuf whose `canonical_mesh` (field 1;
2 is the Procrustes basis, 3 the input source) is a `Mesh3d`: `vertex_buffer` (field 3, 5 floats per vertex: x y z u v) and
`index_buffer` (field 4, triangles). No generated protobuf module ships for it,
so this file reads the few wire-format pieces it needs itself.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

METADATA_ENTRY = "geometry_pipeline_metadata_landmarks.binarypb"
NUM_VERTICES = 468
NUM_TRIANGLES = 898

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class CanonicalMesh:
    vertices: np.ndarray  # (468, 3) float32, centimetres, y up, +z towards the camera
    uvs: np.ndarray  # (468, 2) float32, v down (the OBJ file stores 1 - v)
    triangles: np.ndarray  # (898, 3) int32, counter-clockwise seen from the front
    #: The weighted landmarks MediaPipe aligns to this mesh to estimate the head pose
    #: (`procrustes_landmark_basis`, field 2): ids (K,) int32 and weights (K,) float32.
    pose_landmarks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    pose_weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(buf: bytes):
    """Yield (field number, wire type, value) for one message; value is bytes for
    length-delimited and fixed fields, an int for varints."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire in (_FIXED32, _FIXED64, _LENGTH):
            if wire == _LENGTH:
                size, pos = _read_varint(buf, pos)
            else:
                size = 4 if wire == _FIXED32 else 8
            if pos + size > len(buf):
                raise ValueError(f"field {number} runs past the end of the message")
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise ValueError(f"unsupported wire type {wire} for field {number}")
        if number == 0:
            raise ValueError("invalid field number 0")
        yield number, wire, value


def _packed_varints(data: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(data):
        value, pos = _read_varint(data, pos)
        values.append(value)
    return values


def _parse_mesh3d(buf: bytes) -> tuple[np.ndarray, np.ndarray]:
    floats: list[np.ndarray] = []
    indices: list[int] = []
    for number, wire, value in _fields(buf):
        if number == 3 and wire == _LENGTH:  # packed floats
            if len(value) % 4:
                raise ValueError("packed vertex_buffer length is not a multiple of 4")
            floats.append(np.frombuffer(value, "<f4"))
        elif number == 3 and wire == _FIXED32:
            floats.append(np.frombuffer(value, "<f4"))
        elif number == 4 and wire == _LENGTH:
            indices.extend(_packed_varints(value))
        elif number == 4 and wire == _VARINT:
            indices.append(value)
    vertex_buffer = np.concatenate(floats) if floats else np.zeros(0, np.float32)
    return vertex_buffer.astype(np.float32), np.asarray(indices, np.int64)


def _parse_weighted_landmark(buf: bytes) -> tuple[int, float]:
    landmark, weight = -1, 0.0
    for number, wire, value in _fields(buf):
        if number == 1 and wire == _VARINT:
            landmark = value
        elif number == 2 and wire == _FIXED32:
            weight = float(np.frombuffer(value, "<f4")[0])
    return landmark, weight


def parse_geometry_metadata(data: bytes) -> CanonicalMesh:
    """Parse a serialized `GeometryPipelineMetadata`; ValueError when it is not one."""
    mesh_bytes = [value for number, wire, value in _fields(data) if number == 1 and wire == _LENGTH]
    if not mesh_bytes:
        raise ValueError("no canonical_mesh (field 1) in the geometry metadata")
    vertex_buffer, indices = _parse_mesh3d(mesh_bytes[-1])
    if vertex_buffer.size != NUM_VERTICES * 5:
        raise ValueError(f"canonical mesh has {vertex_buffer.size} vertex floats, expected {NUM_VERTICES * 5}")
    if indices.size != NUM_TRIANGLES * 3:
        raise ValueError(f"canonical mesh has {indices.size} indices, expected {NUM_TRIANGLES * 3}")
    if indices.max() >= NUM_VERTICES:
        raise ValueError("canonical mesh index out of range")
    if not np.all(np.isfinite(vertex_buffer)):
        raise ValueError("canonical mesh has non-finite vertex values")
    per_vertex = vertex_buffer.reshape(NUM_VERTICES, 5)
    basis = [_parse_weighted_landmark(value) for number, wire, value in _fields(data) if number == 2 and wire == _LENGTH]
    if any(not 0 <= landmark < NUM_VERTICES for landmark, _ in basis):
        raise ValueError("Procrustes landmark basis refers to a landmark out of range")
    return CanonicalMesh(
        vertices=np.ascontiguousarray(per_vertex[:, :3]),
        uvs=np.ascontiguousarray(per_vertex[:, 3:]),
        triangles=indices.reshape(NUM_TRIANGLES, 3).astype(np.int32),
        pose_landmarks=np.array([landmark for landmark, _ in basis], np.int32),
        pose_weights=np.array([weight for _, weight in basis], np.float32),
    )


def load_canonical_mesh(task_path: str | Path) -> CanonicalMesh:
    """Read the canonical mesh from a face landmarker `.task` bundle.

    Raises ValueError naming the file when it is missing, not a zip, lacks the
    metadata entry or holds a corrupt mesh.
    """
    try:
        with zipfile.ZipFile(task_path) as bundle:
            data = bundle.read(METADATA_ENTRY)
    except OSError as exc:
        raise ValueError(f"{task_path}: cannot read face landmarker bundle: {exc.strerror or exc}") from exc
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{task_path}: not a face landmarker bundle (not a zip file)") from exc
    except KeyError as exc:
        raise ValueError(f"{task_path}: bundle has no {METADATA_ENTRY}") from exc
    try:
        return parse_geometry_metadata(data)
    except ValueError as exc:
        raise ValueError(f"{task_path}: corrupt {METADATA_ENTRY}: {exc}") from exc
