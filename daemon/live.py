"""Live switching and self-repair on top of the two-thread pipeline.

`LivePipeline` keeps `Pipeline`'s constant-rate output thread as it is and
replaces the single worker with *runners*: one thread per processor. A runner
builds its processor (an OpenGL context belongs to the thread that made it),
warms it up (an avatar on its rehearsal frame, below), and from then on
processes the newest source item whenever it is the active runner for the
selected mode.

Switching starts a new runner while the current one keeps feeding the output.
Only once the new one has built, warmed up (shader compiles, model loads) and
processed one real source item (the one the active runner read last, if it is
recent; the first frame pays lazy set-up in libraries:
MediaPipe's graph, shader variants; it can take most of a second) does it
become active; that rehearsed frame, if still fresh, is then its first frame
out, so a switch does not also wait for the next camera frame. So the virtual
camera is never reopened, never changes size, never shows a black or
half-initialised frame and never freezes on the old avatar, and the watchdog
never mistakes a first frame for a hang. A build that fails, on that first
frame included, leaves the current runner in place. The previous avatar stays
loaded (parked), so switching back is instant.

The supervisor (the pipeline's worker thread) is the watchdog: a frame that
takes longer than `daemon.watchdog_s` means the runner is hung, unless frames
have lately been slow anyway (an overloaded machine): then the limit is
`HANG_FACTOR` times the recent median frame time, so a slow machine is not
mistaken for a hang and flooded with restarts. The first frame after a runner
sat idle gets `RESUME_GRACE` times the limit. The card goes
up, the runner is abandoned (its late frame is discarded and it closes its
processor when it returns) and a fresh one is built. A runner that raises is
replaced the same way, after a growing back-off; running out of memory steps
down `fallback_selection` instead of retrying the same thing. The supervisor
also preloads (`preload`): a few seconds after start-up it builds other avatars
into the free warm-parking places, one at a time, so a first switch to them is
as quick as a switch back; and at the same quiet moments (`stock`) it prepares
what a cold switch would otherwise pay for (`factory.stock_for_switches`: a
spare face tracker in the pool, the face model, heap memory for a build).

Fail-closed, in four places: with privacy on, a processor that is not a
`FrameProcessor` is refused when it is built, when it would become active,
its frames are dropped at publication if privacy came on meanwhile, and a
card revokes every frame published before it, down to the last check before
the sink: once `set_privacy(True)` or a panic returns, no frame rendered
before it can reach the virtual camera, even one the output thread already
held.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

from veilcam.models.face_state import FaceState

from .config import Config
from .errors import PrivacyError, VeilCamError
from .pipeline import FrameProcessor, OutputFrame, Pipeline, Processor, require_privacy_safe
from .recovery import Backoff, fallback_selection, is_out_of_memory
from .report import RunStats
from .selection import CARD_MESSAGES, Selection
from .sinks.base import Sink
from .sources.base import FrameSource, Source

log = logging.getLogger(__name__)

SUPERVISOR_TICK_S = 0.02
READ_TIMEOUT_S = 0.25
RUNNER_JOIN_S = 2.0
RECENT_FRAMES = 8  # published frames remembered for the last check before the sink
REHEARSAL_WAIT_S = 1.0  # how long a new runner waits for a source item to rehearse on
REHEARSAL_FRESH_S = 0.1  # a rehearsed frame captured longer ago than this is not shown
#: The first frame after a runner sat idle (parked, or a card mode) runs with cold
#: caches and, with llvmpipe, 2-4x slower; the watchdog gives it this many times its limit.
RESUME_GRACE = 3.0
PRELOAD_DELAY_S = 3.0  # preloading starts this long after start-up (or the last switch), not during them
HANG_FACTOR = 5.0  # a frame this many times slower than the recent median is a hang...
RECENT_DURATIONS = 60  # ...over this many frames (of whichever runner was active)

ProcessorBuilder = Callable[[Selection, Config, RunStats], Processor]


def default_builder(source: Source) -> ProcessorBuilder:
    """Selection -> processor, for a live source: the avatar's `FrameProcessor`, or restyle."""
    from . import restyle_hook
    from .factory import avatar_processor_factory

    def build(selection: Selection, config: Config, stats: RunStats) -> Processor:
        if selection.mode == "restyle":
            support = restyle_hook.restyle_support(config)
            if not support.available:
                raise restyle_hook.RestyleUnavailableError(support.reason)
            if not isinstance(source, FrameSource):
                raise VeilCamError("restyle needs a camera or video source; the demo has no image to restyle")
            return restyle_hook.build_restyle_processor(config, stats, selection.style)
        config = dataclasses.replace(config, avatar=dataclasses.replace(config.avatar, name=selection.avatar))
        return avatar_processor_factory(config, source)(stats)

    return build


