"""Procedural paint for the face model: skin, brows, lips, blush, lid lines, hair.

ICT-FaceKit ships geometry only. A bare head reads poorly, to people and to the
face tracker alike: MediaPipe finds brows and lips by their contrast, so an
avatar without painted brows cannot show a brow raise. Features are placed
from the model's own 68 landmarks on the rest mesh, and painted as a function
of 3D rest position: the same functions colour the texels of the face's UV
tile (through a position map) and the vertices of the other materials, so the
paint lines up across seams and follows any identity.
"""

from __future__ import annotations

import cv2
import numpy as np

from .face_model import FaceModel, RenderMesh
from .facekit_looks import FaceLook
from .polygon import contour_distance, polyline_distance, smoothstep
from .scene import linear_rgb

#: Brow half-thickness (cm) from the inner end (t = 0) to the tail (t = 1).
_BROW_HALF_WIDTH = (0.42, 0.14)
_LID_LINE_HALF_WIDTH = 0.1
_BROW_DROP = 0.6


def _rgb(hex_color: str) -> np.ndarray:
    return np.array(linear_rgb(hex_color), np.float32)


def _noise(points: np.ndarray, frequency: float) -> np.ndarray:
    """Cheap smooth value noise in [0, 1] from sums of sines (deterministic)."""
    p = points * frequency
    n = np.sin(p[:, 0] * 1.7 + np.sin(p[:, 1] * 2.3)) + np.sin(p[:, 1] * 1.3 + np.sin(p[:, 2] * 1.9 + p[:, 0]))
    return 0.5 + 0.25 * n


