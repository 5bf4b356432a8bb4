"""Image sharpness and the best focus of a through-focus series (pure numpy/scipy).

An autofocus takes images at a few defocus values and keeps the sharpest.
Sharpness here is the power of the smoothed Laplacian relative to the mean
signal squared: it grows with fine detail (atom columns, edges), does not
care about the overall brightness, and the smoothing keeps shot noise from
looking like detail.
"""

from __future__ import annotations

import typing

import numpy
import numpy.typing
import scipy.ndimage

_NDArray = numpy.typing.NDArray[typing.Any]


def sharpness(image: _NDArray, *, smoothing_px: float = 1.0) -> float:
    """Fine detail of an image, independent of its brightness.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        A survey image.
    smoothing_px : float
        Gaussian sigma applied by the Laplacian of Gaussian, in pixels.

    Returns
    -------
    float
        Variance of the Laplacian of Gaussian over the squared mean; larger is sharper.

    Examples
    --------
    >>> rows, cols = numpy.mgrid[0:64, 0:64]
    >>> lattice = 1.0 + numpy.cos(rows * 0.8) * numpy.cos(cols * 0.8)
    >>> sharp, blurred = sharpness(lattice), sharpness(scipy.ndimage.gaussian_filter(lattice, 2.0))
    >>> bool(sharp > 5 * blurred)
    True
    """
    image = numpy.asarray(image, dtype=float)
    if image.ndim != 2 or min(image.shape) < 8:
        raise ValueError(f"image must be 2D and at least 8×8 pixels, got shape {image.shape}")
    if not numpy.all(numpy.isfinite(image)):
        raise ValueError("image contains NaN or infinite values")
    mean = float(image.mean())
    if mean <= 0:
        raise ValueError(f"image must have a positive mean signal (counts), got mean {mean:.3g}")
    detail = scipy.ndimage.gaussian_laplace(image, smoothing_px)
    return float(detail[2:-2, 2:-2].var() / mean**2)


def best_focus(defocus_nm: typing.Sequence[float], sharpness_values: typing.Sequence[float]) -> float:
    """The defocus of the sharpest image, refined by a parabola through the best and its neighbours.

    Examples
    --------
    >>> round(best_focus([-20, -10, 0, 10, 20], [1.0, 3.0, 4.0, 3.5, 1.5]), 2)
    1.67
    """
    z = numpy.asarray(defocus_nm, dtype=float)
    s = numpy.asarray(sharpness_values, dtype=float)
    if z.shape != s.shape or z.size < 1:
        raise ValueError(f"need one sharpness per defocus, got {z.size} defocus values and {s.size} sharpness values")
    order = numpy.argsort(z)
    z, s = z[order], s[order]
    best = int(numpy.argmax(s))
    if best == 0 or best == z.size - 1:
        return float(z[best])
    z0, z1, z2 = z[best - 1: best + 2]
    s0, s1, s2 = s[best - 1: best + 2]
    denominator = (z0 - z1) * (z0 - z2) * (z1 - z2)
    a = (z2 * (s1 - s0) + z1 * (s0 - s2) + z0 * (s2 - s1)) / denominator
    b = (z2**2 * (s0 - s1) + z1**2 * (s2 - s0) + z0**2 * (s1 - s2)) / denominator
    if a >= 0:
        return float(z1)
    return float(numpy.clip(-b / (2 * a), z0, z2))
