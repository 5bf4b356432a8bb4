"""Greedy batch selection with pending probe positions as a parameter.

The batch is chosen one position at a time. After each choice the posterior
is conditioned on a believed measurement there (the "kriging believer": the
value is taken to be the posterior mean, so the mean is unchanged and only
the variance shrinks around the chosen point). Pending positions -- spectra
already requested but not yet returned -- are conditioned on in the same way
before the first choice, so a batch and a stream of single steps are the
same code.
"""

from __future__ import annotations

import math
import typing

import numpy
import numpy.typing

import nion_autoem_checks as _checks

from .acquisition import Acquisition
from .constraints import affordable_mask
from .constraints import exclusion_mask
from .posterior import Posterior

_NDArray = numpy.typing.NDArray[typing.Any]


def condition_on(posterior: Posterior, indices: typing.Sequence[int] | _NDArray) -> Posterior:
    """Posterior after believed (mean-valued) measurements at ``indices``.

    Parameters
    ----------
    posterior : Posterior
        Current posterior over all candidates.
    indices : sequence of int
        Candidates whose measurements are pending or assumed.

    Returns
    -------
    conditioned : Posterior
        Same mean, reduced variance, consistent ``covariance_with``.

    Examples
    --------
    >>> import numpy
    >>> p = Posterior.independent(numpy.zeros(3), numpy.ones(3), noise_variance=1.0)
    >>> numpy.round(condition_on(p, [0]).variance, 6).tolist()
    [0.5, 1.0, 1.0]
    """
    chosen = _checks.indices(indices, "indices", posterior.mean.shape[0]).tolist()
    if not chosen:
        return posterior
    # Gram-Schmidt on covariance columns: each column is made conditional on
    # the earlier chosen points, then scaled by its predictive standard deviation.
    columns = posterior.covariance_with(numpy.asarray(chosen, dtype=numpy.int64), None)
    basis = numpy.zeros_like(columns)
    for k, index in enumerate(chosen):
        column = columns[:, k] - basis[:, :k] @ basis[index, :k]
        predictive = column[index] + posterior.noise_variance
        basis[:, k] = column / math.sqrt(max(predictive, 1e-12))
    variance = numpy.clip(posterior.variance - (basis**2).sum(axis=1), 1e-15, None)
    original = posterior.covariance_with

    def covariance_with(query: _NDArray, rows: _NDArray | None = None) -> _NDArray:
        picked = numpy.asarray(query, dtype=numpy.int64)
        row_basis = basis if rows is None else basis[numpy.asarray(rows, dtype=numpy.int64)]
        return typing.cast(_NDArray, original(picked, rows) - row_basis @ basis[picked].T)

    return Posterior(posterior.mean, variance, posterior.noise_variance, covariance_with)


def select_batch(
    posterior: Posterior,
    acquisition: Acquisition,
    q: int,
    allowed: _NDArray,
    *,
    pending: typing.Sequence[int] | _NDArray = (),
    positions: _NDArray | None = None,
    exclusion_radius: float = 0.0,
    dose_cost: _NDArray | None = None,
    dose_remaining: float = math.inf,
) -> _NDArray:
    """Choose up to ``q`` distinct candidates.

    Parameters
    ----------
    posterior : Posterior
        Posterior over all N candidates.
    acquisition : callable
        ``acquisition(posterior) -> scores``; higher is better.
    q : int
        Batch size.
    allowed : (N,) bool ndarray
        Candidates that may be chosen at all (e.g. not yet measured).
    pending : sequence of int
        Candidates requested but not yet measured; they are conditioned on,
        never chosen, and their exclusion radius applies.
    positions : (N, 2) ndarray, optional
        Candidate positions in pixels, needed when ``exclusion_radius > 0``.
    exclusion_radius : float
        No two chosen (or pending) probes closer than this, in pixels.
    dose_cost : (N,) ndarray, optional
        Dose each candidate would cost; with ``dose_remaining`` limits the batch.
    dose_remaining : float
        Dose budget left.

    Returns
    -------
    indices : (k,) int ndarray
        ``k <= q`` distinct candidates in order of choice; fewer when the
        constraints leave nothing (empty when the budget is spent).

    Examples
    --------
    >>> import numpy
    >>> from nion_autoem_dkl.acquisition import MaxUncertainty
    >>> p = Posterior.independent(numpy.zeros(4), numpy.array([1.0, 4.0, 3.0, 2.0]))
    >>> select_batch(p, MaxUncertainty(), 2, numpy.ones(4, bool)).tolist()
    [1, 2]
    """
    q = _checks.whole(q, "q", 1)
    n = posterior.mean.shape[0]
    mask = _checks.mask(allowed, "allowed", n).copy()
    pending_indices = _checks.indices(pending, "pending", n)
    exclusion_radius = _checks.number(exclusion_radius, "exclusion_radius", "a finite number of pixels >= 0", lambda v: v >= 0)
    if positions is not None:
        positions = _checks.real_array(positions, "positions", f"finite (row, column) pixels of shape ({n}, 2)")
        if positions.shape != (n, 2):
            raise ValueError(f"positions must be finite (row, column) pixels of shape ({n}, 2), got shape {positions.shape}")
    elif exclusion_radius > 0:
        raise ValueError("positions must be given as (N, 2) pixels when exclusion_radius > 0, got None")
    costs = None
    if dose_cost is not None:
        costs = _checks.real_array(dose_cost, "dose_cost", f"a finite dose >= 0 for each of the {n} candidates")
        if costs.shape != (n,) or (costs < 0).any():
            raise ValueError(f"dose_cost must be a finite dose >= 0 for each of the {n} candidates, got {_checks.describe(costs)}")
    remaining = _checks.dose(dose_remaining, "dose_remaining")
    mask[pending_indices] = False
    if exclusion_radius > 0 and positions is not None and pending_indices.size:
        mask &= exclusion_mask(positions, positions[pending_indices], exclusion_radius)
    current = condition_on(posterior, pending_indices)
    chosen: list[int] = []
    for _ in range(q):
        if costs is not None:
            mask &= affordable_mask(costs, remaining)
        if not mask.any():
            break
        scores = numpy.where(mask, acquisition(current), -numpy.inf)
        if not numpy.isfinite(scores).any():
            # The acquisition scored every allowed candidate -inf (e.g. a
            # Thompson subset that was all excluded): fall back to uncertainty.
            scores = numpy.where(mask, current.variance, -numpy.inf)
        best = int(numpy.argmax(scores))
        chosen.append(best)
        mask[best] = False
        if exclusion_radius > 0 and positions is not None:
            mask &= exclusion_mask(positions, positions[best : best + 1], exclusion_radius)
        if costs is not None:
            remaining -= float(costs[best])
        if len(chosen) < q:
            current = condition_on(current, [best])
    return numpy.asarray(chosen, dtype=numpy.int64)
