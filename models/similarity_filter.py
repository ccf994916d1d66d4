"""The stochastic similarity filter of StreamDiffusion (arXiv 2312.12491, sec. 3.4).

A camera pointed at a still scene sends nearly the same frame again and
again; denoising each one costs full GPU power for no visible change. The
filter compares the new frame with the last frame that was processed, by
cosine similarity SC, and skips it with probability

    P(skip) = max(0, (SC - threshold) / (1 - threshold))

so an identical frame is always skipped, one below the threshold never is,
and in between the chance of skipping grows smoothly with the similarity (a
hard cut would freeze slow motion until it crossed the threshold).

It works on the host frame, before anything reaches the GPU: deciding there
needs no device synchronisation, and a skipped frame costs no transfer.
Every `stride`-th pixel in each direction is enough to tell a change.
"""

from __future__ import annotations

import numpy as np


class SimilarityFilter:
    """Decides, frame by frame, whether a frame may be skipped; seeded, so runs repeat."""

    def __init__(self, threshold: float, seed: int = 0, stride: int = 4) -> None:
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"similarity threshold must be in [0, 1), got {threshold}")
        self.threshold = threshold
        self.stride = stride
        self._rng = np.random.default_rng(seed)
        self._reference: np.ndarray | None = None
        self._reference_norm = 0.0

    def reset(self) -> None:
        """Forget the reference: the next frame is always processed."""
        self._reference = None

    def similarity(self, frame: np.ndarray) -> float:
        """Cosine similarity of `frame` with the reference (0 when there is none)."""
        return self._similarity(self._sample(frame))

    def should_skip(self, frame: np.ndarray) -> bool:
        """True to skip `frame` (reuse the last output); otherwise it becomes the reference."""
        sample = self._sample(frame)
        p_skip = max(0.0, (self._similarity(sample) - self.threshold) / (1.0 - self.threshold))
        if self._reference is not None and self._rng.random() < p_skip:
            return True
        self._reference = sample
        self._reference_norm = float(np.linalg.norm(sample))
        return False

    def _similarity(self, sample: np.ndarray) -> float:
        if self._reference is None:
            return 0.0
        norm = float(np.linalg.norm(sample))
        denom = norm * self._reference_norm
        if denom == 0:  # a black frame: similar only to another black frame
            return float(norm == self._reference_norm)
        return float(np.dot(sample, self._reference) / denom)

    def _sample(self, frame: np.ndarray) -> np.ndarray:
        return np.asarray(frame[:: self.stride, :: self.stride], np.float32).ravel()
