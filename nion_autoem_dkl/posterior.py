"""The model's belief over the discrete candidate set, as acquisition functions see it."""

from __future__ import annotations

import dataclasses
import typing

import numpy
import numpy.typing

import nion_autoem_checks as _checks

_NDArray = numpy.typing.NDArray[typing.Any]


CovarianceFunction = typing.Callable[[_NDArray, _NDArray | None], _NDArray]


def _independent(variance: _NDArray) -> CovarianceFunction:
    def covariance_with(indices: _NDArray, rows: _NDArray | None = None) -> _NDArray:
        chosen = numpy.asarray(indices, dtype=numpy.int64)
        row_index = numpy.arange(variance.shape[0]) if rows is None else numpy.asarray(rows, dtype=numpy.int64)
        return numpy.where(row_index[:, None] == chosen[None, :], variance[chosen][None, :], 0.0)

    return covariance_with


@dataclasses.dataclass(frozen=True)
class Posterior:
    """Posterior of the noise-free property over all N candidates.

    Attributes
    ----------
    mean : (N,) ndarray
        Posterior mean.
    variance : (N,) ndarray
        Posterior variance of the noise-free property.
    noise_variance : float
        Variance of a single measurement around the property.
    covariance_with : callable
        ``covariance_with(indices, rows=None)`` returns the posterior
        covariance between the candidates ``rows`` (all N when ``None``) and
        the chosen ``indices``, shape (len(rows), len(indices)); batch
        selection and Thompson sampling use it.
    """

    mean: _NDArray
    variance: _NDArray
    noise_variance: float
    covariance_with: CovarianceFunction

    @property
    def std(self) -> _NDArray:
        """Posterior standard deviation of the noise-free property."""
        return typing.cast(_NDArray, numpy.sqrt(numpy.clip(self.variance, 0.0, None)))

    @classmethod
    def independent(cls, mean: _NDArray, variance: _NDArray, noise_variance: float = 0.0) -> Posterior:
        """A posterior without correlations between candidates (for tests and simple models).

        Examples
        --------
        >>> import numpy
        >>> p = Posterior.independent(numpy.zeros(3), numpy.ones(3))
        >>> p.covariance_with(numpy.array([1])).ravel().tolist()
        [0.0, 1.0, 0.0]
        """
        mean_array = _checks.real_array(mean, "mean", "a finite 1-D array, one value per candidate")
        if mean_array.ndim != 1:
            raise ValueError(f"mean must be a finite 1-D array, one value per candidate, got shape {mean_array.shape}")
        variance_array = _checks.real_array(variance, "variance", "finite and >= 0", finite=False)
        _checks.same_shape(variance_array, "variance", mean_array, "mean")
        usable = numpy.isfinite(variance_array) & (variance_array >= 0)
        if not usable.all():
            first = int(numpy.flatnonzero(~usable)[0])
            raise ValueError(f"variance must be finite and >= 0, got {_checks.describe(variance_array[first])} at candidate {first}")
        noise = _checks.number(noise_variance, "noise_variance", "a finite variance >= 0", lambda v: v >= 0)
        return cls(mean_array, variance_array, noise, _independent(variance_array))
