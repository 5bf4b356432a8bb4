"""Keep the probe on a column: find it from a few probe positions around where it should be.

Between dwell chunks the probe makes a short excursion around the column, a
3 x 3 raster a few hundredths of a nanometre wide at a short pixel time (atom
tracking).  Over so small a field the column's ADF signal is the probe's
Gaussian, so its logarithm is a paraboloid; :func:`locate_column` fits one and
returns the column's centre and peak counts.  The peak counts tell a column
the probe slid off (same peak, somewhere else) from one that lost an atom
(lower peak, same place), which is how an alarm is checked before it counts.

This module is pure numpy; it knows nothing of Swift.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]

__all__ = ["ColumnFix", "locate_column"]


@dataclasses.dataclass(frozen=True)
class ColumnFix:
    """Where a column is and how bright, from a small excursion around it.

    Attributes
    ----------
    position_nm : tuple of float
        Column centre (y, x) in the coordinates of the given positions.
    peak_counts : float
        Expected counts per pixel with the probe on the centre.
    found : bool
        Whether the counts had a peak inside the excursion (a column under the probe).
    """

    position_nm: tuple[float, float]
    peak_counts: float
    found: bool


def locate_column(counts: numpy.typing.ArrayLike, positions_nm: numpy.typing.ArrayLike) -> ColumnFix:
    """Fit an isotropic Gaussian peak to counts recorded at a few probe positions.

    Parameters
    ----------
    counts : array_like, shape (n,) or (rows, columns)
        Counts at each probe position (n >= 4), e.g. a 3 x 3 raster.
    positions_nm : array_like, shape (n, 2) or (rows, columns, 2)
        The probe positions (y, x) in nm, e.g. ``ScanFrame.pixel_grid_nm()``.

    Returns
    -------
    ColumnFix
        ``found`` is False when the log-counts do not curve down (no peak) or
        the fitted centre lies more than one excursion width outside the
        positions; ``position_nm`` is then the brightest position.

    Notes
    -----
    ``log(counts) = a + b . r + c |r|^2`` is fitted by weighted least squares
    (weights = counts, the inverse variance of a log Poisson count) with ``r``
    relative to the mean position, so the fit does not depend on the scan
    rotation.  The centre is ``-b / 2c`` and the peak ``exp(a - |b|^2 / 4c)``.
    Neighbouring columns' tails bias the centre by well under a picometre
    for MoS2 sampled at +-0.04 nm.

    Examples
    --------
    >>> yy, xx = numpy.meshgrid([-0.04, 0.0, 0.04], [-0.04, 0.0, 0.04], indexing="ij")
    >>> grid = numpy.stack([yy, xx], axis=-1)
    >>> counts = 800 * numpy.exp(-((yy - 0.01) ** 2 + (xx + 0.005) ** 2) / (2 * 0.05 ** 2))
    >>> fix = locate_column(counts, grid)
    >>> [round(v, 4) for v in fix.position_nm], round(fix.peak_counts), fix.found
    ([0.01, -0.005], 800, True)
    """
    c = numpy.asarray(counts, dtype=float).reshape(-1)
    p = numpy.asarray(positions_nm, dtype=float).reshape(-1, 2)
    if p.shape[0] != c.size:
        raise ValueError(f"positions_nm must hold one (y, x) per count: {c.size} counts but positions of shape {numpy.shape(positions_nm)}")
    if c.size < 4:
        raise ValueError(f"counts must hold at least 4 probe positions to fit a peak, got {c.size}")
    if not (numpy.all(numpy.isfinite(c)) and numpy.all(numpy.isfinite(p))):
        raise ValueError("counts and positions_nm must be finite")
    brightest = int(numpy.argmax(c))
    fallback = ColumnFix((float(p[brightest, 0]), float(p[brightest, 1])), float(c[brightest]), False)
    positive = c > 0
    if positive.sum() < 4:
        return fallback
    centre = p.mean(axis=0)
    r = p[positive] - centre
    design = numpy.column_stack([numpy.ones(len(r)), r[:, 0], r[:, 1], (r ** 2).sum(axis=1)])
    sqrt_w = numpy.sqrt(c[positive])
    try:
        coefficients, *_ = numpy.linalg.lstsq(design * sqrt_w[:, numpy.newaxis], numpy.log(c[positive]) * sqrt_w, rcond=None)
    except numpy.linalg.LinAlgError:
        return fallback
    a, by, bx, curvature = (float(v) for v in coefficients)
    if not curvature < 0:
        return fallback
    offset = numpy.array([-by, -bx]) / (2 * curvature)
    reach = float(numpy.max(numpy.linalg.norm(p - centre, axis=1)))
    if not numpy.all(numpy.isfinite(offset)) or float(numpy.linalg.norm(offset)) > 2 * reach:
        return fallback
    peak = math.exp(min(a - (by * by + bx * bx) / (4 * curvature), 700.0))
    return ColumnFix((float(centre[0] + offset[0]), float(centre[1] + offset[1])), peak, bool(numpy.linalg.norm(offset) <= reach))
