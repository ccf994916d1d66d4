"""What every rasterized avatar shares: camera, framing, lights, backdrop, MSAA crop.

The avatars differ in their geometry and materials, but they are filmed the same
way: a webcam-like perspective whose Y is flipped (the framebuffer reads back
top row first, no flip on the CPU), a head that turns with the tracked pose
while its position only follows the tracked translation loosely (so the framing
stays put), one set of lights, a backdrop rendered once at start-up, and a
multisampled buffer that covers only the head (a software rasterizer pays for
every multisampled pixel) resolved onto the backdrop in one pass with straight
or premultiplied alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import moderngl
import numpy as np

FOV_Y_DEG = 42.0
SAMPLES = 4
#: Head translation relative to a slowly following reference moves the avatar by
#: GAIN times the difference, softly clamped to LIMIT (cm): framing stays stable.
TRANSLATION_GAIN = np.array([0.5, 0.5, 0.4], np.float32)
TRANSLATION_LIMIT = np.array([2.5, 2.0, 5.0], np.float32)
REFERENCE_TIME_CONSTANT_S = 1.5


@dataclass(frozen=True)
class Gradient:
    """A vertical background gradient, sRGB hex colours."""

    top: str
    bottom: str


#: A look's backdrop: a gradient, an RGB image (H, W, 3) uint8 scaled to cover
#: the frame, or None for a transparent one (alpha 0 around the avatar).
Background = Gradient | np.ndarray | None


class Lights(Protocol):
    """The light colours a look sets (sRGB hex) for `LIGHTING_GLSL`."""

    key_light: str
    fill_light: str
    rim_light: str
    rim_strength: float
    sky_color: str
    ground_color: str


LIGHTING_GLSL = """
const vec3 KEY_DIR = normalize(vec3(-0.55, 0.55, 0.65));
const vec3 FILL_DIR = normalize(vec3(0.8, 0.05, 0.6));
const vec3 RIM_DIR = normalize(vec3(0.35, 0.45, -0.8));
const float WRAP = 0.1;
uniform vec3 u_key, u_fill, u_rim, u_sky, u_ground;
uniform float u_rim_strength;

float key_light(vec3 n) {  // per pixel: it is what shapes the face
    return 1.5 * max((dot(n, KEY_DIR) + WRAP) / (1.0 + WRAP), 0.0);
}

vec3 soft_light(vec3 n) {  // fill and sky/ground ambient: smooth enough per vertex
    float fill = max((dot(n, FILL_DIR) + WRAP) / (1.0 + WRAP), 0.0);
    return 0.3 * u_fill * fill + 0.4 * mix(u_ground, u_sky, 0.5 + 0.5 * n.y);
}

vec3 rim_light(vec3 n, vec3 v) {
    float edge = 1.0 - max(dot(n, v), 0.0);
    return u_rim * u_rim_strength * edge * edge * edge * smoothstep(-0.3, 0.5, dot(n, RIM_DIR) + 0.3);
}

float power(float x, float n) {  // Schlick's cheap stand-in for pow(x, n), x in [0, 1]
    return x / (n - n * x + x);
}

vec3 to_display(vec3 linear) {  // filmic curve (Narkowicz's ACES fit), then gamma 2
    vec3 x = 0.5 * linear;
    return sqrt(clamp(x * (2.51 * x + 0.03) / (x * (2.43 * x + 0.59) + 0.14), 0.0, 1.0));
}
"""

FULLSCREEN_VERTEX = """
#version 330
void main() {
    vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
    gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}
