"""Outlines of MediaPipe's face landmarks: face oval, eye openings, mouth opening, brows.

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
    brows: tuple[np.ndarray, np.ndarray]  # each brow's upper edge, in order across the face


def _paths(edges: list[tuple[int, int]]) -> list[np.ndarray]:
    """Split an edge list made of disjoint cycles and open lines into ordered vertex lists
    (a line from one of its ends)."""
    neighbours: dict[int, list[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    ends = sorted(v for v, n in neighbours.items() if len(n) == 1)
    paths, seen = [], set()
    for start in ends + sorted(neighbours):
        if start in seen:
            continue
        path, prev, cur = [start], -1, start
        seen.add(start)
        while (nxt := next((n for n in neighbours[cur] if n != prev and n not in seen), None)) is not None:
            path.append(nxt)
            seen.add(nxt)
            prev, cur = cur, nxt
        paths.append(np.array(path))
    return paths


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def face_contours(canonical: CanonicalMesh) -> FaceContours:
    """The contours from MediaPipe's own connection lists; the canonical face tells
    which of the two lip loops is the inner one (the smaller) and which of a brow's
    two lines is its upper edge (the higher; the canonical face's y points up)."""
    from mediapipe.tasks.python.vision import FaceLandmarksConnections as C  # heavy import, kept local

    def paths(connections: list) -> list[np.ndarray]:
        return _paths([(c.start, c.end) for c in connections])

    (oval,) = paths(C.FACE_LANDMARKS_FACE_OVAL)
    (right,) = paths(C.FACE_LANDMARKS_RIGHT_EYE)
    (left,) = paths(C.FACE_LANDMARKS_LEFT_EYE)
    lips = paths(C.FACE_LANDMARKS_LIPS)
    if len(lips) != 2:
        raise RuntimeError(f"MediaPipe's lip contour has {len(lips)} loops, expected outer and inner")
    inner = min(lips, key=lambda loop: polygon_area(canonical.vertices[loop, :2]))

    def upper_edge(connections: list) -> np.ndarray:
        lines = paths(connections)
        if len(lines) != 2:
            raise RuntimeError(f"MediaPipe's brow contour has {len(lines)} lines, expected upper and lower")
        upper = max(lines, key=lambda line: float(canonical.vertices[line, 1].mean()))
        return upper[np.argsort(canonical.vertices[upper, 0])]

    brows = (upper_edge(C.FACE_LANDMARKS_RIGHT_EYEBROW), upper_edge(C.FACE_LANDMARKS_LEFT_EYEBROW))
    return FaceContours(oval, (right, left), inner, brows)
