"""The 3DMM avatar: ICT-FaceKit posed by the tracked blendshapes, rasterized with OpenGL.

Per frame the CPU only blends the expression bases (`FaceRig`, ~1 ms) and
uploads the vertex positions as a float texture. The vertex shader fetches its
position by `gl_VertexID` and builds its normal from the triangles around it
(one-ring cross products over a static adjacency texture), so no normals are
computed on the CPU. A simplified mesh (`facekit_lod`) keeps the triangle count
low enough for a software rasterizer.

Everything static is baked at start-up: ambient occlusion (rest pose and open
jaw, so the teeth are lit when they show), the painted albedo of the face
(`facekit_paint`, or the look's `texture`) and the colours of the other
materials. The eyeballs turn with the gaze scores, and the iris and pupil are
drawn on the sclera shell from each vertex's direction in its eye's rest frame.

Framing, lights, backdrop and MSAA crop are the mask's (`scene`).
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache
from typing import Callable, Sequence

import cv2
import moderngl
import numpy as np

from .face_model import FaceModel, FaceRig, RenderMesh, moving_basis
from .face_state import FaceState
from .facekit_bake import ambient_occlusion, uv_position_map
from .facekit_lod import simplified_render_mesh
from .facekit_looks import FACEKIT_LOOKS, STYLES, FaceLook
from .facekit_paint import eye_image, face_texture, hair_over_texture, vertex_albedo
from .gaze import gaze_rotations
from .gl_context import create_headless_context, mip_chain, mipmapped_texture, pack_mip_chain, unpack_mip_chain
from .renderer import FaceRenderer
from .scene import (
    FOV_Y_DEG,
    LIGHTING_GLSL,
    CropBuffer,
    HeadFollower,
    framing_distance,
    gl_matrix,
    perspective,
    render_backdrop,
    set_lights,
    to_pixels,
)

HEAD_FRACTION = 0.52  # crown-to-chin height / frame height
HEADROOM = 0.04  # head centre this far (fraction of frame height) above the frame centre
#: The head turns about the top of the neck, not about the model's origin.
NECK_PIVOT = np.array([0.0, -5.0, -1.5], np.float32)
#: The neck fades out over this range of rest heights (cm), so its cut end never shows.
NECK_FADE = (-16.5, -12.0)
#: The atlas holds the face's albedo (its UV tile, TEXTURE_SIZE square) above a
#: band with the eyeball image (EYE_SIZE square, bottom left).
TEXTURE_SIZE = 1024
EYE_SIZE = 256
#: Mip levels of the atlas: down to 1/32 of its size, all a face of 32 px or more
#: samples. Each further level cost an upload round trip through the GIL on a
#: cold avatar switch (up to 50 ms in all while another avatar was rendering).
ATLAS_MIP_LEVELS = 6
PAINT_SIZE = 512  # the painted face is smooth: paint at this size and scale it up
_TEX_WIDTH = 1024
#: Upper and lower inner-lip landmarks (iBUG 68), facing pairs.
_INNER_LIPS = ((61, 62, 63), (67, 66, 65))
#: Lips further apart than at rest by less than this (cm) hide the teeth and gums.
MOUTH_CLOSED_MARGIN = 0.08
_BOUND_STRIDE = 7  # width of the per-frame position texture (vertex i at (i % W, i / W))
_KINDS = {"skin": 0, "teeth": 1, "mouth": 2, "eye": 3}

_FACE_VERTEX = (
    """
uniform sampler2D u_positions;
uniform isampler2D u_ring;
uniform mat4 u_projection;
uniform mat4 u_model;
uniform vec3 u_eye_pivot[2];
uniform float u_eye_radius;
uniform int u_style;  // 0 skin, 1 clay (2 toon is compiled with TOON defined)
uniform float u_specular;
uniform float u_gloss;
uniform float u_subsurface;
in ivec2 in_ring;  // start and count of this vertex's (next, previous) pairs in u_ring
in vec2 in_uv;  // in the atlas
in vec3 in_albedo;
in vec4 in_params;  // textured, occlusion, kind, alpha
in float in_eye;  // eye index, -1 elsewhere
out vec2 v_uv;
out vec3 v_albedo;
out vec3 v_light;  // reflected by the albedo
out vec3 v_added;  // added on top: highlights and rim
out vec2 v_material;  // textured, alpha
#ifdef TOON
out vec3 v_normal;  // for the bands and the ink, per pixel
out vec3 v_position;
#endif
"""
    + LIGHTING_GLSL
    + """
