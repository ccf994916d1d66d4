"""MediaPipe's face landmarker C call, made on the caller's thread, its result read straight into arrays.

Why: mediapipe 1.2's Python wrapper hands every call to a one-thread executor
and then builds about 530 Python objects (478 landmarks, 52 categories) per
frame. On a 2-core laptop that is about 1 ms of a 10 ms tracking budget, and
the executor hop adds a thread wake-up on every frame. This module calls the
same C function with the same arguments and copies the three result arrays
with NumPy; the numbers are bit-identical to the public API's (a test checks).

It leans on the wrapper's internals (`_lib`, `_handle`, the ctypes result
struct), which pyproject pins to mediapipe 1.2.x. `DirectVideoDetector.attach`
returns None when those internals are not what it expects, and the caller
falls back to the public API.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RawFace:
    """One tracked face as MediaPipe gives it: arrays, no Python objects per point."""

    landmarks: np.ndarray  # (N, 3) float32, normalized image coordinates
    scores: dict[str, float]  # blendshape score by MediaPipe category name
    pose: np.ndarray  # (4, 4) float32 facial transformation matrix


def _strided_dtype(struct: type[ctypes.Structure], fields: dict[str, str]) -> np.dtype:
    """A NumPy view of selected fields of a ctypes struct array (NumPy rejects the struct's own buffer format)."""
    return np.dtype({
        "names": list(fields),
        "formats": list(fields.values()),
        "offsets": [getattr(struct, name).offset for name in fields],
        "itemsize": ctypes.sizeof(struct),
    })


def _array_at(pointer: Any, count: int, dtype: np.dtype) -> np.ndarray:
    """`count` structs at a ctypes pointer, viewed without copying (copy before the result is freed)."""
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(ctypes.addressof(pointer.contents))
    return np.frombuffer(raw, dtype, count)


class DirectVideoDetector:
    """`detect(image, timestamp_ms)` for a landmarker created in VIDEO mode."""

    def __init__(self, landmarker: Any, detect: Any, close_result: Any, result_type: type[ctypes.Structure],
                 landmark_type: type[ctypes.Structure], category_type: type[ctypes.Structure]) -> None:
        self._landmarker = landmarker
        self._detect = detect
        self._close_result = close_result
        self._result_type = result_type
        self._landmark_dtype = _strided_dtype(landmark_type, {"x": "<f4", "y": "<f4", "z": "<f4"})
        self._category_dtype = _strided_dtype(category_type, {"index": "<i4", "score": "<f4"})
        self._names: dict[int, str] = {}  # category index -> name; fixed by the model, read once
        self._lock = threading.Lock()  # one C call at a time per landmarker, as the wrapper guarantees
        self._closed = False

    @classmethod
    def attach(cls, landmarker: Any) -> "DirectVideoDetector | None":
        """The direct path for a public `vision.FaceLandmarker`, or None if this mediapipe differs."""
        try:
            from mediapipe.tasks.python.components.containers import category_c, landmark_c
            from mediapipe.tasks.python.vision import face_landmarker as module

            raw_lib = landmarker._lib._lib
            detect = raw_lib.MpFaceLandmarkerDetectForVideo
            close_result = raw_lib.MpFaceLandmarkerCloseResult
            result_type = module.MpFaceLandmarkerResultC
            fields = [name for name, _ in result_type._fields_]
            if len(detect.argtypes or ()) != 6 or fields[:2] != ["face_landmarks", "face_landmarks_count"]:
                return None
            return cls(landmarker, detect, close_result, result_type, landmark_c.MpNormalizedLandmarkC, category_c.MpCategoryC)
        except (AttributeError, ImportError, TypeError):
            return None

    def detect(self, image: Any, timestamp_ms: int) -> RawFace | None:
        """Track one `mp.Image`; None when no face is found."""
        result = self._result_type()
        error = ctypes.c_char_p()
        with self._lock:
            if self._closed:
                raise ValueError("face landmarker is closed")
            status = self._detect(self._landmarker._handle, image._image_ptr, None, timestamp_ms, ctypes.byref(result), ctypes.byref(error))
            try:
                if status != 0:
                    message = error.value.decode("utf-8", "replace") if error.value else f"status {status}"
                    raise ValueError(f"face landmarker: {message}")
                return self._read(result)
            finally:
                self._close_result(ctypes.byref(result))

    def _read(self, result: ctypes.Structure) -> RawFace | None:
        if not result.face_landmarks_count or not result.face_blendshapes_count or not result.facial_transformation_matrixes_count:
            return None
        points = result.face_landmarks[0]
        view = _array_at(points.landmarks, points.landmarks_count, self._landmark_dtype)
        landmarks = np.stack([view["x"], view["y"], view["z"]], axis=1)  # a copy, owned
        categories = result.face_blendshapes[0]
        cats = _array_at(categories.categories, categories.categories_count, self._category_dtype)
        if len(self._names) != len(cats):
            self._names = {int(c.index): c.category_name.decode() for c in categories.categories[: categories.categories_count]}
        scores = {self._names[int(i)]: float(s) for i, s in zip(cats["index"], cats["score"])}
        matrix = result.facial_transformation_matrixes[0]
        column_major = np.ctypeslib.as_array(matrix.data, shape=(matrix.cols, matrix.rows))
        pose = column_major.T.astype(np.float32)  # a copy, owned
        return RawFace(landmarks, scores, pose)

    def close(self) -> None:
        """Wait for a call in flight, then refuse new ones, so the landmarker can be freed safely."""
        with self._lock:
            self._closed = True
