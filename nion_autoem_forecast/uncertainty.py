"""The 90 % band of a forecast, and its calibration tracked while the series runs.

A forecaster's quantiles are only as good as the series resembles what it
was trained on.  :class:`OnlineCalibration` checks every band against the
value that is later measured and widens or narrows the band of each horizon
(adaptive conformal inference: the scale grows by ``exp(rate * 0.9)`` on a
miss and shrinks by ``exp(-rate * 0.1)`` on a hit, so it settles where one
value in ten falls outside), and it keeps the coverage it has seen.
"""

from __future__ import annotations

import math
import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]


def band_from_samples(samples: numpy.typing.ArrayLike, level: float = 0.9) -> tuple[_NDArray, _NDArray, _NDArray]:
    """Median and central ``level`` band of samples (n, ...) along the first axis.

    Examples
    --------
    >>> low, median, high = band_from_samples(numpy.arange(101.0))
    >>> round(float(low), 6), float(median), round(float(high), 6)
    (5.0, 50.0, 95.0)
    """
    s = numpy.asarray(samples, dtype=float)
    tail = (1.0 - level) / 2
    low, median, high = numpy.quantile(s, [tail, 0.5, 1.0 - tail], axis=0)
    return low, median, high


class OnlineCalibration:
    """Scales the band of each horizon so that about ``target`` of measured values fall inside, and counts how many did.

    Parameters
    ----------
    horizon : int
        Steps ahead forecast.
    target : float
        Coverage aimed at (0.9 for a 90 % band).
    rate : float
        Adaptation rate of the scale (per checked value).

    Examples
    --------
    >>> cal = OnlineCalibration(horizon=1)
    >>> for step in range(200):
    ...     _ = cal.expect(step, numpy.array([-0.5]), numpy.array([0.0]), numpy.array([0.5]))
    ...     cal.observe(step + 1, float(numpy.random.default_rng(step).normal()))
    >>> 0.8 < cal.coverage() < 0.97
    True
    """

    def __init__(self, horizon: int = 8, *, target: float = 0.9, rate: float = 0.3, max_scale: float = 50.0) -> None:
        if not 0.0 < target < 1.0:
            raise ValueError(f"target must be a coverage between 0 and 1 (0.9 for a 90 % band), got {target!r}")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1 step, got {horizon}")
        self.horizon, self.target, self.rate, self.max_scale = horizon, target, rate, max_scale
        self.scale = numpy.ones(horizon)
        self.__pending: dict[int, list[tuple[int, float, float, float]]] = {}
        self.hits = numpy.zeros(horizon, dtype=int)
        self.checked = numpy.zeros(horizon, dtype=int)

    def widen(self, low: _NDArray, median: _NDArray, high: _NDArray) -> tuple[_NDArray, _NDArray]:
        """The band (horizon,) scaled about the median by the present scale of each horizon."""
        return median - self.scale * (median - low), median + self.scale * (high - median)

    def expect(self, step: int, low: _NDArray, median: _NDArray, high: _NDArray) -> tuple[_NDArray, _NDArray]:
        """Register the raw band forecast at ``step`` for steps ``step + 1 ...``; returns the calibrated band."""
        lo, hi = self.widen(numpy.asarray(low, dtype=float), numpy.asarray(median, dtype=float), numpy.asarray(high, dtype=float))
        for h in range(min(self.horizon, len(lo))):
            self.__pending.setdefault(step + 1 + h, []).append((h, float(median[h]), float(median[h] - low[h]), float(high[h] - median[h])))
        return lo, hi

    def observe(self, step: int, value: float) -> None:
        """The value measured at ``step``: check the bands that forecast it, and adapt."""
        for h, median, below, above in self.__pending.pop(step, []):
            if not math.isfinite(value):
                continue
            scale = self.scale[h]
            covered = median - scale * below <= value <= median + scale * above
            self.checked[h] += 1
            self.hits[h] += int(covered)
            miss = 0.0 if covered else 1.0
            self.scale[h] = float(numpy.clip(scale * math.exp(self.rate * (miss - (1.0 - self.target))), 1e-3, self.max_scale))
        for old in [s for s in self.__pending if s < step]:
            del self.__pending[old]  # steps that were never measured (a gap)

    def coverage(self, h: int | None = None) -> float:
        """Fraction of checked values inside their band (at horizon ``h``, 0-based; all horizons if None); NaN before any check."""
        checked = self.checked.sum() if h is None else self.checked[h]
        hits = self.hits.sum() if h is None else self.hits[h]
        return float(hits / checked) if checked else float("nan")
