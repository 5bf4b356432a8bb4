"""The simulated clock and stage drift shared by every twin sample.

A twin never reads the wall clock.  Time advances only by what the
instrument spends: pixel dwell times during a raster, sample times of a spot
scan, camera exposures.  The same sequence of acquisitions therefore gives the
same drift, the same dose and the same damage events, run after run.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]


class SimulatedClock:
    """Seconds of beam time since the twin was created.

    Thread safe: the scan and camera threads of the simulator both advance it.

    Examples
    --------
    >>> clock = SimulatedClock()
    >>> clock.advance(0.25)
    0.0
    >>> clock.now_s
    0.25
    """

    def __init__(self, start_s: float = 0.0) -> None:
        if not math.isfinite(start_s) or start_s < 0:
            raise ValueError(f"start_s must be a finite time >= 0 s, got {start_s!r}")
        self.__now_s = float(start_s)
        self.__lock = threading.Lock()

    @property
    def now_s(self) -> float:
        """The current simulated time in seconds."""
        with self.__lock:
            return self.__now_s

    def advance(self, duration_s: float) -> float:
        """Spend ``duration_s`` seconds and return the time at which they started."""
        if not math.isfinite(duration_s) or duration_s < 0:
            raise ValueError(f"duration_s must be a finite time >= 0 s, got {duration_s!r}")
        with self.__lock:
            start = self.__now_s
            self.__now_s += float(duration_s)
            return start


@dataclasses.dataclass(frozen=True)
class StageDrift:
    """A constant stage drift, in scan-field nm per second of simulated time.

    A positive component moves the sample, and everything on it, towards
    larger scan-field coordinates (down / right on screen), as usim's own
    drift offset does.

    Parameters
    ----------
    velocity_nm_per_s : tuple of float
        (vy, vx) drift velocity.
    """

    velocity_nm_per_s: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        v = tuple(float(c) for c in self.velocity_nm_per_s)
        if len(v) != 2 or not all(math.isfinite(c) for c in v):
            raise ValueError(f"velocity_nm_per_s must be a finite (vy, vx) pair in nm/s, got {self.velocity_nm_per_s!r}")
        object.__setattr__(self, "velocity_nm_per_s", (v[0], v[1]))

    def offset_nm(self, time_s: numpy.typing.ArrayLike) -> _NDArray:
        """Drift displacement (..., 2) at simulated time(s) ``time_s``."""
        t = numpy.asarray(time_s, dtype=float)
        return typing.cast(_NDArray, t[..., numpy.newaxis] * numpy.asarray(self.velocity_nm_per_s))
