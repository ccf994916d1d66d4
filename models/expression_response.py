"""How strongly an avatar's expression reads, measured on the avatar itself, and the scores that make it read as asked.

The tracker's scores are not proportional to how far the face moves: it reads
nothing of a small brow raise and then rises steeply. The face model moves in
proportion to its weights, so an avatar posed with a driver's score of 0.2
moves its brows a fifth of the way and the tracker reads about 0 on it: on
the shared clips a neural avatar's brows read 0.05 at rest and still 0.05 at
a quarter raise, and a man's brow raises (scores 0.1-0.5) barely showed.
Rendering the avatar at known scores and tracking the renders measures that
response; inverting it gives, for each score the driver shows, the score to
pose the avatar with so that it reads the same.

The response is measured in the poses of the enrollment clip itself: each
level posed over a handful of the clip's tracked states (their other
expressions, their head turns), read as the mean. Posed alone, on a still,
straight face, a neural avatar's brows read 0.67 at full and 0.31 at 0.6; in
its clip's states 0.47 and 0.18, since the tracker reads brows less on a
turned head or beside other moving expressions, which is how a driver poses
it. Inverted, the curve measured alone left a man's moderate brow raises
(scores 0.1-0.5) too small to read: driven by p1, `sf_a`'s brows correlated
0.72 with the curve measured alone and 0.79 with the one measured in context.

The brows and the smiles are calibrated (`CALIBRATED`), the brows past the
face model's full raise (`REACH`). A neural avatar's
smiles have a dead zone too: in its clip's poses they read 0.02 at 0.2 and
0.14 at 0.4, so a driver's small smiles (0.1-0.3) did not show: driven by
p3, `ic_b`'s smiles correlated 0.93 / 0.92 uncalibrated and 0.95 / 0.96
calibrated. A channel is measured with only its own scores changed, so its
curve holds only where nothing else moves the same skin much: the other
mouth channels share the lips, and a talking face holds many small mouth
scores at once. Calibrating every channel of the face-model looks alone
lifted a calm clip's pucker but lowered both talking clips (README,
"Face-model avatars"), and the blinks so calibrated on a neural avatar read
worse on p1 and p3 (the lids move with gaze and squint too).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .face_state import BLENDSHAPE_INDEX, NUM_BLENDSHAPES, FaceState, identity_pose
from .renderer import rgb_of

#: Channels calibrated as one group, posed together (brows rise together) and read as their mean.
#: Packs keep the readings of the groups in this order; older packs measured only the first (the brows).
CALIBRATED: dict[str, tuple[str, ...]] = {"brows up": ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
                                          "smile": ("mouthSmileLeft", "mouthSmileRight")}
#: How far past full weight (1) the inverse may pose each group. The face model's full brow raise reads 0.45-0.47 in
#: a neural avatar's clip's poses, where a driver's real raise reads up to 1, so every raise over about half a driver's
#: range drew the same brows: driven by p3, whose re-based brows span 0.25-0.98, three networks' brows correlated 0.85
#: posed up to full and 0.90 posed up to 1.5 (where they read 0.78-0.81, the brows higher and the forehead creased;
#: at 2 they blur into a band). A smile at full already reads 0.80-0.83, and past it the mouth opens: driven by p4,
#: the same networks' jaw fell from 0.94-0.96 to 0.87-0.92 with smiles posed up to 1.5.
REACH: dict[str, float] = {"brows up": 1.5, "smile": 1.0}
#: The scores the avatar is rendered at, every group at every level (a smile's reading past full says how far it
#: could go; the inverse uses the levels up to each group's `REACH`). One level past full, not two: each costs
#: enrollment about 1.5-3.5 s, and the brows read close to linear between full and 1.5 (0.47, 0.66 at 1.25, 0.80).
LEVELS = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5], np.float32)
#: Packs made before stop 29 measured the levels up to full only.
OLDER_LEVELS = 6
#: The enrollment clip's states each level is posed in, spread over the clip.
CONTEXTS = 10
#: A level whose reading has not risen this far above the reading at 0 is still in the dead zone.
MIN_RISE = 0.02
#: The tracker (VIDEO mode) smooths over time, so each level is shown for this many frames this far apart, and the
#: last is read: a calibration whose frames follow closely reads the previous level.
FRAMES_PER_LEVEL, FRAME_SPACING_S = 3, 1.0


def measure_response(render: Callable[[FaceState], np.ndarray], track: Callable[[np.ndarray, float], FaceState],
                     contexts: Sequence[FaceState] = ()) -> np.ndarray:
    """(groups, levels) readings of each `CALIBRATED` group posed at each of `LEVELS`, from `render` (a FaceState ->
    RGBA frame, as `FaceRenderer.render`) and `track` (a frame and its time -> FaceState). Each level is posed in each of `contexts` (its other
    expressions and head pose kept, the group's own scores set to the level) and read as the mean; without contexts,
    alone on a straight face at rest. A level the tracker finds no face in, in any context, reads NaN."""
    poses = [(c.blendshapes, c.head_pose) for c in contexts] or [(np.zeros(NUM_BLENDSHAPES, np.float32), identity_pose())]
    readings = np.full((len(CALIBRATED), len(LEVELS)), np.nan, np.float32)
    t = 0.0
    for g, names in enumerate(CALIBRATED.values()):
        index = [BLENDSHAPE_INDEX[n] for n in names]
        for k, level in enumerate(LEVELS):
            seen_levels = []
            for blendshapes, head_pose in poses:
                scores = np.array(blendshapes, np.float32)
                scores[index] = level
                for _ in range(FRAMES_PER_LEVEL):
                    frame = render(FaceState(True, scores, head_pose, t))
                    seen = track(rgb_of(frame), t)
                    t += FRAME_SPACING_S
                if seen.present:
                    seen_levels.append(float(np.mean(seen.blendshapes[index])))
            if seen_levels:
                readings[g, k] = float(np.mean(seen_levels))
    return readings


class ResponseInverse:
    """Scores as the avatar should read them -> the scores to pose it with, from its measured `readings` (groups, levels):
    the first groups of `CALIBRATED`, all of them or as many as a pack made before the rest were measured holds, at
    `LEVELS` or, from a pack made before they went past full, at the first `OLDER_LEVELS` of them.

    Per group, the curve is the levels up to its `REACH` and their readings, made non-decreasing, with the levels still
    in the dead zone left out, from (0, 0): a score inside the dead zone poses the avatar part of the way to the first
    level that reads, and a score over the highest reading poses it at the highest level. A group whose readings never
    rise is left as it is."""

    def __init__(self, readings: np.ndarray) -> None:
        readings = np.asarray(readings, np.float32)
        if readings.ndim != 2 or not 1 <= len(readings) <= len(CALIBRATED) or readings.shape[1] not in (OLDER_LEVELS, len(LEVELS)) \
                or not np.all(np.isfinite(readings)):
            raise ValueError(f"response readings must be finite, of shape (1 to {len(CALIBRATED)}, {len(LEVELS)} or {OLDER_LEVELS})")
        levels = LEVELS[:readings.shape[1]]
        self._curves: list[tuple[list[int], np.ndarray, np.ndarray]] = []
        for (group, names), row in zip(CALIBRATED.items(), readings):
            rising = np.maximum.accumulate(row)
            keep = [k for k in range(1, len(levels)) if levels[k] <= REACH[group] and rising[k] > rising[0] + MIN_RISE]
            keep = [k for i, k in enumerate(keep) if i == 0 or rising[k] > rising[keep[i - 1]]]  # strictly rising
            if keep:
                self._curves.append(([BLENDSHAPE_INDEX[n] for n in names], np.concatenate([[0.0], rising[keep]]),
                                     np.concatenate([[0.0], levels[keep]])))

    def __call__(self, blendshapes: np.ndarray) -> np.ndarray:
        if not self._curves:
            return blendshapes
        out = np.array(blendshapes, np.float32)
        for index, reads, levels in self._curves:
            out[index] = np.interp(out[index], reads, levels)
        return out