def hair_coverage(points: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Short hair on the skull, in [0, 1]: a hairline a brow-height above the brows
    at the front, over the ears on the sides, down to the nape at the back."""
    brow_top = landmarks[17:27, 1].max()
    eye_y = landmarks[36:48, 1].mean()
    chin_y = landmarks[8, 1]
    face_height = brow_top - chin_y
    centre_z = landmarks[0:17, 2].min() - 2.0  # roughly the middle of the skull, front to back
    angle = np.abs(np.arctan2(points[:, 0], points[:, 2] - centre_z))  # 0 front, pi back
    front = brow_top + 0.36 * face_height
    line = np.interp(
        angle,
        [0.0, 0.45, 0.8, 1.05, 1.45, 1.9, 2.4, np.pi],
        [front, front - 0.3, front - 1.6, eye_y + 1.6, eye_y + 1.2, eye_y - 1.0, chin_y + 1.0, chin_y + 0.5],
    )
    ragged = (_noise(points, 3.0) - 0.5) * 0.5
    ears = smoothstep(6.2, 7.0, np.abs(points[:, 0])) * (1.0 - smoothstep(eye_y + 2.0, eye_y + 3.0, points[:, 1]))
    return smoothstep(-0.15, 0.15, points[:, 1] - line + ragged) * (1.0 - ears)


def front_of_face(points: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(K,) bool: rest positions in front of the jaw line's deepest point (less a margin), where
    the face's features are painted; the back of the head has the same x and y."""
    return points[:, 2] > landmarks[0:17, 2].min() - 1.0


def lip_coverage(points: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(K,) in [0, 1]: inside the outer lip contour of the rest face (seen from the front, so the
    lips' inner surfaces, which show when the mouth opens or puckers, count too), softened at the border."""
    d, inside = contour_distance(points[:, :2], landmarks[48:60, :2], reach=0.2)
    return np.where(inside, smoothstep(0.0, 0.12, d), 0.0) * front_of_face(points, landmarks)


def paint_lips(albedo: np.ndarray, points: np.ndarray, landmarks: np.ndarray, lips: np.ndarray, lip_rgb: np.ndarray, strength: float) -> np.ndarray:
    """(K, 3) linear `albedo` with the lips painted over it in `lip_rgb` (linear), the upper lip in
    shadow; `lips` is `lip_coverage` of the same points, which callers also use for other things."""
    shaded = lip_rgb[None, :] * np.where(points[:, 1] > landmarks[62, 1], 0.85, 1.05)[:, None]
    return _mix(albedo, shaded, (strength * lips)[:, None])


#: How much of the lash colour the lid lines take.
LID_LINE_STRENGTH = 0.9


def lid_lines(points: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(K,) in [0, 1]: a line along each upper lid margin of the rest face, thickest mid-lid,
    on the lid's side of the margin. It reads as lashes from a distance, and it closes with the lid."""
    xy = points[:, :2]
    out = np.zeros(len(points))
    for upper in (landmarks[36:40], landmarks[42:46]):
        d, t = polyline_distance(xy, upper[:, :2], reach=0.2)
        width = _LID_LINE_HALF_WIDTH * (0.6 + 0.8 * np.sin(np.pi * t))
        line = (1.0 - smoothstep(0.5 * width, width, d)) * (xy[:, 1] >= np.interp(xy[:, 0], *_sorted_xy(upper)) - 0.02)
        out = np.maximum(out, line)
    return out * front_of_face(points, landmarks)


def paint_skin(points: np.ndarray, landmarks: np.ndarray, look: FaceLook, features: bool = True) -> np.ndarray:
    """(K, 3) linear albedo of skin at rest positions `points` (K, 3). With
    `features`, the face's brows, lips, blush and lid lines are painted too."""
    skin = _rgb(look.skin_color)
    out = np.tile(skin, (len(points), 1))
    xy = points[:, :2]
    # a little warmth on the nose, ears and cheeks, as blood shows through skin
    nose = landmarks[30]
    warm = 0.35 * np.exp(-np.sum((points - nose) ** 2, axis=1) / 2.0) + 0.5 * smoothstep(7.2, 8.6, np.abs(points[:, 0]))
    out = _mix(out, _rgb(look.blush_color), 0.25 * warm[:, None] * (look.style == "skin"))
    if features:
        front = front_of_face(points, landmarks)
        # blush: below the outer eye corners, towards the mouth corners
        for eye, corner in ((36, 48), (45, 54)):
            centre = 0.55 * landmarks[eye] + 0.45 * landmarks[corner] + (0, 0.2, 0)
            d2 = np.sum((xy - centre[:2]) ** 2, axis=1)
            out = _mix(out, _rgb(look.blush_color), (look.blush * np.exp(-d2 / 1.6) * front)[:, None])
        out = paint_lips(out, points, landmarks, lip_coverage(points, landmarks), _rgb(look.lip_color), look.lip_strength)
        out = _mix(out, _rgb(look.lash_color), (LID_LINE_STRENGTH * lid_lines(points, landmarks))[:, None])
        # brows: strokes along the brow landmarks, thick at the inner end, thin at the tail
        for brow in (landmarks[21:16:-1], landmarks[22:27]):  # inner end first
            centre = brow[:, :2] - (0.0, _BROW_DROP)
            d, t = polyline_distance(xy, centre, reach=_BROW_HALF_WIDTH[0])
            half = _BROW_HALF_WIDTH[0] + (_BROW_HALF_WIDTH[1] - _BROW_HALF_WIDTH[0]) * t**1.5
            strokes = 0.85 + 0.15 * np.sin(40.0 * (xy[:, 1] - centre[0, 1]) + 9.0 * t)
            body = (1.0 - smoothstep(0.5 * half, half, d)) * strokes * front * (1.0 - 0.3 * smoothstep(0.6, 1.0, t))
            out = _mix(out, _rgb(look.brow_color), (look.brow_strength * body)[:, None])
    if look.hair_color is not None:
        out = _mix(out, _hair_albedo(points, look.hair_color), hair_coverage(points, landmarks)[:, None])
    return out


def _hair_albedo(points: np.ndarray, hair_color: str) -> np.ndarray:
    """(K, 3) linear albedo of the painted hair: the colour, with a little strand-scale variation."""
    return _rgb(hair_color) * (0.85 + 0.3 * _noise(points, 9.0))[:, None]


def _sorted_xy(line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(line[:, 0])
    return line[order, 0], line[order, 1]


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    return a + (b - a) * t


def face_texture(position_map: np.ndarray, covered: np.ndarray, landmarks: np.ndarray, look: FaceLook,
                 size: int | None = None) -> np.ndarray:
    """The painted albedo of UV tile 0 as an sRGB (size, size, 3) uint8 image (the
    layout of `FaceLook.texture`), painted at the position map's resolution;
    uncovered texels take the nearest paint so filtering never pulls in black at
    UV island edges."""
    out_size = size or position_map.shape[0]
    size = position_map.shape[0]
    linear = np.zeros((size * size, 3), np.float32)
    mask = covered.ravel()
    linear[mask] = paint_skin(position_map.reshape(-1, 3)[mask], landmarks, look)
    image = _into_gutters((np.sqrt(np.clip(linear, 0, 1)) * 255 + 0.5).astype(np.uint8).reshape(size, size, 3), covered)
    return image if out_size == size else cv2.resize(image, (out_size, out_size), interpolation=cv2.INTER_CUBIC)


def _into_gutters(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """`image` (uint8) with its UV islands grown by a few texels into the gutters around
    them, so filtering and mipmaps never pull in a colour from outside an island."""
    holes = (~covered).astype(np.uint8)
    for _ in range(6):
        grown = cv2.dilate(image, np.ones((3, 3), np.uint8))
        image = np.where((holes > 0).reshape(holes.shape + (1,) * (image.ndim - 2)), grown, image)
        holes = cv2.erode(holes, np.ones((3, 3), np.uint8))
    return image


def hair_over_texture(texture: np.ndarray, position_map: np.ndarray, covered: np.ndarray, landmarks: np.ndarray,
                      hair_color: str) -> np.ndarray:
    """The painted hair over a face texture (sRGB uint8, the layout of `FaceLook.texture`),
    where it reaches into the face tile: the same hair, by the same function of rest
    position, as on the rest of the head, so the hairline meets it without a seam.
    The hair is painted at the position map's resolution and scaled to the texture's."""
    size = position_map.shape[0]
    points = position_map.reshape(-1, 3)[covered.ravel()]
    layer = np.zeros((size * size, 4), np.float32)
    layer[covered.ravel(), :3] = np.sqrt(np.clip(_hair_albedo(points, hair_color), 0, 1))
    layer[covered.ravel(), 3] = hair_coverage(points, landmarks)
    layer = _into_gutters((layer * 255 + 0.5).astype(np.uint8).reshape(size, size, 4), covered)
    side = texture.shape[0]
    layer = cv2.resize(layer, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    alpha = layer[..., 3:]
    linear = (texture.astype(np.float32) / 255) ** 2 * (1 - alpha) + layer[..., :3] ** 2 * alpha
    return (np.sqrt(linear) * 255 + 0.5).astype(np.uint8)


def vertex_albedo(model: FaceModel, mesh: RenderMesh, rest: np.ndarray, landmarks: np.ndarray, look: FaceLook) -> np.ndarray:
    """(N, 3) linear albedo of every render vertex (the face's tile is overridden
    by the texture in the shader)."""
    names = model.material_names
    material = np.array(names)[mesh.material]
    out = paint_skin(rest, landmarks, look, features=False)
    for name, colour in (("M_GumsTongue", look.gum_color), ("M_Teeth", look.teeth_color)):
        out[material == name] = _rgb(colour)
    sclera = np.char.startswith(material, "M_Sclera")
    out[sclera] = _rgb(look.sclera_color)
    # inside the mouth: lip colour at the lips, darkening into the throat
    lo, hi = model.regions["mouth_socket"]
    socket = (mesh.source >= lo) & (mesh.source < hi)
    lip_z = landmarks[48:60, 2].mean()
    depth = smoothstep(0.3, 2.0, lip_z - rest[:, 2])
    inner = _mix(_rgb(look.lip_color), _rgb(look.mouth_color), depth[:, None])
    out[socket] = inner[socket]
    mouth = np.isin(material, ("M_GumsTongue", "M_Teeth"))  # less light reaches the back of the mouth
    out[mouth] *= (1.0 - 0.7 * smoothstep(0.8, 3.5, lip_z - rest[mouth, 2]))[:, None]
    return out


#: Sine of the iris's and the pupil's angular radius on the eyeball.
IRIS = 0.43
PUPIL = 0.17


def eye_image(look: FaceLook, size: int = 256) -> np.ndarray:
    """The front of an eyeball as an sRGB (size, size, 3) uint8 image over the
    eye's rest directions: column = x, row = -y, both from -1 to 1; the gaze axis
    at the centre. Iris, limbal ring, pupil and a catchlight towards the key light."""
    c = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(c, -c)
    r = np.hypot(x, y)
    angle = np.arctan2(y, x)
    sclera, iris_rgb = _rgb(look.sclera_color), _rgb(look.iris_color)
    white = sclera * (1.0 - 0.18 * smoothstep(0.55, 1.0, r))[..., None]
    if look.style == "clay":
        iris = np.broadcast_to(iris_rgb, (size, size, 3))
        pupil_rgb = iris_rgb * 0.35
        catch = np.zeros_like(r)
    else:
        fibres = 0.8 + 0.2 * np.sin(angle * 31.0 + np.sin(angle * 7.0) * 3.0)
        if look.style == "toon":
            fibres = np.ones_like(r) * (1.0 + 0.35 * (y > 0.05))  # a lighter upper half
        iris = iris_rgb * (fibres * (1.35 - 0.75 * smoothstep(PUPIL, IRIS, r)) * (1.0 - 0.7 * smoothstep(IRIS - 0.09, IRIS, r)))[..., None]
        pupil_rgb = np.full(3, 0.006, np.float32)
        catch = 1.0 - smoothstep(0.04, 0.07, np.hypot(x + 0.16, y - 0.17))
    out = _mix(iris, white, smoothstep(IRIS - 0.015, IRIS + 0.015, r)[..., None])
    out = _mix(pupil_rgb, out, smoothstep(PUPIL - 0.02, PUPIL + 0.02, r)[..., None])
    out = _mix(out, np.ones(3, np.float32), 0.85 * catch[..., None])
    return (np.sqrt(np.clip(out, 0, 1)) * 255 + 0.5).astype(np.uint8)