"""

_BACKGROUND_FRAGMENT = """
#version 330
uniform vec2 u_size;
uniform vec3 u_top;
uniform vec3 u_bottom;
uniform bool u_use_image;
uniform sampler2D u_image;
uniform vec2 u_image_scale;
uniform vec2 u_head;
uniform vec2 u_head_radius;
uniform float u_glow;
uniform float u_shadow;
out vec4 f_color;
void main() {
    vec2 uv = gl_FragCoord.xy / u_size;  // uv.y = 0 is the top row of the output image
    vec3 c;
    if (u_use_image) {
        c = texture(u_image, 0.5 + (uv - 0.5) * u_image_scale).rgb;
        c *= c;
    } else {
        c = mix(u_top, u_bottom, smoothstep(0.0, 1.0, uv.y));
    }
    vec2 d = (uv - u_head) / u_head_radius;
    c *= 1.0 + u_glow * exp(-0.35 * dot(d, d));
    vec2 s = (uv - u_head - vec2(0.35, 0.25) * u_head_radius) / (u_head_radius * vec2(0.85, 0.95));
    c *= 1.0 - u_shadow * exp(-1.2 * dot(s, s));
    vec2 q = uv - 0.5;
    c *= 1.0 - 0.5 * dot(q, q);
    float dither = fract(sin(dot(gl_FragCoord.xy, vec2(12.9898, 78.233))) * 43758.5453) - 0.5;
    f_color = vec4(sqrt(clamp(c, 0.0, 1.0)) + dither / 255.0, 1.0);
}
"""

#: Single-sampled scenes are resolved with a light edge filter instead: where the
#: neighbours differ strongly (a silhouette, a lid line), blend towards their mean.
_EDGE_COMPOSITE_FRAGMENT = """
#version 330
uniform sampler2D u_scene;
uniform ivec2 u_offset;
uniform bool u_premultiplied;
out vec4 f_color;
float luma(vec4 c) {
    return dot(c.rgb, vec3(0.3, 0.59, 0.11)) + c.a;
}
void main() {
    ivec2 p = ivec2(gl_FragCoord.xy) - u_offset;
    vec4 c = texelFetch(u_scene, p, 0);
    vec4 n = texelFetch(u_scene, p + ivec2(0, 1), 0);
    vec4 s = texelFetch(u_scene, p - ivec2(0, 1), 0);
    vec4 e = texelFetch(u_scene, p + ivec2(1, 0), 0);
    vec4 w = texelFetch(u_scene, p - ivec2(1, 0), 0);
    float lc = luma(c), ln = luma(n), ls = luma(s), le = luma(e), lw = luma(w);
    float range = max(max(max(ln, ls), max(le, lw)), lc) - min(min(min(ln, ls), min(le, lw)), lc);
    c = mix(c, 0.25 * (n + s + e + w), 0.5 * smoothstep(0.08, 0.4, range));
    f_color = u_premultiplied ? c : (c.a > 0.0 ? vec4(c.rgb / c.a, c.a) : vec4(0.0));
}
"""

_COMPOSITE_FRAGMENT = f"""
#version 330
uniform sampler2DMS u_scene;
uniform ivec2 u_offset;
uniform bool u_premultiplied;
out vec4 f_color;
void main() {{
    ivec2 p = ivec2(gl_FragCoord.xy) - u_offset;
    vec4 c = vec4(0.0);
    for (int i = 0; i < {SAMPLES}; ++i) c += texelFetch(u_scene, p, i);
    c /= {float(SAMPLES)};  // premultiplied: the scene is cleared to transparent black
    f_color = u_premultiplied ? c : (c.a > 0.0 ? vec4(c.rgb / c.a, c.a) : vec4(0.0));
}}
"""


def linear_rgb(hex_color: str) -> tuple[float, float, float]:
    """sRGB '#rrggbb' -> linear RGB (gamma 2, matching `to_display`)."""
    h = hex_color.lstrip("#")
    if len(h) != 6:
        raise ValueError(f"colour {hex_color!r} is not #rrggbb")
    return tuple((int(h[i : i + 2], 16) / 255.0) ** 2 for i in (0, 2, 4))  # type: ignore[return-value]


def perspective(fov_y_deg: float, aspect: float, near: float = 5.0, far: float = 300.0) -> np.ndarray:
    """OpenGL perspective with Y flipped, so row 0 of the framebuffer is the image top.

    The flip mirrors the winding: draw with `ctx.front_face = "cw"`.
    """
    f = 1.0 / math.tan(math.radians(fov_y_deg) / 2)
    return np.array(
        [
            [f / aspect, 0, 0, 0],
            [0, -f, 0, 0],
            [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)],
            [0, 0, -1, 0],
        ],
        np.float32,
    )


def framing_distance(visible: float) -> float:
    """How far from the camera something `visible` tall just fills the frame's height (same units):
    the head's distance when framing a shot, or, given the frame's height in pixels, the focal length in pixels."""
    return visible / (2 * math.tan(math.radians(FOV_Y_DEG) / 2))


def nearest_rotation(pose: np.ndarray) -> np.ndarray:
    """The nearest rotation to the pose's 3x3 block (drops scale and shear)."""
    u, _, vt = np.linalg.svd(pose[:3, :3].astype(np.float64))
    r = u @ vt
    if np.linalg.det(r) < 0:
        r = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    return r.astype(np.float32)


