"""Suspenders: conditions watched during a run that pause it, recover, and continue.

Between two actions the engine asks each suspender whether it has
:meth:`~Suspender.tripped`.  If it has, the engine blanks the beam, journals
why, waits ``wait_s`` (the condition may clear by itself, as a beam current
does after a gun flash), runs the suspender's recovery sub-plan (for example a
re-registration), and carries on with the plan.  A suspender that keeps
tripping ends the run after ``max_trips``.  Recovery steps are journaled with
the suspender's name, and a resumed run counts them without replaying them.

Every suspender must say how to recover: a condition with nothing to do about
it is a budget, not a suspender.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import typing

from nion_autoem.instrument import Measurement
from nion_autoem.instrument import Microscope
from nion_autoem.plan import SubPlan


@dataclasses.dataclass(frozen=True)
class SuspenderContext:
    """What a suspender may look at: the instrument, the last step, the plan's report on it, the recent dose rate."""

    microscope: Microscope
    step: int
    measurement: Measurement | None
    result: typing.Mapping[str, typing.Any]
    dose_rate_e_per_s: float


class Suspender:
    """A watched condition with a recovery.

    Parameters
    ----------
    name : str
        Journaled with every trip.
    condition : callable
        ``condition(context) -> str | None``: why the run must be suspended now, or None.
    recovery : callable
        ``recovery() -> SubPlan``: what to do before continuing (e.g. re-register).
    wait_s : float
        Time to wait with the beam blanked before the recovery.
    max_trips : int
        After this many trips the run fails: the recovery does not help.
    """

    def __init__(self, name: str, condition: typing.Callable[[SuspenderContext], str | None], recovery: typing.Callable[[], SubPlan] | None, *,
                 wait_s: float = 0.0, max_trips: int = 5) -> None:
        if recovery is None or not callable(recovery):
            raise ValueError(f"suspender {name!r} has no recovery: pass recovery=a function returning a sub-plan (e.g. lambda: reregister(...)); "
                             "a condition with nothing to do about it belongs in the Budget")
        if not (math.isfinite(wait_s) and wait_s >= 0):
            raise ValueError(f"suspender {name!r}: wait_s must be a finite time >= 0 s, got {wait_s!r}")
        if max_trips < 1:
            raise ValueError(f"suspender {name!r}: max_trips must be at least 1, got {max_trips}")
        self.name = name
        self.condition = condition
        self.recovery = recovery
        self.wait_s = wait_s
        self.max_trips = max_trips
        self.__trips = 0
        self.__lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Suspender({self.name!r}, trips={self.trips})"

    @property
    def trips(self) -> int:
        with self.__lock:
            return self.__trips

    def tripped(self, context: SuspenderContext) -> str | None:
        """Why the run must be suspended now, or None."""
        return self.condition(context)

    def record_trip(self) -> int:
        with self.__lock:
            self.__trips += 1
            return self.__trips


def beam_current_out_of_range(low_A: float, high_A: float, recovery: typing.Callable[[], SubPlan], *, wait_s: float = 1.0, max_trips: int = 5) -> Suspender:
    """Suspend while the probe current is outside [low_A, high_A] (a gun flash, a closed valve)."""
    if not 0 <= low_A < high_A:
        raise ValueError(f"need 0 <= low_A < high_A, got {low_A!r} and {high_A!r}")

    def condition(context: SuspenderContext) -> str | None:
        current = context.microscope.beam_current_A
        if low_A <= current <= high_A:
            return None
        return f"beam current {current * 1e12:.4g} pA outside [{low_A * 1e12:.4g}, {high_A * 1e12:.4g}] pA"

    return Suspender("beam current", condition, recovery, wait_s=wait_s, max_trips=max_trips)


def drift_above(limit_nm_per_s: float, recovery: typing.Callable[[], SubPlan], *, key: str = "drift_nm_per_s", max_trips: int = 5) -> Suspender:
    """Suspend when the drift the plan measured (its report's ``key``: a speed, or a (vy, vx) velocity) exceeds the limit."""
    if not limit_nm_per_s > 0:
        raise ValueError(f"limit_nm_per_s must be > 0, got {limit_nm_per_s!r}")

    def condition(context: SuspenderContext) -> str | None:
        value = context.result.get(key)
        if value is None:
            return None
        speed = math.hypot(*value) if isinstance(value, (list, tuple)) else float(value)
        return f"measured drift {speed:.3g} nm/s above {limit_nm_per_s:.3g} nm/s" if speed > limit_nm_per_s else None

    return Suspender("drift", condition, recovery, max_trips=max_trips)


def dose_rate_above(limit_e_per_s: float, recovery: typing.Callable[[], SubPlan], *, wait_s: float = 1.0, max_trips: int = 5) -> Suspender:
    """Suspend when the dose delivered over the last second exceeds ``limit_e_per_s`` (let the sample rest)."""
    if not limit_e_per_s > 0:
        raise ValueError(f"limit_e_per_s must be > 0, got {limit_e_per_s!r}")

    def condition(context: SuspenderContext) -> str | None:
        rate = context.dose_rate_e_per_s
        return f"dose rate {rate:.3g} e/s above {limit_e_per_s:.3g} e/s" if rate > limit_e_per_s else None

    return Suspender("dose rate", condition, recovery, wait_s=wait_s, max_trips=max_trips)
