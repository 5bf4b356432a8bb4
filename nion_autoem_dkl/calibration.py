"""Is the model honest about its uncertainty? Interval coverage of measurements."""

from __future__ import annotations

import collections
import math
import typing

import numpy
import numpy.typing
import scipy.special

import nion_autoem_checks as _checks

_NDArray = numpy.typing.NDArray[typing.Any]


def interval_coverage(values: _NDArray, mean: _NDArray, variance: _NDArray, level: float = 0.95) -> float:
    """Fraction of ``values`` inside the central ``level`` predictive interval.

    Parameters
    ----------
    values : (n,) ndarray
        Measured (or true) values.
    mean, variance : (n,) ndarrays
        Predictive mean and variance for each value (include the noise
        variance when ``values`` are noisy measurements).
    level : float
        Interval probability, e.g. 0.95.

    Returns
    -------
    coverage : float
        NaN when there are no values. A calibrated model gives about ``level``.

    Examples
    --------
    >>> import numpy
    >>> interval_coverage(numpy.array([0.0, 3.0]), numpy.zeros(2), numpy.ones(2))
    0.5
    """
    level = _check_level(level)
    observed = _checks.real_array(values, "values", "finite real numbers")
    predicted = _checks.real_array(mean, "mean", "finite real numbers")
    spread = _checks.real_array(variance, "variance", "finite variances >= 0")
    _checks.same_shape(predicted, "mean", observed, "values")
    _checks.same_shape(spread, "variance", observed, "values")
    if (spread < 0).any():
        raise ValueError(f"variance must be finite variances >= 0, got {_checks.describe(spread[spread < 0][:5])}")
    return coverage_of(observed, predicted, spread, level)


def coverage_of(values: _NDArray, mean: _NDArray, variance: _NDArray, level: float) -> float:
    """``interval_coverage`` without the argument checks, for the agent's own bookkeeping."""
    if values.size == 0:
        return math.nan
    half_width = math.sqrt(2.0) * float(scipy.special.erfinv(level)) * numpy.sqrt(numpy.clip(variance, 0, None))
    return float(numpy.mean(numpy.abs(values - mean) <= half_width))


def _check_level(level: float) -> float:
    return _checks.number(level, "level", "a probability that lies strictly between 0 and 1", lambda v: 0 < v < 1)


class ProspectiveCoverage:
    """Coverage of predictions made *before* each measurement, over a sliding window.

    Unlike leave-one-out coverage this also reflects the hyperparameters
    having been fitted without the point, but it is biased by the choice of
    where to measure (an optimiser measures where the model is optimistic).

    Parameters
    ----------
    window : int
        Number of most recent measurements used.
    level : float
        Interval probability.

    Examples
    --------
    >>> tracker = ProspectiveCoverage(window=2)
    >>> tracker.record(0.0, 0.0, 1.0); tracker.record(5.0, 0.0, 1.0)
    >>> tracker.coverage
    0.5
    """

    def __init__(self, window: int = 50, level: float = 0.95) -> None:
        window = _checks.whole(window, "window", 1)
        self.level = _check_level(level)
        self._records: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=window)

    def record(self, value: float, mean: float, variance: float) -> None:
        self._records.append((float(value), float(mean), float(variance)))

    @property
    def coverage(self) -> float:
        if not self._records:
            return math.nan
        records = numpy.asarray(self._records)
        return coverage_of(records[:, 0], records[:, 1], records[:, 2], self.level)
