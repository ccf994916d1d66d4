"""What `veilcam avatar record` asks the person to do, and when it moves on.

A neural avatar draws faintly, or not at all, what its enrollment clip never
shows, and warping the clip's frames can stand in only for expressions that
move skin over skin (`expression_warp`): not an open mouth's teeth, not
puckering while smiling. A clip recorded without a script tends to be a calm
face talking. So the recording asks for each expression in turn, watches the
tracker's scores, and moves on once the person has held it long enough for
enrollment to count it as shown: past `WarpSettings.lacking_below` in 2 %
of the clip's frames (`WarpSettings.reach_quantile` is the 98th percentile),
which a hold of 1 s is for a clip of 50 s. A prompt the person cannot do ends after its time limit, so
nobody is stuck on it; the summary says what the clip still lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from veilcam.models.expression_warp import WarpSettings
from veilcam.models.face_state import BLENDSHAPE_INDEX, FaceState

from .eval_fidelity import head_angles

_SHOWN = WarpSettings().lacking_below


@dataclass(frozen=True)
class Prompt:
    """One instruction. It is met when every one of `channels` has stood at `target` or more for `hold_s` seconds
    (in total) or, for a head prompt, when the head has turned past `turn_deg` both ways about `axis` from where it
    was as the prompt began; a prompt with neither is timed and lasts `limit_s`. An unmet prompt ends after
    `limit_s`."""

    text: str
    channels: tuple[str, ...] = ()
    target: float = _SHOWN
    axis: str = ""  # "yaw" or "pitch" for a head prompt
    turn_deg: float = 0.0
    hold_s: float = 1.0
    limit_s: float = 6.0

    @property
    def timed(self) -> bool:
        return not self.channels and not self.axis


#: About 30-60 seconds for someone who does each at once; the expressions the network needs most first.
SCRIPT: tuple[Prompt, ...] = (
    Prompt("Look at the camera with a relaxed face", limit_s=2.0),
    Prompt("Raise your eyebrows", ("browInnerUp", "browOuterUpLeft", "browOuterUpRight")),
    Prompt("Frown: pull your eyebrows down", ("browDownLeft", "browDownRight")),
    Prompt("Close your eyes", ("eyeBlinkLeft", "eyeBlinkRight")),
    Prompt("Smile with your lips closed", ("mouthSmileLeft", "mouthSmileRight")),
    Prompt("Smile broadly, showing your teeth", ("mouthSmileLeft", "mouthSmileRight", "jawOpen"), target=0.3),
    Prompt("Pucker your lips, as for a kiss", ("mouthPucker",)),
    Prompt("Pucker while smiling", ("mouthPucker", "mouthSmileLeft", "mouthSmileRight"), target=0.3),
    Prompt("Open your mouth wide", ("jawOpen",)),
    Prompt("Press your lips together", ("mouthPressLeft", "mouthPressRight"), target=0.3),
    Prompt("Look down with your eyes, keeping your head still", ("eyeLookDownLeft", "eyeLookDownRight")),
    Prompt("Turn your head slowly to one side, then the other", axis="yaw", turn_deg=20.0, limit_s=8.0),
    Prompt("Tilt your head slowly up, then down", axis="pitch", turn_deg=12.0, limit_s=8.0),
    Prompt("Talk for a few seconds, as in a meeting", limit_s=5.0),
)


@dataclass
class PromptOutcome:
    prompt: Prompt
    start_s: float
    end_s: float | None = None  # None: still running
    met: bool = False
    best: float = 0.0  # the least of its channels' scores at their best frame, or the smaller turn (degrees)

    def verdict(self) -> str:
        p = self.prompt
        if self.met:
            return "done"
        if p.timed:
            return "time's up"
        return f"not reached (best {self.best:.2f} of {p.turn_deg if p.axis else p.target:g}{' degrees' if p.axis else ''})"


@dataclass
class ScriptRun:
    """Follows the person through `script`, frame by frame (`update`), on the source's own clock."""

    script: tuple[Prompt, ...] = SCRIPT
    outcomes: list[PromptOutcome] = field(default_factory=list)
    _held_s: float = field(default=0.0, init=False)
    _turns: tuple[float, float] = field(default=(0.0, 0.0), init=False)  # furthest each way, degrees from `_origin`
    _origin: float | None = field(default=None, init=False)  # the angle as the head prompt began
    _last_t: float | None = field(default=None, init=False)

    @property
    def done(self) -> bool:
        return len(self.outcomes) == len(self.script) and self.outcomes[-1].end_s is not None

    @property
    def current(self) -> PromptOutcome | None:
        return None if self.done or not self.outcomes else self.outcomes[-1]

    def update(self, state: FaceState, t: float) -> float:
        """Takes the frame at `t` seconds; returns how far the current prompt is (0-1: its channels' least score
        over the target, the hold so far, or the time for a timed prompt)."""
        if self.done:
            return 1.0
        if not self.outcomes:
            self.outcomes.append(PromptOutcome(self.script[0], t))
        outcome = self.outcomes[-1]
        prompt = outcome.prompt
        dt = 0.0 if self._last_t is None else max(0.0, t - self._last_t)
        self._last_t = t
        elapsed = t - outcome.start_s
        if prompt.timed:
            progress = min(1.0, elapsed / prompt.limit_s)
            met = elapsed >= prompt.limit_s
        elif prompt.axis:
            outcome.best = self._turned(prompt, state)
            progress = min(1.0, outcome.best / prompt.turn_deg)
            met = outcome.best >= prompt.turn_deg
        else:
            level = min(float(state.blendshapes[BLENDSHAPE_INDEX[c]]) for c in prompt.channels) if state.present else 0.0
            outcome.best = max(outcome.best, level)
            if level >= prompt.target:
                self._held_s += dt
            met = self._held_s >= prompt.hold_s
            progress = min(1.0, level / prompt.target) * (0.5 + 0.5 * min(1.0, self._held_s / prompt.hold_s))
        if met or elapsed >= prompt.limit_s:
            outcome.met, outcome.end_s = met, t
            self._held_s, self._turns, self._origin = 0.0, (0.0, 0.0), None
            if len(self.outcomes) < len(self.script):
                self.outcomes.append(PromptOutcome(self.script[len(self.outcomes)], t))
        return progress

    def _turned(self, prompt: Prompt, state: FaceState) -> float:
        """The smaller of the furthest turns each way about `prompt.axis` so far, degrees (0 until it has turned both ways)."""
        if state.present:
            angle = float(head_angles(state.head_pose)[0 if prompt.axis == "yaw" else 1])
            if self._origin is None:  # a person seated off the camera's axis turns from where they sit
                self._origin = angle
            angle -= self._origin
            self._turns = (max(self._turns[0], angle), min(self._turns[1], angle))
        return min(self._turns[0], -self._turns[1])


def meter(progress: float, width: int = 20) -> str:
    filled = int(round(np.clip(progress, 0.0, 1.0) * width))
    return "#" * filled + "-" * (width - filled)
