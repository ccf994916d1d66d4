"""The neural avatar's G-buffer: the posed face model rasterized into a head-centred square crop.

The crop is the same function of the face's state when training and when
rendering: centred on the head, one `HeadCrop.span` across (a head height and
a margin for hair), and orthographic, turned by the head rotation about the
head's centre. Where the head is in the camera image and how large it appears
are left to the caller (a crop of the training frame around the fitted head;
a place in the output frame). So the network only ever learns appearance as a
function of expression and rotation, never of framing.

Per pixel it holds where the pixel lies on the model's UV atlas (the four UV
tiles of the ICT model in a 2×2 grid, as grid_sample coordinates), the
camera-space normal, and whether the model covers it (`GBUFFER_CHANNELS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import moderngl
import numpy as np

from .face_model import FaceRig
from .mask_rig import vertex_normals
from .neural_avatar_config import GBUFFER_CHANNELS

ATLAS_GRID = 2  # tiles per side of the UV atlas
#: The crop's side, in head heights (chin to crown): room for hair and a little neck.
CROP_HEADS = 1.7


@dataclass(frozen=True)
class HeadCrop:
    """Where the crop sits on the model: its centre (model space, cm) and side (cm)."""

    centre: np.ndarray
    span: float

    @staticmethod
    def for_rig(rig: FaceRig) -> "HeadCrop":
        rest = rig.rest
        chin = float(rig.model.landmark_positions(rig.identity)[8, 1])
        top = float(rest[:, 1].max())
        lo, hi = rest.min(axis=0), rest.max(axis=0)
        centre = np.array([(lo[0] + hi[0]) / 2, (top + chin) / 2, (lo[2] + hi[2]) / 2], np.float32)
        return HeadCrop(centre, CROP_HEADS * (top - chin))

    def to_crop(self, points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """(N, 3) model points -> crop x, y in [0, 1] (y down) and depth in [0, 1] (0 nearest)."""
        p = (np.asarray(points, np.float32) - self.centre) @ np.asarray(rotation, np.float32).T
        return np.stack([0.5 + p[:, 0] / self.span, 0.5 - p[:, 1] / self.span, 0.5 - p[:, 2] / (2 * self.span)], axis=1)


def atlas_grid(rig: FaceRig) -> np.ndarray:
    """(N, 2) grid_sample coordinates in [-1, 1] of each render vertex on the UV atlas (v = 0 at the atlas' bottom)."""
    mesh = rig.mesh
    tile = mesh.tile.astype(np.float32)
    u = (tile % ATLAS_GRID + mesh.uv[:, 0]) / ATLAS_GRID
    v = (tile // ATLAS_GRID + 1.0 - mesh.uv[:, 1]) / ATLAS_GRID
    return np.stack([2 * u - 1, 2 * v - 1], axis=1).astype(np.float32)


_VERTEX = """
#version 330
in vec3 in_pos;  // crop x, y in [0, 1] (y = 0 is row 0) and depth in [0, 1] (0 nearest)
in vec3 in_normal;
in vec2 in_atlas;
out vec3 v_normal;
out vec2 v_atlas;
void main() {
    gl_Position = vec4(in_pos * 2.0 - 1.0, 1.0);
    v_normal = in_normal;
    v_atlas = in_atlas;
}
"""
_GBUFFER_FRAGMENT = """
#version 330
in vec3 v_normal;
in vec2 v_atlas;
layout(location = 0) out vec4 f0;
layout(location = 1) out vec4 f1;
void main() {
    f0 = vec4(v_atlas, v_normal.xy);
    f1 = vec4(v_normal.z, 1.0, 0.0, 0.0);
}
"""
# The learned texture, four channels per GL texture, read with bilinear filtering and clamped edges: grid_sample's
# bilinear, border-padded, align_corners=False sampling (texel centres at (i + 0.5) / size, row 0 at grid y = -1).
_FEATURE_FRAGMENT = """
#version 330
in vec3 v_normal;
in vec2 v_atlas;
{samplers}
{outputs}
layout(location = {last}) out vec4 f_normal;
void main() {{
    vec2 uv = v_atlas * 0.5 + 0.5;
{reads}
    f_normal = vec4(v_normal, 1.0);
}}
"""


class HeadGBuffer:
    """Rasterizes a rig's posed positions into the network's input at `size`×`size`, float32.

    Without `texture` it gives the G-buffer, (GBUFFER_CHANNELS, S, S): what
    training and the torch runner take, sampling the learned texture
    themselves. With `texture` (the network's (1, C, T, T) learned texture) it
    samples that texture here, in OpenGL, and gives the network's per-pixel
    features, (C + 4, S, S): the sampled texture, the normal and the coverage
    (`NeuralAvatarNet.features`). That is for onnxruntime on a CPU, where
    grid_sample was more than half of the network's time.

    Every GL object lives as long as this; a frame uploads the positions and
    normals and reads the targets back. Call it on the context's thread.
    """

    def __init__(self, rig: FaceRig, size: int, ctx: moderngl.Context, texture: np.ndarray | None = None) -> None:
        self.rig = rig
        self.size = size
        self.crop = HeadCrop.for_rig(rig)
        self._ctx = ctx
        self._triangles = rig.mesh.triangles
        self._source = rig.mesh.source
        self._textures: list[moderngl.Texture] = []
        if texture is None:
            self.channels = GBUFFER_CHANNELS
            program = ctx.program(vertex_shader=_VERTEX, fragment_shader=_GBUFFER_FRAGMENT)
        else:
            channels = texture.shape[1]
            self.channels = channels + 4
            groups = -(-channels // 4)
            padded = np.zeros((groups * 4,) + texture.shape[2:], np.float32)
            padded[:channels] = texture[0]
            for k in range(groups):
                t = ctx.texture(texture.shape[2:][::-1], 4, np.ascontiguousarray(padded[4 * k:4 * k + 4].transpose(1, 2, 0)), dtype="f4")
                t.filter = (moderngl.LINEAR, moderngl.LINEAR)
                t.repeat_x = t.repeat_y = False
                self._textures.append(t)
            program = ctx.program(vertex_shader=_VERTEX, fragment_shader=_FEATURE_FRAGMENT.format(
                samplers="\n".join(f"uniform sampler2D texture{k};" for k in range(groups)),
                outputs="\n".join(f"layout(location = {k}) out vec4 f{k};" for k in range(groups)),
                reads="\n".join(f"    f{k} = texture(texture{k}, uv);" for k in range(groups)), last=groups))
            for k in range(groups):
                program[f"texture{k}"] = k
        self._program = program
        targets = 2 if texture is None else len(self._textures) + 1
        self._targets = [ctx.texture((size, size), 4, dtype="f4") for _ in range(targets)]
        self._depth = ctx.depth_renderbuffer((size, size))
        self._fbo = ctx.framebuffer(self._targets, self._depth)
        self._moving = ctx.buffer(reserve=len(rig.mesh.uv) * 6 * 4, dynamic=True)
        self._atlas = ctx.buffer(atlas_grid(rig).tobytes())
        self._indices = ctx.buffer(np.ascontiguousarray(self._triangles, np.uint32).tobytes())
        self._vao = ctx.vertex_array(program, [(self._moving, "3f 3f", "in_pos", "in_normal"), (self._atlas, "2f", "in_atlas")],
                                     index_buffer=self._indices, index_element_size=4)
        self._read = np.empty((targets, size, size, 4), np.float32)

    def render(self, positions: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """(N, 3) posed positions (model space) and the head rotation -> (channels, size, size) float32."""
        rotation = np.asarray(rotation, np.float32)
        normals = vertex_normals(positions, self._triangles, self._source) @ rotation.T
        self._moving.write(np.concatenate([self.crop.to_crop(positions, rotation), normals], axis=1, dtype=np.float32))
        ctx = self._ctx
        self._fbo.use()
        self._fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        ctx.enable(moderngl.DEPTH_TEST)
        for k, t in enumerate(self._textures):
            t.use(k)
        self._vao.render()
        for k in range(len(self._targets)):
            self._fbo.read_into(self._read[k], attachment=k, components=4, dtype="f4")
        s = self.size
        out = np.empty((self.channels, s, s), np.float32)
        if not self._textures:  # atlas x, y, normal x, y | normal z, coverage
            out[:4] = self._read[0].transpose(2, 0, 1)
            out[4:] = self._read[1, :, :, :2].transpose(2, 0, 1)
        else:  # texture channels (in groups of four) | normal x, y, z, coverage
            texture_channels = self.channels - 4
            out[:texture_channels] = self._read[:-1].transpose(0, 3, 1, 2).reshape(-1, s, s)[:texture_channels]
            out[texture_channels:] = self._read[-1].transpose(2, 0, 1)
        return out

    def release(self) -> None:
        for obj in (self._vao, self._moving, self._atlas, self._indices, self._fbo, self._depth, *self._targets, *self._textures, self._program):
            obj.release()
