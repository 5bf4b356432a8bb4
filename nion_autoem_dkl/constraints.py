"""Where the beam may go next: no revisits, exclusion radius, dose budget.

Constraints are boolean masks over the candidates (``True`` = allowed), so
they combine with ``&`` and apply to any acquisition function the same way.
"""

from __future__ import annotations

import typing

import numpy
import numpy.typing

import nion_autoem_checks as _checks

_NDArray = numpy.typing.NDArray[typing.Any]


def exclusion_mask(positions: _NDArray, centres: _NDArray, radius: float) -> _NDArray:
    """Candidates farther than ``radius`` pixels from every centre.

    Parameters
    ----------
    positions : (N, 2) ndarray
        Candidate positions in pixels.
    centres : (M, 2) ndarray
        Measured or pending probe positions in pixels.
    radius : float
        Exclusion radius in pixels; ``0`` excludes nothing.

    Returns
    -------
    allowed : (N,) bool ndarray

    Examples
    --------
    >>> import numpy
    >>> p = numpy.array([[0.0, 0.0], [0.0, 3.0], [0.0, 10.0]])
    >>> exclusion_mask(p, numpy.array([[0.0, 0.0]]), 5.0).tolist()
    [False, False, True]
    """
    points = _checks.real_array(positions, "positions", "finite (row, column) pixel pairs of shape (N, 2)")
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"positions must be finite (row, column) pixel pairs of shape (N, 2), got shape {points.shape}")
    near = _checks.real_array(centres, "centres", "finite (row, column) pixel pairs of shape (M, 2)")
    if near.shape == (2,):
        near = near.reshape(1, 2)
    if near.size and (near.ndim != 2 or near.shape[1] != 2):
        raise ValueError(f"centres must be (row, column) pixel pairs of shape (M, 2), got shape {near.shape}")
    near = near.reshape(-1, 2)
    radius = _checks.number(radius, "radius", "a finite number of pixels >= 0", lambda v: v >= 0)
    allowed = numpy.ones(points.shape[0], dtype=bool)
    if radius <= 0 or near.shape[0] == 0:
        return allowed
    # Chunked so that memory stays O(N) even for many centres.
    for start in range(0, near.shape[0], 256):
        block = near[start : start + 256]
        d2 = ((points[:, None, :] - block[None, :, :]) ** 2).sum(-1)
        allowed &= ~(d2 < radius**2).any(axis=1)
    return allowed


def affordable_mask(dose_cost: _NDArray, dose_remaining: float) -> _NDArray:
    """Candidates whose dose cost still fits the remaining budget.

    Examples
    --------
    >>> import numpy
    >>> affordable_mask(numpy.array([1.0, 2.0, 3.0]), 2.0).tolist()
    [True, True, False]
    """
    costs = _checks.real_array(dose_cost, "dose_cost", "finite doses >= 0")
    if (costs < 0).any():
        raise ValueError(f"dose_cost must be finite doses >= 0, got {_checks.describe(costs[costs < 0][:5])}")
    return typing.cast(_NDArray, costs <= _checks.dose(dose_remaining, "dose_remaining") + 1e-12)


def unvisited_mask(n_candidates: int, visited: typing.Iterable[int]) -> _NDArray:
    """Candidates not yet measured or pending.

    Examples
    --------
    >>> unvisited_mask(4, [1, 3]).tolist()
    [True, False, True, False]
    """
    n_candidates = _checks.whole(n_candidates, "n_candidates", 0)
    allowed = numpy.ones(n_candidates, dtype=bool)
    chosen = _checks.indices(list(visited), "visited", n_candidates)
    allowed[chosen] = False
    return allowed
