"""The tracked face: the only thing a privacy-safe renderer ever sees.

`FaceState` carries geometry and expression numbers, never pixels. Keeping the
camera image out of this type is what makes the avatar path privacy-safe by
construction: a renderer that takes a `FaceState` cannot leak what it was never
given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ARKit blendshape names in MediaPipe's output order (MediaPipe's `_neutral`
#: dropped). ARKit's `tongueOut` is last: MediaPipe does not estimate it, so the
#: tracker leaves it at 0, but other sources (the demo) may drive it.
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
NUM_BLENDSHAPES = len(BLENDSHAPE_NAMES)
BLENDSHAPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(BLENDSHAPE_NAMES)}
NUM_LANDMARKS = 478


def _mirror_name(name: str) -> str:
    if name.endswith("Left"):
        return name[: -len("Left")] + "Right"
    if name.endswith("Right"):
        return name[: -len("Right")] + "Left"
    return name


#: For each blendshape, the index of its left/right counterpart (itself when
#: symmetric). Indexing a score vector with it swaps the sides; this covers the
#: directional shapes too (jawLeft, mouthLeft), which also swap in a mirror.
MIRROR_PERMUTATION = np.array([BLENDSHAPE_INDEX[_mirror_name(n)] for n in BLENDSHAPE_NAMES], dtype=np.intp)


def identity_pose() -> np.ndarray:
    """A head facing the camera at a typical webcam distance (50 cm)."""
    pose = np.eye(4, dtype=np.float32)
    pose[2, 3] = -50.0
    return pose


@dataclass(frozen=True)
class FaceState:
    """One moment of the tracked face.

    `head_pose` maps the canonical face model (centimetres, y up, +z towards the
    camera) into camera space, as MediaPipe's facial transformation matrix does.
    `landmarks` are MediaPipe's 478 points in normalized image coordinates, or
    None when the state was not tracked from an image (demo, eased to neutral).
    `timestamp` is the monotonic time (seconds) at which the source produced it:
    end-to-end latency is measured from it. `rest_blendshapes` is this face's
    resting expression as estimated so far (`expression_rest`), or None where
    nothing estimated it.
    """

    present: bool
    blendshapes: np.ndarray  # (52,) float32, BLENDSHAPE_NAMES order, in [0, 1]
    head_pose: np.ndarray  # (4, 4) float32
    timestamp: float
    landmarks: np.ndarray | None = None  # (478, 3) float32
    rest_blendshapes: np.ndarray | None = None  # (52,) float32, like `blendshapes`

    def __post_init__(self) -> None:
        if self.blendshapes.shape != (NUM_BLENDSHAPES,):
            raise ValueError(f"FaceState.blendshapes must have shape ({NUM_BLENDSHAPES},), got {self.blendshapes.shape}")
        if self.rest_blendshapes is not None and self.rest_blendshapes.shape != (NUM_BLENDSHAPES,):
            raise ValueError(f"FaceState.rest_blendshapes must have shape ({NUM_BLENDSHAPES},), got {self.rest_blendshapes.shape}")
        if self.head_pose.shape != (4, 4):
            raise ValueError(f"FaceState.head_pose must have shape (4, 4), got {self.head_pose.shape}")
        if self.landmarks is not None and self.landmarks.shape != (NUM_LANDMARKS, 3):
            raise ValueError(f"FaceState.landmarks must have shape ({NUM_LANDMARKS}, 3), got {self.landmarks.shape}")

    def score(self, name: str) -> float:
        return float(self.blendshapes[BLENDSHAPE_INDEX[name]])

    def blendshape_dict(self) -> dict[str, float]:
        return {name: round(float(v), 4) for name, v in zip(BLENDSHAPE_NAMES, self.blendshapes)}

    @staticmethod
    def neutral(timestamp: float, present: bool = False) -> "FaceState":
        return FaceState(
            present=present,
            blendshapes=np.zeros(NUM_BLENDSHAPES, np.float32),
            head_pose=identity_pose(),
            timestamp=timestamp,
        )


def blendshapes_from_scores(scores: dict[str, float]) -> np.ndarray:
    """Scores by ARKit name -> vector; unknown names (MediaPipe's `_neutral`) are ignored."""
    vec = np.zeros(NUM_BLENDSHAPES, np.float32)
    for name, value in scores.items():
        i = BLENDSHAPE_INDEX.get(name)
        if i is not None:
            vec[i] = value
    return vec