def default_stock(source: Source) -> Callable[[Config], None] | None:
    """What to prepare while the output is settled, for a camera or video (`factory.stock_for_switches`)."""
    if not isinstance(source, FrameSource):
        return None
    from .factory import stock_for_switches

    return stock_for_switches


@dataclass(frozen=True)
class Notice:
    """The latest problem, for status and tray notifications; `seq` grows with each one."""

    seq: int
    message: str
    time: float


class Runner:
    """One processor on its own thread: building -> active <-> parked -> retired."""

    def __init__(self, live: LivePipeline, selection: Selection, config: Config, version: int, purpose: str) -> None:
        self.live = live
        self.selection = selection
        self.config = config
        self.version = version  # of the config it was built with
        self.purpose = purpose  # "start", "switch", "restart", "reload"
        self.processor: Processor | None = None
        self.error: BaseException | None = None
        self.state = "building"
        self.busy_since: float | None = None  # start of the frame in progress: the watchdog reads it
        self.resumed = False  # its next frame is the first after sitting idle
        self.build_s = 0.0
        self.pending_prompt: str | None = None
        self.rehearsed: OutputFrame | None = None  # its first frame, made while it was being built
        self.built = threading.Event()  # set after the live pipeline has acted on the build
        name = f"veilcam-{selection.mode}-{selection.avatar}" if selection.mode == "avatar" else f"veilcam-{selection.mode}"
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    @property
    def privacy_safe(self) -> bool:
        return isinstance(self.processor, FrameProcessor)

    def describe(self) -> str:
        return f"avatar {self.selection.avatar!r}" if self.selection.mode == "avatar" else self.selection.mode

    def _rehearse(self) -> OutputFrame | None:
        """Process one real source item (see the module doc); its frame, or None if none came.

        The item the active runner read last serves if it is less than a frame
        interval old: the new avatar shows that same moment, and the switch does not
        wait for the next camera frame (17 ms on average at 30 fps) or take it away
        from the avatar still on air."""
        newest = self.live._newest
        if newest is not None and time.perf_counter() - newest[0] < 1.0 / self.live.fps:
            tracked = self.live._tracked(newest[1], self)
            if tracked is not None:  # the avatar on air has tracked it already
                return self.processor.process(newest[1], tracked)  # type: ignore[union-attr, call-arg]
            return self.processor.process(newest[1])  # type: ignore[union-attr]
        deadline = time.perf_counter() + REHEARSAL_WAIT_S
        while time.perf_counter() < deadline and not self.live._stop.is_set():
            try:
                item = self.live._read()
            except EOFError:
                return None
            if item is not None:
                return self.processor.process(item)  # type: ignore[union-attr]
        return None

    def _main(self) -> None:
        t0 = time.perf_counter()
        try:
            # Its own statistics until it goes on air (`_activate`): rehearsing an item
            # the active runner already processed must not count that item twice.
            self.processor = self.live.build(self.selection, self.config, RunStats())
            # An avatar's rehearsal frame is its warm-up (a render like any other, ~25 ms
            # saved per switch); restyle compiles first, reporting progress.
            on_first_frame = isinstance(self.processor, FrameProcessor)
            if not on_first_frame:
                self.processor.warm_up()
            self.rehearsed = self._rehearse()
            if on_first_frame and self.rehearsed is None:  # no camera frame came: warm up on a neutral face
                self.processor.warm_up()
        except Exception as exc:
            self.error = exc
        self.build_s = time.perf_counter() - t0
        try:
            self.live._on_built(self)
            self.built.set()
            if self.error is None:
                self.live._serve(self)
        finally:
            self.built.set()
            if self.processor is not None:
                try:
                    self.processor.close()
                except Exception:
                    log.exception("closing %s failed", self.describe())


