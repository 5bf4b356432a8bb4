"""Scoring forecasts against ground truth, and series made from real spectra with a known time law.

:func:`mixed_series` makes a test series from two measured spectra:
``(1 - f(t)) * A + f(t) * B`` with a logistic ``f(t) = 1 / (1 + exp(-(t - t0) / w))``,
each end member scaled to the same counts, then gain steps and Poisson noise.
The noise-free mixture is the ground truth.

:func:`score_series` runs a forecaster along a series, spectrum by spectrum,
and scores every forecast 1-8 steps ahead against the truth, next to
persistence, linear extrapolation and (optionally) the LSTM: the mean
absolute error over the window's channels of the prepared spectra, and over
the watched quantity.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy
import numpy.typing
import torch

from nion_autoem_forecast.baselines import linear_extrapolation
from nion_autoem_forecast.baselines import persistence
from nion_autoem_forecast.conditions import Quantity
from nion_autoem_forecast.models import HORIZON
from nion_autoem_forecast.models import SpectrumLSTM
from nion_autoem_forecast.online import OnlineForecaster
from nion_autoem_forecast.preprocess import Preprocessor

_NDArray = numpy.typing.NDArray[typing.Any]


def logistic(t: numpy.typing.ArrayLike, t0: float, width: float) -> _NDArray:
    """The time law of a mixed series: 0 long before ``t0``, 1 long after, a transition ``width`` wide.

    Examples
    --------
    >>> logistic([0.0, 10.0, 20.0], 10.0, 2.0).round(3).tolist()
    [0.007, 0.5, 0.993]
    """
    return typing.cast(_NDArray, 1.0 / (1.0 + numpy.exp(-(numpy.asarray(t, dtype=float) - t0) / width)))


def mixed_series(first: numpy.typing.ArrayLike, second: numpy.typing.ArrayLike, seed: int, *, steps: int = 150, period_s: float = 1.05,
                 counts: float = 2e5, gain_step_rate_per_s: float = 0.02, gain_step_size: float = 0.05) -> dict[str, _NDArray]:
    """A series that turns spectrum ``first`` into ``second`` along a logistic time law, with gain steps and Poisson noise.

    Parameters
    ----------
    first, second : array_like
        The end members (same channels), e.g. two measured spectra.
    seed : int
        Draws the law's centre ``t0`` (20-80 % of the series) and width
        ``w`` (3-15 periods), the gain steps and the noise.
    steps, period_s : int, float
        Length and cadence of the series.
    counts : float
        Total counts of one spectrum at gain 1.

    Returns
    -------
    dict
        ``spectra`` (steps, channels) counts, ``truth`` (steps, channels)
        noise-free mixture at the same total, ``fraction`` (steps,),
        ``times_s`` (steps,), ``gain`` (steps,), ``t0_s`` and ``width_s``.

    Examples
    --------
    >>> s = mixed_series(numpy.ones(10), numpy.arange(10.0), 0, steps=20)
    >>> s["spectra"].shape, bool(s["fraction"][0] < s["fraction"][-1])
    ((20, 10), True)
    """
    a, b = numpy.asarray(first, dtype=float), numpy.asarray(second, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"first and second must be spectra on the same channels, got shapes {a.shape} and {b.shape}")
    if not (numpy.all(numpy.isfinite(a)) and numpy.all(numpy.isfinite(b)) and a.sum() > 0 and b.sum() > 0):
        raise ValueError("first and second must be finite spectra with positive total counts")
    rng = numpy.random.default_rng(20_000 + seed)
    a, b = numpy.clip(a, 0, None) / a.sum(), numpy.clip(b, 0, None) / b.sum()
    times = period_s * numpy.arange(steps)
    t0 = float(rng.uniform(0.2, 0.8)) * steps * period_s
    width = float(rng.uniform(3.0, 15.0)) * period_s
    f = logistic(times, t0, width)
    truth = (1 - f)[:, numpy.newaxis] * a + f[:, numpy.newaxis] * b
    steps_at = rng.poisson(gain_step_rate_per_s * period_s, steps)
    gain = numpy.exp(numpy.cumsum(steps_at * rng.normal(0.0, gain_step_size, steps)))
    spectra = rng.poisson(truth * counts * gain[:, numpy.newaxis]).astype(float)
    return {"spectra": spectra, "truth": truth * counts, "fraction": f, "times_s": times, "gain": gain, "t0_s": numpy.asarray(t0), "width_s": numpy.asarray(width)}


@dataclasses.dataclass
class SeriesScore:
    """Absolute errors of one series' forecasts, by method and steps ahead.

    ``channels[method]`` and ``quantity[method]`` are (horizon,) sums of the
    mean absolute error over the window's channels (prepared spectra) and of
    the absolute error of the quantity; ``count`` (horizon,) the forecasts
    scored.  Methods: "model", "persistence", "linear" and, if given, "lstm".
    """

    channels: dict[str, _NDArray]
    quantity: dict[str, _NDArray]
    count: _NDArray
    coverage_measured: tuple[int, int]
    coverage_truth: tuple[int, int]
    update_ms: list[float]


def score_series(forecaster: OnlineForecaster, spectra: _NDArray, energies_eV: _NDArray, times_s: _NDArray, truth_prepared: _NDArray,
                 quantity: Quantity, *, lstm: SpectrumLSTM | None = None, horizon: int = HORIZON) -> SeriesScore:
    """Run ``forecaster`` along a series and score its forecasts against ``truth_prepared`` (steps, channels).

    Persistence and linear extrapolation forecast from the same prepared
    spectra; the LSTM from the last 8 of them.  A quantity's truth is the
    quantity of the prepared truth.
    """
    methods = ["model", "persistence", "linear"] + (["lstm"] if lstm is not None else [])
    channels = {m: numpy.zeros(horizon) for m in methods}
    quantity_err = {m: numpy.zeros(horizon) for m in methods}
    count = numpy.zeros(horizon)
    axis = forecaster.preprocessor.axis_eV
    true_quantity = quantity(truth_prepared, axis)
    pending: list[tuple[int, dict[str, _NDArray], tuple[_NDArray, _NDArray]]] = []
    hits_measured = hits_truth = checked = 0
    update_ms: list[float] = []
    for t in range(spectra.shape[0]):
        forecast = forecaster.update(spectra[t], energies_eV, float(times_s[t]))
        if forecast is None:
            continue
        update_ms.append(forecast.elapsed_ms)
        history = numpy.stack(forecaster.values)
        predictions = {"model": forecast.spectra, "persistence": persistence(history, horizon), "linear": linear_extrapolation(history, horizon)}
        if lstm is not None:
            window = history[-8:]
            if window.shape[0] < 8:
                window = numpy.concatenate([numpy.repeat(window[:1], 8 - window.shape[0], axis=0), window])
            with torch.no_grad():
                predictions["lstm"] = lstm(torch.as_tensor(window[numpy.newaxis], dtype=torch.float32))[0].numpy().astype(float)
        pending.append((t, predictions, (forecast.low, forecast.high)))
    for t, predictions, (low, high) in pending:
        for h in range(horizon):
            target = t + 1 + h
            if target >= spectra.shape[0]:
                break
            count[h] += 1
            for m, p in predictions.items():
                channels[m][h] += float(numpy.mean(numpy.abs(p[h] - truth_prepared[target])))
                quantity_err[m][h] += float(abs(quantity(p[h], axis) - true_quantity[target]))
            measured = forecaster.measured[target] if target < len(forecaster.measured) else numpy.nan
            if numpy.isfinite(measured):
                checked += 1
                hits_measured += int(low[h] <= measured <= high[h])
                hits_truth += int(low[h] <= true_quantity[target] <= high[h])
    return SeriesScore(channels, quantity_err, count, (hits_measured, checked), (hits_truth, checked), update_ms)


def prepared_truth(truth: _NDArray, energies_eV: _NDArray, preprocessor: Preprocessor) -> _NDArray:
    """Noise-free spectra prepared like the measured ones but without alignment (the truth has no drift)."""
    clean = dataclasses.replace(preprocessor, align="none", reference=None, reference_axis_eV=None)
    return numpy.stack([clean.prepare(s, energies_eV).values for s in truth])
