"""The ICT-FaceKit 3D morphable face model: loading, the tracker mapping, fast posing.

The model is purely additive (`V = neutral + id_basis·a + exp_basis·w`, in cm,
y up, +z out of the face, +x the subject's left). `FaceModel` holds the whole
model and evaluates any identity and expression on any vertex subset: this is
what identity fitting needs. `FaceRig` is the per-frame path of one fixed
identity: the identity is folded into the rest mesh once, only the vertices
that are drawn are kept (the lacrimal, eye-blend and eye-occlusion shells are
helper geometry for Unreal's eye shaders and would show as grey films), and
only those an expression can move take part in the matrix product.

MediaPipe's 52 scores map onto ICT's 53 official shapes (`MEDIAPIPE_TO_ICT`):
`browInnerUp` and `cheekPuff` drive both sides, `jawLeft/Right` and
`mouthLeft/Right` are directions (not sides) and keep their names, and
`mouthClose`, a corrective for an open jaw, is capped by `jawOpen` (alone it
pushes the lips through each other). `eyeLook*` move the lids only; `FaceRig`
turns the eyeballs rigidly about a sphere fitted to each sclera.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .eye_aim import aimed_axis, opening_direction
from .eyelid_closure import lid_correction
from .face_state import BLENDSHAPE_NAMES, NUM_BLENDSHAPES
from .gaze import gaze_rotations

NUM_IDENTITY = 100
NUM_VERTICES = 26719

#: Materials whose polygons are never drawn (see the module docstring). The iris
#: is a second sphere inside each sclera shell, made for a refracting eye shader:
#: under an opaque shell it never shows, so the shell itself carries the iris.
HIDDEN_MATERIALS = ("M_LacrimalFluid", "M_EyeBlend", "M_EyeOcclusion", "M_IrisLeft", "M_IrisRight")
#: Region names of the two eyeballs, [0] the subject's right (-x), [1] left (+x),
#: the order of `gaze.gaze_rotations`. Drawn: the sclera shell of each.
EYEBALL_REGIONS = ("eyeball_right", "eyeball_left")
IRIS_SUBREGIONS = ("iris_right", "iris_left")
SCLERA_SUBREGIONS = ("sclera_right", "sclera_left")
#: The blink of each eye, in the same order.
BLINKS = ("eyeBlink_R", "eyeBlink_L")
#: An expression delta smaller than this (cm) anywhere on a vertex leaves it static.
_MOVING_EPS = 1e-5

_REQUIRED = {
    "neutral": (np.float32, (NUM_VERTICES, 3)),
    "id_basis": (np.floating, (NUM_IDENTITY, NUM_VERTICES, 3)),  # float16 in the compact file, float32 prepared
    "exp_basis": (np.floating, (None, NUM_VERTICES, 3)),
    "exp_names": (np.str_, (None,)),
    "faces_tri": (np.int32, (None, 3)),
    "faces_tri_uv": (np.int32, (None, 3)),
    "faces_tri_src": (np.int32, (None,)),
    "uv": (np.float32, (None, 2)),
    "face_material": (np.int8, (None,)),
    "material_names": (np.str_, (None,)),
    "landmarks68": (np.int32, (68,)),
    "regions": (np.str_, ()),
    "subregions": (np.str_, ()),
}


def ict_names_for(mediapipe_name: str) -> tuple[str, ...]:
    """The ICT shapes one MediaPipe/ARKit score drives (empty for `tongueOut`)."""
    if mediapipe_name in ("browInnerUp", "cheekPuff"):
        return (f"{mediapipe_name}_L", f"{mediapipe_name}_R")
    if mediapipe_name in ("jawLeft", "jawRight", "mouthLeft", "mouthRight", "tongueOut"):
        return () if mediapipe_name == "tongueOut" else (mediapipe_name,)
    for side, suffix in (("Left", "_L"), ("Right", "_R")):
        if mediapipe_name.endswith(side):
            return (mediapipe_name[: -len(side)] + suffix,)
    return (mediapipe_name,)


@dataclass(frozen=True, eq=False)
class FaceModel:
    """ICT-FaceKit Light, loaded once (`load_face_model`), float32 throughout.

    Arrays are read-only views of the file's data; vertex indices are shared by
    every array (`neutral`, the bases, `landmarks68`, `regions`).
    """

    neutral: np.ndarray  # (V, 3) float32, cm
    id_basis: np.ndarray  # (100, V, 3) float32: +1 standard deviation per mode
    exp_basis: np.ndarray  # (E, V, 3) float32, E = 57: the 53 official shapes then 4 extras
    exp_names: tuple[str, ...]  # (E,) ICT names (eyeBlink_L, jawOpen, ...)
    triangles: np.ndarray  # (T, 3) int32 vertex indices, counter-clockwise from outside
    triangle_uv: np.ndarray  # (T, 3) int32 indices into `uv`, per corner
    triangle_material: np.ndarray  # (T,) int8 index into `material_names`
    uv: np.ndarray  # (U, 2) float32; each material has its own unit tile: u in [k, k+1)
    material_names: tuple[str, ...]
    landmarks68: np.ndarray  # (68,) int32 vertices of the Multi-PIE / iBUG 68 points
    regions: dict[str, tuple[int, int]]  # half-open vertex ranges, README names
    subregions: dict[str, tuple[int, int]]  # sclera/iris per eye, upper/lower teeth, face_narrow
    exp_index: dict[str, int] = field(init=False)
    mediapipe_to_ict: np.ndarray = field(init=False)  # (E, 52): ICT weights = this @ MediaPipe scores

    def __post_init__(self) -> None:
        index = {n: i for i, n in enumerate(self.exp_names)}
        mapping = np.zeros((len(self.exp_names), NUM_BLENDSHAPES), np.float32)
        for j, name in enumerate(BLENDSHAPE_NAMES):
            for ict in ict_names_for(name):
                mapping[index[ict], j] = 1.0
        mapping.setflags(write=False)
        object.__setattr__(self, "exp_index", index)
        object.__setattr__(self, "mediapipe_to_ict", mapping)

    @property
    def num_vertices(self) -> int:
        return len(self.neutral)

    @property
    def num_expressions(self) -> int:
        return len(self.exp_names)

    def evaluate(self, identity: np.ndarray | None = None, expressions: np.ndarray | None = None,
                 vertices: np.ndarray | None = None) -> np.ndarray:
        """Vertex positions (cm) for identity coefficients (up to 100, ~N(0, 1)) and
        expression weights (`exp_names` order, 0..1): all vertices, or only the
        indices in `vertices` (cheap for a few landmarks). No eyeball rotation.
        """
        idx = slice(None) if vertices is None else np.asarray(vertices, np.intp)
        out = self.neutral[idx].copy()
        if identity is not None:
            a = np.asarray(identity, np.float32)
            out += np.tensordot(a, self.id_basis[: len(a), idx], axes=1)
        if expressions is not None:
            w = np.asarray(expressions, np.float32)
            out += np.tensordot(w, self.exp_basis[: len(w), idx], axes=1)
        return out

    def landmark_positions(self, identity: np.ndarray | None = None, expressions: np.ndarray | None = None) -> np.ndarray:
        """(68, 3) positions of the Multi-PIE landmarks (for fitting)."""
        return self.evaluate(identity, expressions, self.landmarks68)

    def region_vertices(self, name: str) -> np.ndarray:
        """Vertex indices of a region or subregion (`regions`/`subregions` names)."""
        start, end = self.regions.get(name) or self.subregions[name]
        return np.arange(start, end)

    def expression_weights(self, blendshapes: np.ndarray, most: float = 1.0) -> np.ndarray:
        """(52,) MediaPipe scores (`BLENDSHAPE_NAMES` order) -> (E,) ICT weights in [0, `most`]. `most` over 1 lets a
        caller that calibrates its scores pose a shape past the model's full weight (`expression_response.REACH`)."""
        w = self.mediapipe_to_ict @ np.clip(np.asarray(blendshapes, np.float32), 0.0, most)
        jaw, close = self.exp_index["jawOpen"], self.exp_index["mouthClose"]
        w[close] = min(w[close], w[jaw])
        return w


