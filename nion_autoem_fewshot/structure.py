"""Is there anything in a tile?  A test for tiles that hold only noise, or nothing at all.

Every tile is standardised on its own before the backbone reads it, so a
tile of pure counting noise, or of a blanked beam, is blown up to unit
variance and looks like *something*: a frame of Poisson noise classified
with interface examples came out all "rock salt" (or all "amorphous").  This test looks at the
tile before that happens.

After the tile's mean and linear gradient (a slow background) are removed,
a tile is **structureless** when

- it is constant (its spread is zero, or a ten-thousandth of its level), or
- its power spectrum is that of white noise: flat, with the power at low
  spatial frequencies (weighted by a Gaussian of :data:`LOW_BAND` cycles
  per pixel, where a probe-blurred signal puts its power) no more than
  :data:`LOW_BAND_Z` standard errors above what the noise power measured at
  high frequencies (from :data:`HIGH_BAND`) gives there (white noise
  passes this about 99 % of the time), and with no peak (no bin above
  :data:`PEAK_MARGIN` plus the log of the number of bins, times the mean
  power: the largest of that many exponentially distributed bins of white
  noise stays below it but once in about 8000 tiles).

That is what Poisson or Gaussian counting noise around a level looks like,
whatever the level and the dose.  Everything the microscope images through
its probe is blurred by the probe, which puts more power at low spatial
frequencies than at high ones, and a lattice puts its power in a few
spectral peaks; either makes a tile structured.  Noise that is itself
correlated (a slow detector smearing along the scan) is *not* caught.

A weak signal in much noise can pass for noise: in scenes like the
benchmark's (other seeds), at 32 px a tenth of the amorphous-film tiles and
most bare-support tiles do; at 64 px about 2 % of the bare-support tiles
and none of the others.  So the classifier answers ``unknown`` for a
structureless tile only when no class has a structureless example; a class
that has one (a vacuum, a thin film at low dose) takes such tiles.
"""

from __future__ import annotations

import functools
import math
import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]

#: Width (cycles per pixel) of the Gaussian weighting of low spatial frequencies, where a probe-blurred signal puts its power.
LOW_BAND = 0.08
#: Start of the high band (cycles per pixel) that measures the tile's noise power.
HIGH_BAND = 0.3
#: Standard errors by which the weighted low-frequency power may exceed white noise's and still count as noise
#: (white noise passes about 99 % of the time; a tile of the benchmark's classes at 64 px almost never does).
LOW_BAND_Z = 3.0
#: The spectral peak test's margin over ``log(bins)`` (false alarm about exp(-PEAK_MARGIN) per noise tile).
PEAK_MARGIN = 9.0
#: A tile whose spread is below this fraction of its level (or exactly zero) is constant.
CONSTANT_FRACTION = 1e-4


def structureless(tiles: numpy.typing.ArrayLike) -> _NDArray:
    """Which tiles (n, t, t) are constant or white noise around a level or a gradient; bool (n,).

    Parameters
    ----------
    tiles : array, shape (n, rows, cols)
        The tiles as cut from the image (not resampled: resampling correlates noise).

    Returns
    -------
    ndarray of bool, shape (n,)

    Notes
    -----
    See the module docstring for the test and its false-alarm rate.

    Examples
    --------
    >>> rng = numpy.random.default_rng(0)
    >>> y, x = numpy.mgrid[0:32, 0:32]
    >>> fringes = 10 + numpy.cos(2 * numpy.pi * x / 5) + rng.normal(scale=0.5, size=(32, 32))
    >>> noise = rng.poisson(10.0, size=(32, 32))
    >>> structureless(numpy.stack([fringes, noise, numpy.zeros((32, 32))])).tolist()
    [False, True, True]
    """
    stack = numpy.asarray(tiles, dtype=numpy.float32)
    if stack.ndim != 3:
        raise ValueError(f"tiles must be a stack (n, rows, cols), got shape {stack.shape}")
    n, rows, cols = stack.shape
    if min(rows, cols) < 4:
        raise ValueError(f"tiles must be at least 4 px on a side for the structure test, got {rows} x {cols}")
    out = numpy.empty(n, dtype=bool)
    for begin in range(0, n, CHUNK):
        out[begin:begin + CHUNK] = _structureless_chunk(stack[begin:begin + CHUNK])
    return out


#: Tiles per chunk (the spectra of a few hundred tiles stay in cache).
CHUNK = 256


def _structureless_chunk(stack: _NDArray) -> _NDArray:
    from scipy import fft

    _, rows, cols = stack.shape
    level = numpy.abs(stack.mean(axis=(1, 2), dtype=numpy.float64))
    residual = _without_plane(stack)
    spread = residual.std(axis=(1, 2), dtype=numpy.float64)
    constant = spread <= CONSTANT_FRACTION * level + 1e-12
    spectrum = fft.rfft2(residual, workers=-1)
    power = (spectrum.real**2 + spectrum.imag**2).reshape(len(stack), -1)
    low, high, nonzero = _bands(rows, cols)
    noise_power = numpy.maximum(power[:, high].mean(axis=1, dtype=numpy.float64), 1e-300)
    # the low band's power weighted as a probe-blurred signal would put it there, against white noise's (each bin exponential)
    excess = (power @ low).astype(numpy.float64) / noise_power - float(low.sum())
    standard_error = math.sqrt(float((low**2).sum()) + float(low.sum()) ** 2 / float(high.sum()))
    no_low_excess = excess < LOW_BAND_Z * standard_error
    power = power[:, nonzero]
    bins = power.shape[1]
    flat_spectrum = power.max(axis=1) < (math.log(bins) + PEAK_MARGIN) * numpy.maximum(power.mean(axis=1, dtype=numpy.float64), 1e-300)
    return typing.cast(_NDArray, constant | (no_low_excess & flat_spectrum))


@functools.lru_cache(maxsize=8)
def _bands(rows: int, cols: int) -> tuple[_NDArray, _NDArray, _NDArray]:
    """Masks over the rfft2 bins of a tile: the low band, the high band, every bin but zero frequency."""
    radius = numpy.sqrt(numpy.fft.fftfreq(rows)[:, None] ** 2 + numpy.fft.rfftfreq(cols)[None, :] ** 2).ravel()
    weights = numpy.where(radius > 0, numpy.exp(-0.5 * (radius / LOW_BAND) ** 2), 0.0).astype(numpy.float32)
    return weights, radius >= HIGH_BAND, radius > 0


def _without_plane(stack: _NDArray) -> _NDArray:
    """Each tile minus its least-squares plane (level and linear gradient), float32.

    With centred coordinates the level and the two slopes are uncorrelated, so each is a plain projection.
    """
    _, rows, cols = stack.shape
    y = (numpy.arange(rows) - (rows - 1) / 2)[:, None]
    x = (numpy.arange(cols) - (cols - 1) / 2)[None, :]
    level = stack.mean(axis=(1, 2), keepdims=True, dtype=numpy.float64)
    slope_y = (stack * y).sum(axis=(1, 2), keepdims=True, dtype=numpy.float64) / (cols * float((y**2).sum()))
    slope_x = (stack * x).sum(axis=(1, 2), keepdims=True, dtype=numpy.float64) / (rows * float((x**2).sum()))
    return typing.cast(_NDArray, (stack - level - slope_y * y - slope_x * x).astype(numpy.float32))
