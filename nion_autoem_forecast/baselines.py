"""The forecasts a model has to beat: persistence and linear extrapolation.

Both take the history (steps, ...) of whatever is forecast (prepared spectra,
component weights, a scalar) and return forecasts (horizon, ...) for 1 to
``horizon`` steps ahead.
"""

from __future__ import annotations

import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]


def persistence(history: numpy.typing.ArrayLike, horizon: int = 8) -> _NDArray:
    """The last value, for every step ahead.

    Examples
    --------
    >>> persistence([[1.0, 2.0], [3.0, 4.0]], horizon=2)
    array([[3., 4.],
           [3., 4.]])
    """
    x = numpy.asarray(history, dtype=float)
    if x.shape[0] < 1:
        raise ValueError("persistence needs at least one value in the history")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 step, got {horizon}")
    return numpy.repeat(x[-1:], horizon, axis=0)


def linear_extrapolation(history: numpy.typing.ArrayLike, horizon: int = 8, *, lookback: int = 8) -> _NDArray:
    """A straight line fitted (least squares) to the last ``lookback`` values, carried ``horizon`` steps on.

    With fewer than 2 values it is persistence.

    Examples
    --------
    >>> linear_extrapolation([0.0, 1.0, 2.0, 3.0], horizon=2).tolist()
    [4.0, 5.0]
    """
    x = numpy.asarray(history, dtype=float)
    if x.shape[0] < 2:
        return persistence(x, horizon)
    window = x[-lookback:]
    n = window.shape[0]
    t = numpy.arange(n) - (n - 1) / 2
    flat = window.reshape(n, -1)
    slope = (t @ (flat - flat.mean(axis=0))) / float(t @ t)
    level = flat.mean(axis=0) + slope * (n - 1) / 2
    ahead = numpy.arange(1, horizon + 1)[:, numpy.newaxis]
    return typing.cast(_NDArray, (level + ahead * slope).reshape((horizon,) + x.shape[1:]))