def rotation_degrees(r: np.ndarray) -> float:
    """The angle of a 3x3 rotation."""
    return float(np.degrees(np.arccos(np.clip((np.trace(r.astype(np.float64)) - 1) / 2, -1, 1))))


def gl_matrix(m: np.ndarray) -> bytes:
    """Column-major bytes of a row-major matrix, as GLSL wants them."""
    return np.ascontiguousarray(m.T, np.float32).tobytes()


def set_lights(program: moderngl.Program, look: Lights) -> None:
    """Set the `LIGHTING_GLSL` uniforms the program uses from a look."""
    lights = {
        "u_key": look.key_light,
        "u_fill": look.fill_light,
        "u_rim": look.rim_light,
        "u_sky": look.sky_color,
        "u_ground": look.ground_color,
    }
    for name, color in lights.items():
        if name in program:
            program[name].value = linear_rgb(color)
    if "u_rim_strength" in program:
        program["u_rim_strength"].value = look.rim_strength


class HeadFollower:
    """The model matrix for a tracked pose: its rotation turns the head, its
    translation only nudges it, relative to a reference that follows the head
    within a couple of seconds (`timestamp` paces it), so the framing stays put.
    """

    def __init__(self, anchor: np.ndarray) -> None:
        self.anchor = np.asarray(anchor, np.float32)
        self._reference: np.ndarray | None = None
        self._last_time = 0.0

    def model_matrix(self, pose: np.ndarray, timestamp: float) -> np.ndarray:
        translation = pose[:3, 3].astype(np.float32)
        dt = min(max(timestamp - self._last_time, 0.0), 0.5)
        self._last_time = timestamp
        if self._reference is None:
            self._reference = translation.copy()
        self._reference += (1.0 - math.exp(-dt / REFERENCE_TIME_CONSTANT_S)) * (translation - self._reference)
        offset = TRANSLATION_LIMIT * np.tanh(TRANSLATION_GAIN * (translation - self._reference) / TRANSLATION_LIMIT)
        model = np.eye(4, dtype=np.float32)
        model[:3, :3] = nearest_rotation(pose)
        model[:3, 3] = self.anchor + offset
        return model


