"""A texture-feature baseline: what a tile's Fourier transform and grey levels say, with no learning.

For every tile (standardised, Hann-windowed): the log power in 12 rings of
spatial frequency, how peaked each ring is (a lattice puts its power in a few
spots, an amorphous film spreads it), how unevenly the power is spread over
direction, and the skewness, kurtosis and gradient energy of its grey levels.
Rotation and flip invariant by construction; the benchmark compares it with
the pretrained backbone on the same classifier.
"""

from __future__ import annotations

import functools
import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]

#: Rings of spatial frequency, log-spaced from one period per tile to the Nyquist limit.
RINGS = 12
#: Directions the power is binned into (over half a turn) for the anisotropy.
SECTORS = 8


def texture_features(tiles: numpy.typing.ArrayLike) -> _NDArray:
    """Texture features of tiles (n, t, t): float32 (n, 2 * RINGS + SECTORS + 4).

    Examples
    --------
    >>> rng = numpy.random.default_rng(0)
    >>> y, x = numpy.mgrid[0:32, 0:32]
    >>> fringes = numpy.cos(2 * numpy.pi * x / 4)[None] + 0.1 * rng.normal(size=(2, 32, 32))
    >>> noise = rng.normal(size=(2, 32, 32))
    >>> f = texture_features(numpy.concatenate([fringes, noise]))
    >>> f.shape, bool(numpy.linalg.norm(f[0] - f[1]) < numpy.linalg.norm(f[0] - f[2]))
    ((4, 36), True)
    """
    stack = numpy.asarray(tiles, dtype=numpy.float32)
    if stack.ndim != 3:
        raise ValueError(f"tiles must be a stack (n, rows, cols), got shape {stack.shape}")
    n, rows, cols = stack.shape
    if min(rows, cols) < 4:
        raise ValueError(f"tiles must be at least 4 px on a side for texture features, got {rows} x {cols}")
    out = numpy.empty((n, 2 * RINGS + SECTORS + 4), dtype=numpy.float32)
    # in chunks: the power spectra of a few hundred tiles stay in cache, and memory stays flat for a 4k montage
    for begin in range(0, n, CHUNK):
        out[begin:begin + CHUNK] = _texture_chunk(stack[begin:begin + CHUNK])
    return out


#: Tiles per chunk of :func:`texture_features`.
CHUNK = 256


@functools.lru_cache(maxsize=8)
def _frequency_layout(rows: int, cols: int) -> tuple[_NDArray, _NDArray, _NDArray, _NDArray, _NDArray]:
    """For tiles of one size: the Hann window, the rfft2 bins sorted by ring with each ring's first position and size, and the sector of every in-range bin (one-hot)."""
    window = numpy.outer(numpy.hanning(rows), numpy.hanning(cols)).astype(numpy.float32)
    fy = numpy.fft.fftfreq(rows)[:, None]
    fx = numpy.fft.rfftfreq(cols)[None, :]
    radius = numpy.sqrt(fy**2 + fx**2)
    edges = numpy.geomspace(1.0 / max(rows, cols), 0.5, RINGS + 1)
    ring = (numpy.digitize(radius, edges) - 1).ravel()  # -1 below the first ring (the mean), RINGS beyond Nyquist
    direction = numpy.mod(numpy.arctan2(fy, fx) + numpy.zeros_like(radius), numpy.pi)  # broadcast to the full frequency grid
    sector = numpy.minimum((direction / numpy.pi * SECTORS).astype(int), SECTORS - 1).ravel()
    inside = (ring >= 0) & (ring < RINGS)
    order = numpy.flatnonzero(inside)[numpy.argsort(ring[inside], kind="stable")]
    sizes = numpy.bincount(ring[inside], minlength=RINGS)
    starts = numpy.concatenate([[0], numpy.cumsum(sizes)[:-1]])
    sectors = numpy.zeros((radius.size, SECTORS), dtype=numpy.float32)
    sectors[numpy.flatnonzero(inside), sector[inside]] = 1.0
    return window, order, starts, sizes, sectors


def _texture_chunk(stack: _NDArray) -> _NDArray:
    from scipy import fft

    n, rows, cols = stack.shape
    mean = stack.mean(axis=(1, 2), keepdims=True, dtype=numpy.float64)
    std = numpy.maximum(stack.std(axis=(1, 2), keepdims=True, dtype=numpy.float64), 1e-6)
    standard = ((stack - mean) / std).astype(numpy.float32)
    window, order, starts, sizes, sectors = _frequency_layout(rows, cols)
    spectrum = fft.rfft2(standard * window, workers=-1)
    flat = (spectrum.real**2 + spectrum.imag**2).reshape(n, -1)
    by_ring = flat[:, order]
    log_power = numpy.zeros((n, RINGS))
    peakiness = numpy.zeros((n, RINGS))
    present = sizes > 0  # the innermost rings of a small tile can hold no frequency bin
    ring_mean = numpy.add.reduceat(by_ring, starts[present], axis=1, dtype=numpy.float64) / sizes[present] + 1e-9
    log_power[:, present] = numpy.log(ring_mean)
    peakiness[:, present] = numpy.log((numpy.maximum.reduceat(by_ring, starts[present], axis=1) + 1e-9) / ring_mean)
    sector_power = (flat @ sectors).astype(numpy.float64) + 1e-9
    sector_power_sorted = numpy.sort(sector_power, axis=1)  # sorted: a turn of the tile permutes sectors, not the features
    anisotropy = numpy.log(sector_power_sorted / sector_power.mean(axis=1, keepdims=True))
    squared = standard * standard  # products, not powers: a float power is several times slower
    skew = (squared * standard).mean(axis=(1, 2), dtype=numpy.float64)
    kurtosis = (squared * squared).mean(axis=(1, 2), dtype=numpy.float64) - 3
    down, across = numpy.diff(standard, axis=1), numpy.diff(standard, axis=2)
    gradient = numpy.log((down * down).mean(axis=(1, 2), dtype=numpy.float64) + (across * across).mean(axis=(1, 2), dtype=numpy.float64) + 1e-9)
    stats = numpy.stack([skew, kurtosis, gradient, anisotropy[:, -1] - anisotropy[:, 0]], axis=1)
    return numpy.concatenate([log_power, peakiness, anisotropy, stats], axis=1).astype(numpy.float32)