vec3 position(int i) {
    return texelFetch(u_positions, ivec2(i & 1023, i >> 10), 0).xyz;
}

void main() {
    vec3 p = position(gl_VertexID);
    vec3 n = vec3(0.0);
    for (int k = 0; k < in_ring.y; ++k) {
        int j = in_ring.x + k;
        ivec2 pair = texelFetch(u_ring, ivec2(j & 1023, j >> 10), 0).xy;
        n += cross(position(pair.x) - p, position(pair.y) - p);
    }
    vec4 world = u_model * vec4(p, 1.0);
    n = normalize(mat3(u_model) * n);
    vec3 v = normalize(-world.xyz);
    float occlusion = in_params.y;
    int kind = int(in_params.z + 0.5);
    bool eye = in_eye >= 0.0;
    if (eye) {  // the upper lid shades the eyeball
        vec3 rel = (p - u_eye_pivot[int(in_eye)]) / u_eye_radius;
        occlusion = mix(1.0, 0.4, smoothstep(0.0, 0.7, rel.y));
    }
    if (dot(n, v) < 0.0) n = -n;  // the mouth's inside, seen from behind its surface
    float ao = occlusion * occlusion;
    float nh = max(dot(n, normalize(KEY_DIR + v)), 0.0);
    float edge = 1.0 - max(dot(n, v), 0.0);
    float fresnel = 0.04 + 0.96 * edge * edge * edge * edge * edge;
    float specular = eye ? 1.2 : (kind == 2 ? 0.3 : u_specular);
#ifdef TOON  // flat fill here; banded key light and ink per pixel
    v_light = 0.45 * mix(u_ground, u_sky, 0.5 + 0.5 * n.y) * mix(0.6, 1.0, smoothstep(0.3, 0.8, occlusion));
    v_added = vec3(specular);  // the fragment shader turns it into a crisp highlight
    v_normal = n;
    v_position = world.xyz;
#else
    v_light = u_key * key_light(n) * mix(0.35, 1.0, occlusion) + soft_light(n) * ao;
    if (u_style == 0 && kind == 0) {  // light scattered under the skin warms the terminator
        float wrap = max((dot(n, KEY_DIR) + 0.5) / 1.5, 0.0) - max(dot(n, KEY_DIR), 0.0);
        v_light += u_subsurface * u_key * vec3(0.55, 0.18, 0.1) * wrap * occlusion;
    }
    v_added = rim_light(n, v) * occlusion * (kind == 0 ? 1.0 : 0.3)
            + u_key * specular * (0.25 + fresnel) * occlusion * power(nh, eye ? 200.0 : u_gloss);
#endif
    v_material = vec2(in_params.x, in_params.w);
    v_uv = in_uv;
    v_albedo = in_albedo;
    gl_Position = u_projection * world;
}
"""
)

_FACE_FRAGMENT = (
    """
uniform sampler2D u_atlas;
uniform float u_gloss;
uniform float u_outline;
in vec2 v_uv;
in vec3 v_albedo;
in vec3 v_light;
in vec3 v_added;
in vec2 v_material;
#ifdef TOON
in vec3 v_normal;
in vec3 v_position;
#endif
out vec4 f_color;
"""
    + LIGHTING_GLSL
    + """