def to_pixels(points: np.ndarray, mvp: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Window coordinates (x right, y down from the top row) of points under `mvp`."""
    clip = points @ mvp[:, :3].T + mvp[:, 3]
    ndc = clip[:, :2] / clip[:, 3:4]
    return (ndc * 0.5 + 0.5) * size


def render_backdrop(
    ctx: moderngl.Context,
    fbo: moderngl.Framebuffer,
    size: tuple[int, int],
    background: Background,
    lights: Lights,
    head: tuple[float, float],
    head_radius: tuple[float, float],
    glow: float,
    shadow: float,
) -> None:
    """Draw the backdrop once: gradient or cover-scaled image, a glow behind the head
    (`head`, `head_radius` as fractions of the frame) and a soft shadow; or clear
    to transparent when `background` is None."""
    if background is None:
        fbo.clear(0.0, 0.0, 0.0, 0.0)
        return
    program = ctx.program(vertex_shader=FULLSCREEN_VERTEX, fragment_shader=_BACKGROUND_FRAGMENT)
    set_lights(program, lights)
    program["u_size"].value = size
    image = None
    if isinstance(background, Gradient):
        program["u_top"].value = linear_rgb(background.top)
        program["u_bottom"].value = linear_rgb(background.bottom)
        program["u_use_image"].value = False
    else:
        pixels = np.ascontiguousarray(background, np.uint8)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"background image must be (H, W, 3) RGB, got shape {pixels.shape}")
        image = ctx.texture((pixels.shape[1], pixels.shape[0]), 3, pixels.tobytes(), alignment=1)
        image.filter = (moderngl.LINEAR, moderngl.LINEAR)
        image.use(0)
        frame_aspect, image_aspect = size[0] / size[1], pixels.shape[1] / pixels.shape[0]
        program["u_image"].value = 0
        program["u_use_image"].value = True
        program["u_image_scale"].value = (min(1.0, frame_aspect / image_aspect), min(1.0, image_aspect / frame_aspect))
    program["u_head"].value = head
    program["u_head_radius"].value = head_radius
    program["u_glow"].value = glow
    program["u_shadow"].value = shadow
    fbo.use()
    vao = ctx.vertex_array(program, [])
    vao.render(moderngl.TRIANGLES, vertices=3)
    vao.release()
    if image is not None:
        image.release()
    program.release()


class CropBuffer:
    """A colour+depth buffer that covers only the avatar this frame.

    `place` picks where it sits in the frame (centred on the avatar's pixel box,
    kept inside the frame), `projection` crops the full-frame projection to it,
    `clear` clears the box, and `resolve` puts it onto the bound output
    framebuffer inside the box, straight alpha or premultiplied over what is
    there. With `samples` > 1 it is multisampled and resolving averages the
    samples; with 1 (cheaper for a busy mesh on a software rasterizer, whose
    cost grows with the samples) resolving smooths the edges instead.
    """

    def __init__(self, ctx: moderngl.Context, frame: tuple[int, int], scene: tuple[int, int], margin: int,
                 samples: int = SAMPLES) -> None:
        self.ctx = ctx
        self.frame = frame
        self.size = (min(scene[0], frame[0]), min(scene[1], frame[1]))
        self.margin = margin
        self.samples = samples
        multisampled = samples > 1
        self.texture = ctx.texture(self.size, 4, samples=samples if multisampled else 0)
        self.fbo = ctx.framebuffer([self.texture], ctx.depth_renderbuffer(self.size, samples=samples if multisampled else 0))
        fragment = _COMPOSITE_FRAGMENT if multisampled else _EDGE_COMPOSITE_FRAGMENT
        self._program = ctx.program(vertex_shader=FULLSCREEN_VERTEX, fragment_shader=fragment)
        self._vao = ctx.vertex_array(self._program, [])

    def place(self, pixels: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """Origin of the buffer in the frame for the avatar at `pixels` (window coordinates
        of points that bound it), and the avatar's box (x, y, w, h) clipped to the buffer."""
        low, high = np.floor(pixels.min(axis=0)) - self.margin, np.ceil(pixels.max(axis=0)) + self.margin
        frame, scene = np.array(self.frame), np.array(self.size)
        origin = np.clip(np.round((low + high - scene) / 2), 0, frame - scene).astype(int)
        low, high = np.maximum(low, origin).astype(int), np.minimum(high, origin + scene).astype(int)
        return origin, (int(low[0]), int(low[1]), int(max(high[0] - low[0], 0)), int(max(high[1] - low[1], 0)))

    def projection(self, full: np.ndarray, origin: np.ndarray) -> np.ndarray:
        (w, h), (sw, sh) = self.frame, self.size
        crop = np.eye(4, dtype=np.float32)
        crop[0, 0], crop[0, 3] = w / sw, (w - 2 * origin[0]) / sw - 1
        crop[1, 1], crop[1, 3] = h / sh, (h - 2 * origin[1]) / sh - 1
        return crop @ full

    def clear(self, origin: np.ndarray, box: tuple[int, int, int, int]) -> None:
        """Bind the buffer and clear (to transparent, far depth) only where the avatar is."""
        self.fbo.use()
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0, viewport=(box[0] - int(origin[0]), box[1] - int(origin[1]), box[2], box[3]))

    def resolve(self, output: moderngl.Framebuffer, origin: np.ndarray, box: tuple[int, int, int, int], premultiplied: bool) -> None:
        ctx = self.ctx
        output.use()
        output.scissor = box
        ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        if premultiplied:
            ctx.enable(moderngl.BLEND)
            ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA
        else:
            ctx.disable(moderngl.BLEND)
        self.texture.use(0)
        self._program["u_premultiplied"].value = premultiplied
        self._program["u_offset"].value = tuple(int(v) for v in origin)
        self._vao.render(moderngl.TRIANGLES, vertices=3)
        output.scissor = None  # blits obey the scissor box too
