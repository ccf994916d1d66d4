"""Training frames of expressions an enrollment clip lacks, made by moving the clip's own pixels with the face model.

A neural avatar learns to draw a person from one short clip, and draws
faintly or not at all what the clip never shows: a person who never raises
their brows gives a network that keeps the brows down whatever the code says,
and an avatar nobody can read. The face model knows how skin moves for every
expression, so a clip frame can be shown doing one it lacks: pose the model
with the frame's fitted expression and with the new one, and move each pixel
the face model covers from where its point of skin was to where it goes. The
frame's G-buffer and code are made for the new expression, so the network
sees consistent examples.

Only expressions that move skin over skin are made this way (`WARPABLE`):
brows, lids closing, lips pressing, puckering or smiling with the lips
closed. One that uncovers what the clip never showed (an open jaw's teeth, a
wide eye's white) cannot be warped into being, and is left to what the clip
shows.

A warp moves pixels but not the light on them, and skin that an expression
turns changes brightness: a smile lifts the cheeks into the light and
darkens the folds beside the mouth, and the tracker reads a smile from that
shading as much as from the lips. So each moved pixel is also scaled by how
much brighter its skin gets as it turns (`relit`), under the frame's own
light, fitted as a constant plus a term linear in the surface normal (the
first-order spherical harmonics that carry most of a face's diffuse
shading). On p2's frames warped to a smile of 0.6 on average, MediaPipe read
0.48-0.52 with the shading against 0.23-0.24 without; the human look reads
0.58 at 0.6. Pucker and brows read the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import moderngl
import numpy as np

from .expression_response import CALIBRATED
from .face_model import FaceModel
from .face_state import BLENDSHAPE_INDEX
from .head_gbuffer import HeadCrop
from .neural_avatar_config import COVERED, NORMAL

#: Expressions a warp can show, as groups of blendshapes moved together (both sides of a symmetric one, or one side).
WARPABLE: dict[str, tuple[str, ...]] = {
    "brows up": CALIBRATED["brows up"],  # the channels whose response the avatar measures
    "brows down": ("browDownLeft", "browDownRight"),
    "blink": ("eyeBlinkLeft", "eyeBlinkRight"),
    "blink left": ("eyeBlinkLeft",),
    "blink right": ("eyeBlinkRight",),
    "squint": ("eyeSquintLeft", "eyeSquintRight"),
    "pucker": ("mouthPucker",),
    "press": ("mouthPressLeft", "mouthPressRight"),
    "mouth frown": ("mouthFrownLeft", "mouthFrownRight"),
    "mouth left": ("mouthLeft",),
    "mouth right": ("mouthRight",),
    "sneer": ("noseSneerLeft", "noseSneerRight"),
    "cheek puff": ("cheekPuff",),
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
    "smile and pucker": ("mouthSmileLeft", "mouthSmileRight", "mouthPucker"),  # a talking face often does both at once
}
#: How far `relit` may scale a moved pixel's brightness: a turn of the skin further than the light fit can follow.
RELIGHT_RANGE = (0.5, 1.5)


@dataclass(frozen=True)
class WarpSettings:
    #: A group the clip reaches less than this (its score's REACH_QUANTILE over the clip) is made by warping.
    lacking_below: float = 0.5
    reach_quantile: float = 98.0
    #: Warped frames per trained frame of the clip.
    per_frame: float = 1.0
    #: A warped frame's group is set to at least a score drawn evenly between this (or the clip's reach, if higher) and 1.
    min_score: float = 0.3


def clip_reach(blendshapes: np.ndarray, settings: WarpSettings = WarpSettings()) -> dict[str, float]:
    """Per warpable group, how far the clip's (N, 52) scores go: the least, over the group's blendshapes, of each
    one's REACH_QUANTILE (a group is shown only when all of it is)."""
    scores = np.asarray(blendshapes, np.float32)
    reach = np.percentile(scores, settings.reach_quantile, axis=0) if len(scores) else np.zeros(scores.shape[1], np.float32)
    return {group: float(min(reach[BLENDSHAPE_INDEX[n]] for n in names)) for group, names in WARPABLE.items()}


def lacking_groups(blendshapes: np.ndarray, settings: WarpSettings = WarpSettings()) -> dict[str, float]:
    """The warpable groups the clip barely shows, with how far it reaches them."""
    return {g: r for g, r in clip_reach(blendshapes, settings).items() if r < settings.lacking_below}


def with_group(blendshapes: np.ndarray, group: str, score: float) -> np.ndarray:
    """A copy of (52,) scores with every blendshape of `group` at least `score`."""
    out = np.array(blendshapes, np.float32)
    for name in WARPABLE[group]:
        i = BLENDSHAPE_INDEX[name]
        out[i] = max(out[i], score)
    return out


def moved_expression(model: FaceModel, weights: np.ndarray, blendshapes: np.ndarray, new_blendshapes: np.ndarray) -> np.ndarray:
    """A frame's fitted ICT `weights`, changed as its tracked scores change from `blendshapes` to `new_blendshapes`."""
    change = model.expression_weights(new_blendshapes) - model.expression_weights(blendshapes)
    return np.clip(np.asarray(weights, np.float32) + change, 0.0, 1.0)