def load_face_model(path: Path) -> FaceModel:
    """Read `ict_facekit_compact.npz`, or a prepared copy of it (`write_prepared_face_model`);
    raises ValueError naming the file when it is unusable."""
    return face_model_from_arrays(path, read_face_model_arrays(path))


#: Prepared arrays larger than this are memory-mapped, not read.
_MAP_BYTES = 1 << 20


def read_face_model_arrays(path: Path) -> dict[str, np.ndarray]:
    """The model's arrays, checked for presence, dtype and shape: from the compact
    `.npz`, or from a folder of `.npy` files of the same names (a prepared copy)."""
    try:
        if path.is_dir():
            files = {p.stem: p for p in path.glob("*.npy")}
            data = {k: np.load(f, mmap_mode="r" if f.stat().st_size > _MAP_BYTES else None, allow_pickle=False)
                    for k, f in files.items() if k in _REQUIRED}
        else:
            with np.load(path, allow_pickle=False) as npz:
                data = {k: npz[k] for k in npz.files if k in _REQUIRED}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read the face model ({exc})") from exc
    arrays = {}
    for key, (dtype, shape) in _REQUIRED.items():
        if key not in data:
            raise ValueError(f"{path}: not an ICT-FaceKit compact file (no {key!r} array)")
        a = np.asarray(data[key])  # a plain view of a memory map
        if not np.issubdtype(a.dtype, dtype) or a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape)):
            raise ValueError(f"{path}: {key} has dtype {a.dtype} and shape {a.shape}, expected {np.dtype(dtype).name} {shape}")
        arrays[key] = a
    return arrays


