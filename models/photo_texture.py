"""Bake a portrait into the face model's skin texture.

The fitted mesh is drawn in UV space: each skin texel learns where its surface
point lands in the photo, how squarely it faces the camera, whether something
in front hides it, and where its mirror image (the same point on the other
half of the face) lies in the texture. Then:

1. Photo: texels that face the camera, are not hidden and fall inside the
   tracked face outline (not in the eye or mouth openings) take the photo's
   colour, weighted so the weight fades out towards grazing angles and the
   outline instead of cutting off. Near the outline and above the brows,
   colours unlike the skin (hair, a fringe, background) are dropped. The
   photo's broad light and shadow are evened out, since the renderer lights
   the face itself.
2. Mirror: a texel the photo shows poorly takes its mirror texel's colour
   where that one is well seen (a face turned a little still shows one whole
   cheek).
3. Fill: everything else (back and top of the head, the neck, under the
   chin, the ears) is extrapolated smoothly from the skin-coloured texels by
   push-pull (Gortler et al., The Lumigraph, 1996), settling on the face's
   median skin colour (taken from the cheeks) away from the seen part, so there
   are no holes, and the texture's edges meet the rest of the head, which the
   renderer paints in that same colour, without a seam.
4. Features: around the lips and the eyes the photo gives way to the skin
   around them, and the lips and a lash line along each upper lid are drawn on
   the model's own contours, the lips in the photo's lip colour
   (`photo_features` says why).
5. Hair: the colour of what the photo shows just above the forehead, when that
   is unlike the skin; the renderer paints short hair in it over the head.

The texture is UV tile 0 of the model, the face skin (material M_Face), with
row 0 at the top (v = 1): the layout of `FaceLook.texture`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .attribute_raster import AttributeRasterizer
from .face_contours import FaceContours
from .face_fit import PortraitFit
from .face_model import FaceModel, RenderMesh
from .facekit_looks import FaceLook
from .facekit_paint import LID_LINE_STRENGTH, lip_coverage
from .mask_rig import vertex_normals
from .photo_features import FeatureColours, feature_area, near_features, photo_lip_colour, redraw_features
from .polygon import smoothstep
from .scene import linear_rgb

#: The textured material: the face skin, UV tile 0.
FACE_MATERIAL = "M_Face"
#: What can hide face skin from the camera: the skin of the head (a turned head's nose, its cheek).
OCCLUDING_MATERIALS = ("M_Face", "M_BackHead")
#: Texels turned further than this from the camera (cosine of the angle) take nothing from the photo...
FACING_MIN = 0.25
#: ...and from this on they take it fully.
FACING_FULL = 0.55
#: Visibility: a texel is hidden when the mesh in front of it is nearer by more than this (cm).
DEPTH_TOLERANCE_CM = 0.3
#: Photo trust margins, as fractions of the distance between the eyes: the face
#: outline is pulled in by OVAL_INSET, the eye and mouth openings pushed out by
#: OPENING_MARGIN, and both edges are feathered by FEATHER.
OVAL_INSET = 0.06
OPENING_MARGIN = 0.04
FEATHER = 0.05
#: Within this distance of the outline (fraction of the eye distance), photo
#: colours unlike the skin (hair over the temples, background) are not used.
RIM_WIDTH = 0.35
#: Nor are they above the brows (a fringe over the forehead): from this far above
#: the brows' upper edge, fully from this much further (fractions of the eye distance).
BROW_CLEARANCE = 0.03
FOREHEAD_RAMP = 0.08
#: Hair colour: read from a band this far above the brows (fractions of the eye
#: distance) and this wide either side of the eyes' midpoint. On nearly every
#: head that band is hair or bare scalp, not background.
HAIR_BAND = (1.0, 1.3)
HAIR_BAND_HALF_WIDTH = 0.6
#: The head has hair when at least this share of the band is unlike the skin
#: (skin likeness below HAIR_SKIN_LIKENESS), and the photo shows at least
#: HAIR_BAND_SEEN of the band at all.
HAIR_MIN_SHARE = 0.5
HAIR_SKIN_LIKENESS = 0.2
HAIR_BAND_SEEN = 0.25
#: Where the cheeks are on the neutral face (cm): |x| and y ranges.
CHEEK_X_CM = (2.5, 5.5)
CHEEK_Y_CM = (-2.5, 1.5)
#: How far (CIE Lab units, one standard deviation) a colour may be from the skin colour and still count as skin.
SKIN_LIGHTNESS_SPREAD = 20.0
SKIN_CHROMA_SPREAD = 10.0
#: Skin in shadow is much darker than the median: the shading estimate accepts that.
SHADED_SKIN_LIGHTNESS_SPREAD = 35.0
#: Shading removal: lightness changes broader than this fraction of the texture
#: are evened out by this share, by at most this factor either way.
SHADING_SCALE = 0.06
SHADING_REMOVAL = 0.8
SHADING_MAX_GAIN = 1.5
#: Away from the seen skin, the fill fades to the median skin colour over this fraction of a tile.
FILL_FADE = 0.05


@dataclass(frozen=True)
class BakedTexture:
    image: np.ndarray  # (S, S, 3) uint8 RGB, upright (row 0 = v 1)
    photo_weight: np.ndarray  # (S, S) float32: share of each texel seen in the photo, directly or mirrored (0 where the lips and eyes are redrawn)
    covered: np.ndarray  # (S, S) bool: texels inside a face triangle
    skin_rgb: np.ndarray  # (3,) float32: the face's median skin colour, 0..255
    hair_rgb: np.ndarray | None  # (3,) float32: the hair's median colour, 0..255; None: bare scalp or not shown


def mirror_vertices(points: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """For each point of `subset`, the index (into `points`, within `subset`) of the one
    nearest to its mirror image (x -> -x); -1 elsewhere. Use a symmetric mesh (the neutral)."""
    p = np.ascontiguousarray(points[subset], np.float32)
    index = cv2.flann_Index(p, {"algorithm": 1, "trees": 4})  # k-d trees
    nearest, _ = index.knnSearch(p * np.array([-1, 1, 1], np.float32), 1, params={"checks": 64})
    out = np.full(len(points), -1, np.intp)
    out[subset] = subset[nearest[:, 0]]
    return out


def mirror_texture_positions(tri_vertices: np.ndarray, tex_pos: np.ndarray, mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each triangle corner, the texture position of its mirror image (T, 3, 2), and
    whether the triangle has one (T,).

    Where the mirrored triangle exists, its corner's own position is exact (right
    across UV seams). Where it does not, because the two halves split a quad along
    different diagonals, each corner takes a texture position of its mirror vertex;
    that is kept only when the three land on a triangle of about the same size
    (within a factor of 3), so the lookup never spans two UV islands.
    """
    n = int(tri_vertices.max()) + 1
    key = np.sort(tri_vertices, axis=1).astype(np.int64)
    keys = (key[:, 0] * n + key[:, 1]) * n + key[:, 2]
    order = np.argsort(keys)
    mirrored = mirror[tri_vertices]
    paired = np.all(mirrored >= 0, axis=1)
    mkey = np.sort(mirrored, axis=1).astype(np.int64)
    mkeys = (mkey[:, 0] * n + mkey[:, 1]) * n + mkey[:, 2]
    partner = order[np.clip(np.searchsorted(keys[order], mkeys), 0, len(keys) - 1)]
    found = (keys[partner] == mkeys) & paired
    corner = np.argmax(tri_vertices[partner][:, None, :] == mirrored[:, :, None], axis=2)  # (T, 3)
    exact = tex_pos[partner[:, None], corner]

    vertex_pos = np.zeros((n, 2), tex_pos.dtype)
    vertex_pos[tri_vertices.ravel()] = tex_pos.reshape(-1, 2)  # one of a seam vertex's positions
    by_vertex = vertex_pos[np.maximum(mirrored, 0)]

    def area(t: np.ndarray) -> np.ndarray:
        e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
        return np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])

    ratio = area(by_vertex) / np.maximum(area(tex_pos), 1e-12)
    close = ~found & paired & (ratio > 1 / 3) & (ratio < 3)
    return np.where(found[:, None, None], exact, by_vertex), found | close


