"""Hot swap, modes and privacy on a live pipeline, recorded at a registered
pyvirtualcam backend: what the virtual camera received, frame by frame."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

from live_rig import H, W, LiveRig, canary_clip, canary_source, live_config, look_corners, segments  # noqa: F401
from recording_backend import OPENED
from veilcam.daemon.config import config_from_dict
from veilcam.daemon.errors import ModelFileError, PrivacyError, VeilCamError
from veilcam.daemon.factory import open_sink, open_source
from veilcam.daemon.live import LivePipeline, Runner
from veilcam.daemon.pipeline import OutputFrame
from veilcam.daemon.report import RunStats
from veilcam.daemon.selection import Selection

pytestmark = pytest.mark.usefixtures("model_dir")


def _counting(builds: list[str]):
    """A `LiveRig` wrap that notes the avatar of every build."""

    def wrap(base):
        def build(selection, cfg, stats):
            builds.append(selection.avatar)
            return base(selection, cfg, stats)

        return build

    return wrap


def test_switching_avatar_changes_the_output_without_reopening_or_black_frames(test_backend: str) -> None:
    config = live_config(test_backend)
    refs = look_corners(config, ("porcelain", "midnight"))
    builds: list[str] = []
    rig = LiveRig(config, Selection("avatar", "porcelain"), wrap=_counting(builds))
    with rig:
        rig.wait_shown(refs, "porcelain")
        requested = time.perf_counter()
        rig.live.select(Selection("avatar", "midnight"))
        rig.wait_shown(refs, "midnight")
        rig.wait_frames(10)
        back = time.perf_counter()
        rig.live.select(Selection("avatar", "porcelain"))
        rig.wait_shown(refs, "porcelain")
        rig.wait_frames(5)
        assert not rig.cam.closed
    assert builds == ["porcelain", "midnight"], "switching back must reuse the warm (parked) porcelain"
    assert len(OPENED) == 1 and OPENED[0].closed
    assert {f.shape for f in rig.frames} == {(H, W, 3)}
    labels = rig.labels(refs)
    assert "other" not in labels and "canary" not in labels, "a black or unknown frame reached the camera"
    # The card only before the first avatar frame and after stop; never during a switch.
    assert segments(labels) == ["porcelain", "midnight", "porcelain", "card"]
    first_midnight = labels.index("midnight")
    assert rig.times[first_midnight] > requested
    last_midnight = len(labels) - 1 - labels[::-1].index("midnight")
    assert rig.times[last_midnight + 1] > back


def test_modes_panic_and_pause_show_the_card_at_once_and_come_back(test_backend: str, canary_clip: Path) -> None:
    config = live_config(test_backend, canary_source(canary_clip))
    refs = look_corners(config, ("porcelain",))
    with LiveRig(config, Selection("avatar", "porcelain"), reopen=True) as rig:
        live = rig.live
        rig.wait_shown(refs, "porcelain")
        live.select(Selection("placeholder", "porcelain"))  # panic
        panicked = time.perf_counter()
        rig.wait_frames(10)
        live.select(Selection("avatar", "porcelain"))
        resumed = time.perf_counter()
        rig.wait_shown(refs, "porcelain")
        rig.wait_frames(5)
        first_source = live.source
        live.select(Selection("pause", "porcelain"))
        paused = time.perf_counter()
        assert live.snapshot()["camera"] == "paused"
        rig.wait_frames(10)
        pause_seen = time.perf_counter()
        live.select(Selection("avatar", "porcelain"))
        assert live.source is not first_source, "pause releases the camera; resume opens it again"
        rig.wait_shown(refs, "porcelain")
        rig.wait_frames(5)
    labels = np.array(rig.labels(refs))
    t = rig.times
    assert not (labels == "canary").any()
    # After panic returns, nothing but the card until the avatar is selected again.
    assert set(labels[(t > panicked) & (t < resumed)]) == {"card"}
    assert set(labels[(t > paused + 0.001) & (t < pause_seen)]) == {"card"}
    assert segments(list(labels)) == ["porcelain", "card", "porcelain", "card", "porcelain", "card"]


class _CameraEcho:
    """A processor that sees pixels and shows them: what restyle is, as far as privacy goes."""

    def __init__(self, stats) -> None:
        self.stats = stats

    def warm_up(self) -> None: ...

    def process(self, item) -> OutputFrame:
        import cv2

        rgb = cv2.resize(item.rgb, (W, H))
        return OutputFrame(rgb, item.timestamp, time.perf_counter(), item.index)

    def close(self) -> None: ...


def test_restyle_is_refused_in_privacy_mode_and_dropped_the_moment_privacy_comes_on(test_backend: str, canary_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from veilcam.daemon import restyle_hook

    config = live_config(test_backend, canary_source(canary_clip), restyle={"model": str(tmp_path / "no-model")})
    restyle_hook.restyle_support(config)  # as the daemon does before its output starts: the heavy imports
    refs = look_corners(config, ("porcelain",))
    with LiveRig(config, Selection("avatar", "porcelain")) as rig:
        live = rig.live
        rig.wait_shown(refs, "porcelain")
        with pytest.raises(PrivacyError, match="privacy mode is on"):
            live.select(Selection("restyle", "porcelain"))
        live.set_privacy(False)
        with pytest.raises(ModelFileError, match="restyle.model: folder .* not found"):  # the real restyle, no model here
            live.select(Selection("restyle", "porcelain"))
        assert live.snapshot()["mode"] == "avatar"
        # Stand in a pixel processor for restyle: its frames carry the canary.
        monkeypatch.setattr(restyle_hook, "restyle_support", lambda cfg: restyle_hook.RestyleSupport(True))
        monkeypatch.setattr(restyle_hook, "build_restyle_processor", lambda cfg, stats, prompt: _CameraEcho(stats))
        live.select(Selection("restyle", "porcelain"))
        rig.wait_shown(refs, "canary")
        rig.wait_frames(10)
        live.set_privacy(True)
        privacy_on = time.perf_counter()
        rig.wait_shown(refs, "porcelain")
        rig.wait_frames(5)
    labels = np.array(rig.labels(refs))
    leaked = rig.times[labels == "canary"]
    assert len(leaked) > 5, "with privacy off, the stand-in restyle shows the camera (the detector works here)"
    assert leaked.max() < privacy_on, "a camera frame reached the output after privacy came on"
    if rig.live.restarts == 0:  # (a watchdog restart on a starved machine adds its own card)
        assert segments(list(labels)) == ["porcelain", "canary", "card", "porcelain", "card"]


def test_restyle_without_a_camera_and_unknown_modes_fail_clearly(test_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from veilcam.daemon import restyle_hook

    monkeypatch.setattr(restyle_hook, "restyle_support", lambda cfg: restyle_hook.RestyleSupport(True))
    with LiveRig(live_config(test_backend), Selection("avatar", "porcelain")) as rig:
        rig.live.set_privacy(False)
        with pytest.raises(VeilCamError, match="restyle needs a camera"):
            rig.live.select(Selection("restyle", "porcelain"))
        with pytest.raises(ValueError, match="unknown mode"):
            Selection("sepia", "porcelain")


def test_preloaded_avatars_wait_in_warm_parking_and_a_first_switch_to_one_builds_nothing(test_backend: str) -> None:
    config = live_config(test_backend, daemon={"warm_avatars": 2})
    refs = look_corners(config, ("porcelain", "midnight", "jade"))
    builds: list[str] = []
    rig = LiveRig(config, Selection("avatar", "porcelain"), wrap=_counting(builds))
    with rig:
        rig.wait_shown(refs, "porcelain")
        # porcelain is shown (skipped); two places: midnight and jade; sunrise does not fit.
        rig.live.preload([Selection("avatar", n) for n in ("porcelain", "midnight", "jade", "sunrise")])
        rig.wait_for(lambda: len(rig.live._parked) == 2 and rig.live._preloading is None, timeout=60)
        assert [r.selection.avatar for r in rig.live._parked] == ["midnight", "jade"]
        assert rig.live.snapshot()["avatar"] == "porcelain"  # preloading shows nothing
        rig.live.select(Selection("avatar", "jade"))
        rig.wait_shown(refs, "jade")
        rig.wait_frames(5)
    assert builds == ["porcelain", "midnight", "jade"]
    labels = rig.labels(refs)
    assert "other" not in labels and "canary" not in labels
    assert segments(labels) == ["porcelain", "jade", "card"]


class _Recorder:
    """Stands in for a built processor: keeps what it was given."""

    def __init__(self) -> None:
        self.items: list[object] = []

    def process(self, item: object) -> OutputFrame:
        self.items.append(item)
        now = time.perf_counter()
        return OutputFrame(None, now, now, len(self.items))


def test_a_switch_rehearses_on_the_item_the_active_avatar_just_read() -> None:
    config = config_from_dict({"source": {"kind": "demo"}, "output": {"sink": "null", "width": W, "height": H}}, "test")
    with open_source(config) as source, open_sink(config) as sink:
        live = LivePipeline(source, sink, config, Selection("avatar", "porcelain"))  # not started: we play the runners
        runner = Runner(live, Selection("avatar", "midnight"), config, 0, "switch")
        runner.processor = recorder = _Recorder()  # type: ignore[assignment]
        shown = live._read()  # what the avatar on air read last
        runner._rehearse()
        assert recorder.items == [shown], "the new avatar starts on the same moment, without waiting for the next item"
        live._newest = (time.perf_counter() - 1.0, shown)  # a second old: the camera stalled meanwhile
        runner._rehearse()
        assert len(recorder.items) == 2 and recorder.items[1] is not shown and recorder.items[1] is not None


def test_once_settled_the_pipeline_prepares_a_spare_tracker_and_the_face_model_for_the_next_switch(test_backend: str, canary_clip: Path) -> None:
    from veilcam.daemon import facekit_avatar
    from veilcam.daemon.factory import make_renderer
    from veilcam.daemon.tracker_pool import TRACKERS
    from veilcam.models.face_model import moving_basis

    TRACKERS.close()  # nothing left over from other tests
    facekit_avatar._load.cache_clear()
    moving_basis.cache_clear()
    config = live_config(test_backend, canary_source(canary_clip))
    with LiveRig(config, Selection("avatar", "porcelain")) as rig:
        rig.wait_frames(5)
        assert TRACKERS.idle_count() == 0  # the avatar on air (a mask) holds the only tracker
        assert facekit_avatar._load.cache_info().currsize == 0
        rig.wait_for(lambda: TRACKERS.idle_count() == 1 and facekit_avatar._load.cache_info().currsize == 1, timeout=15)
    prepared = moving_basis.cache_info()
    assert prepared.currsize == 1
    make_renderer(dataclasses.replace(config, avatar=dataclasses.replace(config.avatar, name="human"))).close()
    assert moving_basis.cache_info().misses == prepared.misses, "the first face-model avatar uses the basis prepared for it"


def test_the_avatar_on_air_slows_down_while_a_switch_builds(test_backend: str) -> None:
    calls: list[tuple[str, float]] = []
    built: dict[str, float] = {}

    def wrap(base):
        def build(selection, cfg, stats):
            if selection.avatar == "midnight":
                built["start"] = time.perf_counter()
                time.sleep(0.9)  # a slow build: the avatar on air keeps the output going meanwhile
                built["end"] = time.perf_counter()
            processor = base(selection, cfg, stats)
            process = processor.process

            def counted(item, *tracked):
                calls.append((selection.avatar, time.perf_counter()))
                time.sleep(0.03)  # a frame's work at full size
                return process(item, *tracked)

            processor.process = counted
            return processor

        return build

    with LiveRig(live_config(test_backend), Selection("avatar", "porcelain"), wrap=wrap) as rig:
        rig.wait_frames(20)
        rig.live.select(Selection("avatar", "midnight"))
    during = [t for name, t in calls if name == "porcelain" and built["start"] + 0.1 < t < built["end"]]
    before = [t for name, t in calls if name == "porcelain" and built["start"] - 0.8 < t < built["start"]]
    rate_before, rate_during = len(before) / 0.8, len(during) / (built["end"] - built["start"] - 0.1)
    assert rate_during > 5, "the avatar on air must keep rendering while the switch builds"
    added = 1 / rate_during - 1 / rate_before  # seconds per frame: about a frame interval more
    assert added > 0.5 / 30, (rate_before, rate_during)


def test_a_new_avatar_rehearses_on_what_the_avatar_on_air_tracked(test_backend: str, canary_clip: Path) -> None:
    """Its first frame renders the face the avatar on air found in that camera frame: not tracked twice."""
    config = live_config(test_backend, canary_source(canary_clip))
    with open_source(config) as source, open_sink(config) as sink:
        live = LivePipeline(source, sink, config, Selection("avatar", "porcelain"))  # not started: we play the runners
        on_air = Runner(live, Selection("avatar", "porcelain"), config, 0, "start")
        on_air.processor = live.build(on_air.selection, config, RunStats())
        live._active = on_air
        source.start()
        newcomer = Runner(live, Selection("avatar", "midnight"), config, 0, "switch")
        newcomer.processor = live.build(newcomer.selection, config, RunStats())
        try:
            item = live._read()
            on_air.processor.process(item)
            tracked = on_air.processor.last_tracked
            assert tracked is not None and tracked[0] is item

            def untracked(*args):
                raise AssertionError("the camera frame was tracked a second time")

            newcomer.processor.tracker.track = untracked  # type: ignore[union-attr, method-assign]
            live._newest = (time.perf_counter(), item)  # as if read just now (the first frame above was slow)
            frame = newcomer._rehearse()
            assert frame is not None and frame.rgb is not None and frame.index == item.index
            assert newcomer.processor.last_tracked is None
        finally:
            on_air.processor.close()
            newcomer.processor.close()


def test_the_live_benchmark_table_counts_switches_over_the_target() -> None:
    from veilcam.daemon.live_bench import _summary, format_live_table

    one = _summary([0.05])
    report = {
        "switch_ms": {"cold": _summary([0.08, 0.12, 0.21, 0.25]), "cold_by_avatar": {}, "warm": one, "to_placeholder": one, "placeholder_to_avatar": one},
        "watchdog_ms": {"hang_to_card": one, "hang_to_avatar_again": one},
        "output_interval_ms": {"steady": _summary([0.033] * 5)},
        "output": [1280, 720, 30.0], "source": "x.mp4", "watchdog_s": 0.5, "avatars": ["a"], "restarts_not_injected": 0, "failures": {},
    }
    cold = format_live_table(report).splitlines()[1].split()
    assert cold[-1] == "2" and cold[-2] == "250.0", "two of four cold switches took over 200 ms"
