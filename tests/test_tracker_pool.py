"""Trackers handed from one avatar runner to the next (the real MediaPipe model)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import MODELS_DIR, read_frames, video_path
from veilcam.daemon.tracker_pool import TrackerPool
from veilcam.models.landmarker import FaceLandmarker

TASK = MODELS_DIR / "face_landmarker.task"
CAMERA, OTHER_VIDEO = object(), object()  # stream tokens: the pool compares sources by identity


class Opener:
    def __init__(self) -> None:
        self.opened: list[FaceLandmarker] = []

    def __call__(self, mirror: bool = False) -> FaceLandmarker:
        self.opened.append(FaceLandmarker(TASK, mirror=mirror))
        return self.opened[-1]


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return read_frames(video_path("p1"))[:6]


def test_a_closed_loan_is_handed_to_the_next_runner_warm(frames) -> None:
    pool, opener = TrackerPool(), Opener()
    first = pool.lease(TASK, False, opener, stream=CAMERA)
    for i, rgb in enumerate(frames[:3]):
        assert first.track(rgb, i / 30).present
    first.close()
    assert pool.idle_count() == 1
    second = pool.lease(TASK, False, opener, stream=CAMERA)
    assert len(opener.opened) == 1 and pool.idle_count() == 0
    assert second.track(frames[3], 3 / 30).present  # the same landmarker, later timestamps: it keeps tracking
    second.close()
    pool.close()
    assert pool.idle_count() == 0


def test_concurrent_loans_get_their_own_tracker_and_only_keep_are_kept(frames) -> None:
    pool, opener = TrackerPool(keep=1), Opener()
    a, b = pool.lease(TASK, False, opener, stream=CAMERA), pool.lease(TASK, False, opener, stream=CAMERA)
    assert len(opener.opened) == 2 and opener.opened[0] is not opener.opened[1]
    a.close()
    b.close()
    assert pool.idle_count() == 1
    pool.close()


def test_mirror_setting_is_part_of_the_key(frames) -> None:
    pool, opener = TrackerPool(), Opener()
    pool.lease(TASK, False, opener, stream=CAMERA).close()
    mirrored = pool.lease(TASK, True, lambda: opener(mirror=True), stream=CAMERA)
    assert len(opener.opened) == 2 and mirrored.track(frames[0], 0.0).present
    mirrored.close()
    assert pool.idle_count() == 2
    pool.close()


def test_a_tracker_that_raised_is_closed_not_handed_on(frames) -> None:
    pool, opener = TrackerPool(), Opener()
    loan = pool.lease(TASK, False, opener, stream=CAMERA)
    with pytest.raises(Exception):
        loan.track(np.zeros((4, 4), np.uint8), 0.0)  # not an RGB image
    loan.close()
    assert pool.idle_count() == 0
    pool.lease(TASK, False, opener, stream=CAMERA).close()
    assert len(opener.opened) == 2
    pool.close()


def test_stock_opens_one_spare_at_a_quiet_moment_and_the_next_lease_takes_it() -> None:
    pool, opener = TrackerPool(), Opener()
    pool.stock(TASK, False, opener)
    pool.stock(TASK, False, opener)  # one spare is enough
    assert len(opener.opened) == 1 and pool.idle_count() == 1
    lease = pool.lease(TASK, False, opener, stream=CAMERA)
    assert len(opener.opened) == 1 and pool.idle_count() == 0, "the lease took the spare"
    lease.close()
    pool.close()


def test_a_tracker_is_handed_on_only_within_its_stream(frames) -> None:
    """VIDEO mode carries the last face into the next frame: a tracker that followed one
    video would start the next video from that face, so another stream gets a fresh one."""
    pool, opener = TrackerPool(), Opener()
    first = pool.lease(TASK, False, opener, stream=CAMERA)
    for i, rgb in enumerate(frames[:3]):
        first.track(rgb, i / 30)
    first.close()
    other = pool.lease(TASK, False, opener, stream=OTHER_VIDEO)
    assert len(opener.opened) == 2 and pool.idle_count() == 0, "a fresh tracker for another stream"
    other.close()
    same = pool.lease(TASK, False, opener, stream=OTHER_VIDEO)
    assert len(opener.opened) == 2, "the same stream takes its tracker back"
    same.close()
    pool.close()
