"""Which tiles to label next.

:func:`suggest_uncertain_tiles` (what ``TileMap.suggestions`` uses): tiles
of no class (beyond the unknown distance) first, then the least sure tiles
(the smallest margin between the two most probable classes of the tile's
own probabilities, before its neighbours had their say) *inside* regions,
one per k-means group of the features so that several suggestions are
different kinds of tile.  Tiles on a boundary of the map (a grid neighbour
has another class) come only after every tile inside a region: half one
class and half another, such a tile labelled by its majority class pulls
that class's prototype towards the other class.

:func:`suggest_tiles` is the first release's rule: groups ranked by the
mean uncertainty and novelty of their tiles (times the square root of their
size), the most typical tile of the best group.  On scenes like the
benchmark's (other seeds) it did not beat labelling random tiles once the
neighbours' prior was on: a group stayed "uncertain" after its typical tile
was labelled, and the loop labelled it again and again.
"""

from __future__ import annotations

import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]

#: Groups per class in the k-means (at least MIN_GROUPS).
GROUPS_PER_CLASS = 3
MIN_GROUPS = 8


def tile_scores(probabilities: _NDArray, distances: _NDArray, unknown_distance: float) -> _NDArray:
    """Per tile: uncertainty (1 - margin of the top two probabilities) plus novelty (distance / unknown distance, at most 1.5).

    Examples
    --------
    >>> tile_scores(numpy.array([[0.5, 0.5], [1.0, 0.0]]), numpy.array([0.1, 2.0]), 1.0).tolist()
    [1.1, 1.5]
    """
    ranked = numpy.sort(probabilities, axis=1)
    margin = ranked[:, -1] - (ranked[:, -2] if probabilities.shape[1] > 1 else 0.0)
    novelty = numpy.clip(distances / max(unknown_distance, 1e-9) if numpy.isfinite(unknown_distance) else distances / max(float(numpy.max(distances)), 1e-9), 0, 1.5)
    return typing.cast(_NDArray, (1 - margin) + novelty)


def kmeans(features: _NDArray, groups: int, *, iterations: int = 15, seed: int = 0) -> tuple[_NDArray, _NDArray]:
    """Plain k-means with k-means++ starts; returns (group of every row, centres).

    Examples
    --------
    >>> points = numpy.array([[0.0], [0.1], [5.0], [5.1]])
    >>> labels, centres = kmeans(points, 2)
    >>> bool(labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2])
    True
    """
    rng = numpy.random.default_rng(seed)
    n = len(features)
    groups = max(1, min(groups, n))
    centres = [features[int(rng.integers(n))]]
    closest = ((features - centres[0]) ** 2).sum(axis=1)
    for _ in range(groups - 1):
        total = float(closest.sum())
        pick = int(rng.choice(n, p=closest / total)) if total > 0 else int(rng.integers(n))
        centres.append(features[pick])
        closest = numpy.minimum(closest, ((features - features[pick]) ** 2).sum(axis=1))
    centre_array = numpy.stack(centres)
    labels = numpy.zeros(n, dtype=int)
    for _ in range(iterations):
        squared = (features**2).sum(axis=1)[:, None] - 2 * features @ centre_array.T + (centre_array**2).sum(axis=1)[None, :]
        labels = numpy.argmin(squared, axis=1)
        for g in range(groups):
            members = features[labels == g]
            if len(members):
                centre_array[g] = members.mean(axis=0)
    return labels, centre_array