class LivePipeline(Pipeline):
    """A `Pipeline` whose avatar, mode and privacy can change while it runs; see the module doc."""

    def __init__(
        self,
        source: Source,
        sink: Sink,
        config: Config,
        selection: Selection,
        build: ProcessorBuilder | None = None,
        reopen_source: Callable[[], Source] | None = None,
        stock: Callable[[Config], None] | None = None,
    ) -> None:
        self.build = build or default_builder(source)
        self.stock = stock or default_stock(source)
        super().__init__(source, lambda stats: self.build(self.selection, self.config, stats), sink, config.output.fps, privacy=config.privacy.enabled)
        self.config = config
        self.selection = selection
        self.reopen_source = reopen_source
        self.restarts = 0
        self.notice: Notice | None = None
        self.card: str | None = None  # the message on the card while one is shown
        self._version = 0
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._source_lock = threading.Lock()
        self._source_closed = False
        self._active: Runner | None = None
        self._pending: Runner | None = None
        self._parked: list[Runner] = []
        self._runners: list[Runner] = []
        self._restart: tuple[float, Selection] | None = None
        self._preload: list[Selection] = []  # still to build into warm parking
        self._preload_at = 0.0
        self._stock_at: float | None = None  # when to run `stock` next (None: not due)
        self._preloading: Runner | None = None
        self._backoff = Backoff()
        self._publications = 0  # frames and cards published so far
        self._last_card = 0  # publication number of the newest card
        self._recent: OrderedDict[int, tuple[int, OutputFrame]] = OrderedDict()  # id -> (publication, frame)
        self._durations: deque[float] = deque(maxlen=RECENT_DURATIONS)  # seconds per processed frame
        self._newest: tuple[float, object] | None = None  # (when read, item): the last source item a runner read

    # -- requests (any thread) ----------------------------------------------------
    def select(self, target: Selection, timeout: float = 60.0) -> float:
        """Show `target`; returns the seconds it took to be on. A card mode is on at
        once; a new avatar once built. Raises (and keeps what is shown) on refusal or failure."""
        t0 = time.perf_counter()
        if self.privacy and target.privacy_refusal():
            raise PrivacyError(target.privacy_refusal())
        if target.mode == "pause":
            with self._lock:
                self._to_card(target)
            self._close_source()
            return time.perf_counter() - t0
        self._reopen_if_paused()
        with self._lock:
            if self.privacy and target.privacy_refusal():  # privacy may have come on meanwhile
                raise PrivacyError(target.privacy_refusal())
            if not target.renders:
                self._to_card(target)
                return time.perf_counter() - t0
            runner = self._runner_for(target, "switch")
        if not runner.built.wait(timeout):
            raise VeilCamError(f"{runner.describe()} is still loading after {timeout:.0f} s; it will be shown when ready")
        if runner.error is not None:
            raise runner.error
        if runner.state != "active":
            raise VeilCamError(f"switching to {runner.describe()} was cancelled by a later request")
        return time.perf_counter() - t0

    def preload(self, targets: list[Selection]) -> None:
        """Build avatars into warm parking in the background, one at a time and only
        while nothing else is loading, as many as `daemon.warm_avatars` holds: a later
        switch to one of them is a warm switch. A preload never displaces an avatar
        parked by a switch, and one that fails is only logged."""
        with self._lock:
            self._preload = [t for t in targets if t.mode == "avatar"]
            self._preload_at = time.perf_counter() + PRELOAD_DELAY_S

    def set_style(self, prompt: str) -> None:
        """The restyle prompt: applied to a running restyle at its next frame, remembered otherwise."""
        with self._lock:
            self.selection = dataclasses.replace(self.selection, style=prompt)
            if self._active is not None and self._active.selection.mode == "restyle":
                self._active.pending_prompt = prompt

    def set_privacy(self, enabled: bool) -> None:
        """Privacy on drops anything that sees pixels at once (card until the avatar is back)."""
        back_to_avatar = None
        with self._lock:
            self.privacy = enabled
            # What is built from now on sees the same setting (restyle checks it too).
            self.config = dataclasses.replace(self.config, privacy=dataclasses.replace(self.config.privacy, enabled=enabled))
            if not enabled:
                return
            if self._pending is not None and self._pending.selection.privacy_refusal():
                self._pending = None
            for r in [r for r in self._parked if not r.privacy_safe]:
                self._retire(r)
            if self._restart is not None and self._restart[1].privacy_refusal():
                self._restart = (self._restart[0], dataclasses.replace(self._restart[1], mode="avatar"))
            if self.selection.privacy_refusal():
                if self._active is not None and not self._active.privacy_safe:
                    self._retire(self._active)
                    self._active = None
                    self.processor = None
                back_to_avatar = dataclasses.replace(self.selection, mode="avatar")
                self.selection = back_to_avatar
                self._show_card("privacy on")
                self._runner_for(back_to_avatar, "switch")

    def reload(self, config: Config, timeout: float = 60.0) -> None:
        """Use `config` from now on: what is shown is rebuilt with it first, and
        kept as it is (with the old config) if that fails."""
        with self._lock:
            version = self._version + 1
            target = self.selection
            if target.mode == "avatar" and config.avatar.name != self.config.avatar.name:
                target = dataclasses.replace(target, avatar=config.avatar.name)
            runner = None
            if target.renders:
                runner = self._spawn(target, "reload", config, version)
                self._pending = runner
        if runner is not None:
            if not runner.built.wait(timeout):
                raise VeilCamError(f"reloading {runner.describe()} takes longer than {timeout:.0f} s")
            if runner.error is not None:
                raise runner.error
        with self._lock:
            self.config = config
            self._version = version
            for r in list(self._parked):
                self._retire(r)
        self.set_privacy(config.privacy.enabled)

    def reset_stats(self) -> RunStats:
        """As `Pipeline.reset_stats`, but atomic with an activation: otherwise a runner
        activated meanwhile could keep the old window and grow it for the rest of the session."""
        with self._lock:
            return super().reset_stats()

    def snapshot(self) -> dict:
        """What is shown and what is going on, for status replies."""
        with self._lock:
            connected = getattr(self.source, "connected", None)
            if self._source_closed:
                camera = "paused"
            elif not isinstance(self.source, FrameSource):
                camera = "none"
            else:
                camera = "disconnected" if connected is False else "connected"
            return {
                "mode": self.selection.mode,
                "avatar": self.selection.avatar,
                "style": self.selection.style,
                "privacy": self.privacy,
                "camera": camera,
                "card": self.card,
                "loading": self._pending.describe() if self._pending is not None else None,
                "restarts": self.restarts,
                "error": dataclasses.asdict(self.notice) if self.notice else None,
            }

    # -- runner bookkeeping (under the lock) --------------------------------------------
    def _spawn(self, target: Selection, purpose: str, config: Config | None = None, version: int | None = None) -> Runner:
        runner = Runner(self, target, config or self.config, self._version if version is None else version, purpose)
        self._runners = [r for r in self._runners if r.thread.is_alive()] + [runner]
        runner.thread.start()
        return runner

    def _matches(self, r: Runner, target: Selection) -> bool:
        same = r.selection.mode == target.mode and (target.mode == "restyle" or r.selection.avatar == target.avatar)
        return same and r.version == self._version

    def _runner_for(self, target: Selection, purpose: str) -> Runner:
        """The runner that shows `target`: the active or a parked one at once, else one being built."""
        if self._active is not None and self._matches(self._active, target):
            self.selection = target
            self._restart = None
            self._cond.notify_all()  # it resumes; `card` clears with its first frame
            return self._active
        for r in self._parked:
            if self._matches(r, target):
                self._parked.remove(r)
                self._activate(r, target)
                return r
        if self._pending is not None and self._matches(self._pending, target):
            return self._pending
        if self._preloading is not None and self._matches(self._preloading, target):
            self._preloading.purpose = purpose  # wanted now: shown when built
            self._pending, self._preloading = self._preloading, None
            return self._pending
        self._pending = self._spawn(target, purpose)
        return self._pending

    def _activate(self, r: Runner, target: Selection) -> None:
        old = self._active
        self._active = r
        r.state = "active"
        r.processor.stats = self.stats  # type: ignore[union-attr]
        self.processor = r.processor
        if target.mode == "restyle" and target.style != r.selection.style:
            r.pending_prompt = target.style
        self.selection = target
        self._restart = None  # something runs again: a restart planned for an earlier failure is moot
        if old is not None and old is not r:
            self._park_or_retire(old)
        self._cond.notify_all()

    def _park_or_retire(self, r: Runner) -> None:
        warm = self.config.daemon.warm_avatars
        if r.selection.mode == "avatar" and r.privacy_safe and r.version == self._version and warm > 0:
            r.state = "parked"
            self._parked.insert(0, r)
            for extra in self._parked[warm:]:
                self._retire(extra)
        else:
            self._retire(r)

    def _retire(self, r: Runner) -> None:
        r.state = "retired"
        if r in self._parked:
            self._parked.remove(r)
        self._cond.notify_all()

    def _show_card(self, message: str) -> None:
        self.card = message
        self._publications += 1
        self._last_card = self._publications
        self._frames.put(OutputFrame(None, 0.0, time.perf_counter(), -1, message))

    def _to_card(self, target: Selection) -> None:
        self._pending = None  # a switch still loading is parked, not shown, when it finishes
        self._restart = None
        self.selection = target
        self._show_card(CARD_MESSAGES[target.mode])
        self._cond.notify_all()

    def _note(self, message: str) -> None:
        seq = self.notice.seq + 1 if self.notice else 1
        self.notice = Notice(seq, message, time.time())
        log.warning("%s", message)

    # -- events from runners and the supervisor ----------------------------------------
    def _on_built(self, r: Runner) -> None:
        with self._lock:
            if r.purpose == "preload":
                self._on_preloaded(r)
                return
            superseded = r is not self._pending
            self._preload_at = time.perf_counter() + PRELOAD_DELAY_S  # a switch just loaded: let the output settle
            self._stock_at = self._preload_at
            if not superseded:
                self._pending = None
            self._refuse_if_unsafe(r)
            if r.error is not None:
                r.state = "retired"
                if r.purpose != "start":
                    self._note(f"cannot load {r.describe()}: {r.error}")
                if r.purpose == "restart" and not superseded:
                    self._schedule_restart(r.selection, r.error)
                return
            if r.purpose == "start":
                self._activate(r, r.selection)
            elif superseded or self._stop.is_set():
                self._park_or_retire(r)
            else:
                self._activate(r, dataclasses.replace(r.selection, style=self.selection.style))
                log.info("%s on (%s; built and warmed up in %.0f ms)", r.describe(), r.purpose, r.build_s * 1000)

    def _refuse_if_unsafe(self, r: Runner) -> None:
        """A runner built fine but not privacy-safe while privacy is on counts as failed."""
        if r.error is None:
            try:
                require_privacy_safe(r.processor, self.privacy)  # type: ignore[arg-type]
            except PrivacyError as exc:
                r.error = exc

    def _on_preloaded(self, r: Runner) -> None:
        if r is self._preloading:
            self._preloading = None
            self._preload_at = time.perf_counter()  # the next one right away (the supervisor's next tick)
        self._refuse_if_unsafe(r)
        if r.error is not None:
            r.state = "retired"
            log.info("preloading %s failed: %s", r.describe(), r.error)
            return
        if self._stop.is_set() or r.version != self._version or len(self._parked) >= self.config.daemon.warm_avatars:
            self._retire(r)
            return
        r.state = "parked"
        self._parked.append(r)  # behind what switches parked: those are dropped last
        log.info("%s preloaded in %.0f ms", r.describe(), r.build_s * 1000)

    def _preload_when_due(self) -> None:
        with self._lock:
            busy = self._pending is not None or self._preloading is not None or self._restart is not None
            if not self._preload or busy or time.perf_counter() < self._preload_at:
                return
            if len(self._parked) >= self.config.daemon.warm_avatars:
                self._preload = []  # full: switches park what they leave from now on
                return
            while self._preload:
                target = self._preload.pop(0)
                held = [self._active, *self._parked]
                if not any(h is not None and self._matches(h, target) for h in held):
                    self._preloading = self._spawn(target, "preload")
                    return

    def _stock_when_due(self) -> None:
        """Once the output has settled after start-up or a switch, with nothing loading:
        `stock` (what a cold switch would otherwise pay for: `factory.stock_for_switches`)."""
        with self._lock:
            busy = self._pending is not None or self._preloading is not None or self._restart is not None
            if self.stock is None or self._stock_at is None or busy or time.perf_counter() < self._stock_at:
                return
            self._stock_at = None
        try:
            self.stock(self.config)
        except Exception as exc:  # only the next switch is slower
            log.info("could not prepare for the next switch: %s", exc)

    def _fail(self, r: Runner, message: str, exc: BaseException | None) -> None:
        """The active runner `r` failed: card now, a replacement soon."""
        with self._lock:
            if r.state == "retired":
                return
            was_active = r is self._active
            self._retire(r)
            if not was_active:
                return
            self._active = None
            self.processor = None
            self.restarts += 1
            self.stats.errors += 1
            self._note(message)
            self._show_card("restarting avatar")
            self._schedule_restart(r.selection, exc)

    def _schedule_restart(self, failed: Selection, exc: BaseException | None) -> None:
        target = failed
        if exc is not None and is_out_of_memory(exc):
            for parked in list(self._parked):  # free what memory we can hold on to
                self._retire(parked)
            target = fallback_selection(failed, self.config.daemon.fallback_avatar)
            self._note(f"out of memory in {failed.mode} {failed.avatar!r}: falling back to {target.mode}" + (f" {target.avatar!r}" if target.mode == "avatar" else ""))
        if not target.renders:
            self._to_card(target)
            return
        self._restart = (time.perf_counter() + self._backoff.failure(time.perf_counter()), target)

    # -- threads -----------------------------------------------------------------------
    def _worker_loop(self) -> None:
        """The supervisor: builds the first runner (start() waits for it), then watches."""
        refusal = self.selection.privacy_refusal() if self.privacy else None
        if refusal:
            self._startup_error = PrivacyError(refusal)
            self._worker_done.set()
            self._ready.set()
            return
        if self.selection.renders:
            with self._lock:
                first = self._spawn(self.selection, "start")
            first.built.wait()
            if first.error is not None:
                self._startup_error = first.error
                self._worker_done.set()
                self._ready.set()
                return
        else:
            with self._lock:
                self._show_card(CARD_MESSAGES[self.selection.mode])
        self._ready.set()
        self._stock_at = time.perf_counter() + PRELOAD_DELAY_S
        try:
            while not self._stop.wait(SUPERVISOR_TICK_S):
                self._watchdog()
                self._restart_when_due()
                self._preload_when_due()
                self._stock_when_due()
        finally:
            self._shutdown_runners()

    def _watchdog(self) -> None:
        r = self._active
        busy = r.busy_since if r is not None else None
        if busy is None:
            return
        stuck = time.perf_counter() - busy
        if stuck > self.hang_limit() * (RESUME_GRACE if r.resumed else 1.0):
            self._fail(r, f"{r.describe()} stopped responding ({stuck * 1000:.0f} ms on one frame); restarting it", None)  # type: ignore[arg-type]

    def hang_limit(self) -> float:
        """Seconds one frame may take before its runner counts as hung."""
        durations = list(self._durations)
        typical = statistics.median(durations) if len(durations) >= 10 else 0.0
        return max(self.config.daemon.watchdog_s, HANG_FACTOR * typical)

    def _restart_when_due(self) -> None:
        with self._lock:
            if self._restart is None or self._pending is not None or time.perf_counter() < self._restart[0]:
                return
            target = self._restart[1]
            self._restart = None
            if self.privacy and target.privacy_refusal():
                target = dataclasses.replace(target, mode="avatar")
            self.selection = dataclasses.replace(target, style=self.selection.style)
            self._runner_for(target, "restart")

    def _shutdown_runners(self) -> None:
        with self._lock:
            self._pending = None
            self._preloading = None
            self._active = None
            runners = list(self._runners)
            for r in runners:
                self._retire(r)
        for r in runners:  # each closes its processor on its own thread
            r.thread.join(timeout=RUNNER_JOIN_S)

    def _serve(self, r: Runner) -> None:
        """A runner's loop: while active for the selected mode, newest item in, frame out."""
        first, r.rehearsed = r.rehearsed, None
        if first is not None and time.perf_counter() - first.capture_ts < REHEARSAL_FRESH_S:
            self._publish(r, first)  # refused unless it is the active runner, for the selected mode
        while True:
            with self._cond:
                while not self._stop.is_set() and (r.state == "parked" or r.state == "active" and self.selection.mode != r.selection.mode):
                    r.resumed = True
                    self._cond.wait(0.5)
                if self._stop.is_set() or r.state == "retired":
                    return
            prompt, r.pending_prompt = r.pending_prompt, None
            if prompt is not None:
                r.processor.set_prompt(prompt)  # type: ignore[union-attr]
            pending = self._pending
            if pending is not None and pending.selection.mode == "avatar" and r is self._active:
                # An avatar switch is building (a fraction of a second; restyle's minutes of
                # compiling are not waited out this way): the avatar on air pauses a frame
                # interval before each frame (17 fps at 1280x720 on 2 cores; the output
                # repeats frames at its own rate), so the build has more of the CPU, and
                # the frame it reads next is still fresh for the new avatar's rehearsal.
                # (Every other frame slot instead left the rehearsal an older frame than
                # it takes: 28 cold switches went from p95 180 to 190-230 ms.)
                time.sleep(1.0 / self.fps)
            try:
                item = self._read()
            except EOFError:
                self._worker_done.set()
                return
            if item is None:
                if getattr(self.source, "connected", True) is False:
                    with self._lock:
                        if r is self._active and self.selection.mode == r.selection.mode and self.card != "camera disconnected":
                            self._show_card("camera disconnected")
                continue
            r.busy_since = time.perf_counter()
            try:
                frame = r.processor.process(item)  # type: ignore[union-attr]
            except Exception as exc:
                r.busy_since = None
                log.exception("%s failed on a frame", r.describe())
                kind = "ran out of memory" if is_out_of_memory(exc) else f"failed ({type(exc).__name__}: {exc})"
                self._fail(r, f"{r.describe()} {kind}; restarting it", exc)
                return
            self._durations.append(time.perf_counter() - r.busy_since)
            r.busy_since = None
            r.resumed = False
            self._publish(r, frame)

    def _tracked(self, item: object, r: Runner) -> FaceState | None:
        """What the active avatar's tracker found in `item`, if it has tracked it, for
        runner `r` (an avatar with the same tracker settings) to rehearse on."""
        active = self._active
        if active is None or active.config.tracker != r.config.tracker:
            return None
        if not isinstance(active.processor, FrameProcessor) or not isinstance(r.processor, FrameProcessor):
            return None
        last = active.processor.last_tracked
        return last[1] if last is not None and last[0] is item else None

    def _read(self) -> object | None:
        with self._source_lock:
            if not self._source_closed:
                item = self.source.read(timeout=READ_TIMEOUT_S)
                if item is not None:
                    self._newest = (time.perf_counter(), item)
                return item
        time.sleep(SUPERVISOR_TICK_S)  # paused: the mode check stops this runner next
        return None

    def _publish(self, r: Runner, frame: OutputFrame) -> None:
        with self._lock:
            if r is not self._active or r.state != "active" or self.selection.mode != r.selection.mode or self._stop.is_set():
                return  # superseded, abandoned by the watchdog, or a card mode came on
            if self.privacy and not r.privacy_safe:
                return
            self.card = None
            self._publications += 1
            self._recent[id(frame)] = (self._publications, frame)
            while len(self._recent) > RECENT_FRAMES:
                self._recent.popitem(last=False)
            self._frames.put(frame)

    def _send(self, frame: OutputFrame | None, w: int, h: int) -> None:
        """The output thread's hand-over to the sink, checked under the lock: a
        rendered frame published before the newest card is revoked (the card goes instead)."""
        with self._lock:
            if frame is not None and frame.rgb is not None:
                entry = self._recent.get(id(frame))
                if entry is None or entry[1] is not frame or entry[0] < self._last_card:
                    frame = OutputFrame(None, 0.0, time.perf_counter(), -1, self.card or "")
            super()._send(frame, w, h)

    # -- camera release for pause ------------------------------------------------------------
    def _close_source(self) -> None:
        if self.reopen_source is None:
            return  # nothing to release (demo, or a source that cannot be reopened)
        with self._source_lock:
            if not self._source_closed:
                self.source.close()
                self._source_closed = True

    def _reopen_if_paused(self) -> None:
        with self._source_lock:
            if self._source_closed and self.reopen_source is not None:
                self.source = self.reopen_source()  # raises SourceError: stays paused
                self._source_closed = False
