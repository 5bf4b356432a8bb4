"""The engine: runs a plan on a microscope, journals it, keeps the beam safe.

One worker thread drives the plan's generator: it performs each action the
plan yields, journals it, and sends the measurement back in.  Panels and the
console read :attr:`~ExperimentRunner.progress` and call
:meth:`~ExperimentRunner.pause`, :meth:`~ExperimentRunner.resume` and
:meth:`~ExperimentRunner.stop` from any thread.  The state machine is::

    idle -> running <-> paused
    running | paused -> finished | stopped | failed

What the engine owns, so plans do not have to:

- **the beam**: it unblanks just before the first action that delivers dose
  (after every action so far was checked against the instrument), and
  whatever ends the run, the beam is made safe (blanked, probe unparked).
  :meth:`~ExperimentRunner.stop` makes it safe on the caller's thread before
  it returns, so a stop button never waits for an exposure to finish;
- **pause**: by default at the plan's next :class:`~nion_autoem.plan.Checkpoint`
  (before the next action for plans that mark none), or at once with
  ``pause(immediate=True)``; the beam is blanked while paused;
- **budgets**: steps, dose (checked before each action with its planned
  dose) and time;
- **suspenders** (:mod:`nion_autoem.suspenders`): conditions watched between
  actions that blank the beam, wait, run a recovery sub-plan and continue;
- **the journal**: every action with its data, then the plan's report and
  rewards for it; resume replays the journal into a fresh plan and continues
  live, and no action that was journaled is performed again.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import pathlib
import threading
import time
import traceback
import typing
import uuid

import numpy
from nion.utils import Event

import nion_autoem
from nion_autoem import xdata as xdata_builders
from nion_autoem.actions import ACTION_TYPES
from nion_autoem.actions import Action
from nion_autoem.actions import Blank
from nion_autoem.actions import Unblank
from nion_autoem.actions import Wait
from nion_autoem.actions import is_action
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import Microscope
from nion_autoem.journal import Journal
from nion_autoem.journal import JournalStep
from nion_autoem.journal import NullJournal
from nion_autoem.journal import read_journal
from nion_autoem.plan import Checkpoint
from nion_autoem.plan import Plan
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import Publish
from nion_autoem.plan import Report
from nion_autoem.plan import rewards_of
from nion_autoem.products import MemorySink
from nion_autoem.products import Product
from nion_autoem.products import ResultSink
from nion_autoem.products import RunContext
from nion_autoem.suspenders import Suspender
from nion_autoem.suspenders import SuspenderContext

_logger = logging.getLogger(__name__)

PLAN_SOURCE = "plan"


class RunState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (RunState.FINISHED, RunState.STOPPED, RunState.FAILED)


class PlanError(TypeError):
    """A plan yielded something the engine cannot run; the message names the plan, the step and the fix."""


class _Stopped(Exception):
    """Raised inside the worker when a stop request is seen."""


class _Ended(Exception):
    """The run ends early for a reason that is not a failure (budget spent, replay complete)."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """Limits on a run; whichever is reached first ends it.

    Parameters
    ----------
    max_steps : int or None
        Number of actions performed.
    max_dose_e : float or None
        Electrons delivered to the sample.
    max_time_s : float or None
        Wall-clock time since the start.
    """

    max_steps: int | None = None
    max_dose_e: float | None = None
    max_time_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_dose_e", "max_time_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0 and value < float("inf")):
                raise ValueError(f"Budget.{name} must be a finite number > 0 or None, got {value!r}")

    def fraction_used(self, steps: int, dose_e: float, elapsed_s: float) -> float:
        fractions = [0.0]
        if self.max_steps:
            fractions.append(steps / self.max_steps)
        if self.max_dose_e:
            fractions.append(dose_e / self.max_dose_e)
        if self.max_time_s:
            fractions.append(elapsed_s / self.max_time_s)
        return min(max(fractions), 1.0)

    def exhausted(self, steps: int, dose_e: float, elapsed_s: float) -> str | None:
        """Why the budget is spent, or None if it is not."""
        if self.max_steps is not None and steps >= self.max_steps:
            return f"step budget of {self.max_steps} reached"
        if self.max_dose_e is not None and dose_e >= self.max_dose_e:
            return f"dose budget of {self.max_dose_e:.3g} e reached"
        if self.max_time_s is not None and elapsed_s >= self.max_time_s:
            return f"time budget of {self.max_time_s:g} s reached"
        return None

    def to_dict(self) -> dict[str, typing.Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Progress:
    """A snapshot of a run for panels and the console."""

    state: RunState
    step: int
    fraction: float
    eta_s: float | None
    current_action: str
    message: str
    dose_e: float
    elapsed_s: float
    rewards: typing.Mapping[str, float] = dataclasses.field(default_factory=dict)
    #: False when the beam could not be made safe (the blanker failed): the loudest fact of the run.
    beam_safe: bool | None = None

    def __str__(self) -> str:
        eta = "" if self.eta_s is None else f", ETA {self.eta_s:.0f} s"
        return f"{self.state.value}: step {self.step}, {100 * self.fraction:.0f}%{eta}, {self.current_action or '-'}; {self.message}"


class ExperimentRunner:
    """Runs a plan on a microscope with a budget, a journal, suspenders and a sink.

    Parameters
    ----------
    microscope : Microscope or None
        The instrument; None only for a pure replay of a journal.
    plan : Plan
        The experiment (see :mod:`nion_autoem.plan`).
    run_dir : path-like
        Directory for the journal and its data.  With ``resume=True`` it must
        hold the journal of the run to continue.
    budget : Budget
        Limits on steps, dose and time.
    sink : ResultSink or None
        Where published products go (a :class:`MemorySink` if None).
    resume : bool
        Replay the journal in ``run_dir`` into the plan, then continue live.
    run_id : str or None
        Identifier recorded everywhere; taken from the journal when resuming.
    suspenders : sequence of Suspender
        Conditions to watch between actions (see :mod:`nion_autoem.suspenders`).
    journal : bool
        Write a journal (a dry run does not).
    on_end : sequence of callables
        Run once when the run ends, after the beam was made safe (e.g. give
        the user's scan settings back); a sentence one returns is added to
        the final message.
    on_measurement : sequence of callables
        Called with every measurement the instrument returned, after it was
        journaled (e.g. the session's dose history); one that raises is
        logged and does not end the run.
    after_journal : sequence of callables
        Run once after the journal has been ended and closed (e.g. register
        the run in a run catalog, which reads the finished journal); one that
        raises is logged.
    abandon_after_s : float
        After a stop (or a time budget that runs out mid-action) the beam is
        safe at once; if the instrument has not returned from the action in
        flight this much later, the run is ended without it (a wedged driver
        must not keep a run "running").

    Examples
    --------
    >>> runner = ExperimentRunner(microscope, plan, run_dir="runs/demo", budget=Budget(max_steps=20))  # doctest: +SKIP
    >>> runner.start(); runner.wait()  # doctest: +SKIP
    """

    def __init__(self, microscope: Microscope | None, plan: Plan, *, run_dir: str | pathlib.Path, budget: Budget = Budget(),
                 sink: ResultSink | None = None, resume: bool = False, run_id: str | None = None, suspenders: typing.Sequence[Suspender] = (),
                 journal: bool = True, abandon_after_s: float = 2.0, on_end: typing.Sequence[typing.Callable[[], str | None]] = (),
                 on_measurement: typing.Sequence[typing.Callable[[Measurement], None]] = (),
                 after_journal: typing.Sequence[typing.Callable[[], None]] = ()) -> None:
        if not callable(getattr(plan, "messages", None)):
            raise PlanError(f"{plan!r} is not a plan: a plan has a name, parameters and a messages() method; "
                            "make one with @nion_autoem.plan.plan on a generator function")
        for suspender in suspenders:
            if not isinstance(suspender, Suspender):
                raise TypeError(f"suspenders must be Suspender objects (nion_autoem.suspenders), got {suspender!r}")
        self.microscope = microscope
        self.plan = plan
        self.budget = budget
        self.abandon_after_s = abandon_after_s
        self.__on_end = tuple(on_end)
        self.__on_measurement = tuple(on_measurement)
        self.__after_journal = tuple(after_journal)
        self.suspenders = tuple(suspenders)
        self.sink: ResultSink = sink if sink is not None else MemorySink()
        self.run_dir = pathlib.Path(run_dir)
        self.__write_journal = journal
        self.__recorded: list[JournalStep] = []
        if resume:
            record = read_journal(self.run_dir)
            if not record.header:
                raise ValueError(f"the journal in {self.run_dir} has no header line, so there is no run to resume; start a new run instead")
            if record.header.get("plan") not in (None, plan.name):
                raise ValueError(f"the journal in {self.run_dir} was written by plan {record.header.get('plan')!r}, not {plan.name!r}")
            self.__recorded = list(record.steps)
            run_id = run_id or str(record.header.get("run_id") or "")
        elif microscope is None:
            raise ValueError("a live run needs a microscope; pass microscope=None only with resume=True to replay a journal")
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.__resume = resume
        self.progress_changed_event = Event.Event()
        self.journal: Journal | NullJournal = NullJournal()
        self.__lock = threading.Lock()
        self.__state = RunState.IDLE
        self.__step = 0
        self.__dose_e = 0.0
        self.__started = 0.0
        self.__current = ""
        self.__message = ""
        self.__fraction: float | None = None
        self.__model_version = str(getattr(plan, "model_version", "") or plan.name)
        self.__stop_reason: str | None = None
        self.__pause_requested = threading.Event()
        self.__pause_immediately = False
        self.__wakeup = threading.Event()
        self.__thread: threading.Thread | None = None
        self.__done = threading.Event()
        self.__beam_on = False
        self.__plan_blanked = False
        self.__saw_checkpoint = False
        self.__open_step: tuple[int, Measurement | None, bool] | None = None
        self.__open_result: dict[str, typing.Any] = {}
        self.__rewards = rewards_of(plan)
        self.__reward_totals = {reward.name: 0.0 for reward in self.__rewards}
        self.__reward_history: list[list[float]] = []
        self.__held_products: dict[str, Product] = {}
        self.__last_measurement: Measurement | None = None
        self.__closed_result: typing.Mapping[str, typing.Any] = {}
        self.__recent_doses: list[tuple[float, float]] = []
        self.__context: RunContext | None = None
        self.__beam_safe: bool | None = None
        self.__finalized = False
        self.__watchdogs: list[threading.Timer] = []
        self.error: BaseException | None = None
        self.outcome = ""

    # --- read from any thread -------------------------------------------------

    @property
    def state(self) -> RunState:
        with self.__lock:
            return self.__state

    @property
    def progress(self) -> Progress:
        with self.__lock:
            elapsed = time.time() - self.__started if self.__started else 0.0
            fraction = self.budget.fraction_used(self.__step, self.__dose_e, elapsed)
            if self.__fraction is not None:
                fraction = max(fraction, min(max(self.__fraction, 0.0), 1.0))
            if self.__state is RunState.FINISHED:
                fraction = 1.0
            eta = elapsed * (1.0 - fraction) / fraction if 0.0 < fraction < 1.0 and self.__state is RunState.RUNNING else None
            return Progress(self.__state, self.__step, fraction, eta, self.__current, self.__message, self.__dose_e, elapsed, dict(self.__reward_totals),
                            self.__beam_safe)

    @property
    def model_version(self) -> str:
        """The model behind the plan's decisions now (as the plan last reported it)."""
        with self.__lock:
            return self.__model_version

    # --- control from any thread ----------------------------------------------

    def start(self) -> None:
        """Run the plan on a worker thread and return at once."""
        self.__claim()
        self.__thread = threading.Thread(target=self.__run, name=f"nion-autoem run {self.run_id}", daemon=True)
        self.__thread.start()

    def run(self) -> Progress:
        """Run the plan on the calling thread (not the UI thread) until it ends."""
        self.__claim()
        self.__run()
        return self.progress

    def __claim(self) -> None:
        with self.__lock:
            if self.__state is not RunState.IDLE:
                raise RuntimeError(f"a runner starts once; this one is {self.__state.value}")
            self.__state = RunState.RUNNING
        if self.budget.max_time_s is not None:
            # Between actions the budget ends the run; this ends it when one action outlasts the budget.
            self.__watch(self.budget.max_time_s + 0.5, lambda: self.stop(f"time budget of {self.budget.max_time_s:g} s reached during {self.progress.current_action or 'an action'}"))

    def __watch(self, delay_s: float, action: typing.Callable[[], None]) -> None:
        timer = threading.Timer(delay_s, lambda: None if self.__done.is_set() else action())
        timer.daemon = True
        self.__watchdogs.append(timer)
        timer.start()

    def wait(self, timeout: float | None = None) -> Progress:
        """Wait for the run to end; returns the final progress."""
        if not self.__done.wait(timeout):
            raise TimeoutError(f"run {self.run_id} still {self.state.value} after {timeout} s")
        return self.progress

    def pause(self, *, immediate: bool = False) -> None:
        """Hold with the beam blanked: at the plan's next checkpoint, or before the next action if ``immediate``."""
        self.__pause_immediately = immediate
        self.__pause_requested.set()
        self.__wakeup.set()

    def resume(self) -> None:
        """Continue a paused run."""
        self.__pause_requested.clear()
        self.__wakeup.set()

    def stop(self, reason: str = "stopped by user") -> None:
        """End the run now: the beam is made safe before this returns.

        An acquisition in flight is aborted and not journaled.  Safe to call
        from any thread, repeatedly, and after the run has ended (then it does
        nothing).
        """
        with self.__lock:
            if self.__state.is_final or self.__state is RunState.IDLE:
                return
            first = self.__stop_reason is None
            if first:
                self.__stop_reason = reason
        self.__make_safe()
        self.__wakeup.set()
        if first:
            self.__watch(self.abandon_after_s, self.__abandon)

    def __abandon(self) -> None:
        """The worker is still inside the instrument long after the stop: end the run without it."""
        current = self.progress.current_action or "an action"
        message = (f"{self.__stop_reason}; the instrument did not return from {current} within {self.abandon_after_s:g} s of the stop, "
                   "so the run was ended without it (the beam was made safe first)")
        _logger.error("run %s: %s", self.run_id, message)
        self.__finish(RunState.STOPPED, message)

    # --- the worker -------------------------------------------------------------

    def __set(self, *, state: RunState | None = None, step: int | None = None, dose_e: float | None = None,
              current: str | None = None, message: str | None = None) -> None:
        with self.__lock:
            self.__state = state if state is not None else self.__state
            self.__step = step if step is not None else self.__step
            self.__dose_e = dose_e if dose_e is not None else self.__dose_e
            self.__current = current if current is not None else self.__current
            self.__message = message if message is not None else self.__message
        self.progress_changed_event.fire(self.progress)

    def __check_stop(self) -> None:
        with self.__lock:
            if self.__stop_reason is not None:
                raise _Stopped(self.__stop_reason)

    def __make_safe(self) -> None:
        """Blank, abort, unpark; then check that the beam really is blanked, and say so loudly if not."""
        self.__beam_on = False
        if self.microscope is None:
            return
        self.microscope.make_safe()
        try:
            blanked = self.microscope.is_blanked
        except Exception:
            _logger.exception("run %s: could not read the blanker after make_safe", self.run_id)
            blanked = False
        with self.__lock:
            self.__beam_safe = blanked and self.__beam_safe is not False
        if not blanked:
            _logger.critical("run %s: THE BEAM IS NOT BLANKED after make_safe: blank it by hand", self.run_id)
            self.__journal_quietly("write_event", "beam not safe", step=self.__step, message="the blanker did not blank the beam; blank it by hand")

    def __hold_while_paused(self) -> None:
        self.__make_safe()
        self.__set(state=RunState.PAUSED, current="", message="paused; beam blanked")
        self.journal.write_event("paused", step=self.__step)
        while self.__pause_requested.is_set():
            self.__check_stop()
            self.__wakeup.wait(0.05)
            self.__wakeup.clear()
        self.__check_stop()
        self.journal.write_event("resumed", step=self.__step)
        self.__set(state=RunState.RUNNING, message="resumed")

    def __run(self) -> None:
        self.__started = time.time()
        provenance = {"plan": self.plan.name, "model_version": self.__model_version, "software": f"nion-autoem {nion_autoem.__version__}",
                      "microscope": self.microscope.name if self.microscope else "journal replay", "journal": str(self.run_dir / "journal.jsonl"),
                      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.__started))}
        final_state, message = RunState.FINISHED, ""
        try:
            self.__context = RunContext(self.run_id, self.run_dir, dict(self.plan.parameters), self.sink, provenance)
            if self.__write_journal:
                self.journal = Journal(self.run_dir)
            self.journal.write_header(self.run_id, plan=self.plan.name, parameters={**dict(self.plan.parameters), "budget": self.budget.to_dict()},
                                      microscope=self.microscope.name if self.microscope else "journal replay",
                                      resumed_from_step=len(self.__recorded) if self.__resume else None,
                                      suspenders=[s.name for s in self.suspenders], rewards=[r.name for r in self.__rewards])
            outcome = self.__drive(self.plan.messages(), PLAN_SOURCE)
            self.__close_step()
            message = self.outcome = outcome or "plan finished"
        except _Stopped as stopped:
            final_state, message = RunState.STOPPED, str(stopped)
        except _Ended as ended:
            self.__close_step()
            message = self.outcome = str(ended)
        except Exception as e:
            self.__make_safe()  # first, before anything that could fail again
            self.error = e
            final_state = RunState.FAILED
            message = f"{type(e).__name__} {self.__where()}: {e}"
            _logger.error("run %s failed: %s", self.run_id, message)
            self.__journal_quietly("write_event", "error", step=self.__step, message=message, traceback=traceback.format_exc())
        finally:
            self.__make_safe()
            self.__flush_held_products()
            self.__finish(final_state, message)

    def __finish(self, state: RunState, message: str) -> None:
        """End the run once: journal how, set the final state, release wait()."""
        with self.__lock:
            if self.__finalized:
                return
            self.__finalized = True
            beam_safe = self.__beam_safe
        for timer in self.__watchdogs:
            timer.cancel()
        for hook in self.__on_end:
            try:
                said = hook()
            except Exception as e:  # a clean-up that fails must not keep the run from ending
                said = f"{getattr(hook, '__name__', 'a clean-up')} failed: {e}"
                _logger.exception("run %s: clean-up at the end failed", self.run_id)
            if said:
                message = f"{message}; {said}"
        if beam_safe is False:
            message = f"BEAM NOT SAFE: the blanker did not blank the beam; blank it by hand. {message}"
        self.__journal_quietly("write_end", state.value, message=message, steps=self.__step, dose_e=self.__dose_e, beam_safe=beam_safe)
        self.__journal_quietly("close")
        for after in self.__after_journal:
            try:
                after()
            except Exception:  # the run has ended; a follow-up that fails is logged, not raised
                _logger.exception("run %s: %s after the journal was closed failed", self.run_id, getattr(after, "__name__", "a follow-up"))
        self.__set(state=state, current="", message=message)
        self.__done.set()

    def __where(self) -> str:
        current = self.__current
        if current.startswith("processing "):
            return f"in plan {self.plan.name!r} while processing step {self.__step - 1} ({current.removeprefix('processing ')})"
        if current:
            return f"at step {self.__step} ({current}) of plan {self.plan.name!r}"
        return f"in plan {self.plan.name!r} before step {self.__step}"

    def __journal_quietly(self, method: str, *args: typing.Any, **kwargs: typing.Any) -> None:
        """Journal on the way out; a journal that fails here must not keep the run from ending."""
        try:
            getattr(self.journal, method)(*args, **kwargs)
        except Exception:
            _logger.exception("run %s: could not %s the journal in %s", self.run_id, method, self.run_dir)

    # --- driving a plan ------------------------------------------------------------

    def __drive(self, generator: PlanGenerator, source: str) -> str:
        """Run one plan generator to its end; returns its outcome."""
        reply: typing.Any = None
        try:
            while True:
                try:
                    message = generator.send(reply)
                except StopIteration as stop:
                    return "" if stop.value is None else str(stop.value)
                reply = None
                if isinstance(message, Checkpoint):
                    self.__saw_checkpoint = True
                    if self.__pause_requested.is_set() and not self.__replaying:
                        self.__hold_while_paused()
                elif isinstance(message, Publish):
                    self.__publish(message.product)
                elif isinstance(message, Report):
                    self.__report(message)
                elif is_action(message):
                    reply = self.__perform(message, source)
                    self.__set(current=f"processing {message.label}")
                else:
                    raise PlanError(f"plan {self.plan.name!r} yielded {message!r} before step {self.__step}, which is not something a plan can yield; "
                                    f"yield an action ({', '.join(sorted(ACTION_TYPES))}) or a Checkpoint, Publish or Report")
        finally:
            generator.close()

    @property
    def __replaying(self) -> bool:
        return bool(self.__recorded)

    def __publish(self, product: Product) -> None:
        if self.__replaying:
            self.__held_products[product.key] = product  # only the latest of each is worth showing once live
            return
        assert self.__context is not None
        self.__context.step, self.__context.dose_e = self.__step, self.__dose_e
        self.__context.publish(product)

    def __flush_held_products(self) -> None:
        held, self.__held_products = self.__held_products, {}
        for product in held.values():
            try:
                assert self.__context is not None
                self.__context.publish(product)
            except Exception:
                _logger.exception("run %s: could not publish %s", self.run_id, product.key)

    def __report(self, report: Report) -> None:
        self.__open_result.update(report.result)
        with self.__lock:
            if report.fraction is not None:
                self.__fraction = report.fraction
            if report.model_version is not None:
                self.__model_version = report.model_version
        if report.status is not None:
            self.__set(message=report.status)

    def __close_step(self) -> None:
        """The plan has processed the last step: journal its report and rewards."""
        if self.__open_step is None:
            return
        step, measurement, recorded_result = self.__open_step
        result, self.__open_result, self.__open_step = self.__open_result, {}, None
        self.__closed_result = result
        for reward in self.__rewards:
            self.__reward_totals[reward.name] += float(reward.increment(measurement, result))
        if self.__rewards:
            self.__reward_history.append([self.__reward_totals[r.name] for r in self.__rewards])
            self.__publish_rewards()
        if not recorded_result and (result or self.__rewards):
            self.journal.write_result(step, result, rewards=dict(self.__reward_totals), model_version=self.__model_version)

    def __publish_rewards(self) -> None:
        history = numpy.asarray(self.__reward_history, dtype=float)
        for index, reward in enumerate(self.__rewards):
            xdata = xdata_builders.line_xdata(history[:, index], "step", units=reward.units, metadata={"nion_autoem": {"reward": reward.name}})
            self.__publish(Product(f"reward-{reward.name}", f"Reward: {reward.name}", xdata))

    def __perform(self, action: Action, source: str) -> Measurement:
        self.__close_step()
        if self.__replaying:
            return self.__replay(action, source)
        if self.microscope is None:
            raise _Ended("replay complete")
        self.__check_stop()
        if self.__pause_requested.is_set() and (self.__pause_immediately or not self.__saw_checkpoint):
            self.__hold_while_paused()
        if source == PLAN_SOURCE:
            self.__watch_suspenders()
        spent = self.budget.exhausted(self.__step, self.__dose_e, time.time() - self.__started)
        if spent:
            raise _Ended(spent)
        self.__set(current=action.label)
        action.check(self.microscope)
        if self.budget.max_dose_e is not None and self.__beam_would_be_on(action):
            planned = self.__dose_e + action.planned_dose_e(self.microscope)
            if planned > self.budget.max_dose_e:
                raise _Ended(f"the next action ({action.label}) would exceed the dose budget of {self.budget.max_dose_e:.3g} e")
        if action.delivers_dose and not self.__beam_on and not self.__plan_blanked:
            self.microscope.unblank()
            self.__beam_on = True
        step = self.__step
        self.__set(current=f"{action.label} ({action.kind})")
        try:
            measurement = self.__wait(action) if isinstance(action, Wait) else action.perform(self.microscope)
        except Exception:
            # An abort caused by stop() surfaces as an acquisition error: report it as the stop it is.
            self.__check_stop()
            raise
        self.__check_stop()
        if isinstance(action, (Blank, Unblank)):
            self.__plan_blanked = isinstance(action, Blank)
            self.__beam_on = isinstance(action, Unblank)
        self.journal.write_step(step, action, measurement, source=source, model_version=self.__model_version)
        for observer in self.__on_measurement:
            try:
                observer(measurement)
            except Exception:  # an observer (a display) must never end a run
                _logger.exception("run %s: a measurement observer failed", self.run_id)
        self.__recent_doses.append((time.time(), measurement.dose_e))
        self.__finish_step(step, measurement, recorded_result=False)
        return measurement

    def __beam_would_be_on(self, action: Action) -> bool:
        return action.delivers_dose and not self.__plan_blanked

    def __wait(self, action: Wait) -> Measurement:
        deadline = time.monotonic() + action.seconds
        while (left := deadline - time.monotonic()) > 0:
            self.__check_stop()
            self.__wakeup.wait(min(left, 0.05))
            self.__wakeup.clear()
        assert self.microscope is not None
        return action.perform(self.microscope)

    def __finish_step(self, step: int, measurement: Measurement, *, recorded_result: bool) -> None:
        self.__last_measurement = measurement
        self.__open_step = (step, measurement, recorded_result)
        self.__set(step=step + 1, dose_e=self.__dose_e + measurement.dose_e)

    def __replay(self, action: Action, source: str) -> Measurement:
        while self.__recorded and self.__recorded[0].source != source:
            # Recovery steps of a suspender ran between the plan's steps; they are done: count them and move on.
            skipped = self.__recorded.pop(0)
            self.__set(step=skipped.step + 1, dose_e=self.__dose_e + float(skipped.entry.get("dose_e", 0.0)))
        if not self.__recorded:
            self.__journal_quietly("write_event", "replay complete; continuing live", step=self.__step)
            self.__flush_held_products()
            return self.__perform(action, source)
        recorded = self.__recorded.pop(0)
        if recorded.action != action:
            raise RuntimeError(f"replay diverged at step {recorded.step}: plan {self.plan.name!r} decided {action} but the journal recorded {recorded.action}; "
                               "was it started with other parameters?")
        measurement = recorded.load_measurement()
        self.__finish_step(recorded.step, measurement, recorded_result=recorded.has_result)
        if not self.__recorded:
            self.__journal_quietly("write_event", "replay complete; continuing live" if self.microscope is not None else "replay complete", step=recorded.step + 1)
            self.__flush_held_products()
        return measurement

    # --- suspenders -----------------------------------------------------------------

    def __dose_rate_e_per_s(self, window_s: float = 1.0) -> float:
        now = time.time()
        self.__recent_doses = [(t, d) for t, d in self.__recent_doses if now - t <= window_s]
        return sum(d for _, d in self.__recent_doses) / window_s

    def __watch_suspenders(self) -> None:
        assert self.microscope is not None
        for suspender in self.suspenders:
            context = SuspenderContext(self.microscope, self.__step, self.__last_measurement, dict(self.__closed_result), self.__dose_rate_e_per_s())
            reason = suspender.tripped(context)
            if reason is None:
                continue
            trips = suspender.record_trip()
            self.__make_safe()
            self.journal.write_event("suspended", step=self.__step, suspender=suspender.name, reason=reason, trip=trips)
            self.__set(message=f"suspended by {suspender.name}: {reason}; beam blanked")
            if trips > suspender.max_trips:
                raise RuntimeError(f"suspender {suspender.name!r} tripped {trips} times ({reason}); the recovery does not help, so the run ends here")
            deadline = time.monotonic() + suspender.wait_s
            while time.monotonic() < deadline:
                self.__check_stop()
                self.__wakeup.wait(0.05)
                self.__wakeup.clear()
            self.__set(message=f"recovering ({suspender.name})")
            self.__drive(suspender.recovery(), f"suspender:{suspender.name}")
            self.__close_step()
            self.journal.write_event("recovered", step=self.__step, suspender=suspender.name)
            self.__set(message=f"recovered from {suspender.name}; continuing")


def replay(run_dir: str | pathlib.Path, plan: Plan, *, sink: ResultSink | None = None) -> ExperimentRunner:
    """Feed a journaled run to a fresh plan, without a microscope.

    Returns the finished runner; its sink holds what the plan published.  Use
    it to re-run a recorded experiment with another scalarizer or model.  The
    replay writes a journal of its own in ``<run_dir>/replay-<time>``.
    """
    source = pathlib.Path(run_dir)
    runner = ExperimentRunner(None, plan, run_dir=source, sink=sink, resume=True)
    runner.run_dir = source / time.strftime("replay-%Y%m%d-%H%M%S")
    runner.run()
    return runner