def push_pull(color: np.ndarray, weight: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Fill a (S, S, C) image everywhere from weighted samples, smoothly; `prior` where nothing is near.

    Down: each level averages the weighted samples below (weights add up, capped
    at 1). Up: each level keeps what its own samples say in proportion to their
    weight and takes the rest from the coarser level. S must be a power of two.
    """
    levels = [(color * weight[..., None], weight)]
    while levels[-1][1].shape[0] > 1:
        cw, w = levels[-1]
        h = w.shape[0] // 2
        cw2 = cw.reshape(h, 2, h, 2, -1).sum((1, 3))
        w2 = w.reshape(h, 2, h, 2).sum((1, 3))
        scale = np.minimum(w2, 1.0) / np.maximum(w2, 1e-8)
        levels.append((cw2 * scale[..., None], np.minimum(w2, 1.0)))
    cw, w = levels[-1]
    filled = cw + (1.0 - w[..., None]) * prior
    for cw, w in reversed(levels[:-1]):
        up = cv2.resize(filled, (w.shape[1], w.shape[0]), interpolation=cv2.INTER_LINEAR)
        up = up.reshape(w.shape + (-1,))
        filled = cw + (1.0 - w[..., None]) * up
    return filled


@dataclass(frozen=True)
class PhotoTrust:
    """Per photo pixel, float32 in [0, 1]."""

    region: np.ndarray  # (H, W) inside the face outline, away from the eye and mouth openings
    hair_prone: np.ndarray  # (H, W) near the outline and above the brows, where hair and background may cover the skin


def eye_distance(landmarks_px: np.ndarray, contours: FaceContours) -> float:
    """Distance between the eye centres (pixels): the photo's unit for every margin here."""
    right, left = (landmarks_px[e, :2].mean(0) for e in contours.eyes)
    return float(np.linalg.norm(right - left))


def trusted_photo_region(shape: tuple[int, int], landmarks_px: np.ndarray, contours: FaceContours) -> PhotoTrust:
    """Which photo pixels can be trusted to show the face's skin, and where hair may cover it."""
    h, w = shape
    iod = eye_distance(landmarks_px, contours)
    feather = max(FEATHER * iod, 1.0)

    def polygon(points: np.ndarray) -> np.ndarray:
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(points * 4).astype(np.int32)], 1, shift=2)
        return mask

    def grown(mask: np.ndarray, grow: float) -> np.ndarray:
        r = int(round(abs(grow)))
        if r:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            mask = cv2.dilate(mask, kernel) if grow > 0 else cv2.erode(mask, kernel)
        return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), feather / 2)

    oval = polygon(landmarks_px[contours.oval, :2])
    region = grown(oval, -OVAL_INSET * iod)
    for opening in (*contours.eyes, contours.mouth):
        region *= 1.0 - grown(polygon(landmarks_px[opening, :2]), OPENING_MARGIN * iod)
    depth = cv2.distanceTransform(oval, cv2.DIST_L2, 5)  # pixels inside the outline
    rim = 1.0 - smoothstep(0.0, RIM_WIDTH * iod, depth)
    forehead = smoothstep(BROW_CLEARANCE * iod, (BROW_CLEARANCE + FOREHEAD_RAMP) * iod,
                          height_above_brows((h, w), landmarks_px, contours))
    return PhotoTrust(np.clip(region, 0.0, 1.0), np.maximum(rim, forehead).astype(np.float32))