def write_prepared_face_model(arrays: dict[str, np.ndarray], folder: Path) -> None:
    """Write `read_face_model_arrays`' result as a prepared copy: uncompressed, bases
    float32, so loading it maps the files instead of inflating and converting ~50 MB
    (0.35 s, on every process's first face-model avatar)."""
    folder.mkdir(parents=True)
    for key, a in arrays.items():
        np.save(folder / f"{key}.npy", a.astype(np.float32) if key in ("id_basis", "exp_basis") else a, allow_pickle=False)


def face_model_from_arrays(path: Path, a: dict[str, np.ndarray]) -> FaceModel:
    exp_names = tuple(str(n) for n in a["exp_names"])
    materials = tuple(str(n) for n in a["material_names"])
    src = a["faces_tri_src"]
    tri = a["faces_tri"]
    try:
        regions = {k: (int(s), int(e)) for k, (s, e) in json.loads(str(a["regions"])).items()}
        subregions = {k: (int(s), int(e)) for k, (s, e) in json.loads(str(a["subregions"])).items()}
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: regions are not valid JSON ranges ({exc})") from exc
    problems = []
    if len(a["exp_basis"]) != len(exp_names):
        problems.append(f"{len(a['exp_basis'])} expression shapes but {len(exp_names)} names")
    missing = {n for mp in BLENDSHAPE_NAMES for n in ict_names_for(mp)} - set(exp_names)
    if missing:
        problems.append(f"expressions {', '.join(sorted(missing))} are missing")
    if not (len(tri) == len(a["faces_tri_uv"]) == len(src)):
        problems.append("triangle arrays differ in length")
    if tri.min() < 0 or tri.max() >= NUM_VERTICES or a["faces_tri_uv"].max() >= len(a["uv"]) or src.max() >= len(a["face_material"]):
        problems.append("triangle indices out of range")
    if a["face_material"].max() >= len(materials) or not set(HIDDEN_MATERIALS) <= set(materials):
        problems.append("material table does not match")
    needed = set(EYEBALL_REGIONS) | {"face"}
    if not needed <= set(regions) or not set(IRIS_SUBREGIONS) | set(SCLERA_SUBREGIONS) <= set(subregions):
        problems.append("region table is incomplete")
    if problems:
        raise ValueError(f"{path}: not a usable ICT-FaceKit model ({'; '.join(problems)})")

    def frozen(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)
        x.setflags(write=False)
        return x

    return FaceModel(
        neutral=frozen(np.asarray(a["neutral"], np.float32)),  # no copy when already float32 (a prepared copy's maps)
        id_basis=frozen(np.asarray(a["id_basis"], np.float32)),
        exp_basis=frozen(np.asarray(a["exp_basis"], np.float32)),
        exp_names=exp_names,
        triangles=frozen(tri),
        triangle_uv=frozen(a["faces_tri_uv"]),
        triangle_material=frozen(a["face_material"][src]),
        uv=frozen(a["uv"]),
        material_names=materials,
        landmarks68=frozen(a["landmarks68"]),
        regions=regions,
        subregions=subregions,
    )


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere (centre, radius) through points: |p|² = 2c·p + (r² − |c|²)."""
    p = points.astype(np.float64)
    a = np.c_[2 * p, np.ones(len(p))]
    sol, *_ = np.linalg.lstsq(a, np.einsum("ij,ij->i", p, p), rcond=None)
    centre = sol[:3]
    return centre.astype(np.float32), float(np.sqrt(sol[3] + centre @ centre))


def eye_spheres(model: FaceModel, rest: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per eye of a face at `rest` (V, 3): the eyeball's centre (2, 3), radius (2,) and the
    unit axis through the middle of its iris (2, 3), all float32."""
    pivots, radii, axes = np.empty((2, 3), np.float32), np.empty(2, np.float32), np.empty((2, 3), np.float32)
    for k, (sclera, iris) in enumerate(zip(SCLERA_SUBREGIONS, IRIS_SUBREGIONS)):
        pivots[k], radii[k] = fit_sphere(rest[model.region_vertices(sclera)])
        axis = rest[model.region_vertices(iris)].mean(axis=0) - pivots[k]
        axes[k] = axis / np.linalg.norm(axis)
    return pivots, radii, axes


