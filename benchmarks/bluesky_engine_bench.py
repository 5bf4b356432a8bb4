"""Does bluesky's RunEngine hold this project's safety figures inside Swift's threading model?

The question comes from a project issue: build on bluesky's ``RunEngine`` if,
run on a worker thread (not the main thread) and stopped from another thread
(Swift's UI thread), it

1. makes the beam safe within 100 ms of a stop, even while a 4 s parked-probe
   dwell is in flight, and
2. never silently re-executes a dose-delivering step on pause/resume.

No hardware and no ophyd: the devices below are minimal objects that follow
``bluesky.protocols`` (``name``, ``parent``, ``read``, ``describe``,
``trigger``/``set`` returning a status, ``stop``).  "Beam safe" is the moment
the device's ``stop()`` ran (or, if nobody stops it, the moment its dwell ended
on its own), taken with ``time.perf_counter``.

The stop is issued from the main thread, which stands in for Swift's UI thread;
``RE(plan)`` runs on a ``threading.Thread``, which stands in for the
experiment worker.  Run::

    python benchmarks/bluesky_engine_bench.py

It takes about a minute.  The last line printed is a JSON summary.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import statistics
import sys
import threading
import time
import typing

import bluesky
import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky import RunEngine
from bluesky.utils import DuringTask
from bluesky.utils import MsgGenerator
from bluesky.utils import NoReplayAllowed
from bluesky.utils import RunEngineInterrupted

DWELL_S = 4.0  # the in-flight acquisition a stop has to cut short
STOP_AFTER_S = 0.5  # how far into the dwell the stop comes
STOP_TRIALS = 20
NAIVE_TRIALS = 3  # the trigger-only case cannot be cut short, so each trial costs the full dwell
REPLAY_STEPS = 6
REPLAY_DWELL_S = 0.3
PAUSE_DURING_STEP = 3  # 1-based: pause while this trigger is in flight
SAFE_BUDGET_MS = 100.0

Callback = typing.Callable[[typing.Any], None]

# bluesky leaves these two unannotated; give them types once here rather than silence mypy at each call
finalize_wrapper: typing.Callable[[MsgGenerator[None], MsgGenerator[typing.Any]], MsgGenerator[None]] = bpp.finalize_wrapper
plain_during_task: typing.Callable[[], typing.Any] = DuringTask


class SimpleStatus:
    """The smallest object that satisfies ``bluesky.protocols.Status``.

    bluesky ships the protocol but no implementation (ophyd has one); this is
    enough for ``RunEngine._add_status_to_group``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callback] = []
        self._done = False
        self._success = False
        self._exception: BaseException | None = None
        self._event = threading.Event()

    @property
    def done(self) -> bool:
        return self._done

    @property
    def success(self) -> bool:
        return self._success

    def exception(self, timeout: float | None = 0.0) -> BaseException | None:
        return self._exception

    def add_callback(self, callback: Callback) -> None:
        with self._lock:
            if not self._done:
                self._callbacks.append(callback)
                return
        callback(self)

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def finish(self, exception: BaseException | None = None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            self._success = exception is None
            self._exception = exception
            callbacks, self._callbacks = self._callbacks, []
        self._event.set()
        for callback in callbacks:
            callback(self)


class DwellDetector:
    """A parked probe whose acquisition keeps the beam on the sample for ``dwell_s``.

    ``trigger()`` (detector style) and ``set(dwell_s)`` (movable style) both
    start a dwell on a background thread, as a real ADF/EELS acquisition runs
    on the hardware's own thread.  ``stop()`` is ``microscope.make_safe()``: it
    ends the dwell at once and records when the beam became safe.
    """

    def __init__(self, name: str, dwell_s: float, *, refuse_replay_on_pause: bool = False, blocking: bool = False) -> None:
        self.name = name
        self.parent: typing.Any = None
        self.dwell_s = dwell_s
        self.refuse_replay_on_pause = refuse_replay_on_pause
        self.blocking = blocking  # dwell inside trigger()/set() itself, as a thin wrapper round a synchronous acquisition call would
        self.reset()

    def reset(self) -> None:
        self.dwells_started = 0
        self.dwelling_when_paused: bool | None = None
        self.reads_while_dwelling = 0
        self.dwell_started = threading.Event()
        self.beam_safe = threading.Event()
        self.stop_called_at: float | None = None  # perf_counter when stop() ran
        self.dwell_ended_at: float | None = None  # perf_counter when the last dwell ended (stopped or not)
        self._abort = threading.Event()
        self._dwelling = False
        self._value = 0.0

    # --- bluesky.protocols ---------------------------------------------------------------------------------------

    def describe(self) -> dict[str, dict[str, typing.Any]]:
        return {f"{self.name}_adf": {"source": "SIM:adf", "dtype": "number", "shape": []}}

    def read(self) -> dict[str, dict[str, typing.Any]]:
        if self._dwelling:
            self.reads_while_dwelling += 1
        return {f"{self.name}_adf": {"value": self._value, "timestamp": time.time()}}

    def trigger(self) -> SimpleStatus:
        return self._start_dwell(self.dwell_s)

    def set(self, dwell_s: float) -> SimpleStatus:
        return self._start_dwell(float(dwell_s))

    def stop(self, success: bool = True) -> None:
        """``make_safe``: end any dwell now and blank the beam."""
        now = time.perf_counter()
        if self.stop_called_at is None:
            self.stop_called_at = now
        self._abort.set()
        self.beam_safe.set()

    @property
    def dwelling(self) -> bool:
        return self._dwelling

    def pause(self) -> None:
        self.dwelling_when_paused = self._dwelling
        if self.refuse_replay_on_pause:
            raise NoReplayAllowed(f"{self.name} delivered dose; do not replay it")

    def resume(self) -> None:
        pass

    # --- the simulated acquisition -------------------------------------------------------------------------------

    def _start_dwell(self, dwell_s: float) -> SimpleStatus:
        status = SimpleStatus()
        self.dwells_started += 1
        self._abort.clear()
        self.beam_safe.clear()
        self._dwelling = True

        def dwell() -> None:
            aborted = self._abort.wait(dwell_s)
            self.dwell_ended_at = time.perf_counter()
            self._dwelling = False
            self._value = float(self.dwells_started)
            self.beam_safe.set()  # the beam is off the sample once the dwell ends, stopped or not
            status.finish(RuntimeError("dwell stopped") if aborted else None)

        self.dwell_started.set()
        if self.blocking:
            dwell()
        else:
            threading.Thread(target=dwell, name=f"{self.name}-dwell", daemon=True).start()
        return status


# --- plans -----------------------------------------------------------------------------------------------------------


def trigger_plan(det: DwellDetector) -> MsgGenerator[None]:
    """The natural bluesky way: the dwell is a detector trigger."""
    yield from bps.open_run()
    yield from bps.trigger_and_read([det])
    yield from bps.close_run()


def movable_plan(det: DwellDetector) -> MsgGenerator[None]:
    """The dwell as a ``set`` on a movable, because the RunEngine only calls ``stop()`` on objects it has ``set``."""
    yield from bps.open_run()
    yield from bps.abs_set(det, det.dwell_s, wait=True)
    yield from bps.create()
    yield from bps.read(det)
    yield from bps.save()
    yield from bps.close_run()


def finalize_plan(det: DwellDetector) -> MsgGenerator[None]:
    """The dwell as a trigger, with a plan-level ``finally`` that sends ``stop`` to the detector."""
    yield from finalize_wrapper(trigger_plan(det), bps.stop(det))


def checkpointed_plan(det: DwellDetector, steps: int) -> MsgGenerator[None]:
    """``steps`` dose-delivering triggers with a checkpoint before each (the most replay-friendly layout)."""
    yield from bps.open_run()
    for _ in range(steps):
        yield from bps.checkpoint()
        yield from bps.trigger_and_read([det])
    yield from bps.close_run()


# --- harness ---------------------------------------------------------------------------------------------------------


def make_run_engine() -> typing.Any:
    """A RunEngine fit for a worker thread: no SIGINT handler and a plain blocking wait.

    ``context_managers=[]`` because the default ``SigintHandler`` calls
    ``signal.signal``, which only works on the main thread; ``DuringTask()``
    because the default ``DefaultDuringTask`` runs the Qt event loop on the
    calling thread when matplotlib uses a Qt backend, which must not happen on
    a worker thread in Swift.
    """
    return RunEngine({}, context_managers=[], during_task=plain_during_task())


def check_default_engine_on_worker() -> str:
    """What happens with a default RunEngine called on a worker thread (the SIGINT handler needs the main thread)."""
    outcome: list[str] = []
    re_default: typing.Any = RunEngine({})
    det = DwellDetector("probe", 0.01)

    def work() -> None:
        try:
            re_default(trigger_plan(det))
            outcome.append("ran")
        except Exception as e:  # what we want to know is which exception
            outcome.append(f"{type(e).__name__}: {e}")

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    return outcome[0] if outcome else "hung"


def check_runs_on_worker(RE: typing.Any) -> bool:
    """A short plan runs to completion on a worker thread and emits its documents."""
    det = DwellDetector("probe", 0.01)
    names: list[str] = []
    ok: list[bool] = []

    def work() -> None:
        try:
            RE(trigger_plan(det), lambda name, doc: names.append(name))
            ok.append(True)
        except Exception:
            ok.append(False)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    return bool(ok and ok[0]) and names == ["start", "descriptor", "event", "stop"]


class StopTrial(typing.NamedTuple):
    safe_ms: float  # stop call -> beam safe (stop() ran or the dwell ended by itself)
    returned_ms: float  # stop call -> RE(plan) returned on the worker
    call_ms: float  # how long the stop call blocked the calling (UI) thread
    stop_called: bool  # did anything call the device's stop()?


def stop_trial(RE: typing.Any, det: DwellDetector, plan: typing.Callable[[DwellDetector], MsgGenerator[None]], how: str) -> StopTrial:
    det.reset()
    returned: list[float] = []

    def work() -> None:
        try:
            RE(plan(det))
        except RunEngineInterrupted:
            pass
        returned.append(time.perf_counter())

    worker = threading.Thread(target=work, name="experiment-worker")
    worker.start()
    if not det.dwell_started.wait(5.0):
        raise RuntimeError("the dwell never started")
    time.sleep(STOP_AFTER_S)
    t_stop = time.perf_counter()
    if how == "abort":
        RE.abort("stop button")
    elif how == "stop":
        RE.stop()
    elif how == "halt":
        RE.halt()
    else:
        raise ValueError(how)
    t_call = time.perf_counter()
    worker.join(DWELL_S + 5.0)
    det.beam_safe.wait(DWELL_S + 5.0)
    safe_at = min(t for t in (det.stop_called_at, det.dwell_ended_at) if t is not None)
    return StopTrial((safe_at - t_stop) * 1e3, (returned[0] - t_stop) * 1e3 if returned else float("inf"), (t_call - t_stop) * 1e3, det.stop_called_at is not None)


def stop_figures(label: str, trials: list[StopTrial]) -> dict[str, typing.Any]:
    safe = [t.safe_ms for t in trials]
    ret = [t.returned_ms for t in trials]
    calls = [t.call_ms for t in trials]
    stopped = sum(t.stop_called for t in trials)
    print(f"  {label}: stop -> beam safe max {max(safe):.1f} ms, median {statistics.median(safe):.1f} ms; "
          f"stop -> RE returned max {max(ret):.1f} ms, median {statistics.median(ret):.1f} ms; "
          f"stop call blocked the UI thread max {max(calls):.1f} ms; device stop() called in {stopped}/{len(trials)} trials")
    return {"safe_max": max(safe), "safe_median": statistics.median(safe), "return_max": max(ret), "return_median": statistics.median(ret),
            "call_max": max(calls), "stop_called": stopped, "trials": len(trials)}


class ReplayResult(typing.NamedTuple):
    triggers: int  # how many dwells the detector actually ran
    events: int  # how many events the run emitted
    replayed: int  # triggers - intended steps
    reads_while_dwelling: int  # events whose reading was taken while a dwell was still running
    beam_on_while_paused: bool  # the interrupted dwell was still running once the engine had put everything at rest for the pause
    exit_status: str


def replay_trial(RE: typing.Any, *, rewindable: bool, defer: bool = False, refuse_replay: bool = False, pause_s: float = REPLAY_DWELL_S * 2) -> ReplayResult:
    det = DwellDetector("probe", REPLAY_DWELL_S, refuse_replay_on_pause=refuse_replay)
    docs: list[tuple[str, dict[str, typing.Any]]] = []
    paused = threading.Event()
    go_on = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            try:
                RE(checkpointed_plan(det, REPLAY_STEPS), lambda name, doc: docs.append((name, doc)))
            except RunEngineInterrupted:
                paused.set()
                go_on.wait(10.0)
                RE.resume()
        except BaseException as e:  # report, do not hang the benchmark
            errors.append(e)
            paused.set()

    RE.rewindable = rewindable
    worker = threading.Thread(target=work, name="experiment-worker")
    worker.start()
    deadline = time.monotonic() + 10.0
    while det.dwells_started < PAUSE_DURING_STEP and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(REPLAY_DWELL_S / 3)  # well inside the dwell
    RE.request_pause(defer=defer)
    paused.wait(10.0)
    time.sleep(pause_s)  # by default long enough for the interrupted dwell to end by itself
    go_on.set()
    worker.join(30.0)
    RE.rewindable = True
    if errors:
        raise RuntimeError(f"replay trial failed: {errors[0]!r}")
    events = sum(1 for name, _ in docs if name == "event")
    stop = [doc for name, doc in docs if name == "stop"]
    beam_on = bool(det.dwelling_when_paused)  # sampled in pause(), after the RunEngine stopped what it stops on a pause
    return ReplayResult(det.dwells_started, events, det.dwells_started - REPLAY_STEPS, det.reads_while_dwelling, beam_on,
                        stop[0]["exit_status"] if stop else "none")


def replay_line(label: str, r: ReplayResult) -> None:
    print(f"  {label}: {r.triggers} dwells run for {REPLAY_STEPS} intended ({r.replayed} replayed), {r.events} events, "
          f"{r.reads_while_dwelling} readings taken mid-dwell, beam {'still on' if r.beam_on_while_paused else 'off'} once paused, exit_status {r.exit_status}")


def measure_own_engine() -> dict[str, typing.Any]:
    """The same figures for nion_autoem's own engine: stop mid-dwell from another thread, and pause/resume mid-run."""
    import tempfile

    import numpy

    from nion_autoem.actions import Dwell
    from nion_autoem.actions import Survey
    from nion_autoem.geometry import ScanFrame
    from nion_autoem.instrument import Measurement
    from nion_autoem.plan import Checkpoint
    from nion_autoem.plan import PlanGenerator
    from nion_autoem.plan import plan
    from nion_autoem.replay import ReplayMicroscope
    from nion_autoem.runner import ExperimentRunner

    class SlowDwells(ReplayMicroscope):
        """Recorded data whose ADF dwells take real time and end early only when the beam is made safe."""

        def __init__(self, dwell_s: float) -> None:
            super().__init__(numpy.ones((32, 32)), ScanFrame((32, 32), 4.0))
            self.dwell_s, self.dwells, self.safe_at = dwell_s, 0, 0.0
            self.__abort = threading.Event()

        def adf_trace(self, samples: int, sample_time_us: float, *, channel: str = "HAADF") -> Measurement:
            self.dwells += 1
            self.__abort.clear()
            self.__abort.wait(self.dwell_s)
            return super().adf_trace(samples, sample_time_us, channel=channel)

        def make_safe(self) -> None:
            self.safe_at = time.perf_counter()
            self.__abort.set()
            super().make_safe()

    @plan("dwells")
    def dwells(n: int) -> PlanGenerator:
        yield Survey()
        for _ in range(n):
            yield Checkpoint()
            yield Dwell((0.0, 0.0), 10, 100.0)

    stops: list[float] = []
    returns: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for trial in range(STOP_TRIALS):
            scope = SlowDwells(DWELL_S)
            runner = ExperimentRunner(scope, dwells(1), run_dir=f"{folder}/stop-{trial}")
            runner.start()
            while scope.dwells == 0:
                time.sleep(0.001)
            time.sleep(STOP_AFTER_S)
            t0 = time.perf_counter()
            runner.stop()
            returns.append((time.perf_counter() - t0) * 1e3)
            stops.append((scope.safe_at - t0) * 1e3)
            runner.wait(10)
        scope = SlowDwells(REPLAY_DWELL_S)
        runner = ExperimentRunner(scope, dwells(REPLAY_STEPS), run_dir=f"{folder}/pause")
        runner.start()
        while scope.dwells < PAUSE_DURING_STEP:
            time.sleep(0.001)
        time.sleep(REPLAY_DWELL_S / 2)
        runner.pause()
        time.sleep(REPLAY_DWELL_S * 2)
        runner.resume()
        runner.wait(60)
    figures = {"stop_to_safe_ms_max": round(max(stops), 2), "stop_to_safe_ms_median": round(statistics.median(stops), 2),
               "stop_returns_ms_max": round(max(returns), 2), "dose_steps_replayed": scope.dwells - REPLAY_STEPS}
    print(f"nion_autoem engine: stop to a safe beam {figures['stop_to_safe_ms_median']} ms median, {figures['stop_to_safe_ms_max']} ms max over "
          f"{STOP_TRIALS} stops mid-dwell; pause/resume mid-run re-ran {figures['dose_steps_replayed']} dwell(s)")
    return figures


def main() -> None:
    logging.getLogger("bluesky").addHandler(logging.NullHandler())  # "Run aborted" tracebacks on every abort are expected here
    logging.getLogger("bluesky").propagate = False
    print(f"bluesky {bluesky.__version__}, Python {sys.version.split()[0]}")
    notes: list[str] = []

    # -- can RE(plan) run on a worker thread at all? --
    default_outcome = check_default_engine_on_worker()
    print(f"default RunEngine() called on a worker thread: {default_outcome}")
    RE = make_run_engine()
    on_worker = check_runs_on_worker(RE)
    print(f"RunEngine(context_managers=[], during_task=DuringTask()) on a worker thread: {'runs' if on_worker else 'FAILS'}")
    if not default_outcome.startswith("ran"):
        notes.append(f"default RunEngine on a worker thread fails ({default_outcome.split(':')[0]}): needs context_managers=[] (no SIGINT handler)")
    notes.append("during_task=DuringTask() so RE never runs a Qt loop on the worker; RE runs plans on its own asyncio loop thread, so 3 threads: UI, worker (blocked), bluesky loop")

    # -- (a) stop to a safe beam --
    out = io.StringIO()
    print(f"(a) stop {STOP_AFTER_S} s into a {DWELL_S} s dwell, from the main thread; RE(plan) on a worker thread")
    with contextlib.redirect_stdout(out):  # bluesky prints "Aborting: ..." on every abort
        naive = [stop_trial(RE, DwellDetector("probe", DWELL_S), trigger_plan, "abort") for _ in range(NAIVE_TRIALS)]
        blocking = [stop_trial(RE, DwellDetector("probe", DWELL_S, blocking=True), trigger_plan, "abort") for _ in range(NAIVE_TRIALS)]
        movable = [stop_trial(RE, DwellDetector("probe", DWELL_S), movable_plan, "abort") for _ in range(STOP_TRIALS)]
        movable_stop = [stop_trial(RE, DwellDetector("probe", DWELL_S), movable_plan, "stop") for _ in range(5)]
        final = [stop_trial(RE, DwellDetector("probe", DWELL_S), finalize_plan, "abort") for _ in range(STOP_TRIALS)]
    f_naive = stop_figures("dwell as trigger, RE.abort()", naive)
    f_blocking = stop_figures("dwell as a synchronous trigger (acquisition call inside trigger()), RE.abort()", blocking)
    f_movable = stop_figures("dwell as set() on a movable, RE.abort()", movable)
    stop_figures("dwell as set() on a movable, RE.stop()", movable_stop)
    f_final = stop_figures("dwell as trigger + finalize_wrapper(bps.stop), RE.abort()", final)
    if f_naive["stop_called"] == 0:
        notes.append("RE.abort() never calls stop() on a triggered detector (only on objects it set()): the beam stays on to the end of the dwell; "
                     "the dwell has to be modelled as set() on a movable (or the plan must finalize with bps.stop) to be stopped")

    # -- (b) dose-delivering steps replayed on pause/resume --
    print(f"(b) {REPLAY_STEPS} dwells of {REPLAY_DWELL_S} s, checkpoint before each, pause requested mid-dwell {PAUSE_DURING_STEP}, then resume")
    with contextlib.redirect_stdout(out):
        rewind = replay_trial(RE, rewindable=True)
        no_rewind = replay_trial(RE, rewindable=False)
        no_rewind_short = replay_trial(RE, rewindable=False, pause_s=REPLAY_DWELL_S / 10)
        refused = replay_trial(RE, rewindable=True, refuse_replay=True)
        deferred = replay_trial(RE, rewindable=True, defer=True)
    replay_line("rewindable=True, immediate pause", rewind)
    replay_line("rewindable=False, immediate pause", no_rewind)
    replay_line("rewindable=False, immediate pause, resumed before the dwell ended", no_rewind_short)
    replay_line("rewindable=True, detector.pause() raises NoReplayAllowed", refused)
    replay_line("rewindable=True, deferred pause (waits for the next checkpoint)", deferred)
    if rewind.replayed:
        notes.append(f"rewindable pause/resume re-ran {rewind.replayed} dose step(s) (rewinds to the last checkpoint)")
    if rewind.beam_on_while_paused:
        notes.append("pause does not stop a triggered detector: the interrupted dwell keeps the beam on while paused")
    if f_blocking["call_max"] > SAFE_BUDGET_MS:
        notes.append(f"a trigger() that acquires synchronously blocks bluesky's event loop, so RE.abort() blocks the calling UI thread {f_blocking['call_max']:.0f} ms "
                     "until the acquisition ends: every device must hand its acquisition to another thread")
    if no_rewind_short.reads_while_dwelling or no_rewind.reads_while_dwelling:
        notes.append("without rewind the interrupted step's reading is taken before its dwell finished")

    # -- (c) this project's own engine --
    own = measure_own_engine()

    safe_ok = f_movable["safe_max"] <= SAFE_BUDGET_MS and f_movable["stop_called"] == f_movable["trials"]
    print(f"verdict: stop to safe within {SAFE_BUDGET_MS:.0f} ms: trigger {'yes' if f_naive['safe_max'] <= SAFE_BUDGET_MS else 'NO'}, "
          f"movable {'yes' if safe_ok else 'NO'}, finalize {'yes' if f_final['safe_max'] <= SAFE_BUDGET_MS else 'NO'}; "
          f"dose steps replayed with rewind: {rewind.replayed}, without: {no_rewind.replayed}")
    summary = {
        "bluesky_version": bluesky.__version__,
        "bluesky_stop_to_safe_ms_max": round(f_movable["safe_max"], 2),
        "bluesky_stop_to_safe_ms_median": round(f_movable["safe_median"], 2),
        "bluesky_return_after_stop_ms_max": round(f_movable["return_max"], 2),
        "bluesky_dose_steps_replayed": rewind.replayed,
        "bluesky_dose_steps_replayed_nonrewindable": no_rewind.replayed,
        "runs_on_worker_thread": on_worker,
        "bluesky_trigger_stop_to_safe_ms_max": round(f_naive["safe_max"], 2),
        "bluesky_trigger_stop_called": f_naive["stop_called"] > 0,
        "bluesky_blocking_trigger_abort_blocks_ui_ms_max": round(f_blocking["call_max"], 2),
        "bluesky_finalize_stop_to_safe_ms_max": round(f_final["safe_max"], 2),
        "bluesky_dose_steps_replayed_noreplayallowed": refused.replayed,
        "bluesky_dose_steps_replayed_deferred_pause": deferred.replayed,
        "bluesky_nonrewindable_readings_taken_mid_dwell": no_rewind_short.reads_while_dwelling,
        "bluesky_beam_on_while_paused": rewind.beam_on_while_paused,
        "own_engine": own,
        "notes": "; ".join(notes),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
