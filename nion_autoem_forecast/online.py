"""Following a running series: prepare each spectrum, refit the components, fine-tune, forecast with a band.

:class:`OnlineForecaster` is what a plan holds while it watches a series.
Each :meth:`~OnlineForecaster.update` takes one raw spectrum and its time and

1. prepares it (:class:`~nion_autoem_forecast.preprocess.Preprocessor`),
   filling a gap in the series by interpolation (with a note);
2. refits the reference and directions of change
   (:class:`~nion_autoem_forecast.models.ChangeComponents`) to the series so far;
3. fine-tunes its copy of the pretrained :class:`~nion_autoem_forecast.models.WeightForecaster`
   on this series' own past (pairs whose future has been measured), one step
   per update unless the update has already taken ``fine_tune_ms``;
4. forecasts the weights 1-8 steps ahead as quantiles, turns them into
   spectra and into the watched quantity (by sampling whole paths, from
   which a plan reads the probability of a crossing within its time), and calibrates the
   quantity's 90 % band online (:class:`~nion_autoem_forecast.uncertainty.OnlineCalibration`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import typing

import numpy
import numpy.typing
import torch

from nion_autoem_forecast.conditions import Condition
from nion_autoem_forecast.conditions import Quantity
from nion_autoem_forecast.models import ChangeComponents
from nion_autoem_forecast.models import WeightForecaster
from nion_autoem_forecast.models import forecast_weights
from nion_autoem_forecast.models import load_model
from nion_autoem_forecast.models import noise_level
from nion_autoem_forecast.models import normalized_windows
from nion_autoem_forecast.models import pinball_loss
from nion_autoem_forecast.preprocess import Preprocessor
from nion_autoem_forecast.preprocess import SeriesError
from nion_autoem_forecast.uncertainty import OnlineCalibration
from nion_autoem_forecast.uncertainty import band_from_samples

_NDArray = numpy.typing.NDArray[typing.Any]

#: A step longer than this many typical periods is a gap.
GAP_FACTOR = 1.6
# Forecast samples drawn to carry the weights' band into the watched quantity.
_SAMPLES = 64


@dataclasses.dataclass(frozen=True)
class Forecast:
    """A forecast made after a spectrum: ``horizon`` steps ahead.

    Attributes
    ----------
    step : int
        Index of the spectrum it was made after (0-based, gaps filled).
    times_s : ndarray (horizon,)
        When the forecast spectra are due.
    spectra : ndarray (horizon, channels)
        Median forecast of the prepared spectra.
    axis_eV : ndarray (channels,)
        Their energy axis.
    quantity : ndarray (horizon,)
        Median forecast of the watched quantity (denoised: what the sample does).
    low, high : ndarray (horizon,)
        The calibrated 90 % band for the *measured* quantity (noise included).
    samples : ndarray (samples, horizon)
        Draws of the quantity's path (denoised), for crossing probabilities:
        each row is one path through the forecast steps, not independent
        draws per step.
    measured : float
        The quantity measured on the latest spectrum.
    denoised : float
        The quantity of the latest spectrum as the components describe it.
    elapsed_ms : float
        Wall time of the update, fine-tuning included.
    """

    step: int
    times_s: _NDArray
    spectra: _NDArray
    axis_eV: _NDArray
    quantity: _NDArray
    low: _NDArray
    high: _NDArray
    samples: _NDArray
    measured: float
    denoised: float
    elapsed_ms: float

    def crossing_probability(self, condition: Condition) -> float:
        """Probability that the quantity meets ``condition`` at some forecast step due within ``condition.within_s``.

        The fraction of the drawn paths that meet it at one step or more.
        With draws independent from step to step this union would grow with
        the number of steps (seven steps at 25 % each give 87 %) although no
        step is likely to cross; with paths it is about the largest step's
        probability when the forecast hovers, and near 1 when it crosses.
        """
        due = self.times_s - self.times_s[0] + (self.times_s[1] - self.times_s[0] if len(self.times_s) > 1 else 0.0)
        inside = due <= condition.within_s + 1e-9
        if not numpy.any(inside):
            inside[0] = True
        met = condition.met(self.samples[:, inside])
        return float(numpy.mean(numpy.any(met, axis=1)))

    def crossing_time_s(self, condition: Condition) -> float | None:
        """When the median forecast first meets ``condition`` (absolute time, s), or None within the horizon."""
        met = numpy.flatnonzero(condition.met(self.quantity))
        return float(self.times_s[met[0]]) if met.size else None


def path_normals(rng: numpy.random.Generator, shape: tuple[int, ...], correlation: float) -> _NDArray:
    """Standard normal draws whose last axis (the forecast steps) is an AR(1) path with neighbour ``correlation``.

    Every entry is standard normal (so each step keeps its own quantiles);
    along the last axis ``z[h] = correlation * z[h - 1] + sqrt(1 - correlation**2) * e[h]``.

    Examples
    --------
    >>> z = path_normals(numpy.random.default_rng(0), (4000, 8), 1.0)
    >>> bool(numpy.all(z == z[:, :1]))  # one level per path
    True
    >>> z = path_normals(numpy.random.default_rng(0), (4000, 8), 0.0)
    >>> abs(float(numpy.corrcoef(z[:, 0], z[:, 1])[0, 1])) < 0.05
    True
    """
    e = rng.standard_normal(shape)
    z = numpy.empty_like(e)
    z[..., 0] = e[..., 0]
    keep = math.sqrt(max(1.0 - correlation ** 2, 0.0))
    for h in range(1, shape[-1]):
        z[..., h] = correlation * z[..., h - 1] + keep * e[..., h]
    return z


def weight_paths(quantiles: _NDArray, sigma: _NDArray, z: _NDArray) -> _NDArray:
    """Draws of each weight's future path (samples, k, horizon) from its quantile forecast, without its shot noise.

    Parameters
    ----------
    quantiles : ndarray (k, horizon, 3)
        The 5 %, 50 % and 95 % forecast of each *measured* weight.
    sigma : ndarray (k,)
        Each weight's shot noise (one measurement).
    z : ndarray (samples, k, horizon)
        Standard normal draws, e.g. :func:`path_normals`: their correlation
        along the steps makes the draws paths.

    Returns
    -------
    ndarray (samples, k, horizon)
        Split-normal draws (the lower or upper half-spread by the sign of
        ``z``) about the median, their spread less the shot noise: draws of
        what the sample does, since a noisy spectrum that dips below a
        threshold is no reason to act.

    Examples
    --------
    >>> q = numpy.array([[[-1.645, 0.0, 1.645]] * 8])  # one weight, 8 steps, unit spread
    >>> paths = weight_paths(q, numpy.array([0.0]), path_normals(numpy.random.default_rng(0), (2000, 1, 8), 1.0))
    >>> round(float(paths[:, 0, 3].std()), 1), bool(numpy.all(paths[:, 0, 0] == paths[:, 0, 7]))
    (1.0, True)
    """
    q = numpy.asarray(quantiles, dtype=float)
    s = numpy.asarray(sigma, dtype=float)
    spread = numpy.where(z > 0, q[:, :, 2] - q[:, :, 1], q[:, :, 1] - q[:, :, 0]) / 1.645
    spread = numpy.sqrt(numpy.maximum(spread ** 2 - s[numpy.newaxis, :, numpy.newaxis] ** 2, (0.1 * spread) ** 2))
    return typing.cast(_NDArray, q[:, :, 1] + z * spread)


class OnlineForecaster:
    """Forecasts a running series of spectra, spectrum by spectrum.

    Parameters
    ----------
    quantity : Quantity
        The watched quantity of a prepared spectrum (e.g. :class:`~nion_autoem_forecast.conditions.WhiteLineRatio`).
    preprocessor : Preprocessor, optional
        Window, alignment and background (default: the Fe oxide's O K and Fe L2,3 window).
    net : WeightForecaster, optional
        Default: the shipped ``weights_v1``.  The forecaster fine-tunes a copy.
    components : int
        Directions of change.
    fine_tune_ms : float
        An update takes one fine-tuning step unless it has already taken
        this long (0 switches fine-tuning off).  The default, 20 ms, is four
        times a quiet update, so load on the machine does not change which
        updates fine-tune, and with them the forecasts and the plan's
        actions (at 6 ms a run at load 7 skipped steps and acted differently).
    learning_rate : float
        Of the fine-tuning.
    min_spectra : int
        Spectra needed before the first forecast.
    significance : float
        A direction of change counts only if its strength exceeds this many
        times what shot noise alone would give its strongest direction
        (``channel variance * (sqrt(steps) + sqrt(channels))**2``).
    horizon_correlation : float
        How a draw's error at one forecast step goes on to the next (0 to 1):
        the quantiles give each step's spread, not how the steps go together,
        so the draws join them with a Gaussian copula whose correlation
        between neighbouring steps is this (AR(1)).  1 (the default) makes
        every draw one coherent path: a forecast that is too high stays too
        high, as on twin series not used in training (seeds 300-329, the
        truth's normal scores under the forecast correlate 0.95-0.98 from one
        step to the next).  0 draws every step independently, which makes
        "crossed at *some* step" far more likely than any one step says.

    Examples
    --------
    >>> from nion_autoem.twin.insitu import parked_probe_series
    >>> from nion_autoem_forecast.conditions import WhiteLineRatio
    >>> s = parked_probe_series(4, steps=12)
    >>> f = OnlineForecaster(WhiteLineRatio())
    >>> forecasts = [f.update(c, s["energies_eV"], t) for c, t in zip(s["spectra"], s["times_s"])]
    >>> forecasts[0] is None, forecasts[-1].spectra.shape
    (True, (8, 221))
    """

    def __init__(self, quantity: Quantity, *, preprocessor: Preprocessor | None = None, net: WeightForecaster | None = None, components: int = 2,
                 fine_tune_ms: float = 20.0, learning_rate: float = 3e-4, min_spectra: int = 4, significance: float = 1.2,
                 horizon_correlation: float = 1.0, seed: int = 0) -> None:
        if min_spectra < 2:
            raise ValueError(f"min_spectra must be >= 2 (a forecast needs a history), got {min_spectra}")
        if fine_tune_ms < 0:
            raise ValueError(f"fine_tune_ms must be >= 0 ms, got {fine_tune_ms}")
        if not 0.0 <= horizon_correlation <= 1.0:
            raise ValueError(f"horizon_correlation must be between 0 (independent steps) and 1 (one path per draw), got {horizon_correlation!r}")
        self.quantity = quantity
        self.preprocessor = preprocessor or Preprocessor()
        pretrained = net if net is not None else load_model("weights_v1")
        if not isinstance(pretrained, WeightForecaster):
            raise TypeError(f"net must be a WeightForecaster, got {type(pretrained).__name__}")
        self.net = copy.deepcopy(pretrained)
        self.components, self.fine_tune_ms, self.min_spectra, self.significance = components, fine_tune_ms, min_spectra, significance
        self.horizon_correlation = float(horizon_correlation)
        self.horizon = self.net.horizon
        self.__optimizer = torch.optim.Adam(self.net.parameters(), lr=learning_rate)
        self.__rng = numpy.random.default_rng(seed)
        self.calibration = OnlineCalibration(self.horizon)
        self.values: list[_NDArray] = []
        self.times_s: list[float] = []
        self.measured: list[float] = []
        self.filled: list[bool] = []
        self.shifts_eV: list[float] = []
        self.notes: list[str] = []
        self.fine_tune_steps = 0
        self.last: Forecast | None = None
        self.__components: ChangeComponents | None = None

    @property
    def period_s(self) -> float | None:
        """The series' typical time between spectra (the median step), once there are two."""
        if len(self.times_s) < 2:
            return None
        return float(numpy.median(numpy.diff(self.times_s)))

    @property
    def ready(self) -> bool:
        return len(self.values) >= self.min_spectra

    def reset(self) -> None:
        """Start a new series (a fresh area): forget the spectra and the alignment reference; keep the fine-tuned network and calibration."""
        self.preprocessor.reset()
        self.values, self.times_s, self.measured, self.filled, self.shifts_eV = [], [], [], [], []
        self.__components = None
        self.last = None

    def update(self, counts: numpy.typing.ArrayLike, energies_eV: numpy.typing.ArrayLike, time_s: float) -> Forecast | None:
        """Add a spectrum taken at ``time_s`` and forecast; None until ``min_spectra`` spectra are in.

        Raises
        ------
        SeriesError
            For a spectrum that cannot be prepared, or a time that goes back.
        """
        started = time.perf_counter()
        if self.times_s and not time_s > self.times_s[-1]:
            raise SeriesError(f"time_s must increase along the series: {time_s!r} s follows {self.times_s[-1]!r} s")
        prepared = self.preprocessor.prepare(counts, energies_eV)
        self.notes.extend(prepared.notes)
        period = self.period_s
        if period is not None and time_s - self.times_s[-1] > GAP_FACTOR * period:
            missing = int(round((time_s - self.times_s[-1]) / period)) - 1
            if missing > 0:
                self.notes.append(f"gap of {time_s - self.times_s[-1]:.3g} s after {self.times_s[-1]:.3g} s: {missing} spectra interpolated to keep the step regular")
                last, last_s = self.values[-1], self.times_s[-1]
                for k in range(1, missing + 1):
                    f = k / (missing + 1)
                    self.values.append((1 - f) * last + f * prepared.values)
                    self.times_s.append(last_s + f * (time_s - last_s))
                    self.measured.append(float("nan"))
                    self.filled.append(True)
                    self.shifts_eV.append(float('nan'))
        self.values.append(prepared.values)
        self.shifts_eV.append(prepared.shift_eV)
        self.times_s.append(float(time_s))
        measured = float(self.quantity(prepared.values, prepared.axis_eV))
        self.measured.append(measured)
        self.filled.append(False)
        step = len(self.values) - 1
        self.calibration.observe(step, measured)
        if not self.ready:
            return None
        forecast = self.__forecast(step, prepared.axis_eV, started)
        self.last = forecast
        return forecast

    def forecast(self) -> Forecast:
        """The latest forecast; raises :class:`SeriesError` while the series is too short."""
        if self.last is None:
            raise SeriesError(f"too few spectra to forecast: {len(self.values)} of the {self.min_spectra} needed; record more spectra first")
        return self.last

    def __fine_tune(self, weights: _NDArray, sigma: _NDArray, deadline: float) -> None:
        x, y = normalized_windows(weights[-(self.net.lookback + self.horizon + 32):], self.net.lookback, self.horizon, sigma=sigma)
        if x.shape[0] < 4:
            return
        if time.perf_counter() >= deadline:
            return
        # one step per update: bounded in time, and no overfitting of the last few spectra
        inputs, targets = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
        self.net.train()
        self.__optimizer.zero_grad()
        loss = pinball_loss(self.net(inputs), targets, self.net.quantiles)
        loss.backward()  # type: ignore[no-untyped-call]
        self.__optimizer.step()
        self.fine_tune_steps += 1
        self.net.eval()

    def __significant(self, values: _NDArray, weights: _NDArray) -> _NDArray:
        """Which directions of change stand out of the shot noise (a random-matrix bound on pure noise's strongest direction)."""
        n, channels = values.shape
        if n < 3:
            return numpy.zeros(weights.shape[1], dtype=bool)
        d = numpy.diff(values, axis=0)
        channel_variance = float(numpy.mean((numpy.median(numpy.abs(d - numpy.median(d, axis=0)), axis=0) / 0.6745) ** 2) / 2.0)
        noise_strength = channel_variance * (math.sqrt(n) + math.sqrt(channels)) ** 2
        strength = numpy.sum(weights ** 2, axis=0)
        return typing.cast(_NDArray, strength > self.significance * noise_strength)

    def __forecast(self, step: int, axis_eV: _NDArray, started: float) -> Forecast:
        values = numpy.stack(self.values)
        components = ChangeComponents.fit(values, components=self.components, previous=self.__components)
        self.__components = components
        weights = components.weights(values)
        sigma = noise_level(weights)
        significant = self.__significant(values[-96:], weights[-96:])
        if self.fine_tune_ms > 0 and numpy.any(significant):
            self.__fine_tune(weights[:, significant], sigma[significant], started + self.fine_tune_ms * 1e-3)
        q = forecast_weights(self.net, weights, sigma)  # (k, horizon, 3)
        # A direction no stronger than shot noise alone would give is noise: no change along it, now or ahead.
        weights = numpy.where(significant, weights, 0.0)
        q = numpy.where(significant[:, numpy.newaxis, numpy.newaxis], q, 0.0)
        median_weights = q[:, :, 1].T
        spectra = components.reconstruct(median_weights)
        # Draws of every weight's path, carried through the spectrum into the quantity: the crossing probability
        # asks whether a path crosses at *some* step, which only paths can answer (see weight_paths).
        z = path_normals(self.__rng, (_SAMPLES, q.shape[0], q.shape[1]), self.horizon_correlation)
        draws = weight_paths(q, sigma, z)  # (samples, k, horizon)
        sampled = components.reconstruct(numpy.transpose(draws, (0, 2, 1)))  # (samples, horizon, channels)
        samples = self.quantity(sampled, axis_eV)
        median = self.quantity(spectra, axis_eV)
        # The band is for the measured value: the quantity's own measurement noise joins the model's spread.
        denoised_history = self.quantity(components.reconstruct(weights), axis_eV)
        measured = numpy.asarray(self.measured)
        residual = (measured - denoised_history)[numpy.isfinite(measured)]
        noise = float(1.4826 * numpy.median(numpy.abs(residual - numpy.median(residual)))) if residual.size >= 3 else 0.0
        noisy = samples + noise * self.__rng.standard_normal(samples.shape)
        low, _, high = band_from_samples(noisy)
        low, high = self.calibration.expect(step, low, median, high)
        period = self.period_s or 1.0
        times = self.times_s[-1] + period * numpy.arange(1, self.horizon + 1)
        return Forecast(step, times, spectra, axis_eV, median, low, high, samples, float(measured[-1]), float(denoised_history[-1]),
                        (time.perf_counter() - started) * 1e3)