def boundary_tiles(grid_classes: _NDArray) -> _NDArray:
    """Tiles (grid shape, raveled) with a grid neighbour (up, down, left, right) of another class.

    Examples
    --------
    >>> boundary_tiles(numpy.array([[0, 0, 1], [0, 0, 1]])).tolist()
    [False, True, True, False, True, True]
    """
    padded = numpy.pad(grid_classes, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    differs = (padded[:-2, 1:-1] != centre) | (padded[2:, 1:-1] != centre) | (padded[1:-1, :-2] != centre) | (padded[1:-1, 2:] != centre)
    return typing.cast(_NDArray, differs.ravel())


def suggest_tiles(features: _NDArray, probabilities: _NDArray, distances: _NDArray, unknown_distance: float, k: int = 3, *,
                  exclude: typing.Collection[int] = (), boundary: _NDArray | None = None) -> list[int]:
    """The ``k`` tiles most worth labelling next, best first (see the module docstring).

    Parameters
    ----------
    features : ndarray, shape (n, d)
        Standardised tile features (``TileMap.features``).
    probabilities : ndarray, shape (n, classes)
    distances : ndarray, shape (n,)
        Distance of each tile to its nearest prototype.
    unknown_distance : float
        The classification's unknown distance (novelty is measured against it).
    k : int
        How many suggestions.
    exclude : collection of int
        Tiles already labelled: never suggested, and their groups count half.
    boundary : ndarray of bool, shape (n,), optional
        Tiles on a class boundary of the map (:func:`boundary_tiles`): suggested only when their group has no other.

    Examples
    --------
    >>> rng = numpy.random.default_rng(0)
    >>> features = numpy.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (5, 2))])
    >>> probabilities = numpy.concatenate([numpy.tile([0.99, 0.01], (20, 1)), numpy.tile([0.5, 0.5], (5, 1))])
    >>> suggest_tiles(features, probabilities, numpy.ones(25), 2.0, 1)[0] >= 20
    True
    """
    if k < 1:
        raise ValueError(f"k must be at least 1 suggestion, got {k}")
    n = len(features)
    excluded = {int(i) for i in exclude}
    candidates = numpy.array([i for i in range(n) if i not in excluded], dtype=int)
    if not len(candidates):
        return []
    scores = tile_scores(probabilities, distances, unknown_distance)
    groups = max(MIN_GROUPS, GROUPS_PER_CLASS * probabilities.shape[1])
    labels, centres = kmeans(features, groups)
    chosen: list[int] = []
    group_scores = []
    for g in range(len(centres)):
        members = numpy.flatnonzero(labels == g)
        free = numpy.setdiff1d(members, list(excluded), assume_unique=True) if excluded else members
        if not len(free):
            continue
        score = float(scores[members].mean()) * numpy.sqrt(len(members) / n)
        if len(free) < len(members):
            score *= 0.5
        if boundary is not None:
            # a group made of boundary tiles is the mixed tiles between two classes, not a kind of tile of its own
            score *= 0.25 + 0.75 * float(numpy.mean(~boundary[members]))
        inside = free[~boundary[free]] if boundary is not None and (~boundary[free]).any() else free
        typical = inside[int(numpy.argmin(((features[inside] - centres[g]) ** 2).sum(axis=1)))]
        group_scores.append((score, int(typical)))
    for _, typical in sorted(group_scores, key=lambda pair: -pair[0])[:k]:
        chosen.append(typical)
    # fewer groups than asked for: the best-scoring remaining tiles
    for index in candidates[numpy.argsort(-scores[candidates], kind="stable")]:
        if len(chosen) >= k:
            break
        if int(index) not in chosen:
            chosen.append(int(index))
    return chosen


def suggest_uncertain_tiles(features: _NDArray, probabilities: _NDArray, distances: _NDArray, unknown_distance: float, k: int = 3, *,
                            exclude: typing.Collection[int] = (), boundary: _NDArray | None = None) -> list[int]:
    """The ``k`` tiles most worth labelling next: the least sure inside regions, tiles of no class first, one per kind of tile.

    What :meth:`TileMap.suggestions <nion_autoem_fewshot.classifier.TileMap.suggestions>` uses.
    A tile's own uncertainty (1 - the margin between its two most probable
    classes, from its own features, before its neighbours had their say)
    ranks it; tiles farther than ``unknown_distance`` from every prototype
    (a kind of tile no class covers) come first; tiles on a class boundary
    of the map, half one class and half another, come only after every tile
    inside a region.  The ``k`` suggestions come from different k-means
    groups of the features, so they are different kinds of tile.

    Parameters
    ----------
    features : ndarray, shape (n, d)
        Standardised tile features (``TileMap.features``), for the groups.
    probabilities : ndarray, shape (n, classes)
        Each tile's own class probabilities (``TileMap.own_probabilities``).
    distances : ndarray, shape (n,)
        Distance of each tile to its nearest prototype.
    unknown_distance : float
        Tiles farther than this from every prototype are of no class.
    k : int
        How many suggestions.
    exclude : collection of int
        Tiles already labelled: never suggested.
    boundary : ndarray of bool, shape (n,), optional
        Tiles on a class boundary of the map (:func:`boundary_tiles`).

    Examples
    --------
    >>> probabilities = numpy.array([[0.99, 0.01], [0.55, 0.45], [0.6, 0.4], [0.52, 0.48]])
    >>> features = numpy.array([[0.0], [1.0], [5.0], [1.1]])
    >>> suggest_uncertain_tiles(features, probabilities, numpy.ones(4), 2.0, 2, boundary=numpy.array([False, False, False, True]))
    [1, 2]
    """
    if k < 1:
        raise ValueError(f"k must be at least 1 suggestion, got {k}")
    n = len(features)
    excluded = numpy.zeros(n, dtype=bool)
    excluded[[int(i) for i in exclude if 0 <= int(i) < n]] = True
    ranked = numpy.sort(probabilities, axis=1)
    margin = ranked[:, -1] - (ranked[:, -2] if probabilities.shape[1] > 1 else 0.0)
    novel = distances > unknown_distance
    inside = numpy.zeros(n, dtype=bool) if boundary is None else ~numpy.asarray(boundary, dtype=bool)
    # lexicographic: not excluded, novel, inside a region, then least sure
    order = numpy.lexsort((margin, ~inside, ~novel, excluded))
    order = order[~excluded[order]]
    groups = kmeans(features, min(max(MIN_GROUPS, GROUPS_PER_CLASS * probabilities.shape[1]), max(n, 1)))[0] if n else numpy.zeros(0, dtype=int)
    chosen: list[int] = []
    used: set[int] = set()
    for index in order:
        if len(chosen) >= k:
            break
        if int(groups[index]) not in used:
            chosen.append(int(index))
            used.add(int(groups[index]))
    # fewer groups than suggestions asked for: the next tiles in rank
    for index in order:
        if len(chosen) >= k:
            break
        if int(index) not in chosen:
            chosen.append(int(index))
    return chosen
