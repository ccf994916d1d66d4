"""The `neural` avatar: the face model posed by a `FaceState`, drawn by a learned renderer, framed like a webcam shot.

Per frame: the tracked expression and gaze pose the fitted face model; its
G-buffer (`head_gbuffer`) at the network's size, turned by the head rotation
(with the learned texture already sampled, for onnxruntime), goes through the
network (`neural_runtime`) with the expression code; the RGBA head crop it
returns is scaled and placed on the backdrop where the framing puts the head.
The framing is the face-model avatars': the same field of view and head size,
a head that turns with the tracked rotation and only drifts with the tracked
translation (`scene.HeadFollower`).

Looking down turns the eyeballs but does not pose the face model's look-down
shape, which lowers the upper lids: the network already draws the enrolled
person's lids following the iris, as it learned them from the clip, and the
shape on top of that half shuts them. MediaPipe then reads a blink (about 0.3
at a look-down of 0.5 on three networks of one clip, against under 0.05 without
the shape), and a driver reading a screen below the camera looks drowsy.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .expression_response import LEVELS, ResponseInverse
from .expression_rest import rebase
from .face_model import FaceModel, FaceRig, RenderMesh
from .face_state import BLENDSHAPE_INDEX, FaceState
from .facekit_looks import FACEKIT_LOOKS
from .facekit_renderer import HEAD_FRACTION, HEADROOM
from .gaze import gaze_rotations
from .gl_context import create_headless_context
from .head_gbuffer import CROP_HEADS, HeadGBuffer
from .neural_runtime import NeuralRunner
from .renderer import FaceRenderer
from .scene import Background, HeadFollower, framing_distance, nearest_rotation, render_backdrop

#: The backdrop's lights and glow come from the built-in human look.
BACKDROP_LOOK = FACEKIT_LOOKS["human"]
#: The scores whose face-model shapes lower the upper lids over a downward gaze.
LOOK_DOWN = [BLENDSHAPE_INDEX["eyeLookDownLeft"], BLENDSHAPE_INDEX["eyeLookDownRight"]]


def without_look_down(blendshapes: np.ndarray) -> np.ndarray:
    """The scores with looking down left out, for posing the face model's shapes while the eyeballs still turn."""
    out = np.array(blendshapes, np.float32)
    out[LOOK_DOWN] = 0.0
    return out