_VERTEX = """
#version 330
in vec3 in_pos;  // where the vertex goes: crop x, y in [0, 1] (y = 0 is row 0), depth in [0, 1]
in vec2 in_from;  // where it was, in the same crop coordinates
out vec2 v_from;
void main() {
    gl_Position = vec4(in_pos * 2.0 - 1.0, 1.0);
    v_from = in_from;
}
"""
_FRAGMENT = """
#version 330
in vec2 v_from;
out vec4 f_from;
void main() {
    f_from = vec4(v_from, 1.0, 0.0);
}
"""


class ExpressionWarp:
    """Moves the pixels of a `HeadCrop` crop (`size`×`size`) as the face model moves from one pose to another.

    Every GL object lives as long as this, in the caller's context `ctx`; call it on that context's thread."""

    def __init__(self, triangles: np.ndarray, vertices: int, crop: HeadCrop, size: int, ctx: moderngl.Context) -> None:
        self.crop = crop
        self.size = size
        self._ctx = ctx
        self._program = ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self._target = ctx.texture((size, size), 4, dtype="f4")
        self._depth = ctx.depth_renderbuffer((size, size))
        self._fbo = ctx.framebuffer([self._target], self._depth)
        self._vertices = ctx.buffer(reserve=vertices * 5 * 4, dynamic=True)
        self._indices = ctx.buffer(np.ascontiguousarray(triangles, np.uint32).tobytes())
        self._vao = ctx.vertex_array(self._program, [(self._vertices, "3f 2f", "in_pos", "in_from")],
                                     index_buffer=self._indices, index_element_size=4)
        self._read = np.empty((size, size, 4), np.float32)
        self._grid = np.mgrid[0:size, 0:size].astype(np.float32)[::-1]  # (x, y) of every pixel

    def maps(self, before: np.ndarray, after: np.ndarray, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cv2.remap's maps (x, y) of the crop: for each pixel of the crop after the move, where it was before.

        `before`, `after`: (N, 3) posed positions (model space) of the same vertices; `rotation`: the head's.
        Pixels the model does not cover after the move stay where they are: hair and background do not move."""
        was = self.crop.to_crop(before, rotation)[:, :2]
        goes = self.crop.to_crop(after, rotation)
        self._vertices.write(np.concatenate([goes, was], axis=1, dtype=np.float32))
        ctx = self._ctx
        self._fbo.use()
        self._fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        ctx.enable(moderngl.DEPTH_TEST)
        self._vao.render()
        self._fbo.read_into(self._read, components=4, dtype="f4")
        covered = self._read[..., 2] > 0.5
        # Crop coordinates in [0, 1] to OpenCV's pixel centres (pixel i spans [i, i + 1) / size).
        map_x = np.where(covered, self._read[..., 0] * self.size - 0.5, self._grid[0])
        map_y = np.where(covered, self._read[..., 1] * self.size - 0.5, self._grid[1])
        return map_x, map_y

    @staticmethod
    def apply(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """`image` (S, S[, C]) moved by `maps` (bilinear; edges repeat)."""
        return cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def release(self) -> None:
        for obj in (self._vao, self._vertices, self._indices, self._fbo, self._depth, self._target, self._program):
            obj.release()


def fit_light(image: np.ndarray, gbuffer: np.ndarray) -> np.ndarray:
    """The crop's light as (constant, normal x, y, z) weights of its luminance over the pixels the model covers:
    `image` (S, S, 3) uint8, `gbuffer` (channels, S, S) of the same pose."""
    covered = gbuffer[COVERED] > 0.5
    normals = gbuffer[NORMAL][:, covered].astype(np.float32)
    design = np.concatenate([np.ones((1, normals.shape[1]), np.float32), normals]).T
    luminance = image[covered].astype(np.float32).mean(axis=1) / 255.0
    return np.linalg.lstsq(design, luminance, rcond=None)[0].astype(np.float32)


def relit(moved: np.ndarray, light: np.ndarray, before: np.ndarray, after: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """`moved` (a crop moved by `maps`, uint8) with each covered pixel scaled by the shading of its skin's normal
    after the move over its shading before, under `light` (`fit_light`); `before`, `after`: the G-buffers of both poses."""
    def shading(normals: np.ndarray) -> np.ndarray:
        return np.maximum(light[0] + np.tensordot(light[1:], normals, axes=1), 0.05)

    normals_before = np.stack([ExpressionWarp.apply(np.ascontiguousarray(c, np.float32), maps) for c in before[NORMAL]])
    ratio = np.clip(shading(after[NORMAL].astype(np.float32)) / shading(normals_before), *RELIGHT_RANGE)
    ratio = np.where(after[COVERED] > 0.5, ratio, 1.0)
    return np.clip(moved.astype(np.float32) * ratio[..., None] + 0.5, 0, 255).astype(np.uint8)
