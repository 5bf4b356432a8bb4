"""Where the beam may go next: no revisits, exclusion radius, dose budget.

Constraints are boolean masks over the candidates (``True`` = allowed), so
they combine with ``&`` and apply to any acquisition function the same way.
"""

from __future__ import annotations

import typing

import numpy
import numpy.typing

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
    points = numpy.asarray(positions, dtype=numpy.float64)
    allowed = numpy.ones(points.shape[0], dtype=bool)
    near = numpy.asarray(centres, dtype=numpy.float64).reshape(-1, 2)
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
    return typing.cast(_NDArray, numpy.asarray(dose_cost, dtype=numpy.float64) <= dose_remaining + 1e-12)


def unvisited_mask(n_candidates: int, visited: typing.Iterable[int]) -> _NDArray:
    """Candidates not yet measured or pending.

    Examples
    --------
    >>> unvisited_mask(4, [1, 3]).tolist()
    [True, False, True, False]
    """
    allowed = numpy.ones(n_candidates, dtype=bool)
    chosen = numpy.fromiter((int(i) for i in visited), dtype=numpy.int64)
    allowed[chosen] = False
    return allowed
