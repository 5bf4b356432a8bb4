"""Acquisition functions over a discrete candidate set: posterior in, scores out.

Each acquisition is a small callable ``acquisition(posterior) -> scores``
(higher is better), in the spirit of BoTorch's analytic acquisitions. The
plain-array versions (``log_expected_improvement`` ...) are exposed too.
Batch selection (``select_batch`` in ``batch.py``) reuses the same callables
on a posterior conditioned on pending and already-chosen probe positions.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
import scipy.special

import nion_autoem_checks as _checks

from .posterior import Posterior

_NDArray = numpy.typing.NDArray[typing.Any]

Acquisition = typing.Callable[[Posterior], _NDArray]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_SQRT_HALF_PI = math.sqrt(math.pi / 2)


def _log_h(z: _NDArray) -> _NDArray:
    """log(phi(z) + z * Phi(z)), accurate for very negative z."""
    out = numpy.empty_like(z)
    upper = z > -1.0
    zu = z[upper]
    out[upper] = numpy.log(numpy.exp(-0.5 * zu**2 - _LOG_SQRT_2PI) + zu * scipy.special.ndtr(zu))
    middle = (~upper) & (z > -1e5)
    zm = z[middle]
    # phi(z) * (1 + z * Phi(z)/phi(z)); the Mills ratio via erfcx avoids underflow.
    out[middle] = -0.5 * zm**2 - _LOG_SQRT_2PI + numpy.log1p(zm * _SQRT_HALF_PI * scipy.special.erfcx(-zm / math.sqrt(2)))
    far = ~(upper | middle)
    zf = z[far]
    out[far] = -0.5 * zf**2 - _LOG_SQRT_2PI - 2.0 * numpy.log(-zf)
    return out


def log_expected_improvement(mean: _NDArray, std: _NDArray, best: float, xi: float = 0.0) -> _NDArray:
    """Logarithm of expected improvement over ``best``, stable far below it.

    Parameters
    ----------
    mean, std : (N,) ndarrays
        Posterior mean and standard deviation of the property.
    best : float
        Incumbent (e.g. the best posterior mean among measured candidates).
    xi : float
        Required margin of improvement.

    Returns
    -------
    scores : (N,) ndarray
        ``log E[max(f - best - xi, 0)]``; finite even where EI underflows.

    Examples
    --------
    >>> import numpy
    >>> s = log_expected_improvement(numpy.array([0.0, 1.0]), numpy.ones(2), 0.5)
    >>> bool(s[1] > s[0])
    True
    """
    mean_array, std_array = _mean_and_std(mean, std)
    best = _checks.number(best, "best", "a finite incumbent value")
    xi = _checks.number(xi, "xi", "a finite margin")
    sigma = numpy.clip(std_array, 1e-12, None)
    z = (mean_array - best - xi) / sigma
    return typing.cast(_NDArray, _log_h(z) + numpy.log(sigma))


def _mean_and_std(mean: _NDArray, std: _NDArray) -> tuple[_NDArray, _NDArray]:
    mean_array = _checks.real_array(mean, "mean", "finite")
    std_array = _checks.real_array(std, "std", "finite and >= 0")
    _checks.same_shape(std_array, "std", mean_array, "mean")
    if (std_array < 0).any():
        raise ValueError(f"std must be finite and >= 0, got {_checks.describe(std_array[std_array < 0][:5])}")
    return mean_array, std_array


def upper_confidence_bound(mean: _NDArray, std: _NDArray, beta: float) -> _NDArray:
    """``mean + sqrt(beta) * std``.

    Examples
    --------
    >>> import numpy
    >>> upper_confidence_bound(numpy.zeros(1), numpy.ones(1), 4.0).tolist()
    [2.0]
    """
    mean_array, std_array = _mean_and_std(mean, std)
    beta = _check_beta(beta)
    return mean_array + math.sqrt(beta) * std_array


def _check_beta(beta: float) -> float:
    return _checks.number(beta, "beta", "a finite exploration weight >= 0", lambda v: v >= 0)


def gp_ucb_beta(step: int, n_candidates: int, delta: float = 0.1, scale: float = 0.2) -> float:
    """GP-UCB exploration weight for finite candidate sets, ``scale * 2 log(N t^2 pi^2 / (6 delta))``.

    The theoretical value (``scale=1``) explores far too much in practice; the
    customary shrink factor keeps its slow logarithmic growth.

    Parameters
    ----------
    step : int
        Number of the current step (>= 1).
    n_candidates : int
        Size of the candidate set.
    delta : float
        Confidence parameter in (0, 1).
    scale : float
        Multiplier applied to the theoretical value.

    Returns
    -------
    beta : float

    Examples
    --------
    >>> gp_ucb_beta(10, 1000) < gp_ucb_beta(100, 1000)
    True
    """
    t = _checks.whole(step, "step", 1)
    n = _checks.whole(n_candidates, "n_candidates", 1)
    delta = _checks.number(delta, "delta", "a confidence parameter in (0, 1)", lambda v: 0 < v < 1)
    scale = _checks.number(scale, "scale", "a finite number >= 0", lambda v: v >= 0)
    return scale * 2.0 * math.log(n * t**2 * math.pi**2 / (6.0 * delta))


def noisy_incumbent(posterior: Posterior, measured: _NDArray) -> float:
    """Best posterior mean among measured candidates (robust to a lucky noisy reading).

    Examples
    --------
    >>> import numpy
    >>> p = Posterior.independent(numpy.array([0.1, 0.9, 0.5]), numpy.ones(3))
    >>> noisy_incumbent(p, numpy.array([0, 2]))
    0.5
    """
    chosen = _checks.indices(measured, "measured", posterior.mean.shape[0])
    if chosen.size == 0:
        return float(numpy.max(posterior.mean))
    return float(numpy.max(posterior.mean[chosen]))


@dataclasses.dataclass
class LogExpectedImprovement:
    """Log-EI over a fixed incumbent (see ``noisy_incumbent``)."""

    best: float
    xi: float = 0.0

    def __post_init__(self) -> None:
        _checks.number(self.best, "best", "a finite incumbent value")
        _checks.number(self.xi, "xi", "a finite margin")

    def __call__(self, posterior: Posterior) -> _NDArray:
        return log_expected_improvement(posterior.mean, posterior.std, self.best, self.xi)


@dataclasses.dataclass
class UpperConfidenceBound:
    """UCB with a fixed exploration weight ``beta`` (see ``gp_ucb_beta``)."""

    beta: float

    def __post_init__(self) -> None:
        _check_beta(self.beta)

    def __call__(self, posterior: Posterior) -> _NDArray:
        return upper_confidence_bound(posterior.mean, posterior.std, self.beta)


@dataclasses.dataclass
class MaxUncertainty:
    """Pure exploration: the posterior standard deviation (best for mapping)."""

    def __call__(self, posterior: Posterior) -> _NDArray:
        return posterior.std


@dataclasses.dataclass
class ThompsonSampling:
    """One joint posterior sample on the most promising candidates.

    A joint sample over all N candidates needs an N x N Cholesky factor; the
    maximiser of a sample almost always lies among candidates with a high
    upper confidence bound, so the sample is drawn jointly on the top
    ``subset_size`` of them only and every other candidate scores ``-inf``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (each call draws a new sample).
    subset_size : int
        Number of candidates in the joint sample.
    beta : float
        UCB weight used to choose the subset.
    allowed : (N,) bool ndarray, optional
        Only these candidates enter the subset (measured ones would waste it).
    """

    rng: numpy.random.Generator
    subset_size: int = 256
    beta: float = 9.0
    allowed: _NDArray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rng, numpy.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {_checks.type_name(self.rng)}")
        _checks.whole(self.subset_size, "subset_size", 1)
        _check_beta(self.beta)

    def __call__(self, posterior: Posterior) -> _NDArray:
        ucb = upper_confidence_bound(posterior.mean, posterior.std, self.beta)
        if self.allowed is not None:
            ucb = numpy.where(_checks.mask(self.allowed, "allowed", ucb.shape[0]), ucb, -numpy.inf)
        finite = numpy.flatnonzero(numpy.isfinite(ucb))
        k = min(self.subset_size, finite.size)
        scores = numpy.full(posterior.mean.shape, -numpy.inf)
        if k == 0:
            return scores
        subset = finite[numpy.argpartition(-ucb[finite], k - 1)[:k]]
        covariance = posterior.covariance_with(subset, subset)
        covariance = 0.5 * (covariance + covariance.T)
        scores[subset] = posterior.mean[subset] + _matrix_root(covariance) @ self.rng.standard_normal(k)
        return scores


def _matrix_root(covariance: _NDArray) -> _NDArray:
    """A square root ``R`` with ``R @ R.T == covariance``: Cholesky, eigh if not positive definite."""
    scale = max(float(numpy.mean(numpy.diag(covariance))), 1e-12)
    try:
        return typing.cast(_NDArray, numpy.linalg.cholesky(covariance + 1e-8 * scale * numpy.eye(covariance.shape[0])))
    except numpy.linalg.LinAlgError:
        eigenvalues, eigenvectors = numpy.linalg.eigh(covariance)
        return typing.cast(_NDArray, eigenvectors * numpy.sqrt(numpy.clip(eigenvalues, 0.0, None)))