@dataclass(frozen=True, eq=False)  # hashed by identity: rigs of one mesh share its expression basis
class RenderMesh:
    """The drawn part of the model as a GPU-ready indexed mesh.

    OBJ texture coordinates are per corner, so a vertex on a UV seam becomes one
    render vertex per (vertex, uv) pair; `source` maps each back to the model.
    Render vertices are ordered: those expressions move (`moving` of them)
    first, then the static rest; each eyeball is one contiguous block.
    """

    source: np.ndarray  # (N,) int32 model vertex of each render vertex
    uv: np.ndarray  # (N, 2) float32, tile-local: u, v in [0, 1]
    tile: np.ndarray  # (N,) int8 the UV tile (= material group: 0 face skin, 1 back of head, ...)
    material: np.ndarray  # (N,) int8 index into `FaceModel.material_names`
    triangles: np.ndarray  # (T, 3) int32 into render vertices, counter-clockwise from outside
    moving: int  # render vertices [0, moving) are the ones expressions can move
    eyeballs: tuple[tuple[int, int], tuple[int, int]]  # render-vertex ranges (sclera shells), right eye then left

    def with_triangles(self, triangles: np.ndarray) -> "RenderMesh":
        """The same mesh drawn with other triangles over its vertices (a simplified
        version): unused vertices are dropped, the order and blocks are kept."""
        used = np.zeros(len(self.source), bool)
        used[triangles.ravel()] = True
        new_index = np.cumsum(used) - 1
        kept = np.cumsum(used)  # kept[i] = used vertices in [0, i]

        def count_before(i: int) -> int:
            return int(kept[i - 1]) if i > 0 else 0

        return RenderMesh(
            source=self.source[used],
            uv=self.uv[used],
            tile=self.tile[used],
            material=self.material[used],
            triangles=new_index[triangles].astype(np.int32),
            moving=count_before(self.moving),
            eyeballs=tuple((count_before(a), count_before(b)) for a, b in self.eyeballs),  # type: ignore[arg-type]
        )


