"""The plan queue: remote submissions wait here and run one at a time, on the runner's own thread.

Nothing here touches the instrument.  One scheduler thread takes the next
submission when the previous run has ended and hands it to a *launcher*
(in Swift, :func:`nion_autoem.swift.console.start_experiment`; headless, an
:class:`~nion_autoem.runner.ExperimentRunner` on usim), which returns the
runner already running; from then on only the runner's worker thread drives
the hardware.  Pause, resume and stop call the runner's own methods, exactly
as the panel's buttons do, from whichever thread the request arrived on.

What a client sees of a run: its progress, its products (a tap on the
run's sink keeps the latest of each) and its journal, read back from the
run's journal file as it grows; the journal's steps are also the live
frames and spectra.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import threading
import time
import typing
import uuid

import numpy

from nion_autoem.plan import Plan
from nion_autoem.products import MemorySink
from nion_autoem.products import ResultSink
from nion_autoem.remote import arrays
from nion_autoem.remote import protocol
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner

Launcher = typing.Callable[[Plan, Budget, ResultSink], ExperimentRunner]
"""Starts a plan with a budget, publishing to the given sink as well as its own; returns the runner, already running."""

#: Submissions that may wait at once.
MAX_QUEUED = 16
#: Runs remembered (finished ones beyond this are forgotten, oldest first; their journals stay on disk).
MAX_REMEMBERED = 100
#: Journal lines returned by one ``journal`` call at most.
MAX_JOURNAL_LINES = 1000


class JournalTail:
    """A run's journal, read incrementally as the runner appends to it (complete lines only)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.__offset = 0
        self.__partial = b""
        self.__entries: list[dict[str, typing.Any]] = []
        self.__lock = threading.Lock()

    def entries(self) -> list[dict[str, typing.Any]]:
        """Every complete line so far (the list grows; do not change it)."""
        with self.__lock:
            if self.path.exists():
                with open(self.path, "rb") as f:
                    f.seek(self.__offset)
                    chunk = f.read()
                self.__offset += len(chunk)
                lines = (self.__partial + chunk).split(b"\n")
                self.__partial = lines.pop()
                for line in lines:
                    if line.strip():
                        try:
                            self.__entries.append(json.loads(line))
                        except ValueError:
                            self.__entries.append({"type": "unreadable", "text": line[:200].decode("utf-8", "replace")})
            return self.__entries


@dataclasses.dataclass(eq=False)
class RunRecord:
    """One submission, from the queue to its end."""

    id: str
    plan_name: str
    parameters: dict[str, typing.Any]
    budget: Budget
    submitted_by: str
    plan: Plan | None
    products: MemorySink = dataclasses.field(default_factory=MemorySink)
    submitted_at: float = dataclasses.field(default_factory=time.time)
    state: str = "queued"
    message: str = ""
    runner: ExperimentRunner | None = None
    stop_reason: str | None = None
    tail: JournalTail | None = None

    @property
    def is_over(self) -> bool:
        if self.runner is not None:
            return self.runner.state.is_final
        return self.state in ("cancelled", "failed")


