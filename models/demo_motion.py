"""A believable face with no camera: blinks, speech-like mouth, head sway.

Drives avatars for the demo source, tests and benchmarks, so VeilCam can be
tried on a machine without a webcam. It is a pure function of time (events are
drawn once from a seeded generator), so the same `t` always gives the same face.
"""

from __future__ import annotations

import math

import numpy as np

from .face_state import BLENDSHAPE_INDEX, NUM_BLENDSHAPES, FaceState, identity_pose

_PERIOD_S = 600.0  # the timeline repeats after this long


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def _pulse(t: float, starts: np.ndarray, rise: float, hold: float, fall: float) -> float:
    """Height at `t` of the most recent of a train of rise-hold-fall pulses."""
    i = np.searchsorted(starts, t) - 1
    if i < 0:
        return 0.0
    dt = t - starts[i]
    if dt < rise:
        return dt / rise
    if dt < rise + hold:
        return 1.0
    if dt < rise + hold + fall:
        return 1.0 - (dt - rise - hold) / fall
    return 0.0


class DemoMotion:
    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self._blinks = np.cumsum(rng.uniform(2.0, 5.0, 400))
        self._smiles = np.cumsum(rng.uniform(6.0, 12.0, 100))
        self._brows = np.cumsum(rng.uniform(3.0, 7.0, 200))
        self._gaze_at = np.cumsum(rng.uniform(1.5, 4.0, 400))
        self._gaze = rng.uniform(-1, 1, (400, 2)) * np.array([0.5, 0.35])
        # Phrases: talk for 1.5-4 s, pause 0.6-1.8 s.
        lengths = rng.uniform(1.5, 4.0, 300)
        pauses = rng.uniform(0.6, 1.8, 300)
        self._phrase_start = np.cumsum(np.r_[0.5, (lengths + pauses)[:-1]])
        self._phrase_end = self._phrase_start + lengths
        self._syllable_amp = rng.uniform(0.25, 1.0, 4000)
        self._vowel_round = rng.uniform(0, 1, 4000) > 0.75

    def __call__(self, t: float, timestamp: float | None = None) -> FaceState:
        t = t % _PERIOD_S
        w = np.zeros(NUM_BLENDSHAPES, np.float32)

        def put(name: str, value: float) -> None:
            w[BLENDSHAPE_INDEX[name]] = min(max(value, 0.0), 1.0)

        blink = _pulse(t, self._blinks, 0.07, 0.04, 0.11)
        put("eyeBlinkLeft", blink)
        put("eyeBlinkRight", blink)

        i = np.searchsorted(self._phrase_start, t) - 1
        if i >= 0 and t < self._phrase_end[i]:
            phase = (t - self._phrase_start[i]) * 4.5  # syllables per second
            k = int(phase) % len(self._syllable_amp)
            open_amount = self._syllable_amp[k] * math.sin(math.pi * (phase % 1.0)) ** 2
            put("jawOpen", 0.05 + 0.45 * open_amount)
            if self._vowel_round[k]:
                put("mouthFunnel", 0.5 * open_amount)
                put("mouthPucker", 0.4 * open_amount)
            else:
                put("mouthStretchLeft", 0.15 * open_amount)
                put("mouthStretchRight", 0.15 * open_amount)
            put("mouthClose", 0.1 * (1 - open_amount))

        smile = _pulse(t, self._smiles, 0.4, 1.6, 0.6)
        put("mouthSmileLeft", 0.7 * smile)
        put("mouthSmileRight", 0.65 * smile)
        put("cheekSquintLeft", 0.3 * smile)
        put("cheekSquintRight", 0.3 * smile)
        put("eyeSquintLeft", 0.2 * smile)
        put("eyeSquintRight", 0.2 * smile)
        put("browInnerUp", 0.6 * _pulse(t, self._brows, 0.2, 0.5, 0.4))

        g = self._gaze[max(np.searchsorted(self._gaze_at, t) - 1, 0)]
        put("eyeLookOutLeft", g[0])
        put("eyeLookInRight", g[0])
        put("eyeLookInLeft", -g[0])
        put("eyeLookOutRight", -g[0])
        put("eyeLookUpLeft", g[1])
        put("eyeLookUpRight", g[1])
        put("eyeLookDownLeft", -g[1])
        put("eyeLookDownRight", -g[1])

        two_pi = 2 * math.pi
        yaw = math.radians(9 * math.sin(two_pi * 0.11 * t) + 3 * math.sin(two_pi * 0.31 * t + 1.0))
        pitch = math.radians(4 * math.sin(two_pi * 0.17 * t + 0.5) + 2 * math.sin(two_pi * 0.43 * t))
        roll = math.radians(3 * math.sin(two_pi * 0.13 * t + 2.0))
        pose = identity_pose()
        pose[:3, :3] = _rotation(yaw, pitch, roll)
        pose[0, 3] = 1.5 * math.sin(two_pi * 0.07 * t)
        pose[1, 3] = 0.8 * math.sin(two_pi * 0.09 * t + 1.0)
        return FaceState(True, w, pose, t if timestamp is None else timestamp)