def _eye_frame(landmarks_px: np.ndarray, contours: FaceContours) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face's upright frame in the photo: the eyes' midpoint, the unit vector from
    one eye to the other, and the unit vector across it pointing away from the mouth."""
    centres = [landmarks_px[e, :2].mean(0) for e in contours.eyes]
    across = (centres[1] - centres[0]) / max(float(np.linalg.norm(centres[1] - centres[0])), 1e-6)
    origin = (centres[0] + centres[1]) / 2
    up = np.array([across[1], -across[0]])
    if np.dot(landmarks_px[contours.mouth, :2].mean(0) - origin, up) > 0:
        up = -up
    return origin, across, up


def _brow_coordinates(shape: tuple[int, int], landmarks_px: np.ndarray, contours: FaceContours) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float32 each: every photo pixel's position along the line between the eyes
    (from their midpoint), and how far it lies above the brows' upper edge, across that
    line (negative below; beyond the brows' ends the edge continues level), in pixels."""
    origin, across, up = _eye_frame(landmarks_px, contours)
    brows = landmarks_px[np.concatenate(contours.brows), :2] - origin
    along, height = brows @ across, brows @ up
    order = np.argsort(along)
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    px, py = xs - origin[0], ys - origin[1]
    pixel_along = px * across[0] + py * across[1]
    edge = np.interp(pixel_along, along[order], height[order])
    return pixel_along, (px * up[0] + py * up[1] - edge).astype(np.float32)


