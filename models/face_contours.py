"""Closed outlines of MediaPipe's face landmarks: face oval, eye openings, mouth opening.

MediaPipe publishes its contours as unordered edge lists
(`FaceLandmarksConnections`); texture projection and fitting need them as
ordered polygons, which is what this turns them into.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canonical_mesh import CanonicalMesh


@dataclass(frozen=True)
class FaceContours:
    oval: np.ndarray  # landmark indices around the face, in order
    eyes: tuple[np.ndarray, np.ndarray]  # each eye opening (lid margins), in order
    mouth: np.ndarray  # the opening between the lips (inner lip line), in order


def _loops(edges: list[tuple[int, int]]) -> list[np.ndarray]:
    """Split an edge list made of disjoint cycles into ordered vertex loops."""
    neighbours: dict[int, list[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    loops, seen = [], set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        loop, prev, cur = [start], -1, start
        seen.add(start)
        while True:
            nxt = next((n for n in neighbours[cur] if n != prev and n not in seen), None)
            if nxt is None:
                break
            loop.append(nxt)
            seen.add(nxt)
            prev, cur = cur, nxt
        loops.append(np.array(loop))
    return loops


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def face_contours(canonical: CanonicalMesh) -> FaceContours:
    """The contours from MediaPipe's own connection lists; the canonical face tells
    which of the two lip loops is the inner one (the smaller)."""
    from mediapipe.tasks.python.vision import FaceLandmarksConnections as C  # heavy import, kept local

    def loops(connections: list) -> list[np.ndarray]:
        return _loops([(c.start, c.end) for c in connections])

    (oval,) = loops(C.FACE_LANDMARKS_FACE_OVAL)
    (right,) = loops(C.FACE_LANDMARKS_RIGHT_EYE)
    (left,) = loops(C.FACE_LANDMARKS_LEFT_EYE)
    lips = loops(C.FACE_LANDMARKS_LIPS)
    if len(lips) != 2:
        raise RuntimeError(f"MediaPipe's lip contour has {len(lips)} loops, expected outer and inner")
    inner = min(lips, key=lambda loop: polygon_area(canonical.vertices[loop, :2]))
    return FaceContours(oval, (right, left), inner)
