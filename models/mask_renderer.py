"""A lit ceramic face mask: the first privacy-safe avatar.

The mask is MediaPipe's canonical face with open eyes and mouth (`MaskRig`),
thickened into a solid shell (`MaskShell`) and rendered headless with OpenGL:
key, fill and rim lights, hemispheric ambient, a soft glaze highlight, concavity
occlusion, dark cavities behind the lips and eyeballs that follow the gaze.
Only `FaceState.blendshapes` and `FaceState.head_pose` drive it.

Per frame, the mask is drawn with 4x MSAA into a buffer that follows it
on screen (a software rasterizer pays for every multisampled pixel), then
resolved in one pass onto a backdrop rendered once at start-up. The projection
flips Y so that the framebuffer reads back top row first, with no flip on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import moderngl
import numpy as np

from .face_state import FaceState
from .gl_context import create_headless_context
from .mask_rig import MaskGeometry, MaskShell
from .renderer import FaceRenderer
from .scene import (
    FOV_Y_DEG,
    LIGHTING_GLSL,
    Background,
    CropBuffer,
    Gradient,
    HeadFollower,
    framing_distance,
    gl_matrix,
    linear_rgb,
    perspective,
    render_backdrop,
    set_lights,
    to_pixels,
)

FACE_FRACTION = 0.5  # mask height / frame height
HEADROOM = 0.03  # face centre this far (fraction of frame height) above the frame centre
#: Width and height of the multisampled scene buffer, in mask heights: room for a
#: turned head with the jaw and brows fully open, leaning in to the translation limit.
SCENE_SIZE = (1.25, 1.45)


@dataclass(frozen=True, eq=False)
class MaskLook:
    """How the mask and its backdrop look. Colours are sRGB hex strings.

    `background` is a `Gradient`, an RGB image (H, W, 3) uint8 scaled to cover
    the frame, or None for a transparent backdrop (alpha 0 around the mask).
    """

    mask_color: str = "#efe8de"
    glaze: float = 1.0  # specular strength
    gloss: float = 300.0  # specular sharpness (exponent)
    lip_color: str = "#c98b86"
    lip_tint: float = 0.2
    blush_color: str = "#e7b0a4"
    blush: float = 0.12
    interior_color: str = "#1d1416"
    key_light: str = "#fff3e3"
    fill_light: str = "#9fb1cc"
    rim_light: str = "#d9e6ff"
    rim_strength: float = 0.6
    sky_color: str = "#8a95a8"
    ground_color: str = "#5a4d46"
    iris_color: str = "#6a4b2c"
    sclera_color: str = "#ece8e2"
    background: Background = Gradient("#55606f", "#1b1f27")
    backdrop_glow: float = 0.35  # lighter halo behind the head
    backdrop_shadow: float = 0.45  # soft shadow the mask casts on the backdrop


MASK_LOOKS: dict[str, MaskLook] = {
    "porcelain": MaskLook(),
    "midnight": MaskLook(
        mask_color="#2c2f36",
        glaze=1.5,
        gloss=250.0,
        lip_color="#5a2a33",
        lip_tint=0.35,
        blush=0.0,
        interior_color="#050608",
        key_light="#e8eeff",
        fill_light="#6d7fa8",
        rim_light="#7fb2ff",
        rim_strength=1.1,
        sky_color="#4a5670",
        ground_color="#1c1a22",
        iris_color="#8fb8d8",
        sclera_color="#d9dde3",
        background=Gradient("#1d2a48", "#06080e"),
        backdrop_glow=0.6,
        backdrop_shadow=0.3,
    ),
    "sunrise": MaskLook(
        mask_color="#dbb06a",
        glaze=1.0,
        gloss=150.0,
        lip_color="#b5562e",
        lip_tint=0.35,
        blush_color="#e8884e",
        blush=0.15,
        interior_color="#3a1a16",
        key_light="#ffe2c0",
        fill_light="#d79a8c",
        rim_light="#ffd08a",
        rim_strength=0.9,
        sky_color="#d8a890",
        ground_color="#7a4a3c",
        iris_color="#7a5220",
        sclera_color="#f1e6da",
        background=Gradient("#f2c27e", "#b8556a"),
        backdrop_glow=0.25,
        backdrop_shadow=0.35,
    ),
    "jade": MaskLook(
        mask_color="#b7d2c0",
        glaze=1.2,
        gloss=250.0,
        lip_color="#86a893",
        lip_tint=0.25,
        blush=0.0,
        interior_color="#0f1a16",
        key_light="#fff8ea",
        fill_light="#a8c4c0",
        rim_light="#f2f6e0",
        rim_strength=0.5,
        sky_color="#a9b9ad",
        ground_color="#5d574a",
        iris_color="#3f5a3a",
        sclera_color="#eef0e8",
        background=Gradient("#e4dccb", "#9a8e78"),
        backdrop_glow=0.2,
        backdrop_shadow=0.4,
    ),
}

_MASK_VERTEX = (
    """
