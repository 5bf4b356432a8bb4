"""What a tile's grid neighbours say about its class: a Potts prior whose strength the image chooses.

Phases, grains and particle fields span many tiles, so a tile's neighbours
are evidence about its class.  How strong that evidence is differs from
image to image: a map of large regions, where almost every neighbour agrees,
says a lone odd tile is more likely a misread; a map of scattered single
tiles says nothing.  So the strength is measured on the image itself.

- The coupling ``beta`` of a Potts model (the log odds a neighbour adds to
  its own class) is fitted to the unsmoothed map by maximum
  pseudo-likelihood (:func:`potts_coupling`): ``beta`` near 0 where the
  classes are scattered, larger where they form regions.  It is capped at
  :data:`MAX_COUPLING`, so four disagreeing neighbours weigh at most
  ``exp(4 * MAX_COUPLING)`` (20) to 1 against a tile's own evidence: a lone
  tile whose own probabilities favour its class more strongly keeps it.
- One mean-field step (:func:`potts_smoothed`): each tile's probabilities
  times ``exp(beta * sum of its neighbours' probabilities)``.

:func:`smoothed`, a fixed mixing with the neighbours' mean, is the older
option (``smooth=0.5``).
"""

from __future__ import annotations

import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]

#: Largest coupling :func:`potts_coupling` returns (log odds per agreeing neighbour).
MAX_COUPLING = 0.75
#: Couplings tried by the pseudo-likelihood fit.
COUPLINGS = numpy.linspace(0.0, MAX_COUPLING, 31)


def neighbour_sums(values: _NDArray, grid_shape: tuple[int, int]) -> _NDArray:
    """For every tile (raveled grid), the sum of its up, down, left and right neighbours' rows (tiles on the edge have fewer).

    Examples
    --------
    >>> neighbour_sums(numpy.eye(2)[[0, 0, 1, 1]], (2, 2)).tolist()
    [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """
    grid = values.reshape(*grid_shape, -1)
    padded = numpy.pad(grid, ((1, 1), (1, 1), (0, 0)))
    total = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    return typing.cast(_NDArray, total.reshape(values.shape))


def potts_coupling(classes: _NDArray, grid_shape: tuple[int, int], n_classes: int, *, valid: _NDArray | None = None) -> float:
    """The Potts coupling that best explains a map of classes (maximum pseudo-likelihood), in [0, :data:`MAX_COUPLING`].

    Parameters
    ----------
    classes : ndarray of int, shape (n,)
        Class of every tile (raveled grid).
    grid_shape : (rows, cols)
        The tile grid.
    n_classes : int
        How many classes there are.
    valid : ndarray of bool, optional
        Tiles to count (others neither count nor are counted as neighbours).

    Examples
    --------
    >>> regions = numpy.repeat([0, 1], 512)  # two halves of a 32 x 32 grid
    >>> scattered = numpy.random.default_rng(0).integers(0, 2, 1024)
    >>> potts_coupling(regions, (32, 32), 2), potts_coupling(scattered, (32, 32), 2)
    (0.75, 0.0)
    """
    keep = numpy.ones(len(classes), dtype=bool) if valid is None else numpy.asarray(valid, dtype=bool)
    onehot = numpy.eye(n_classes)[classes] * keep[:, None]
    counts = neighbour_sums(onehot, grid_shape)[keep]
    own = counts[numpy.arange(len(counts)), classes[keep]]
    if not len(own):
        return 0.0
    log_likelihoods = [float(numpy.sum(beta * own - numpy.log(numpy.exp(beta * counts).sum(axis=1)))) for beta in COUPLINGS]
    return float(COUPLINGS[int(numpy.argmax(log_likelihoods))])


def potts_smoothed(probabilities: _NDArray, grid_shape: tuple[int, int], coupling: float) -> _NDArray:
    """One mean-field step of a Potts prior: each tile's probabilities times ``exp(coupling * its neighbours' summed probabilities)``.

    Examples
    --------
    >>> p = numpy.array([[0.9, 0.1]] * 4 + [[0.4, 0.6]] + [[0.9, 0.1]] * 4)
    >>> bool(potts_smoothed(p, (3, 3), 0.75)[4, 0] > 0.5), bool(potts_smoothed(p, (3, 3), 0.0)[4, 0] < 0.5)
    (True, True)
    """
    log_posterior = numpy.log(numpy.maximum(probabilities, 1e-12)) + coupling * neighbour_sums(probabilities, grid_shape)
    posterior = numpy.exp(log_posterior - log_posterior.max(axis=1, keepdims=True))
    return typing.cast(_NDArray, posterior / posterior.sum(axis=1, keepdims=True))


def smoothed(probabilities: _NDArray, grid_shape: tuple[int, int], weight: float) -> _NDArray:
    """Each tile's probabilities mixed with the mean of its grid neighbours' (up, down, left, right) with ``weight``.

    A fixed weight, whatever the image: a lone tile of a real class of its
    own is often lost at 0.5 (see :func:`potts_smoothed` for the default).

    Examples
    --------
    >>> p = numpy.array([[1.0, 0.0]] * 4 + [[0.4, 0.6]] + [[1.0, 0.0]] * 4)
    >>> smoothed(p, (3, 3), 0.5)[4].tolist()
    [0.7, 0.3]
    """
    grid = probabilities.reshape(*grid_shape, -1)
    padded = numpy.pad(grid, ((1, 1), (1, 1), (0, 0)), mode="edge")
    neighbours = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]) / 4
    return typing.cast(_NDArray, ((1 - weight) * grid + weight * neighbours).reshape(probabilities.shape))