def height_above_brows(shape: tuple[int, int], landmarks_px: np.ndarray, contours: FaceContours) -> np.ndarray:
    """(H, W) float32: how far (pixels) each photo pixel lies above the brows' upper edge,
    measured across the line between the eyes (so a tilted head tilts it), negative below.
    Beyond the brows' ends the edge continues level."""
    return _brow_coordinates(shape, landmarks_px, contours)[1]


def hair_colour(photo: np.ndarray, landmarks_px: np.ndarray, contours: FaceContours, skin_lab: np.ndarray) -> np.ndarray | None:
    """The median colour (RGB 0..255) of the hair above the forehead, or None where the
    band there is mostly skin (a bald head, a high forehead) or out of the photo: the
    avatar then stays bald rather than wear a guess. A hat counts as hair."""
    iod = eye_distance(landmarks_px, contours)
    along, height = _brow_coordinates(photo.shape[:2], landmarks_px, contours)
    height /= iod
    band = (height > HAIR_BAND[0]) & (height < HAIR_BAND[1]) & (np.abs(along) < HAIR_BAND_HALF_WIDTH * iod)
    full_area = (HAIR_BAND[1] - HAIR_BAND[0]) * 2 * HAIR_BAND_HALF_WIDTH * iod**2
    if np.count_nonzero(band) < HAIR_BAND_SEEN * full_area:
        return None
    pixels = photo[band].astype(np.float32)
    hair = skin_likeness(pixels, skin_lab) < HAIR_SKIN_LIKENESS
    if hair.mean() < HAIR_MIN_SHARE:
        return None
    return np.median(pixels[hair], axis=0).astype(np.float32)


def cheek_vertices(model: FaceModel) -> np.ndarray:
    """(V,) 1 on the cheeks of the neutral face (between the eyes' and the mouth's height, beside the nose):
    the skin a portrait almost always shows bare, so the reference for the skin colour."""
    x, y = model.neutral[:, 0], model.neutral[:, 1]
    start, end = model.regions["face"]
    inside = (np.abs(x) > CHEEK_X_CM[0]) & (np.abs(x) < CHEEK_X_CM[1]) & (y > CHEEK_Y_CM[0]) & (y < CHEEK_Y_CM[1])
    inside[:start] = inside[end:] = False
    return inside.astype(np.float32)


