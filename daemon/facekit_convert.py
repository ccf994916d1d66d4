"""Build `ict_facekit_compact.npz` from the official ICT-FaceKit release.

Upstream ships the model as ~160 OBJ files (~405 MB): a neutral head, 100
identity morph targets and 57 expression morph targets with one shared
topology. The compact file stores the neutral (float32), the deltas (float16),
the topology and the region tables, ~16 MB. The conversion follows the recipe in
the compact file's README, so a converted file holds the same arrays as the
known-good copy; `content_digest` proves it (the files' own sha256 differ: zip
entries carry timestamps).

The region, polygon, sub-region and jawline tables exist upstream only as tables
in its README; they are transcribed here, half-open. Everything else is read
from the release: `FaceXModel/*.obj` and `FaceXModel/vertex_indices.json`.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from tqdm import tqdm

UPSTREAM_COMMIT = "da5f95a607f5e6b37755b38d3385d7f2853732e5"
#: The compact file's name in the model folders.
COMPACT_NAME = "ict_facekit/ict_facekit_compact.npz"
ARCHIVE_URL = f"https://github.com/ICT-VGL/ICT-FaceKit/archive/{UPSTREAM_COMMIT}.zip"
#: `content_digest` of the known-good compact file (taken once from the reference copy).
COMPACT_DIGEST = "f709b07b28cd6d264ca51353dbdfada330df10b0a72df3ba3109797de0f93554"
NEUTRAL_OBJ = "generic_neutral_mesh.obj"
CONFIG_JSON = "vertex_indices.json"
NUM_IDENTITIES = 100
#: Expression OBJs in the release that `vertex_indices.json` does not list.
EXTRA_EXPRESSIONS = ("cheekRaiser_L", "cheekRaiser_R", "PupilDilate_L", "PupilDilate_R")

REGIONS = {
    "face": [0, 9409], "head_neck": [9409, 11248], "mouth_socket": [11248, 13294], "eye_socket_left": [13294, 13678],
    "eye_socket_right": [13678, 14062], "gums_tongue": [14062, 17039], "teeth": [17039, 21451],
    "eyeball_left": [21451, 23021], "eyeball_right": [23021, 24591], "lacrimal_fluid_left": [24591, 24795],
    "lacrimal_fluid_right": [24795, 24999], "eye_blend_left": [24999, 25023], "eye_blend_right": [25023, 25047],
    "eye_occlusion_left": [25047, 25199], "eye_occlusion_right": [25199, 25351], "eyelashes_left": [25351, 26035],
    "eyelashes_right": [26035, 26719],
}
REGION_FACES = {
    "face": [0, 9230], "head_neck": [9230, 11144], "mouth_socket": [11144, 13226], "eye_socket_left": [13226, 13630],
    "eye_socket_right": [13630, 14034], "gums_tongue": [14034, 17006], "teeth": [17006, 21496],
    "eyeball_left": [21496, 23094], "eyeball_right": [23094, 24692], "lacrimal_fluid_left": [24692, 24855],
    "lacrimal_fluid_right": [24855, 25018], "eye_blend_left": [25018, 25033], "eye_blend_right": [25033, 25048],
    "eye_occlusion_left": [25048, 25176], "eye_occlusion_right": [25176, 25304], "eyelashes_left": [25304, 25844],
    "eyelashes_right": [25844, 26384],
}
SUBREGIONS = {
    "face_narrow": [0, 6706], "sclera_left": [21451, 22221], "iris_left": [22221, 23021], "sclera_right": [23021, 23791],
    "iris_right": [23791, 24591], "teeth_upper": [17039, 19247], "teeth_lower": [19247, 21451],
}
JAWLINES = {
    "jawline_right_substitutes_68_0to7": [1278, 1272, 12, 1834, 243, 781, 2199, 1447],
    "jawline_left_substitutes_68_9to16": [3661, 4390, 3022, 2484, 4036, 2253, 3490, 3496],
    "jawline_right_extended": [1280, 1278, 1275, 1272, 1248, 12, 820, 1834, 1902, 243, 844, 781, 1673, 2199, 801, 1447, 800],
    "jawline_left_extended": [3041, 3661, 3042, 4390, 3880, 3022, 3085, 2484, 4102, 4036, 3061, 2253, 3466, 3490, 3493, 3496, 3498],
}
META = {
    "source": "https://github.com/ICT-VGL/ICT-FaceKit",
    "commit": UPSTREAM_COMMIT,
    "license": "MIT (Copyright (c) 2020 USC Institute for Creative Technologies)",
    "model": "ICT Face Model Light",
    "units": "centimetres (inferred)",
    "frame": "right-handed; +x = subject left, +y = up, +z = out of the face (towards a viewer in front)",
    "identity": "id_basis[k] = identity{k:03d}.obj - generic_neutral_mesh.obj; coefficients ~ N(0,1) (modes are PCA directions scaled to 1 std dev, inferred)",
    "expression": "exp_basis[j] = <exp_names[j]>.obj - generic_neutral_mesh.obj; weight 0..1 (ARKit style)",
    "reconstruct": "V = neutral + tensordot(id_coeffs, id_basis, 1) + tensordot(exp_weights, exp_basis, 1) (compute in float32)",
    "triangulation": "quad (a,b,c,d) -> (a,b,c),(a,c,d); triangles kept; faces_tri_src gives the source polygon",
    "uv": "OBJ vt as given (u spans 0..7: several UDIM-style tiles; v in 0..1)",
}
#: Arrays that define the model; `meta` is description only and not part of the digest.
_JSON_KEYS = ("regions", "region_faces", "subregions", "landmark_sets")


class ConversionError(ValueError):
    """The release is incomplete or not what this converter expects."""


@dataclass(frozen=True)
class ObjTopology:
    """What every OBJ of the release shares: texture coordinates, polygons, materials."""

    uv: np.ndarray  # (U, 2) float32
    faces: np.ndarray  # (F, 4) int32, 0-based, triangles padded with -1
    face_uv: np.ndarray  # (F, 4) int32
    face_material: np.ndarray  # (F,) int8
    material_names: tuple[str, ...]


class ReleaseFiles:
    """The `FaceXModel/` files of a release: an extracted folder or the GitHub zip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        if path.is_dir():
            folder = next((p for p in [path, path / "FaceXModel", *path.glob("*/FaceXModel")] if (p / NEUTRAL_OBJ).is_file()), None)
            if folder is None:
                raise ConversionError(f"{path}: no {NEUTRAL_OBJ} in it or in a FaceXModel/ folder")
            self._folder = folder
            return
        try:
            self._zip = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ConversionError(f"{path}: not a readable zip archive ({exc})") from exc
        for member in self._zip.namelist():
            parts = member.split("/")
            if len(parts) >= 2 and parts[-2] == "FaceXModel" and parts[-1]:
                self._members[parts[-1]] = member
        if NEUTRAL_OBJ not in self._members:
            raise ConversionError(f"{path}: no FaceXModel/{NEUTRAL_OBJ} in the archive")

    def __contains__(self, name: str) -> bool:
        return name in self._members if self._zip else (self._folder / name).is_file()

    def text(self, name: str) -> str:
        try:
            if self._zip is not None:
                return self._zip.read(self._members[name]).decode("utf-8")
            return (self._folder / name).read_text(encoding="utf-8")
        except (KeyError, FileNotFoundError):
            raise ConversionError(f"{self.path}: FaceXModel/{name} is missing") from None
        except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
            raise ConversionError(f"{self.path}: cannot read FaceXModel/{name} ({exc})") from exc

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _lines(text: str, prefix: str) -> list[str]:
    return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]