#version 330
uniform mat4 u_projection;
uniform mat4 u_model;
uniform vec3 u_base;
uniform vec3 u_lip;
uniform vec3 u_blush;
uniform vec2 u_tint;  // lip and blush amounts
uniform vec3 u_interior;
uniform float u_glaze;
in vec3 in_position;
in vec3 in_normal;
in float in_interior;
in float in_occlusion;
in vec2 in_paint;
out vec3 v_position;
out vec3 v_normal;
out vec3 v_color;
out vec3 v_keyed;
out float v_glaze;
"""
    + LIGHTING_GLSL
    + """
void main() {
    vec4 world = u_model * vec4(in_position, 1.0);
    vec3 n = normalize(mat3(u_model) * in_normal);
    float glazed = (1.0 - in_interior) * in_occlusion;
    float cavity = smoothstep(0.0, 1.0, in_interior);
    vec3 albedo = mix(mix(u_base, u_lip, u_tint.x * in_paint.x), u_blush, u_tint.y * in_paint.y);
    vec3 lit = albedo * soft_light(n) * in_occlusion + rim_light(n, normalize(-world.xyz)) * glazed;
    v_color = mix(lit, u_interior * (0.35 + 0.65 * in_occlusion), cavity);
    v_keyed = albedo * u_key * in_occlusion * mix(1.0, in_occlusion, 0.5) * (1.0 - cavity);
    v_glaze = u_glaze * glazed;
    v_position = world.xyz;
    v_normal = n;
    gl_Position = u_projection * world;
}
"""
)

_MASK_FRAGMENT = (
    """
#version 330
uniform float u_gloss;
in vec3 v_position;
in vec3 v_normal;
in vec3 v_color;
in vec3 v_keyed;
in float v_glaze;
out vec4 f_color;
"""
    + LIGHTING_GLSL
    + """
void main() {
    vec3 n = normalize(v_normal);
    vec3 v = normalize(-v_position);
    float h = max(dot(n, normalize(KEY_DIR + v)), 0.0);
    float edge = 1.0 - max(dot(n, v), 0.0);
    float fresnel = 0.04 + 0.96 * edge * edge * edge * edge * edge;
    float spec = power(h, u_gloss) + 0.2 * power(h, u_gloss * 0.07);
    vec3 c = v_color + v_keyed * key_light(n) + v_glaze * (0.3 + fresnel) * 2.5 * u_key * spec;
    f_color = vec4(to_display(c), 1.0);
}
"""
)

_EYE_VERTEX = """
#version 330
uniform mat4 u_projection;
uniform mat4 u_model;
uniform vec3 u_center[2];
uniform float u_radius;
uniform mat3 u_gaze[2];
in vec3 in_position;
out vec3 v_position;
out vec3 v_normal;
out vec3 v_ball;
out vec3 v_socket;
void main() {  // one instance per eye
    vec3 socket = u_gaze[gl_InstanceID] * in_position;
    vec4 world = u_model * vec4(u_center[gl_InstanceID] + u_radius * socket, 1.0);
    v_position = world.xyz;
    v_normal = mat3(u_model) * socket;
    v_ball = in_position;
    v_socket = socket;
    gl_Position = u_projection * world;
}
"""

_EYE_FRAGMENT = (
    """
#version 330
uniform vec3 u_iris;
uniform vec3 u_sclera;
in vec3 v_position;
in vec3 v_normal;
in vec3 v_ball;
in vec3 v_socket;
out vec4 f_color;
"""
    + LIGHTING_GLSL
    + """
