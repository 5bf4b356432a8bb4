"""The experiment runner: observe, decide, act, until done, out of budget or stopped.

One worker thread runs the loop; panels and the console read :attr:`progress`
and call :meth:`~ExperimentRunner.pause`, :meth:`~ExperimentRunner.resume` and
:meth:`~ExperimentRunner.stop` from any thread.  The state machine is::

    idle -> running <-> paused
    running | paused -> finished | stopped | failed

Whatever ends the run, the beam is made safe (blanked, probe unparked) and the
journal says how it ended.  :meth:`~ExperimentRunner.stop` makes the beam safe
itself, on the caller's thread, before it returns, so a stop button never waits
for an exposure to finish.
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

from nion.utils import Event

import nion_autoem
from nion_autoem.actions import Action
from nion_autoem.actions import Observation
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import Microscope
from nion_autoem.instrument import electrons
from nion_autoem.journal import Journal
from nion_autoem.journal import JournalStep
from nion_autoem.journal import read_journal
from nion_autoem.products import MemorySink
from nion_autoem.products import Policy
from nion_autoem.products import ResultSink
from nion_autoem.products import RunContext

_logger = logging.getLogger(__name__)


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


class _Stopped(Exception):
    """Raised inside the worker when a stop request is seen."""


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
            if value is not None and not value > 0:
                raise ValueError(f"Budget.{name} must be positive or None, got {value!r}")

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

    def __str__(self) -> str:
        eta = "" if self.eta_s is None else f", ETA {self.eta_s:.0f} s"
        return f"{self.state.value}: step {self.step}, {100 * self.fraction:.0f}%{eta}, {self.current_action or '-'}; {self.message}"


class ExperimentRunner:
    """Runs a policy on a microscope with a budget, a journal and a sink.

    Parameters
    ----------
    microscope : Microscope or None
        The instrument; None only for a pure replay of a journal.
    policy : Policy
        Decides the actions.
    run_dir : path-like
        Directory for the journal and its data.  With ``resume=True`` it must
        hold the journal of the run to continue.
    budget : Budget
        Limits on steps, dose and time.
    sink : ResultSink or None
        Where published products go (a :class:`MemorySink` if None).
    resume : bool
        Replay the journal in ``run_dir`` into the policy, then continue live.
    run_id : str or None
        Identifier recorded everywhere; taken from the journal when resuming.

    Examples
    --------
    >>> runner = ExperimentRunner(microscope, policy, run_dir="runs/demo", budget=Budget(max_steps=20))  # doctest: +SKIP
    >>> runner.start(); runner.wait()  # doctest: +SKIP
    """

    def __init__(self, microscope: Microscope | None, policy: Policy, *, run_dir: str | pathlib.Path, budget: Budget = Budget(),
                 sink: ResultSink | None = None, resume: bool = False, run_id: str | None = None) -> None:
        self.microscope = microscope
        self.policy = policy
        self.budget = budget
        self.sink: ResultSink = sink if sink is not None else MemorySink()
        self.run_dir = pathlib.Path(run_dir)
        self.__recorded: list[JournalStep] = []
        if resume:
            record = read_journal(self.run_dir)
            if record.header.get("policy") not in (None, policy.name):
                raise ValueError(f"the journal in {self.run_dir} was written by policy {record.header.get('policy')!r}, not {policy.name!r}")
            self.__recorded = list(record.steps)
            run_id = run_id or str(record.header.get("run_id") or "")
        elif microscope is None:
            raise ValueError("a live run needs a microscope; pass microscope=None only with resume=True to replay a journal")
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.__resume = resume
        self.progress_changed_event = Event.Event()
        self.__lock = threading.Lock()
        self.__state = RunState.IDLE
        self.__step = 0
        self.__dose_e = 0.0
        self.__started = 0.0
        self.__current = ""
        self.__message = ""
        self.__stop_reason: str | None = None
        self.__pause_requested = threading.Event()
        self.__wakeup = threading.Event()
        self.__thread: threading.Thread | None = None
        self.__done = threading.Event()
        self.error: BaseException | None = None

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
            policy_fraction = self.policy.fraction_done()
            if policy_fraction is not None:
                fraction = max(fraction, min(max(policy_fraction, 0.0), 1.0))
            if self.__state is RunState.FINISHED:
                fraction = 1.0
            eta = elapsed * (1.0 - fraction) / fraction if 0.0 < fraction < 1.0 and self.__state is RunState.RUNNING else None
            return Progress(self.__state, self.__step, fraction, eta, self.__current, self.__message, self.__dose_e, elapsed)

    # --- control from any thread ----------------------------------------------

    def start(self) -> None:
        """Run the experiment on a worker thread and return at once."""
        with self.__lock:
            if self.__state is not RunState.IDLE:
                raise RuntimeError(f"a runner starts once; this one is {self.__state.value}")
            self.__state = RunState.RUNNING
        self.__thread = threading.Thread(target=self.__run, name=f"nion-autoem run {self.run_id}", daemon=True)
        self.__thread.start()

    def run(self) -> Progress:
        """Run the experiment on the calling thread (not the UI thread) until it ends."""
        with self.__lock:
            if self.__state is not RunState.IDLE:
                raise RuntimeError(f"a runner starts once; this one is {self.__state.value}")
            self.__state = RunState.RUNNING
        self.__run()
        return self.progress

    def wait(self, timeout: float | None = None) -> Progress:
        """Wait for the run to end; returns the final progress."""
        if not self.__done.wait(timeout):
            raise TimeoutError(f"run {self.run_id} still {self.state.value} after {timeout} s")
        return self.progress

    def pause(self) -> None:
        """Hold before the next action, with the beam blanked."""
        self.__pause_requested.set()

    def resume(self) -> None:
        """Continue a paused run."""
        self.__pause_requested.clear()
        self.__wakeup.set()

    def stop(self, reason: str = "stopped by user") -> None:
        """End the run now: the beam is made safe before this returns.

        An acquisition in flight is aborted and not journaled.  Safe to call
        from any thread, repeatedly, and after the run has ended.
        """
        with self.__lock:
            if self.__state.is_final:
                return
            if self.__stop_reason is None:
                self.__stop_reason = reason
        if self.microscope is not None:
            self.microscope.make_safe()
        self.__wakeup.set()

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

    def __hold_while_paused(self) -> None:
        if not self.__pause_requested.is_set():
            return
        if self.microscope is not None:
            self.microscope.make_safe()
        self.__set(state=RunState.PAUSED, current="", message="paused; beam blanked")
        self.journal.write_event("paused", step=self.__step)
        while self.__pause_requested.is_set():
            self.__check_stop()
            self.__wakeup.wait(0.05)
            self.__wakeup.clear()
        self.__check_stop()
        if self.microscope is not None:
            self.microscope.unblank()
        self.journal.write_event("resumed", step=self.__step)
        self.__set(state=RunState.RUNNING, message="resumed")

    def __run(self) -> None:
        self.__started = time.time()
        self.journal = Journal(self.run_dir)
        provenance = {"policy": self.policy.name, "model_version": self.policy.model_version, "software": f"nion-autoem {nion_autoem.__version__}",
                      "microscope": self.microscope.name if self.microscope else "journal replay", "journal": str(self.run_dir / "journal.jsonl"),
                      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.__started))}
        context = RunContext(self.run_id, self.run_dir, dict(self.policy.parameters), self.sink, provenance)
        final_state, message = RunState.FINISHED, ""
        try:
            self.journal.write_header(self.run_id, policy=self.policy.name, parameters={**dict(self.policy.parameters), "budget": self.budget.to_dict()},
                                      microscope=self.microscope.name if self.microscope else "journal replay",
                                      resumed_from_step=len(self.__recorded) if self.__resume else None)
            message = self.__loop(context)
        except _Stopped as stopped:
            final_state, message = RunState.STOPPED, str(stopped)
        except Exception as e:
            self.error = e
            final_state = RunState.FAILED
            message = f"{type(e).__name__} at step {self.__step} ({self.__current or 'deciding'}): {e}"
            _logger.error("run %s failed: %s", self.run_id, message)
            self.journal.write_event("error", step=self.__step, message=message, traceback=traceback.format_exc())
        finally:
            if self.microscope is not None:
                self.microscope.make_safe()
            self.journal.write_end(final_state.value, message=message, steps=self.__step, dose_e=self.__dose_e)
            self.journal.close()
            self.__set(state=final_state, current="", message=message)
            self.__done.set()

    def __loop(self, context: RunContext) -> str:
        if self.microscope is not None and not self.__recorded:
            self.microscope.unblank()
        while True:
            if (message := self.__check_between_actions(None)) is not None:
                return message
            context.step, context.dose_e, context.replaying = self.__step, self.__dose_e, bool(self.__recorded)
            self.__set(current="deciding")
            actions = list(self.policy.decide(context))
            if not actions:
                if self.__recorded:
                    raise RuntimeError(f"the policy finished at step {self.__step} but the journal has {len(self.__recorded)} more step(s); was it run with other parameters?")
                return "policy finished"
            for action in actions:
                if (message := self.__check_between_actions(action)) is not None:
                    return message
                self.__perform(action, context)

    def __check_between_actions(self, action: Action | None) -> str | None:
        """Honour stop and pause, and say why the run should end, if it should."""
        self.__check_stop()
        self.__hold_while_paused()
        if self.microscope is None and not self.__recorded:
            return "replay complete"
        spent = self.budget.exhausted(self.__step, self.__dose_e, time.time() - self.__started)
        if spent:
            return spent
        if action is not None and not self.__recorded and self.microscope is not None and self.budget.max_dose_e is not None:
            planned = self.__dose_e + electrons(self.microscope.beam_current_A, action.planned_dwell_s(self.microscope))
            if planned > self.budget.max_dose_e:
                return f"the next action ({action.label}) would exceed the dose budget of {self.budget.max_dose_e:.3g} e"
        return None

    def __perform(self, action: Action, context: RunContext) -> None:
        step = self.__step
        replayed = False
        if self.__recorded:
            recorded = self.__recorded.pop(0)
            if recorded.action != action:
                raise RuntimeError(f"replay diverged at step {step}: the policy decided {action} but the journal recorded {recorded.action}")
            measurement: Measurement = recorded.load_measurement()
            replayed = True
            if not self.__recorded and self.microscope is not None:
                self.journal.write_event("replay complete; continuing live", step=step + 1)
                self.microscope.unblank()
        elif self.microscope is None:
            raise RuntimeError("the journal is exhausted and there is no microscope to continue live")
        else:
            self.__set(current=f"{action.label} ({action.kind})")
            try:
                measurement = action.perform(self.microscope)
            except Exception:
                # An abort caused by stop() surfaces as an acquisition error:
                # report it as the stop it is.
                self.__check_stop()
                raise
            self.__check_stop()
        observation = Observation(step, action, measurement, replayed=replayed)
        context.step = step
        result: typing.Mapping[str, typing.Any] | None = None
        try:
            result = self.policy.observe(observation, context)
        finally:
            if not replayed:
                self.journal.write_step(step, action, measurement, result=result, model_version=self.policy.model_version)
            self.__set(step=step + 1, dose_e=self.__dose_e + measurement.dose_e, current="")


def replay(run_dir: str | pathlib.Path, policy: Policy, *, sink: ResultSink | None = None) -> ExperimentRunner:
    """Feed a journaled run to a fresh policy, without a microscope.

    Returns the finished runner; its sink holds what the policy published.
    Use it to re-run a recorded experiment with another scalarizer or model.
    The replay writes a journal of its own in ``<run_dir>/replay-<time>``.
    """
    source = pathlib.Path(run_dir)
    runner = ExperimentRunner(None, policy, run_dir=source, sink=sink, resume=True)
    runner.run_dir = source / time.strftime("replay-%Y%m%d-%H%M%S")
    runner.run()
    return runner