class PlanQueue:
    """Allow-listed plans from remote clients, run one at a time through a launcher.

    Parameters
    ----------
    launcher : Launcher
        Starts a plan and returns its runner (see :data:`Launcher`).
    max_queued : int
        Submissions that may wait at once.
    busy : callable, optional
        Returns why the microscope is busy (e.g. the panel's own run), or None;
        while it says busy, the next submission waits (its message says why).
    """

    def __init__(self, launcher: Launcher, *, max_queued: int = MAX_QUEUED, busy: typing.Callable[[], str | None] | None = None) -> None:
        self.__launch = launcher
        self.__busy = busy
        self.__max_queued = max_queued
        self.__records: dict[str, RunRecord] = {}
        self.__waiting: list[RunRecord] = []
        self.__active: RunRecord | None = None
        self.__condition = threading.Condition()
        self.__closing = False
        self.__thread = threading.Thread(target=self.__schedule, name="nion-autoem remote queue", daemon=True)
        self.__thread.start()

    # --- commands ------------------------------------------------------------------

    def submit(self, plan_name: typing.Any, parameters: typing.Any, budget: typing.Any, *, client: str) -> dict[str, typing.Any]:
        """Check and queue a plan; it starts as soon as nothing else runs.  Returns the run's id and place in the queue."""
        plan, values = protocol.build_plan(plan_name, {} if parameters is None else parameters)
        checked_budget = protocol.build_budget(budget)
        record = RunRecord(f"run-{uuid.uuid4().hex[:10]}", plan.name, values, checked_budget, client, plan)
        with self.__condition:
            if self.__closing:
                raise RuntimeError("the remote server is closing; nothing new starts")
            if len(self.__waiting) >= self.__max_queued:
                raise RuntimeError(f"the queue is full ({len(self.__waiting)} runs waiting); wait for them, or stop some")
            self.__records[record.id] = record
            self.__waiting.append(record)
            ahead = len(self.__waiting) - 1 + int(self.__active is not None and not self.__active.is_over)
            self.__forget_old()
            self.__condition.notify_all()
        return {"run": record.id, "plan": record.plan_name, "ahead": ahead, "parameters": arrays.plain(values), "budget": checked_budget.to_dict()}

    def pause(self, run: typing.Any = None, *, immediate: bool = False) -> dict[str, typing.Any]:
        """Pause the running plan (at its next checkpoint, or before the next action if ``immediate``); the beam is blanked while paused."""
        if not isinstance(immediate, bool):
            raise TypeError(f"immediate must be true or false, got {type(immediate).__name__}")
        runner = self.__running(run, "pause")
        runner.pause(immediate=immediate)
        return self.progress(run)

    def resume(self, run: typing.Any = None) -> dict[str, typing.Any]:
        """Continue the paused plan."""
        self.__running(run, "resume").resume()
        return self.progress(run)

    def stop(self, run: typing.Any = None, *, client: str, reason: str | None = None) -> dict[str, typing.Any]:
        """Stop a run (the beam is safe when this returns), or with no run: stop the running one and cancel every queued one."""
        reason = reason or f"stopped by remote client {client}"
        with self.__condition:
            if run is None:
                targets = [r for r in (self.__active, *self.__waiting) if r is not None and not r.is_over]
            else:
                targets = [self.__record(run)]
            cancelled = [r for r in targets if r in self.__waiting]
            for record in cancelled:
                self.__waiting.remove(record)
                record.state, record.message = "cancelled", reason
            running = [r for r in targets if r not in cancelled and not r.is_over]
            for record in running:
                record.stop_reason = reason  # a run still starting is stopped as soon as its runner exists
        beam_safe: bool | None = None
        for record in running:
            if record.runner is not None:
                record.runner.stop(reason)  # the same call as the panel's Stop: blanks before it returns
                beam_safe = record.runner.progress.beam_safe
        return {"stopped": [r.id for r in running], "cancelled": [r.id for r in cancelled], "beam_safe": beam_safe,
                "message": "nothing was running or queued" if not targets else reason}

    # --- queries ---------------------------------------------------------------------

    def progress(self, run: typing.Any = None) -> dict[str, typing.Any]:
        """Where a run is (the running one, else the latest, by default): state, step, fraction, ETA, dose, message."""
        record = self.__record(run)
        with self.__condition:
            ahead = self.__waiting.index(record) + int(self.__active is not None and not self.__active.is_over) if record in self.__waiting else 0
        d: dict[str, typing.Any] = {"run": record.id, "plan": record.plan_name, "submitted_by": record.submitted_by, "ahead": ahead, "run_id": None, "run_dir": None}
        if record.runner is None:
            return {**d, "state": record.state, "step": 0, "fraction": 0.0, "eta_s": None, "current_action": "", "message": record.message,
                    "dose_e": 0.0, "elapsed_s": 0.0, "rewards": {}, "beam_safe": None}
        p = record.runner.progress
        return {**d, "run_id": record.runner.run_id, "run_dir": str(record.runner.run_dir), "state": p.state.value, "step": p.step, "fraction": p.fraction,
                "eta_s": p.eta_s, "current_action": p.current_action, "message": p.message, "dose_e": p.dose_e, "elapsed_s": p.elapsed_s,
                "rewards": arrays.plain(dict(p.rewards)), "beam_safe": p.beam_safe}

    def runs(self) -> list[dict[str, typing.Any]]:
        """Every remembered run, oldest first, with its state."""
        with self.__condition:
            records = list(self.__records.values())
        return [{"run": r.id, "plan": r.plan_name, "submitted_by": r.submitted_by, "state": r.runner.state.value if r.runner else r.state}
                for r in records]

    def products(self, run: typing.Any = None) -> list[dict[str, typing.Any]]:
        """What the run has published so far: key, title, shape, dtype, caption."""
        record = self.__record(run)
        return [{"key": key, "title": p.title, "shape": list(p.xdata.data_shape), "dtype": str(p.xdata.data.dtype), "caption": p.caption}
                for key, p in record.products.products.items()]

    def product(self, key: typing.Any, run: typing.Any = None) -> dict[str, typing.Any]:
        """One product, its data as raw bytes with dtype and shape (see :mod:`nion_autoem.remote.arrays`)."""
        record = self.__record(run)
        if not isinstance(key, str):
            raise TypeError(f"key must be a product's key (a string), got {type(key).__name__}")
        product = record.products.products.get(key)
        if product is None:
            raise LookupError(f"run {record.id} has no product {key[:64]!r} (yet); it has: {', '.join(record.products.products) or 'none so far'}")
        return {"key": key, "title": product.title, "caption": product.caption, "points": [list(p) for p in product.points], "labels": list(product.labels),
                "data": arrays.encode_xdata(product.xdata)}

    def journal(self, run: typing.Any = None, since: typing.Any = 0, limit: typing.Any = MAX_JOURNAL_LINES) -> dict[str, typing.Any]:
        """The run's journal lines from line ``since`` (at most ``limit``, up to 1000), and where to continue."""
        for name, value in (("since", since), ("limit", limit)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise TypeError(f"{name} must be a whole number >= 0, got {value!r}")
        tail = self.__tail(self.__record(run))
        entries = tail.entries() if tail is not None else []
        chosen = entries[since:since + min(limit, MAX_JOURNAL_LINES)]
        return {"entries": arrays.plain(chosen), "next": since + len(chosen), "total": len(entries)}

    def live(self, run: typing.Any = None, since_step: typing.Any = -1) -> dict[str, typing.Any] | None:
        """The newest measurement (frame, spectrum, trace) after step ``since_step``, its data as raw bytes; None if there is none yet."""
        if not isinstance(since_step, int) or isinstance(since_step, bool):
            raise TypeError(f"since_step must be a whole number, got {since_step!r}")
        record = self.__record(run)
        tail = self.__tail(record)
        if tail is None or record.runner is None:
            return None
        entry = next((e for e in reversed(tail.entries()) if e.get("type") == "step" and isinstance(e.get("step"), int) and e["step"] > since_step), None)
        if entry is None:
            return None
        run_dir = record.runner.run_dir.resolve()
        channels = {}
        for channel, info in dict(entry.get("data") or {}).items():
            path = (run_dir / str(info.get("file", ""))).resolve()
            if not path.is_relative_to(run_dir):
                continue  # the journal is ours, but a path out of the run directory is never followed
            data = numpy.load(path, allow_pickle=False)
            channels[str(channel)] = arrays.encode_calibrated(data, info.get("dimensional_calibrations") or [], info.get("intensity_calibration"), info.get("metadata"))
        return {"step": entry["step"], "kind": entry.get("measurement_kind"), "action": arrays.plain(entry.get("action")),
                "position_nm": entry.get("position_nm"), "dose_e": entry.get("dose_e"), "channels": channels}

    # --- the server's side ------------------------------------------------------------

    @property
    def active_runner(self) -> ExperimentRunner | None:
        """The runner of the run in progress, if any (so the panel can show and stop it too)."""
        with self.__condition:
            record = self.__active
        return record.runner if record is not None and not record.is_over else None

    def close(self, reason: str = "the remote server was closed", *, wait_s: float = 5.0) -> None:
        """Stop the running plan (beam safe), cancel the queue, end the scheduler; waits up to ``wait_s`` for the run to end."""
        with self.__condition:
            self.__closing = True
            self.__condition.notify_all()
        result = self.stop(None, client="(server)", reason=reason)
        self.__thread.join(wait_s)
        self.stop(None, client="(server)", reason=reason)  # a run that was still starting a moment ago
        for run_id in result["stopped"]:
            runner = self.__records[run_id].runner
            if runner is not None:
                try:
                    runner.wait(wait_s)
                except TimeoutError:
                    pass  # the beam is already safe; the runner gives up on a wedged driver by itself

    # --- inside ----------------------------------------------------------------------

    def __record(self, run: typing.Any) -> RunRecord:
        with self.__condition:
            if run is None:
                if self.__active is not None and not self.__active.is_over:
                    return self.__active
                if not self.__records:
                    raise LookupError("no run has been submitted to this server yet; submit one first")
                return list(self.__records.values())[-1]
            if not isinstance(run, str):
                raise TypeError(f"run must be a run id (a string such as 'run-1a2b3c4d5e') or none for the current run, got {type(run).__name__}")
            record = self.__records.get(run)
            if record is None:
                raise LookupError(f"no run {run[:64]!r} on this server; it knows: {', '.join(self.__records) or 'none yet'}")
            return record

    def __running(self, run: typing.Any, what: str) -> ExperimentRunner:
        record = self.__record(run)
        if record.runner is None:
            raise RuntimeError(f"run {record.id} is {record.state}, not running: {what} applies to the running plan"
                               + ("; stop it to take it off the queue" if record.state == "queued" else ""))
        return record.runner

    def __tail(self, record: RunRecord) -> JournalTail | None:
        if record.runner is None:
            return None
        if record.tail is None:
            record.tail = JournalTail(record.runner.run_dir / "journal.jsonl")
        return record.tail

    def __forget_old(self) -> None:
        for run_id in list(self.__records)[:max(len(self.__records) - MAX_REMEMBERED, 0)]:
            if self.__records[run_id].is_over:
                del self.__records[run_id]

    def __ready(self) -> bool:
        """Whether the next submission may start (called with the lock held)."""
        if not self.__waiting or (self.__active is not None and not self.__active.is_over):
            return False
        try:
            reason = self.__busy() if self.__busy is not None else None
        except Exception as e:  # a check that fails must not start a run next to another one
            reason = f"the busy check failed ({e})"
        for record in self.__waiting:
            record.message = f"waiting: {reason}" if reason else ""
        return reason is None

    def __schedule(self) -> None:
        while True:
            with self.__condition:
                while not self.__closing and not self.__ready():
                    self.__condition.wait(0.1)  # also wakes to notice that a run has ended
                if self.__closing:
                    return
                record = self.__waiting.pop(0)
                record.state = "starting"
                self.__active = record
            plan, record.plan = record.plan, None
            try:
                assert plan is not None
                runner = self.__launch(plan, record.budget, record.products)
            except Exception as e:  # no instrument, a busy scan: the run says why; the queue goes on
                record.state, record.message = "failed", f"could not start: {type(e).__name__}: {e}"
                continue
            record.runner = runner
            record.state = "started"
            if record.stop_reason is not None:
                runner.stop(record.stop_reason)