void main() {
    vec3 t = texture(u_atlas, v_uv).rgb;
    vec3 albedo = mix(v_albedo, t * t, v_material.x);
#ifdef TOON  // bands of key light, a crisp highlight, ink at the silhouette
    vec3 c;
    {
        vec3 n = normalize(v_normal);
        vec3 v = normalize(-v_position);
        float key = key_light(n);
        float band = smoothstep(0.33, 0.37, key) * 0.45 + 0.55;
        c = albedo * (u_key * band + v_light);
        c += u_key * v_added * 0.6 * smoothstep(0.95, 0.97, power(max(dot(n, normalize(KEY_DIR + v)), 0.0), u_gloss));
        c = mix(c, vec3(0.02, 0.015, 0.02), (1.0 - smoothstep(0.2, 0.38, dot(n, v))) * u_outline);
    }
#else
    vec3 c = albedo * v_light + v_added;
#endif
    f_color = vec4(to_display(c) * v_material.y, v_material.y);  // premultiplied, as the crop buffer resolves it
}
"""
)


#: `bake(name, inputs, compute)`: `compute()`, or a result kept from an earlier call
#: with equal `inputs` (arrays and strings that determine it). The daemon passes one
#: backed by the user cache, so the static bakes of a look are computed once per machine.
Bake = Callable[[str, Sequence["np.ndarray | str"], Callable[[], np.ndarray]], np.ndarray]


def compute_now(name: str, inputs: Sequence[np.ndarray | str], compute: Callable[[], np.ndarray]) -> np.ndarray:
    return compute()


def _look_key(look: FaceLook) -> str:
    """Everything about a look that its static bakes depend on (the backdrop is drawn live)."""
    return repr([(f.name, getattr(look, f.name)) for f in dataclasses.fields(look) if f.name not in ("texture", "background")])


def _ring_pairs(mesh: RenderMesh) -> tuple[np.ndarray, np.ndarray]:
    """For each render vertex, the (next, previous) corners of every triangle around
    its model vertex (all its UV-seam copies): a normal with no seam."""
    t = mesh.triangles
    corner_source = mesh.source[t].ravel()
    nxt, prv = np.roll(t, -1, axis=1).ravel(), np.roll(t, 1, axis=1).ravel()
    order = np.argsort(corner_source, kind="stable")
    n_model = int(mesh.source.max()) + 1
    counts = np.bincount(corner_source, minlength=n_model)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pairs = np.stack([nxt[order], prv[order]], axis=1).astype(np.int32)
    ring = np.stack([starts[mesh.source], counts[mesh.source]], axis=1).astype(np.int32)
    return ring, pairs


def _drawing_order(model: FaceModel, mesh: RenderMesh) -> tuple[RenderMesh, int]:
    """The mesh with the teeth and gums drawn last, and how many triangles they
    are: with closed lips nothing of them shows, and they need not be drawn."""
    names = np.array(model.material_names)[mesh.material[mesh.triangles[:, 0]]]
    inside = np.isin(names, ("M_Teeth", "M_GumsTongue"))
    return mesh.with_triangles(np.concatenate([mesh.triangles[~inside], mesh.triangles[inside]])), int(inside.sum())


def _without_lower_neck(model: FaceModel, mesh: RenderMesh) -> RenderMesh:
    """Drop the triangles that the neck fade makes invisible."""
    y = model.neutral[mesh.source, 1]
    return mesh.with_triangles(mesh.triangles[np.any(y[mesh.triangles] > NECK_FADE[0], axis=1)])


@lru_cache(maxsize=4)
def _drawn_mesh(model: FaceModel, mesh: RenderMesh) -> tuple[RenderMesh, int]:
    """`mesh` as drawn (`_without_lower_neck`, `_drawing_order`): one object per
    model and mesh, so every face-model avatar of a process shares its rig's
    expression basis (`moving_basis`, ~10 ms per build otherwise)."""
    return _drawing_order(model, _without_lower_neck(model, mesh))


def prepare_shared(model: FaceModel, mesh: RenderMesh) -> None:
    """Compute ahead what every `FaceKitRenderer` of this model and mesh shares (the
    drawn mesh, the rig's expression basis): the daemon does it at a quiet moment,
    and the first face-model avatar it switches to then builds as fast as later ones
    (it paid 50-110 ms more on the 2-core VM)."""
    moving_basis(model, _drawn_mesh(model, mesh)[0])


def _texture_rows(count: int) -> int:
    return (count + _TEX_WIDTH - 1) // _TEX_WIDTH


def _eye_frames(rig: FaceRig) -> list[np.ndarray]:
    """Per eye, a rotation whose rows are the eye's x, y and z (gaze) axes at rest."""
    frames = []
    for axis in rig.eye_axes:
        x = np.cross((0.0, 1.0, 0.0), axis)
        x /= np.linalg.norm(x)
        frames.append(np.stack([x, np.cross(axis, x), axis]).astype(np.float32))
    return frames


class FaceKitRenderer(FaceRenderer):
    """Renders a `FaceState` as an ICT-FaceKit head in a webcam-like framing.

    `model` comes from `load_face_model`; `look` is a `FaceLook` or a name in
    `FACEKIT_LOOKS`; `identity` holds up to 100 identity coefficients (the
    head's shape, e.g. fitted to a photo), zeros for the mean face. A textured
    face comes from `FaceLook.texture`. `rest_rotation` (3x3, model space) turns
    the head before the tracked rotation: a face shape that reads as tilted at
    rest is turned to read like the mean face. Only `blendshapes`, `head_pose`
    and `timestamp` are read.
    """

    def __init__(self, width: int, height: int, model: FaceModel, look: FaceLook | str = "human",
                 identity: np.ndarray | None = None, mesh: RenderMesh | None = None, bake: Bake = compute_now,
                 rest_rotation: np.ndarray | None = None) -> None:
        super().__init__(width, height)
        self._rest_rotation = None if rest_rotation is None else np.asarray(rest_rotation, np.float32)
        if isinstance(look, str):
            if look not in FACEKIT_LOOKS:
                raise ValueError(f"unknown face look {look!r}; choose one of {', '.join(FACEKIT_LOOKS)}")
            look = FACEKIT_LOOKS[look]
        self.look = look
        self.model = model
        self._bake = bake
        mesh, self._mouth_triangles = _drawn_mesh(model, mesh or simplified_render_mesh(model))
        self.rig = FaceRig(model, identity, mesh)
        self.ctx = create_headless_context()
        self._frame = np.zeros((height, width, 4), np.uint8)
        rest = self.rig.rest
        self._landmarks = model.landmark_positions(self.rig.identity)
        lips = model.landmarks68[list(_INNER_LIPS)]
        self._lip_rest = model.evaluate(self.rig.identity, None, lips.ravel()).reshape(2, -1, 3)
        self._lip_basis = model.exp_basis[:, lips.ravel()].reshape(model.num_expressions, 2, -1, 3)
        self._closed_gap = float(np.max(self._lip_rest[0, :, 1] - self._lip_rest[1, :, 1])) + MOUTH_CLOSED_MARGIN

        top, chin = float(rest[:, 1].max()), float(self._landmarks[8, 1])
        self._projection = perspective(FOV_Y_DEG, width / height)
        visible = (top - chin) / HEAD_FRACTION
        distance = framing_distance(visible)
        centre_y = (top + chin) / 2
        anchor = np.array([0.0, -centre_y + HEADROOM * visible, -distance], np.float32)
        self._follower = HeadFollower(anchor)
        self._head_centre = np.array([0.0, centre_y, 0.0], np.float32)
        self._margin = 4
        self._scene_size = (math.ceil(0.8 * height), height)
        self._positions = np.zeros((_texture_rows(len(rest)) * _TEX_WIDTH, 3), np.float32)
        with self.ctx:  # several renderers (contexts) may live in one process
            self._build_gl()
            size = (width, height)
            head = to_pixels(self._anchor_point(anchor), self._projection, size)[0] / size
            radius = (0.5 * HEAD_FRACTION * height / width, 0.5 * HEAD_FRACTION)
            render_backdrop(self.ctx, self._background_fbo, size, look.background, look, tuple(head), radius, look.backdrop_glow,
                            look.backdrop_shadow)

    def _anchor_point(self, anchor: np.ndarray) -> np.ndarray:
        return (anchor + self._head_centre)[None, :]

    # --- set-up -------------------------------------------------------------------------------

    def _bake_inputs(self, jaw_open: np.ndarray) -> list[np.ndarray | str]:
        """What the static bakes are a function of, besides the look: the posed mesh and the model's tables."""
        model, mesh, rig = self.model, self.rig.mesh, self.rig
        return [_look_key(self.look), rig.rest, jaw_open, mesh.triangles, mesh.source, mesh.uv, mesh.material,
                self._landmarks, np.asarray(rig.eye_pivots), np.asarray(rig.eye_axes),
                repr((model.material_names, sorted(model.regions.items()), mesh.eyeballs))]

    def _jaw_open_pose(self) -> np.ndarray:
        jaw_open = np.zeros(self.model.num_expressions, np.float32)
        jaw_open[self.model.exp_index["jawOpen"]] = 1.0
        return self.rig.pose(jaw_open).copy()  # the rig reuses its output array

    def _static_attributes(self, jaw_open: np.ndarray) -> np.ndarray:
        """Per render vertex: atlas uv, albedo, (textured, occlusion, kind, alpha), eye index."""
        model, mesh, rig, look = self.model, self.rig.mesh, self.rig, self.look
        n = len(mesh.source)
        names = np.array(model.material_names)[mesh.material]
        kind = np.full(n, _KINDS["skin"], np.float32)
        kind[names == "M_Teeth"] = _KINDS["teeth"]
        kind[names == "M_GumsTongue"] = _KINDS["mouth"]
        kind[np.char.startswith(names, "M_Sclera")] = _KINDS["eye"]
        lo, hi = model.regions["mouth_socket"]
        kind[(mesh.source >= lo) & (mesh.source < hi)] = _KINDS["mouth"]

        occlusion = ambient_occlusion(self.ctx, [rig.rest, jaw_open], mesh.triangles)
        alpha = np.clip((rig.rest[:, 1] - NECK_FADE[0]) / (NECK_FADE[1] - NECK_FADE[0]), 0.0, 1.0)

        atlas_h = TEXTURE_SIZE + EYE_SIZE
        face = names == "M_Face"
        uv = np.zeros((n, 2), np.float32)
        uv[face] = mesh.uv[face] * (1.0, TEXTURE_SIZE / atlas_h) + (0.0, EYE_SIZE / atlas_h)
        eye_index = np.full(n, -1.0, np.float32)
        half_s, half_t = 0.5 * EYE_SIZE / TEXTURE_SIZE, 0.5 * EYE_SIZE / atlas_h
        for k, ((start, end), frame) in enumerate(zip(mesh.eyeballs, _eye_frames(rig))):
            d = rig.rest[start:end] - rig.eye_pivots[k]
            local = (d / np.linalg.norm(d, axis=1, keepdims=True)) @ frame.T
            uv[start:end] = np.c_[half_s + half_s * local[:, 0], half_t + half_t * local[:, 1]]
            eye_index[start:end] = k
        textured = face | (eye_index >= 0)
        albedo = vertex_albedo(model, mesh, rig.rest, self._landmarks, look)
        params = np.stack([textured, occlusion, kind, alpha], axis=1).astype(np.float32)
        return np.concatenate([uv, albedo, params, eye_index[:, None]], axis=1).astype(np.float32)

    def _atlas(self, bake_inputs: list[np.ndarray | str]) -> moderngl.Texture:
        """The face's albedo (the look's texture, or painted) over the eye image, with
        its mip chain: baked whole, so a cold build only reads it and uploads it."""
        look = self.look

        def chain() -> np.ndarray:
            if look.texture is not None:
                face = cv2.resize(look.texture, (TEXTURE_SIZE, TEXTURE_SIZE), interpolation=cv2.INTER_AREA)
                if look.hair_color is not None:
                    face = hair_over_texture(face, *self._face_position_map(), self._landmarks, look.hair_color)
            else:
                face = self._paint_face()
            eye = eye_image(look, EYE_SIZE)
            band = np.empty((EYE_SIZE, TEXTURE_SIZE, 3), np.uint8)
            band[:] = eye[EYE_SIZE // 2, 0]  # the sclera's colour at the rim
            band[:, :EYE_SIZE] = eye
            rgb = np.concatenate([face, band])[::-1]  # bottom row first
            rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])  # uploads twice as fast as RGB
            return pack_mip_chain(mip_chain(rgba, ATLAS_MIP_LEVELS))

        inputs = bake_inputs if look.texture is None else [*bake_inputs, look.texture]
        packed = self._bake("facekit-atlas", inputs, chain)
        return mipmapped_texture(self.ctx, unpack_mip_chain(packed, TEXTURE_SIZE + EYE_SIZE, TEXTURE_SIZE, 4, ATLAS_MIP_LEVELS))

    def _face_position_map(self) -> tuple[np.ndarray, np.ndarray]:
        """The face tile's rest position per texel, at the painting size, and which texels the face covers."""
        return uv_position_map(self.ctx, self.rig.mesh, self.rig.rest, self.model.material_names.index("M_Face"), PAINT_SIZE)

    def _paint_face(self) -> np.ndarray:
        return face_texture(*self._face_position_map(), self._landmarks, self.look, TEXTURE_SIZE)

    def _build_gl(self) -> None:
        ctx, look, mesh = self.ctx, self.look, self.rig.mesh
        header = "#version 330\n" + ("#define TOON\n" if look.style == "toon" else "")
        program = self._program = ctx.program(vertex_shader=header + _FACE_VERTEX, fragment_shader=header + _FACE_FRAGMENT)
        set_lights(program, look)
        uniforms = {"u_style": STYLES.index(look.style), "u_specular": look.specular, "u_gloss": look.gloss,
                    "u_subsurface": look.subsurface, "u_outline": look.outline}
        for name, value in uniforms.items():
            if name in program:  # each variant uses some of them
                program[name].value = value
        program["u_eye_pivot"].value = [tuple(p) for p in self.rig.eye_pivots]
        program["u_eye_radius"].value = float(self.rig.eye_radius.mean())
        program["u_positions"].value = 0
        program["u_ring"].value = 1
        program["u_atlas"].value = 2

        ring, pairs = _ring_pairs(mesh)
        padded = np.zeros((_texture_rows(len(pairs)) * _TEX_WIDTH, 2), np.int32)
        padded[: len(pairs)] = pairs
        self._ring = ctx.texture((_TEX_WIDTH, _texture_rows(len(pairs))), 2, padded.tobytes(), dtype="i4")
        self._position_texture = ctx.texture((_TEX_WIDTH, _texture_rows(len(mesh.source))), 3, dtype="f4")
        for texture in (self._ring, self._position_texture):
            texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
        jaw_open = self._jaw_open_pose()
        bake_inputs = self._bake_inputs(jaw_open)  # hashed by each bake: built once
        self._albedo = self._atlas(bake_inputs)
        statics = self._bake("facekit-statics", bake_inputs, lambda: self._static_attributes(jaw_open))
        self._vao = ctx.vertex_array(
            program,
            [
                (ctx.buffer(ring.tobytes()), "2i", "in_ring"),
                (ctx.buffer(statics.tobytes()), "2f 3f 4f 1f", "in_uv", "in_albedo", "in_params", "in_eye"),
            ],
            index_buffer=ctx.buffer(mesh.triangles.tobytes()),
        )
        size = (self.width, self.height)
        self._crop = CropBuffer(ctx, size, self._scene_size, self._margin, samples=1)
        self._output_fbo = ctx.framebuffer([ctx.renderbuffer(size, 4)])
        self._background_fbo = ctx.framebuffer([ctx.renderbuffer(size, 4)])

    # --- per frame ----------------------------------------------------------------------------

    def model_matrix(self, state: FaceState) -> np.ndarray:
        """Model to camera: the tracked rotation about the neck, the framing's anchor."""
        pose = state.head_pose
        if self._rest_rotation is not None:
            pose = pose.copy()
            pose[:3, :3] = pose[:3, :3] @ self._rest_rotation
        follow = self._follower.model_matrix(pose, state.timestamp)
        pivot = np.eye(4, dtype=np.float32)
        pivot[:3, 3] = NECK_PIVOT - follow[:3, :3] @ NECK_PIVOT
        return follow @ pivot

    def project(self, points: np.ndarray, state: FaceState) -> np.ndarray:
        """Image positions (x right, y down, pixels) of model-space points for
        `state`: where they appear in the frame `render(state)` drew."""
        return to_pixels(np.asarray(points, np.float32), self._projection @ self.model_matrix(state), (self.width, self.height))

    def render(self, state: FaceState) -> np.ndarray:
        weights = self.model.expression_weights(state.blendshapes)
        positions = self.rig.pose(weights, gaze_rotations(state.blendshapes))
        self._positions[: len(positions)] = positions
        model = self.model_matrix(state)
        outline = positions[:: _BOUND_STRIDE]  # enough points to bound the head within a pixel or two
        origin, box = self._crop.place(to_pixels(outline, self._projection @ model, (self.width, self.height)))
        with self.ctx:
            self._draw(model, origin, box, self._mouth_open(weights))
        return self._frame

    def _mouth_open(self, weights: np.ndarray) -> bool:
        lips = self._lip_rest + np.tensordot(weights, self._lip_basis, axes=1)
        return float(np.max(lips[0, :, 1] - lips[1, :, 1])) > self._closed_gap

    def _draw(self, model: np.ndarray, origin: np.ndarray, box: tuple[int, int, int, int], mouth_open: bool) -> None:
        ctx = self.ctx
        self._position_texture.write(self._positions)
        self._output_fbo.use()
        ctx.copy_framebuffer(self._output_fbo, self._background_fbo)
        if box[2] and box[3]:
            self._crop.clear(origin, box)
            ctx.disable(moderngl.BLEND)
            ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
            ctx.front_face = "cw"  # the Y-flipped projection mirrors the winding
            self._program["u_projection"].write(gl_matrix(self._crop.projection(self._projection, origin)))
            self._program["u_model"].write(gl_matrix(model))
            self._position_texture.use(0)
            self._ring.use(1)
            self._albedo.use(2)
            skipped = 0 if mouth_open else self._mouth_triangles
            self._vao.render(moderngl.TRIANGLES, vertices=3 * (len(self.rig.mesh.triangles) - skipped))
            self._crop.resolve(self._output_fbo, origin, box, premultiplied=self.look.background is not None)
        self._output_fbo.read_into(self._frame, components=4)

    def close(self) -> None:
        self.ctx.release()