def parse_vertices(text: str, where: str) -> np.ndarray:
    """The `v x y z` lines of an OBJ as (V, 3) float64."""
    try:
        values = np.array(" ".join(_lines(text, "v ")).split(), np.float64)
        return values.reshape(-1, 3)
    except ValueError as exc:
        raise ConversionError(f"{where}: malformed vertex lines ({exc})") from exc


def _parse_faces(text: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    faces, face_uv = [], []
    for line in _lines(text, "f "):
        corners = [c.split("/") for c in line.split()]
        if len(corners) not in (3, 4) or any(len(c) < 2 for c in corners):
            raise ConversionError(f"{where}: polygon 'f {line}' is not a triangle or quad with v/vt corners")
        pad = [0] * (4 - len(corners))
        faces.append([int(c[0]) for c in corners] + pad)
        face_uv.append([int(c[1]) for c in corners] + pad)
    return np.array(faces, np.int32) - 1, np.array(face_uv, np.int32) - 1


def parse_topology(text: str, where: str) -> ObjTopology:
    """Texture coordinates, polygons (0-based) and `usemtl` groups of an OBJ."""
    uv = np.array(" ".join(_lines(text, "vt ")).split(), np.float64).astype(np.float32).reshape(-1, 2)
    faces, face_uv = _parse_faces(text, where)
    names: list[str] = []
    material = np.empty(len(faces), np.int8)
    current, count = -1, 0
    for line in text.splitlines():
        if line.startswith("usemtl "):
            name = line.split(None, 1)[1].strip()
            if name not in names:
                names.append(name)
            current = names.index(name)
        elif line.startswith("f "):
            material[count] = current
            count += 1
    if current < 0 or material.min() < 0:
        raise ConversionError(f"{where}: polygons before the first usemtl")
    return ObjTopology(uv, faces, face_uv, material, tuple(names))


def _triangulate(faces: np.ndarray, face_uv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    quads = faces[:, 3] >= 0
    index = np.arange(len(faces))
    # (a,b,c) for every polygon, then (a,c,d) for quads, interleaved in file order
    first, second = faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]
    first_uv, second_uv = face_uv[:, [0, 1, 2]], face_uv[:, [0, 2, 3]]
    order = np.argsort(np.concatenate([index * 2, index[quads] * 2 + 1]), kind="stable")
    tri = np.concatenate([first, second[quads]])[order]
    tri_uv = np.concatenate([first_uv, second_uv[quads]])[order]
    src = np.concatenate([index, index[quads]])[order]
    return tri.astype(np.int32), tri_uv.astype(np.int32), src.astype(np.int32)


def convert(files: ReleaseFiles, identities: Iterable[int] = range(NUM_IDENTITIES),
            expressions: Iterable[str] | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """The compact file's arrays from a release. `identities` and `expressions`
    pick the morph targets (default: all 100 and the 53 official + 4 extra)."""
    config = json.loads(files.text(CONFIG_JSON))
    official = list(config["expressions"])
    names = official + list(EXTRA_EXPRESSIONS) if expressions is None else list(expressions)
    neutral_text = files.text(NEUTRAL_OBJ)
    neutral = parse_vertices(neutral_text, NEUTRAL_OBJ)
    topology = parse_topology(neutral_text, NEUTRAL_OBJ)
    targets = [f"identity{k:03d}" for k in identities] + names
    deltas = np.empty((len(targets), *neutral.shape), np.float16)
    for i, target in enumerate(tqdm(targets, desc="ICT-FaceKit", unit="mesh", file=sys.stderr, disable=not progress)):
        name = f"{target}.obj"
        text = files.text(name)
        vertices = parse_vertices(text, name)
        if vertices.shape != neutral.shape:
            raise ConversionError(f"{files.path}: {name} has {len(vertices)} vertices, the neutral mesh {len(neutral)}")
        faces, face_uv = _parse_faces(text, name)
        if not (np.array_equal(faces, topology.faces) and np.array_equal(face_uv, topology.face_uv)):
            raise ConversionError(f"{files.path}: {name} does not share the neutral mesh's polygons")
        deltas[i] = (vertices - neutral).astype(np.float16)
    n_id = len(targets) - len(names)
    tri, tri_uv, tri_src = _triangulate(topology.faces, topology.face_uv)
    landmarks = [int(i) for i in config["idx_to_landmark_verts"]]
    sets = {"multipie68": landmarks, "rigid_landmark_idx_into_68": [int(i) for i in config["idx_to_rigid_landmark_idx"]], **JAWLINES}
    return {
        "neutral": neutral.astype(np.float32),
        "id_basis": deltas[:n_id],
        "exp_basis": deltas[n_id:],
        "exp_names": np.array(names),
        "exp_official": np.array([n in official for n in names]),
        "faces": topology.faces,
        "faces_tri": tri,
        "faces_tri_src": tri_src,
        "uv": topology.uv,
        "face_uv": topology.face_uv,
        "faces_tri_uv": tri_uv,
        "face_material": topology.face_material,
        "material_names": np.array(topology.material_names),
        "landmarks68": np.array(landmarks, np.int32),
        "regions": np.array(json.dumps(REGIONS)),
        "region_faces": np.array(json.dumps(REGION_FACES)),
        "subregions": np.array(json.dumps(SUBREGIONS)),
        "landmark_sets": np.array(json.dumps(sets)),
        "fitting_verts": np.array(config["idx_to_fitting_verts"], np.int32),
        "rigid_verts": np.array(config["idx_to_rigid_verts"], np.int32),
        "lap_rigid_verts": np.array(config["idx_to_lap_rigid_verts"], np.int32),
        "meta": np.array(json.dumps(META)),
    }


def content_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over every array but `meta`: name, dtype, shape and bytes (JSON tables
    by their parsed content), so equal models give equal digests whatever the file."""
    digest = hashlib.sha256()
    for key in sorted(k for k in arrays if k != "meta"):
        a = np.asarray(arrays[key])
        if key in _JSON_KEYS:
            payload = json.dumps(json.loads(str(a)), sort_keys=True, separators=(",", ":")).encode()
        else:
            a = np.ascontiguousarray(a)
            payload = f"{a.dtype.str}{a.shape}".encode() + a.tobytes()
        digest.update(key.encode() + b"\0" + hashlib.sha256(payload).digest())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """`content_digest` of a compact .npz file; ValueError when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return content_digest({k: data[k] for k in data.files})
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz ({exc})") from exc


def is_known_good(path: Path) -> bool:
    """Whether a compact file holds exactly the reference model."""
    try:
        return file_digest(path) == COMPACT_DIGEST
    except ValueError:
        return False


def write_compact(arrays: Mapping[str, np.ndarray], out: Path) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    out.write_bytes(buffer.getvalue())


def build_compact(archive: Path, out: Path, progress: bool = True, *, identities: Iterable[int] = range(NUM_IDENTITIES),
                  expressions: Iterable[str] | None = None) -> None:
    """The model store's build step: release archive (or folder) -> compact file."""
    files = ReleaseFiles(archive)
    try:
        write_compact(convert(files, identities, expressions, progress), out)
    finally:
        files.close()
