"""MediaPipe Face Landmarker in VIDEO mode, as a FaceState producer.

VIDEO mode (not LIVE_STREAM) keeps tracking synchronous: the caller decides
when a frame is tracked, so the pipeline can always track the newest frame and
drop stale ones instead of queueing them inside MediaPipe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .face_state import MIRROR_PERMUTATION, FaceState, blendshapes_from_scores
from .mediapipe_direct import DirectVideoDetector, RawFace

#: Milliseconds between the last frame of one stream and the first of the next
#: when the caller's clock restarts. It keeps MediaPipe's timestamps increasing;
#: it does not make the streams unrelated (VIDEO mode still starts from the last
#: face), which is why a tracker is handed on only within its stream
#: (`veilcam.daemon.tracker_pool`).
RESTART_GAP_MS = 1000


class FaceLandmarker:
    """Tracks one face per frame.

    With `mirror=True` the image is flipped before tracking, so the head moves
    like a mirror image; MediaPipe then reports the left/right blendshapes of
    the flipped face, which are the user's opposite side, so they are swapped
    back: eyeBlinkLeft is always the user's own left eye.
    """

    def __init__(self, model_path: Path, mirror: bool = False) -> None:
        from mediapipe.tasks.python import BaseOptions, vision  # heavy import, kept local

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=1,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        try:
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{model_path}: not a usable face landmarker model ({exc})") from exc
        self.mirror = mirror
        self._last_ms = -1
        self._offset_ms = 0  # added to the caller's clock (see `track`)
        self._direct = DirectVideoDetector.attach(self._landmarker)

    @property
    def direct(self) -> bool:
        """Whether frames go through the faster direct C call (see `mediapipe_direct`)."""
        return self._direct is not None

    def track(self, rgb: np.ndarray, timestamp: float) -> FaceState:
        """Track an (H, W, 3) uint8 RGB image captured at `timestamp` (monotonic seconds)."""
        import mediapipe as mp

        if self.mirror:
            rgb = rgb[:, ::-1]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        # MediaPipe requires strictly increasing timestamps in VIDEO mode, and its
        # temporal filters read the spacing. A clock that restarts (the next video,
        # a reopened source, a tracker handed to a new runner) continues after a
        # gap, with its own spacing kept: clamping it to +1 ms steps would make
        # MediaPipe smooth as if every frame came a millisecond after the last.
        ms = int(timestamp * 1000) + self._offset_ms
        if ms <= self._last_ms:
            self._offset_ms += self._last_ms + RESTART_GAP_MS - ms
            ms = self._last_ms + RESTART_GAP_MS
        self._last_ms = ms
        face = self._direct.detect(image, ms) if self._direct is not None else self._detect_public(image, ms)
        if face is None:
            return FaceState.neutral(timestamp)
        scores = blendshapes_from_scores(face.scores)
        if self.mirror:
            scores = scores[MIRROR_PERMUTATION]
        return FaceState(True, scores, face.pose, timestamp, face.landmarks)

    def _detect_public(self, image: object, ms: int) -> RawFace | None:
        result = self._landmarker.detect_for_video(image, ms)
        if not result.face_landmarks:
            return None
        landmarks = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], np.float32)
        scores = {c.category_name: c.score for c in result.face_blendshapes[0]}
        return RawFace(landmarks, scores, np.asarray(result.facial_transformation_matrixes[0], np.float32))

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
