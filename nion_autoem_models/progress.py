"""Progress of a training or retraining job, for a panel to poll from its own thread.

The job (in a background thread, or waiting on a Dask cluster) writes; any
other thread reads a :class:`ProgressSnapshot`, an immutable copy, so a reader
never sees a half-made update and never holds the job up. A job ends exactly
once, ``done`` or ``failed``, and nothing it reports afterwards changes that.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import typing

#: The states a job goes through: waiting -> running -> done or failed.
WAITING, RUNNING, DONE, FAILED = "waiting", "running", "done", "failed"


@dataclasses.dataclass(frozen=True)
class ProgressSnapshot:
    """Where a job is, at one moment.

    Attributes
    ----------
    state : str
        ``"waiting"``, ``"running"``, ``"done"`` or ``"failed"``.
    fraction : float
        Share of the work done, 0 to 1 (never goes back).
    stage : str
        What the job does now, in words (``"adapting to frame 3 of 50"``).
    eta_s : float or None
        Seconds still to go, from the time per unit of work so far; None before any work is done and once the job has ended.
    elapsed_s : float
        Seconds since the job started running (0 while waiting).
    message : str
        When done, what it produced; when failed, what went wrong.
    result : str or None
        When done, the ``name@version`` it registered (if it registers one).
    """

    state: str
    fraction: float
    stage: str
    eta_s: float | None
    elapsed_s: float
    message: str
    result: str | None

    @property
    def finished(self) -> bool:
        """True once the job is done or failed."""
        return self.state in (DONE, FAILED)

    @property
    def done(self) -> bool:
        """True if the job ended well."""
        return self.state == DONE

    @property
    def failed(self) -> bool:
        """True if the job ended with an error (see ``message``)."""
        return self.state == FAILED

    def describe(self) -> str:
        """One line for a status bar.

        Examples
        --------
        >>> ProgressSnapshot("running", 0.25, "adapting to frame 1 of 4", 30.4, 10.0, "", None).describe()
        'adapting to frame 1 of 4: 25 %, about 30 s to go'
        """
        if self.state == DONE:
            return f"done: {self.message}" if self.message else "done"
        if self.state == FAILED:
            return f"failed: {self.message}"
        if self.state == WAITING:
            return f"waiting: {self.stage}" if self.stage else "waiting"
        eta = f", about {self.eta_s:.0f} s to go" if self.eta_s is not None else ""
        return f"{self.stage}: {100 * self.fraction:.0f} %{eta}"


class JobProgress:
    """Thread-safe progress of one job: the job reports, a panel polls :meth:`snapshot`.

    Parameters
    ----------
    title : str
        What the job is, e.g. ``"retrain mos2@production on 50 frames"``.
    clock : callable
        Seconds (monotonic); for tests.

    Examples
    --------
    >>> progress = JobProgress("retrain mos2")
    >>> progress.snapshot().state
    'waiting'
    >>> progress.start("loading mos2@production")
    >>> progress.update(0.5, "adapting to frame 1 of 2")
    >>> progress.snapshot().fraction
    0.5
    >>> progress.finish("registered mos2@2", result="mos2@2")
    >>> progress.fail("too late: ignored")
    >>> progress.snapshot().describe()
    'done: registered mos2@2'
    """

    def __init__(self, title: str, *, clock: typing.Callable[[], float] = time.monotonic) -> None:
        if not isinstance(title, str):
            raise TypeError(f"title must be a string saying what the job is, got {type(title).__name__}")
        self.title = title
        self.__clock = clock
        self.__lock = threading.Lock()
        self.__state = WAITING
        self.__fraction = 0.0
        self.__stage = ""
        self.__message = ""
        self.__result: str | None = None
        self.__started: float | None = None
        self.__ended: float | None = None

    def start(self, stage: str = "") -> None:
        """The job runs from now (the clock for the ETA starts); ignored once it has ended."""
        with self.__lock:
            if self.__state in (DONE, FAILED):
                return
            if self.__started is None:
                self.__started = self.__clock()
            self.__state = RUNNING
            if stage:
                self.__stage = str(stage)

    def update(self, fraction: float, stage: str | None = None) -> None:
        """``fraction`` (0 to 1) of the work is done, now at ``stage``; starts the job if it has not started.

        A report with a lower fraction than the last is stale and changes nothing (progress never goes back).
        """
        value = float(fraction)
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"fraction must be a share of the work between 0 and 1, got {fraction!r}")
        with self.__lock:
            if self.__state in (DONE, FAILED):
                return
            if self.__started is None:
                self.__started = self.__clock()
            self.__state = RUNNING
            if value < self.__fraction:
                return  # a stale report (from a slower thread): fraction and stage stay those of the latest work
            self.__fraction = value
            if stage is not None:
                self.__stage = str(stage)

    def finish(self, message: str = "", *, result: str | None = None) -> None:
        """The job ended well; ``result`` is what it produced (e.g. ``"mos2@2"``). Only the first end counts."""
        self.__end(DONE, message, result)

    def fail(self, message: str) -> None:
        """The job ended with an error; ``message`` says what went wrong. Only the first end counts."""
        self.__end(FAILED, message, None)

    def snapshot(self) -> ProgressSnapshot:
        """Where the job is now: an immutable copy, safe to read from any thread."""
        with self.__lock:
            now = self.__clock()
            started = self.__started
            end = self.__ended if self.__ended is not None else now
            elapsed = max(end - started, 0.0) if started is not None else 0.0
            eta = None
            if self.__state == RUNNING and 0.0 < self.__fraction < 1.0:
                eta = elapsed * (1.0 - self.__fraction) / self.__fraction
            elif self.__state == RUNNING and self.__fraction >= 1.0:
                eta = 0.0
            return ProgressSnapshot(self.__state, self.__fraction, self.__stage, eta, elapsed, self.__message, self.__result)

    def __end(self, state: str, message: str, result: str | None) -> None:
        with self.__lock:
            if self.__state in (DONE, FAILED):
                return
            now = self.__clock()
            if self.__started is None:
                self.__started = now
            self.__state, self.__message, self.__result, self.__ended = state, str(message), result, now
            if state == DONE:
                self.__fraction, self.__stage = 1.0, "done"

    def __repr__(self) -> str:
        return f"JobProgress({self.title!r}: {self.snapshot().describe()})"
