"""A texture-feature baseline: what a tile's Fourier transform and grey levels say, with no learning.

For every tile (standardised, Hann-windowed): the log power in 12 rings of
spatial frequency, how peaked each ring is (a lattice puts its power in a few
spots, an amorphous film spreads it), how unevenly the power is spread over
direction, and the skewness, kurtosis and gradient energy of its grey levels.
Rotation and flip invariant by construction; the benchmark compares it with
the pretrained backbone on the same classifier.
"""

from __future__ import annotations

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
    stack = numpy.asarray(tiles, dtype=numpy.float64)
    if stack.ndim != 3:
        raise ValueError(f"tiles must be a stack (n, rows, cols), got shape {stack.shape}")
    n, rows, cols = stack.shape
    if min(rows, cols) < 4:
        raise ValueError(f"tiles must be at least 4 px on a side for texture features, got {rows} x {cols}")
    mean = stack.mean(axis=(1, 2), keepdims=True)
    std = numpy.maximum(stack.std(axis=(1, 2), keepdims=True), 1e-6)
    standard = (stack - mean) / std
    window = numpy.outer(numpy.hanning(rows), numpy.hanning(cols))
    power = numpy.abs(numpy.fft.rfft2(standard * window)) ** 2
    fy = numpy.fft.fftfreq(rows)[:, None]
    fx = numpy.fft.rfftfreq(cols)[None, :]
    radius = numpy.sqrt(fy**2 + fx**2)
    edges = numpy.geomspace(1.0 / max(rows, cols), 0.5, RINGS + 1)
    ring = numpy.digitize(radius, edges) - 1  # -1 below the first ring (the mean), RINGS beyond Nyquist
    direction = numpy.mod(numpy.arctan2(fy, fx) + numpy.zeros_like(radius), numpy.pi)  # broadcast to the full frequency grid
    sector = numpy.minimum((direction / numpy.pi * SECTORS).astype(int), SECTORS - 1)
    flat = power.reshape(n, -1)
    ring_flat = ring.ravel()
    log_power = numpy.empty((n, RINGS))
    peakiness = numpy.empty((n, RINGS))
    for index in range(RINGS):
        members = flat[:, ring_flat == index]
        if members.shape[1] == 0:
            log_power[:, index] = 0.0
            peakiness[:, index] = 0.0
            continue
        ring_mean = members.mean(axis=1) + 1e-9
        log_power[:, index] = numpy.log(ring_mean)
        peakiness[:, index] = numpy.log((members.max(axis=1) + 1e-9) / ring_mean)
    inside = (ring_flat >= 0) & (ring_flat < RINGS)
    sector_power = numpy.stack([flat[:, inside & (sector.ravel() == s)].sum(axis=1) for s in range(SECTORS)], axis=1) + 1e-9
    sector_power_sorted = numpy.sort(sector_power, axis=1)  # sorted: a turn of the tile permutes sectors, not the features
    anisotropy = numpy.log(sector_power_sorted / sector_power.mean(axis=1, keepdims=True))
    skew = (standard**3).mean(axis=(1, 2))
    kurtosis = (standard**4).mean(axis=(1, 2)) - 3
    gradient = numpy.log(numpy.mean(numpy.diff(standard, axis=1) ** 2, axis=(1, 2)) + numpy.mean(numpy.diff(standard, axis=2) ** 2, axis=(1, 2)) + 1e-9)
    stats = numpy.stack([skew, kurtosis, gradient, anisotropy[:, -1] - anisotropy[:, 0]], axis=1)
    return numpy.concatenate([log_power, peakiness, anisotropy, stats], axis=1).astype(numpy.float32)