def build_render_mesh(model: FaceModel) -> RenderMesh:
    hidden = [model.material_names.index(n) for n in HIDDEN_MATERIALS]
    keep = ~np.isin(model.triangle_material, hidden)
    tris, tri_uv, tri_mat = model.triangles[keep], model.triangle_uv[keep], model.triangle_material[keep]
    pairs = np.stack([tris.ravel(), tri_uv.ravel()], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    corner_material = np.repeat(tri_mat, 3)
    material = np.empty(len(unique), np.int8)
    material[inverse.ravel()] = corner_material
    source = unique[:, 0]

    moves = np.abs(model.exp_basis).max(axis=(0, 2)) > _MOVING_EPS
    eye_block = np.full(model.num_vertices, 0, np.int64)
    for k, name in enumerate(EYEBALL_REGIONS):
        start, end = model.regions[name]
        eye_block[start:end] = k + 1
    # moving first, then static non-eye vertices, then the right eyeball, then the left
    group = np.where(moves[source], 0, np.where(eye_block[source] > 0, 1 + eye_block[source], 1))
    order = np.lexsort((source, group))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    source, material, uv_index = source[order], material[order], unique[order, 1]
    group = group[order]
    uv = model.uv[uv_index]
    tile = np.floor(uv[:, 0]).astype(np.int8)
    eyeballs = tuple((int(np.searchsorted(group, g)), int(np.searchsorted(group, g, side="right"))) for g in (2, 3))
    return RenderMesh(
        source=source.astype(np.int32),
        uv=np.c_[uv[:, 0] - tile, uv[:, 1]].astype(np.float32),
        tile=tile,
        material=material,
        triangles=rank[inverse.reshape(-1, 3)].astype(np.int32),
        moving=int(np.count_nonzero(group == 0)),
        eyeballs=eyeballs,  # type: ignore[arg-type]
    )


@lru_cache(maxsize=4)
def moving_basis(model: FaceModel, mesh: RenderMesh) -> np.ndarray:
    """The expression basis over the mesh's moving render vertices, (E, 3·moving),
    read-only: gathering it from the model takes ~10 ms, and every rig of the same
    model and mesh (every face-model avatar build) needs the same one."""
    src = mesh.source[: mesh.moving]
    basis = np.ascontiguousarray(model.exp_basis[:, src].reshape(model.num_expressions, -1))
    basis.setflags(write=False)
    return basis


@lru_cache(maxsize=4)
def skin_vertices(model: FaceModel) -> np.ndarray:
    """(V,) bool, read-only: the vertices of the face's skin (material M_Face), where the
    lids' margins are looked for; the same for every rig of the model."""
    skin = np.zeros(model.num_vertices, bool)
    skin[model.triangles[model.triangle_material == model.material_names.index("M_Face")]] = True
    skin.setflags(write=False)
    return skin


class FaceRig:
    """One identity, posed per frame: `pose(blendshapes)` -> render-vertex positions.

    The identity is folded into the rest positions once; per frame it costs one
    (E × 3·moving) matrix-vector product and two small rigid rotations.
    """

    def __init__(self, model: FaceModel, identity: np.ndarray | None = None, mesh: RenderMesh | None = None) -> None:
        self.model = model
        self.mesh = mesh or build_render_mesh(model)
        self.identity = np.zeros(NUM_IDENTITY, np.float32) if identity is None else np.asarray(identity, np.float32)
        if self.identity.ndim != 1 or len(self.identity) > NUM_IDENTITY or not np.all(np.isfinite(self.identity)):
            raise ValueError(f"identity coefficients must be a finite vector of at most {NUM_IDENTITY} values")
        src = self.mesh.source
        # One pass over the identity basis (~30 MB), none for the mean face: this runs on every avatar switch.
        full_rest = model.evaluate(self.identity if self.identity.any() else None)
        self.rest = full_rest[src]  # (N, 3)
        self._basis = moving_basis(model, self.mesh)
        self._out = np.empty_like(self.rest)
        skin = skin_vertices(model)
        self.eye_pivots, self.eye_radius, self.eye_axes = eye_spheres(model, full_rest)
        if self.identity.any():  # the mean face's eyes are the reference: see eye_aim
            mean_rest = model.evaluate()
            for k, (pivot, radius, axis) in enumerate(zip(*eye_spheres(model, mean_rest))):
                self.eye_axes[k] = aimed_axis(self.eye_axes[k], opening_direction(full_rest, self.eye_pivots[k], float(self.eye_radius[k]), skin),
                                              axis, opening_direction(mean_rest, pivot, float(radius), skin))
        # (blink weight index, render vertices, displacement at weight 1) per eye: see eyelid_closure.
        self._lid_fixes: list[tuple[int, np.ndarray, np.ndarray]] = []
        moving_src = src[: self.mesh.moving]
        for k, blink in enumerate(BLINKS):
            e = model.exp_index[blink]
            fix = lid_correction(full_rest, model.exp_basis[e], self.eye_pivots[k], float(self.eye_radius[k]), skin)
            row = np.full(model.num_vertices, -1)
            row[fix.vertices] = np.arange(len(fix.vertices))
            render = np.flatnonzero(row[moving_src] >= 0)
            self._lid_fixes.append((e, render, fix.delta[row[moving_src[render]]]))

    def pose(self, weights: np.ndarray, eye_rotations: np.ndarray | None = None) -> np.ndarray:
        """ICT weights (`FaceModel.expression_weights`) and optional (2, 3, 3) gaze
        rotations (`gaze.gaze_rotations`) -> (N, 3) float32 positions in render-vertex
        order. The returned array is reused by the next call.
        """
        out, n = self._out, self.mesh.moving
        # einsum, not BLAS: a multithreaded sgemv this size leaves OpenBLAS threads
        # spinning, which starves the rasterizer's (and the tracker's) threads.
        np.einsum("j,jk->k", np.asarray(weights, np.float32), self._basis, out=out[:n].reshape(-1))
        out[:n] += self.rest[:n]
        for e, vertices, delta in self._lid_fixes:
            if weights[e]:
                out[vertices] += np.float32(weights[e]) * delta
        out[n:] = self.rest[n:]
        if eye_rotations is not None:
            for k, (start, end) in enumerate(self.mesh.eyeballs):
                pivot = self.eye_pivots[k]
                out[start:end] = (self.rest[start:end] - pivot) @ eye_rotations[k].T.astype(np.float32) + pivot
        return out

    def pose_blendshapes(self, blendshapes: np.ndarray) -> np.ndarray:
        """The same from MediaPipe's (52,) scores, eyes turned by the gaze scores."""
        return self.pose(self.model.expression_weights(blendshapes), gaze_rotations(blendshapes))