void main() {
    vec3 n = normalize(v_normal);
    vec3 v = normalize(-v_position);
    float r = v_ball.z > 0.0 ? length(v_ball.xy) : 1.0;
    float angle = atan(v_ball.y, v_ball.x);
    const float IRIS = 0.5;
    const float PUPIL = 0.2;
    float fibres = 0.85 + 0.15 * sin(angle * 37.0 + sin(angle * 11.0) * 2.0);
    vec3 iris = u_iris * fibres * mix(1.25, 0.55, smoothstep(PUPIL, IRIS, r));
    iris *= 1.0 - 0.6 * smoothstep(IRIS - 0.1, IRIS, r);  // limbal ring
    vec3 base = mix(u_sclera * mix(1.0, 0.8, smoothstep(0.5, 1.0, r)), iris, 1.0 - smoothstep(IRIS - 0.015, IRIS + 0.015, r));
    base = mix(vec3(0.01), base, smoothstep(PUPIL - 0.02, PUPIL + 0.02, r));
    float lid_shadow = mix(0.35, 1.0, smoothstep(0.75, 0.05, v_socket.y));
    vec3 color = base * (u_key * key_light(n) + soft_light(n)) * lid_shadow;
    float spec = power(max(dot(n, normalize(KEY_DIR + v)), 0.0), 300.0);
    color += 1.5 * u_key * spec * lid_shadow;
    f_color = vec4(to_display(color), 1.0);
}
"""
)

def _eye_cap(rings: int = 8, segments: int = 24, extent_deg: float = 85.0) -> tuple[np.ndarray, np.ndarray]:
    """The front of a unit sphere around +z (the rest of an eyeball is never seen)."""
    theta = np.linspace(0, np.radians(extent_deg), rings + 1)[:, None]
    phi = np.linspace(0, 2 * np.pi, segments + 1)[None, :]
    pts = np.stack(np.broadcast_arrays(np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)), -1)
    idx = np.arange((rings + 1) * (segments + 1)).reshape(rings + 1, segments + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    tris = np.concatenate([np.stack([a, d, c], -1).reshape(-1, 3), np.stack([a, c, b], -1).reshape(-1, 3)])
    return pts.reshape(-1, 3).astype(np.float32), tris.astype(np.int32)


class MaskRenderer(FaceRenderer):
    """Renders a `FaceState` as a lit ceramic mask in a webcam-like framing.

    `geometry` is the rig and shell built from the canonical face mesh
    (`MaskGeometry.from_mesh`), shareable between renderers; `look` a `MaskLook`
    or a name in `MASK_LOOKS`. The head pose's rotation turns the mask; its
    translation only nudges it, relative to a reference that follows the head
    within a couple of seconds (`state.timestamp` paces it), so the framing stays
    put. Landmarks are never read.
    """

    def __init__(self, width: int, height: int, geometry: MaskGeometry, look: MaskLook | str = "porcelain") -> None:
        super().__init__(width, height)
        if isinstance(look, str):
            if look not in MASK_LOOKS:
                raise ValueError(f"unknown mask look {look!r}; choose one of {', '.join(MASK_LOOKS)}")
            look = MASK_LOOKS[look]
        self.look = look
        self.rig, self.shell = geometry.rig, geometry.shell
        self._vertices = self.shell.new_vertices()
        self.ctx = create_headless_context()
        self._frame = np.zeros((height, width, 4), np.uint8)

        top, bottom = float(self.rig.base[:, 1].max()), float(self.rig.base[:, 1].min())
        self._projection = perspective(FOV_Y_DEG, width / height)
        visible = (top - bottom) / FACE_FRACTION
        distance = framing_distance(visible)
        anchor = np.array([0.0, -(top + bottom) / 2 + HEADROOM * visible, -distance], np.float32)
        self._follower = HeadFollower(anchor)
        self._face_centre = anchor + (0.0, (top + bottom) / 2, 3.0)
        # the shell (thickness, rim, smoothing) stays within ~0.5 cm of the rig's vertices
        self._margin = math.ceil(0.5 * height / visible) + 2
        self._scene_size = tuple(math.ceil(k * FACE_FRACTION * height) for k in SCENE_SIZE)
        self._eye_points = (self.rig.eye_centers[:, None, :] + self.rig.eye_radius * np.concatenate([np.eye(3), -np.eye(3)])).reshape(-1, 3)
        with self.ctx:  # several renderers (contexts) may live in one process
            self._build_gl()
            self._render_background()

    # --- set-up -------------------------------------------------------------------------------

    def _program(self, vertex: str, fragment: str) -> moderngl.Program:
        program = self.ctx.program(vertex_shader=vertex, fragment_shader=fragment)
        set_lights(program, self.look)
        return program

    def _build_gl(self) -> None:
        ctx, look = self.ctx, self.look
        self._mask_program = self._program(_MASK_VERTEX, _MASK_FRAGMENT)
        self._mask_program["u_base"].value = linear_rgb(look.mask_color)
        self._mask_program["u_interior"].value = linear_rgb(look.interior_color)
        self._mask_program["u_glaze"].value = look.glaze
        self._mask_program["u_gloss"].value = look.gloss
        self._mask_program["u_lip"].value = linear_rgb(look.lip_color)
        self._mask_program["u_blush"].value = linear_rgb(look.blush_color)
        self._mask_program["u_tint"].value = (look.lip_tint, look.blush)
        self._mask_vbo = ctx.buffer(reserve=self.shell.vertex_count * MaskShell.FLOATS * 4, dynamic=True)
        self._mask_vao = ctx.vertex_array(
            self._mask_program,
            [(self._mask_vbo, "3f 3f 1f 1f 2f", "in_position", "in_normal", "in_interior", "in_occlusion", "in_paint")],
            index_buffer=ctx.buffer(self.shell.triangles.tobytes()),
        )

        self._eye_program = self._program(_EYE_VERTEX, _EYE_FRAGMENT)
        self._eye_program["u_iris"].value = linear_rgb(look.iris_color)
        self._eye_program["u_sclera"].value = linear_rgb(look.sclera_color)
        self._eye_program["u_radius"].value = self.rig.eye_radius
        self._eye_program["u_center"].value = [tuple(c) for c in self.rig.eye_centers]
        cap, cap_tris = _eye_cap()
        self._eye_vao = ctx.vertex_array(
            self._eye_program, [(ctx.buffer(cap.tobytes()), "3f", "in_position")], index_buffer=ctx.buffer(cap_tris.tobytes())
        )

        # The mask is drawn multisampled into a buffer around it, then resolved onto the backdrop.
        size = (self.width, self.height)
        self._crop = CropBuffer(ctx, size, self._scene_size, self._margin)
        self._output_fbo = ctx.framebuffer([ctx.renderbuffer(size, 4)])
        self._background_fbo = ctx.framebuffer([ctx.renderbuffer(size, 4)])

    def _render_background(self) -> None:
        size = (self.width, self.height)
        head = to_pixels(self._face_centre[None, :], self._projection, size)[0] / size
        radius = (0.5 * FACE_FRACTION * self.height / self.width, 0.5 * FACE_FRACTION)
        look = self.look
        render_backdrop(self.ctx, self._background_fbo, size, look.background, look, tuple(head), radius, look.backdrop_glow, look.backdrop_shadow)

    # --- per frame ----------------------------------------------------------------------------

    def render(self, state: FaceState) -> np.ndarray:
        frame = self.rig.evaluate(state.blendshapes)
        vertices = self.shell.build(frame, self._vertices)
        model = self._follower.model_matrix(state.head_pose, state.timestamp)
        points = np.concatenate([frame.vertices, self._eye_points])
        origin, box = self._crop.place(to_pixels(points, self._projection @ model, (self.width, self.height)))
        with self.ctx:
            self._draw(vertices, frame.eye_rotations, model, origin, box)
        return self._frame

    def _draw(
        self, vertices: np.ndarray, eye_rotations: np.ndarray, model: np.ndarray, origin: np.ndarray, box: tuple[int, int, int, int]
    ) -> None:
        ctx = self.ctx
        self._mask_vbo.write(vertices)

        self._output_fbo.use()
        ctx.copy_framebuffer(self._output_fbo, self._background_fbo)
        if box[2] and box[3]:
            self._crop.fbo.use()
            self._crop.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            ctx.disable(moderngl.BLEND)
            ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
            ctx.front_face = "cw"  # the Y-flipped projection mirrors the winding
            projection = gl_matrix(self._crop.projection(self._projection, origin))
            for program in (self._mask_program, self._eye_program):
                program["u_projection"].write(projection)
                program["u_model"].write(gl_matrix(model))
            facing_away = model[2, 2] < 0.6  # the mask turned more than ~50 degrees from the camera
            count = len(self.shell.triangles) if facing_away else self.shell.front_triangle_count
            self._mask_vao.render(moderngl.TRIANGLES, vertices=3 * count)
            self._eye_program["u_gaze"].write(np.ascontiguousarray(eye_rotations.transpose(0, 2, 1)).tobytes())
            self._eye_vao.render(moderngl.TRIANGLES, instances=2)
            self._crop.resolve(self._output_fbo, origin, box, premultiplied=self.look.background is not None)
        self._output_fbo.read_into(self._frame, components=4)

    def close(self) -> None:
        self.ctx.release()