def even_out_shading(rgb: np.ndarray, skin_weight: np.ndarray, skin_lab: np.ndarray, size: int) -> np.ndarray:
    """Take the photo's broad light and shadow out of the skin's lightness.

    The renderer lights the face itself; shading baked into the texture would
    light it twice and make a lit cheek clash with the evenly coloured head.
    The broad lightness of the skin (a weighted blur that only skin-coloured
    texels feed, so brows and hair do not pull it down) is pulled most of the
    way to the median skin lightness; detail smaller than the blur stays.
    """
    lab = _to_lab(rgb.reshape(-1, 3)).reshape(rgb.shape)
    # The estimate is smooth, so it is made on a grid 8x coarser and scaled back up.
    small = (max(size // 8, 1),) * 2
    sigma = SHADING_SCALE * small[0]

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(cv2.resize(x.astype(np.float32), small, interpolation=cv2.INTER_AREA), (0, 0), sigma)

    num, den = blur(lab[..., 0] * skin_weight), blur(skin_weight)
    broad = cv2.resize(np.where(den > 1e-3, num / np.maximum(den, 1e-3), skin_lab[0]).astype(np.float32), (size, size),
                       interpolation=cv2.INTER_LINEAR)
    gain = np.clip(skin_lab[0] / np.maximum(broad, 1.0), 1 / SHADING_MAX_GAIN, SHADING_MAX_GAIN) ** SHADING_REMOVAL
    lab[..., 0] = np.clip(lab[..., 0] * gain, 0, 100)
    out = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB) * 255.0
    return out.astype(np.float32)


def face_triangles(model: FaceModel, mesh: RenderMesh) -> np.ndarray:
    """Render triangles of the textured face skin."""
    return mesh.triangles[mesh.material[mesh.triangles[:, 0]] == model.material_names.index(FACE_MATERIAL)]


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) RGB 0..255 -> CIE Lab."""
    return cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.float32)[None] / 255.0, cv2.COLOR_RGB2Lab)[0]


def skin_likeness(rgb: np.ndarray, skin_lab: np.ndarray, lightness_spread: float = SKIN_LIGHTNESS_SPREAD) -> np.ndarray:
    """(..., 3) RGB -> (...) in (0, 1]: 1 for the skin colour, falling off with lightness
    (shadows, hair) and more steeply with hue and saturation (lips, background)."""
    lab = _to_lab(rgb.reshape(-1, 3)).reshape(rgb.shape)
    d_light = (lab[..., 0] - skin_lab[0]) / lightness_spread
    d_chroma = np.linalg.norm(lab[..., 1:] - skin_lab[1:], axis=-1) / SKIN_CHROMA_SPREAD
    return np.exp(-0.5 * (d_light**2 + d_chroma**2)).astype(np.float32)


def bake_photo_texture(model: FaceModel, mesh: RenderMesh, fit: PortraitFit, photo: np.ndarray, landmarks_px: np.ndarray,
                       contours: FaceContours, size: int, raster: AttributeRasterizer, look: FaceLook) -> BakedTexture:
    """The (size, size) face texture for the fitted identity, from `photo` (H, W, 3) uint8 RGB.
    `look` is the look the avatar is drawn in: its lash colour and lip strength paint the
    redrawn features, and its lip colour stands in when the photo shows no lips."""
    if size < 2 or size & (size - 1):
        raise ValueError(f"texture size must be a power of two, got {size}")
    h, w = photo.shape[:2]
    tris = face_triangles(model, mesh)

    # The fitted mesh, in the photo and in camera space.
    vertices = model.evaluate(fit.identity, fit.expression)
    projected = fit.project(vertices)  # (V, 3): u, v, depth (pixels, larger nearer)
    facing = (vertex_normals(vertices, model.triangles) @ fit.rotation.T)[:, 2]
    src = mesh.source[tris]  # (T, 3) model vertices

    # Visibility: the nearest skin at every photo pixel (eyes and lashes do not hide skin a photo shows).
    skin = np.isin(mesh.material[mesh.triangles[:, 0]], [model.material_names.index(m) for m in OCCLUDING_MATERIALS])
    occluders = mesh.source[mesh.triangles[skin]]
    depth = projected[:, 2]
    near, far = float(depth.max()), float(depth.min())
    z = 0.01 + 0.98 * (near - depth) / max(near - far, 1e-6)
    img_pos = np.stack([projected[:, 0] / w, projected[:, 1] / h, z], axis=1)
    depth_map, depth_covered = raster.rasterize(img_pos[occluders], depth[occluders][..., None], (w, h), depth_test=True)

    # Every face texel: its photo position, depth, facing, mirror texel, cheek flag.
    uv = mesh.uv[tris]  # (T, 3, 2)
    tex_pos = np.stack([uv[..., 0], 1.0 - uv[..., 1]], axis=-1)  # row 0 at the top
    mirror = mirror_vertices(model.neutral, np.unique(src))
    mirror_pos, has_mirror = mirror_texture_positions(src, tex_pos, mirror)
    has_mirror = np.repeat(has_mirror.astype(np.float32)[:, None], 3, axis=1)
    attrs = np.concatenate([projected[src], facing[src][..., None], mirror_pos, has_mirror[..., None],
                            cheek_vertices(model)[src][..., None]], axis=-1)
    rest = model.evaluate(fit.identity)[src]  # where each texel sits on the face at rest
    texel, covered = raster.rasterize(tex_pos, np.concatenate([attrs, rest], axis=-1), (size, size))
    u_img, v_img, t_depth, t_facing, mx, my, t_has_mirror, t_cheek = (texel[..., k] for k in range(8))
    t_rest = texel[..., 8:11].reshape(-1, 3)

    # 1. Photo weight and colour.
    px, py = u_img - 0.5, v_img - 0.5  # remap puts pixel centres at integer positions
    inside = covered & (px >= 0) & (py >= 0) & (px <= w - 1) & (py <= h - 1)
    iy, ix = np.clip(np.round(py).astype(int), 0, h - 1), np.clip(np.round(px).astype(int), 0, w - 1)
    visible = depth_covered[iy, ix] & (t_depth >= depth_map[iy, ix, 0] - DEPTH_TOLERANCE_CM * fit.scale)
    trust = trusted_photo_region((h, w), landmarks_px, contours)
    weight = (cv2.remap(trust.region, px, py, cv2.INTER_LINEAR, borderValue=0) * smoothstep(FACING_MIN, FACING_FULL, t_facing)
              * (inside & visible))
    colour = cv2.remap(photo.astype(np.float32), px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    # Skin colour, from the cheeks when they are seen well; then drop what is not skin where hair may be.
    reliable = weight > 0.8
    if np.count_nonzero(reliable & (t_cheek > 0.5)) >= 64:
        reliable &= t_cheek > 0.5
    if np.count_nonzero(reliable) < 16:
        raise ValueError("the photo shows too little of the face to take its colours")
    skin_rgb = np.median(colour[reliable], axis=0)
    skin_lab = _to_lab(skin_rgb[None])[0]
    hair_prone = cv2.remap(trust.hair_prone, px, py, cv2.INTER_LINEAR, borderValue=1)
    weight *= 1.0 - hair_prone * (1.0 - skin_likeness(colour, skin_lab))

    # 2. Mirror where the photo shows the other side better.
    mpx, mpy = mx * size - 0.5, my * size - 0.5
    m_weight = cv2.remap(weight, mpx, mpy, cv2.INTER_LINEAR, borderValue=0) * (t_has_mirror > 0.99) * covered
    m_colour = cv2.remap(colour, mpx, mpy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    total = weight + (1.0 - weight) * m_weight
    seen = (weight[..., None] * colour + ((1.0 - weight) * m_weight)[..., None] * m_colour) / np.maximum(total, 1e-6)[..., None]

    seen = even_out_shading(seen, total * skin_likeness(seen, skin_lab, SHADED_SKIN_LIGHTNESS_SPREAD), skin_lab, size)
    skin_like = skin_likeness(seen, skin_lab)

    # 3. Fill: extrapolate how the skin near the seen part differs from the median,
    # and let that difference fade with distance, so far away the fill is the median itself.
    source = total * skin_like
    residual = push_pull(seen - skin_rgb, source, np.zeros(3, np.float32))
    distance = cv2.distanceTransform((source < 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    fill = skin_rgb + residual * np.exp(-distance / (FILL_FADE * size))[..., None]
    out = total[..., None] * seen + (1.0 - total[..., None]) * fill

    # 4. Features: the lips and lid lines drawn on the model's own contours (see photo_features).
    landmarks = model.landmark_positions(fit.identity)
    near = covered.ravel() & near_features(t_rest, landmarks)
    points = t_rest[near]
    area = np.zeros(size * size, np.float32)
    area[near] = feature_area(points, landmarks)
    linear = ((out / 255.0) ** 2).reshape(-1, 3)
    skin_fill = push_pull(linear.reshape(size, size, 3), (1.0 - area.reshape(size, size)) * covered, (skin_rgb / 255.0) ** 2)
    lips = lip_coverage(points, landmarks)
    lip_rgb = photo_lip_colour(linear[near], lips, total.ravel()[near], skin_rgb)
    if lip_rgb is None:  # the look's lips relative to its skin, on this face's skin (a painting's ochre face gets ochre-red lips)
        lip_rgb = (skin_rgb / 255.0) ** 2 * np.array(linear_rgb(look.lip_color)) / np.maximum(linear_rgb(look.skin_color), 1e-3)
    colours = FeatureColours(lips=np.clip(lip_rgb, 0.0, 1.0), lip_strength=look.lip_strength,
                             lashes=np.array(linear_rgb(look.lash_color)), lash_strength=LID_LINE_STRENGTH)
    linear[near] = redraw_features(linear[near], points, area[near], skin_fill.reshape(-1, 3)[near], landmarks, lips, colours)
    out = np.sqrt(np.clip(linear, 0.0, 1.0)).reshape(size, size, 3) * 255.0
    total = total * (1.0 - area.reshape(size, size))
    # Gutters between UV islands continue their islands' edges, so filtering never blends in a foreign colour.
    grown = push_pull(out, covered.astype(np.float32), skin_rgb)
    out = np.where(covered[..., None], out, grown)
    image = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return BakedTexture(image, (total * covered).astype(np.float32), covered, skin_rgb.astype(np.float32),
                        hair_colour(photo, landmarks_px, contours, skin_lab))
