"""Measurement errors pooled with their neighbours', so that weighting by them does not bias the map.

An error computed from one spectrum's own counts (the Poisson statistics of
its band integrals) is itself a noisy estimate, and it is smallest exactly
where the counts fell low: a ratio whose numerator fluctuated down reports a
smaller error than one that fluctuated up. A GP that weights each
measurement by such an error believes the low fluctuations most, and its map
is pulled down where the spectra are poor -- by about its own uncertainty on
the benchmark's counting ratio, which left only 84 % of the truth inside the
95 % intervals on two of four seeds.

The error level of a specimen (its thickness, the dose per spectrum) changes
smoothly across a survey, so each error is replaced by the median squared
error of that measurement and its nearest earlier measurements: the
fourfold change across a wedge survives, while the fluctuation of one
spectrum's own error barely moves the median.
"""

from __future__ import annotations

import typing

import numpy
import numpy.typing

import nion_autoem_checks as _checks

_NDArray = numpy.typing.NDArray[typing.Any]


class ErrorPool:
    """Each reported error pooled with those of the nearest earlier measurements.

    Parameters
    ----------
    positions : (N, 2) ndarray
        Probe position of every candidate (pixels).
    neighbours : int
        Measurements pooled, the new one included; 1 keeps each error as
        reported.

    Notes
    -----
    An error of 0 means "none given" and stays 0; it is not pooled with
    the others. A pooled error is fixed when its measurement arrives (later
    neighbours do not change it), so the GP's factorisation stays valid.

    Examples
    --------
    >>> import numpy
    >>> pool = ErrorPool(numpy.array([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0]]), neighbours=3)
    >>> pool.pool([0, 1, 2], [0.1, 0.1, 0.4]).round(3).tolist()
    [0.1, 0.1, 0.1]
    """

    def __init__(self, positions: _NDArray, neighbours: int = 9) -> None:
        self.positions = _checks.real_array(positions, "positions", "finite (row, column) pixel positions of shape (N, 2)")
        self.neighbours = _checks.whole(neighbours, "neighbours", 1)
        self._where = numpy.empty((64, 2))
        self._squared = numpy.empty(64)
        self._count = 0

    def pool(self, indices: typing.Sequence[int] | _NDArray, errors: typing.Sequence[float] | _NDArray) -> _NDArray:
        """The pooled errors of new measurements at candidate ``indices``, in order (each one pooled with those before it)."""
        pooled = []
        for index, error in zip(numpy.asarray(indices, dtype=numpy.int64).tolist(), numpy.asarray(errors, dtype=numpy.float64).tolist()):
            if error <= 0.0:
                pooled.append(0.0)
                continue
            if self._count == self._squared.size:
                self._where = numpy.concatenate([self._where, numpy.empty_like(self._where)])
                self._squared = numpy.concatenate([self._squared, numpy.empty_like(self._squared)])
            where = self.positions[index]
            self._where[self._count] = where
            self._squared[self._count] = error * error
            self._count += 1
            squared = self._squared[: self._count]
            if self._count > self.neighbours:
                distance = numpy.sum((self._where[: self._count] - where) ** 2, axis=1)
                squared = squared[numpy.argpartition(distance, self.neighbours - 1)[: self.neighbours]]
            pooled.append(float(numpy.sqrt(numpy.median(squared))))
        return numpy.asarray(pooled, dtype=numpy.float64)
