"""The enrollment matte: head and hair in, the room out, cut alike in every frame with the clip's own colours."""

from __future__ import annotations

import numpy as np

from veilcam.models.head_matte import head_matte, learn_colours

SIZE = 96
ROOM, WALL, SKIN, HAIR = (105, 120, 135), (235, 190, 160), (190, 135, 105), (45, 32, 26)


def synthetic_clip(frames: int = 12) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, np.ndarray]]:
    """Head crops of a head that sways before a grey room with a warm, skin-like wall on the left: in the crop (which
    follows the head) the wall's edge moves, and near the head it lies inside the band where hair may be."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    face = ((xx - 48) / 20) ** 2 + ((yy - 50) / 26) ** 2 <= 1
    hair = (((xx - 48) / 25) ** 2 + ((yy - 44) / 30) ** 2 <= 1) & ~face & (yy < 50)
    crops, coverages = [], []
    for i in range(frames):
        image = np.empty((SIZE, SIZE, 3), np.float64)
        image[:] = ROOM
        image[:, :24 + 3 * (i % 4)] = WALL
        image[hair] = HAIR
        image[face] = SKIN
        crops.append(np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8))
        coverages.append(face)
    regions = {"face inside": ((xx - 48) / 18) ** 2 + ((yy - 50) / 24) ** 2 <= 1, "hair": hair,
               "wall near the head": (xx >= 14) & (xx < 48) & (yy > 30) & (yy < 60) & ~hair & ~face,
               "room": (xx > 82) & (yy < 60)}
    return crops, coverages, regions


def test_the_clips_colours_keep_the_head_and_hair_and_leave_out_a_wall_the_colour_of_skin() -> None:
    crops, coverages, regions = synthetic_clip()
    colours = learn_colours(crops[::3], coverages[::3])
    chin = 76.0
    mattes = [head_matte(c, v, chin, colours) for c, v in zip(crops, coverages)]
    for matte in mattes:
        assert matte.dtype == np.float32 and matte.shape == (SIZE, SIZE)
        assert matte[regions["face inside"] & (np.arange(SIZE)[:, None] < chin)].min() > 0.9
        assert np.mean(matte[regions["hair"]] > 0.5) > 0.9
        assert np.mean(matte[regions["wall near the head"]] > 0.5) < 0.02  # at most the soft rim beside the hair
        assert matte[regions["room"]].max() < 0.1
        assert matte[-1].max() == 0.0  # faded out below the chin
    # Cut with the same colours, the frames' mattes differ only where their pixels do.
    assert max(float(np.abs(a - b)[:60].mean()) for a, b in zip(mattes, mattes[1:])) < 0.01


def test_a_colour_the_clip_shows_as_room_is_room_beside_the_head_in_a_frame_that_shows_it_only_there() -> None:
    """A wall that, in one frame, shows only in the band beside the head: alone, that frame learns it as the head's
    colour; with the clip's colours, learned where the wall shows far from the head in other frames, it is room."""
    crops, coverages, regions = synthetic_clip()
    patch = regions["wall near the head"]
    alone = crops[5].copy()
    alone[:, :24] = ROOM
    alone[patch] = WALL
    crops[5] = alone
    clip = head_matte(alone, coverages[5], 76.0, learn_colours(crops, coverages))
    by_itself = head_matte(alone, coverages[5], 76.0, learn_colours([alone], [coverages[5]]))
    assert np.mean(by_itself[patch] > 0.5) > 0.5
    assert np.mean(clip[patch] > 0.5) < 0.02
    assert clip[regions["face inside"]].min() > 0.9 and np.mean(clip[regions["hair"]] > 0.5) > 0.9
