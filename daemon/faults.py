"""Faults on demand: what the fault-matrix tests and `veilcam bench-live` inject.

A `FaultPlan` is shared by every renderer and tracker built under it, so a
fault fires once at a chosen frame and the replacement the live pipeline
builds afterwards runs clean: that is how recovery is observed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from veilcam.models.face_state import FaceState
from veilcam.models.landmarker import FaceLandmarker
from veilcam.models.renderer import FaceRenderer

from .config import Config
from .live import ProcessorBuilder
from .pipeline import FrameProcessor, Processor
from .report import RunStats
from .selection import Selection

KINDS = ("raise", "hang", "oom", "tracker")


def out_of_memory_error() -> BaseException:
    """The error a GPU renderer raises when CUDA runs out of memory (a host MemoryError without torch)."""
    try:
        import torch
    except ImportError:
        return MemoryError("out of memory (injected)")
    return torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")


@dataclass
class FaultPlan:
    kind: str
    at_frame: int = 10  # counted over everything built under this plan
    hang_s: float = 2.0
    avatars: tuple[str, ...] = ()  # only these avatars fault (all when empty)
    frames: int = 0
    fired_at: list[float] = field(default_factory=list)  # perf_counter() of each fault
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r} (choose one of {', '.join(KINDS)})")
        # Made now: importing torch mid-run would hold the GIL for seconds and stall the output.
        self._oom = out_of_memory_error() if self.kind == "oom" else None

    def rearm(self, at_frame: int) -> None:
        with self._lock:
            self.at_frame = at_frame

    def due(self) -> bool:
        with self._lock:
            self.frames += 1
            if self.frames != self.at_frame:
                return False
            self.fired_at.append(time.perf_counter())
            return True

    def strike(self) -> None:
        if self.kind == "hang":
            time.sleep(self.hang_s)
        elif self._oom is not None:
            raise self._oom
        else:
            raise RuntimeError(f"injected {self.kind} fault")


class FaultyRenderer(FaceRenderer):
    def __init__(self, inner: FaceRenderer, plan: FaultPlan) -> None:
        super().__init__(inner.width, inner.height)
        self.inner, self.plan = inner, plan

    def render(self, state: FaceState) -> np.ndarray:
        if self.plan.due():
            self.plan.strike()
        return self.inner.render(state)

    def close(self) -> None:
        self.inner.close()


class FaultyTracker:
    """A real `FaceLandmarker` that raises once, when the plan says."""

    def __init__(self, inner: FaceLandmarker, plan: FaultPlan) -> None:
        self.inner, self.plan = inner, plan

    def track(self, rgb: np.ndarray, timestamp: float) -> FaceState:
        if self.plan.due():
            self.plan.strike()
        return self.inner.track(rgb, timestamp)

    def close(self) -> None:
        self.inner.close()


def faulty_builder(base: ProcessorBuilder, plan: FaultPlan) -> ProcessorBuilder:
    """`base`, with the plan's fault wired into the renderer (or the tracker) of every avatar it builds."""

    def build(selection: Selection, config: Config, stats: RunStats) -> Processor:
        processor = base(selection, config, stats)
        if isinstance(processor, FrameProcessor) and (not plan.avatars or selection.avatar in plan.avatars):
            if plan.kind == "tracker":
                if processor.tracker is not None:
                    processor.tracker = FaultyTracker(processor.tracker, plan)  # type: ignore[assignment]
            else:
                processor.renderer = FaultyRenderer(processor.renderer, plan)
        return processor

    return build