def expression_code(weights: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """What the network is told besides the G-buffer: the face model's expression weights and the head rotation's first two columns."""
    return np.concatenate([np.asarray(weights, np.float32), np.asarray(rotation, np.float32)[:, :2].T.ravel()])


class NeuralAvatarRenderer(FaceRenderer):
    """`model`, `mesh` and `identity` pose the face; `runner` is the trained network for `size`×`size` crops;
    `model_rotation` turns MediaPipe's head rotation into the face model's frame (as in training)."""

    def __init__(self, width: int, height: int, model: FaceModel, mesh: RenderMesh, identity: np.ndarray, runner: NeuralRunner,
                 size: int, model_rotation: np.ndarray, texture: np.ndarray, background: Background = BACKDROP_LOOK.background,
                 rest: np.ndarray | None = None, response: np.ndarray | None = None, look_down_lids: bool = False) -> None:
        """`texture`: the network's learned texture (its `texture` weight), sampled here in OpenGL for a runner that takes features.
        `rest`: the enrollment clip's resting blendshapes. Given, a state's expression is re-based from the driver's rest
        (`FaceState.rest_blendshapes`, where known) onto it, so the network sees codes like those it learned from
        (`expression_rest`); None draws the tracked expression as it is.
        `response`: how the avatar's expressions read, measured at enrollment (`expression_response.measure_response`);
        given, the brows and smiles are posed so that they read as the (re-based) scores ask, the brows as far as past full
        weight (`expression_response.REACH`); None poses them with the scores.
        `look_down_lids`: pose the face model's look-down shape too (see the module's docstring for why not)."""
        super().__init__(width, height)
        self.model = model
        self._rest = None if rest is None else np.asarray(rest, np.float32)
        self._response = None if response is None else ResponseInverse(response)
        self._look_down_lids = look_down_lids
        self.runner = runner
        self._ctx = create_headless_context()
        self.rig = FaceRig(model, identity, mesh)
        self.gbuffer = HeadGBuffer(self.rig, size, self._ctx, texture if runner.takes_features else None)
        self._model_rotation = np.asarray(model_rotation, np.float32)
        span = self.gbuffer.crop.span
        visible = span / CROP_HEADS / HEAD_FRACTION  # cm of the scene from the frame's top to its bottom
        self._focal = framing_distance(height)  # pixels
        distance = framing_distance(visible)
        self._follower = HeadFollower(np.array([0.0, HEADROOM * visible, -distance], np.float32))
        self._span = span
        self._backdrop = self._draw_backdrop(background)
        self._opaque_backdrop = bool(np.all(self._backdrop[..., 3] == 255))
        self._frame = np.empty_like(self._backdrop)
        self.last_crop: np.ndarray | None = None  # the network's last RGBA crop, for previews and tests

    def _draw_backdrop(self, background: Background) -> np.ndarray:
        ctx = self._ctx
        size = (self.width, self.height)
        fbo = ctx.framebuffer(color_attachments=[ctx.texture(size, 4)])
        try:
            head = (0.5, 0.5 - HEADROOM)
            radius = (0.5 * HEAD_FRACTION * self.height / self.width, 0.5 * HEAD_FRACTION)
            fbo.use()
            render_backdrop(ctx, fbo, size, background, BACKDROP_LOOK, head, radius, BACKDROP_LOOK.backdrop_glow, BACKDROP_LOOK.backdrop_shadow)
            pixels = np.frombuffer(fbo.read(components=4), np.uint8).reshape(self.height, self.width, 4).copy()
        finally:
            for texture in fbo.color_attachments:
                texture.release()
            fbo.release()
        return pixels

    def render(self, state: FaceState) -> np.ndarray:
        blendshapes = state.blendshapes
        if self._rest is not None and state.rest_blendshapes is not None:
            blendshapes = rebase(blendshapes, state.rest_blendshapes, self._rest)
        if self._response is not None:
            blendshapes = self._response(blendshapes)
        weights = self.model.expression_weights(blendshapes if self._look_down_lids else without_look_down(blendshapes), most=float(LEVELS[-1]))
        follow = self._follower.model_matrix(state.head_pose, state.timestamp)
        rotation = nearest_rotation(follow[:3, :3] @ self._model_rotation)
        positions = self.rig.pose(weights, gaze_rotations(blendshapes))
        pixels = self.gbuffer.render(positions, rotation)
        rgba = np.clip(self.runner(pixels, expression_code(weights, rotation)), 0.0, 1.0)
        self.last_crop = rgba
        centre = follow[:3, 3]
        depth = max(float(-centre[2]), 1.0)
        cx = self.width / 2 + self._focal * float(centre[0]) / depth
        cy = self.height / 2 - self._focal * float(centre[1]) / depth
        np.copyto(self._frame, self._backdrop)
        place_crop(self._frame, rgba, cx, cy, self._focal * self._span / depth, self._opaque_backdrop)
        return self._frame

    def close(self) -> None:
        self.gbuffer.release()
        self._ctx.release()


def place_crop(frame: np.ndarray, rgba: np.ndarray, cx: float, cy: float, side: float, opaque: bool) -> None:
    """Draw premultiplied `rgba` (4, S, S) in [0, 1], scaled to `side` pixels and centred at (cx, cy), over
    `frame` (H, W, 4) uint8 straight alpha, in place. `opaque`: every pixel of `frame` has alpha 255."""
    height, width = frame.shape[:2]
    s = rgba.shape[1]
    k = side / s
    x0, y0 = max(0, math.floor(cx - side / 2)), max(0, math.floor(cy - side / 2))
    x1, y1 = min(width, math.ceil(cx + side / 2)), min(height, math.ceil(cy + side / 2))
    if x1 <= x0 or y1 <= y0:
        return
    # Crop pixel centres (i + 0.5) land at cx - side/2 + k (i + 0.5); OpenCV's map is in integer pixel centres.
    ox, oy = cx - side / 2 - x0, cy - side / 2 - y0
    m = np.array([[k, 0, ox + 0.5 * k - 0.5], [0, k, oy + 0.5 * k - 0.5]], np.float32)
    crop8 = np.ascontiguousarray((rgba.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8))
    placed = cv2.warpAffine(crop8, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    region = frame[y0:y1, x0:x1]
    if opaque:  # the usual case, in 8 bits: out = avatar + backdrop * (1 - alpha), alpha staying 255
        # All four channels at once: slicing off alpha would make OpenCV copy both images (6× slower).
        through = cv2.cvtColor(cv2.bitwise_not(cv2.extractChannel(placed, 3)), cv2.COLOR_GRAY2BGRA)
        cv2.add(placed, cv2.multiply(region, through, scale=1 / 255), dst=region)
        return
    under = region.astype(np.float32) * (1.0 / 255)
    placed_f = placed.astype(np.float32) * (1.0 / 255)
    alpha, under_alpha = placed_f[..., 3:4], under[..., 3:4]
    out_alpha = alpha + under_alpha * (1 - alpha)
    premultiplied = placed_f[..., :3] + under[..., :3] * under_alpha * (1 - alpha)
    out = np.concatenate([premultiplied / np.maximum(out_alpha, 1e-6), out_alpha], axis=2)  # straight alpha, as renderers return
    region[...] = np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)
