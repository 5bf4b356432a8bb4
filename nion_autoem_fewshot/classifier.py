"""Prototypical few-shot classification of tiles, with an "unknown" answer.

1. Every support tile is augmented (8 flips and quarter turns, each once as
   is and once with a small scale change, a contrast change and noise), so
   two clicked tiles stand for the ways that class can look.
2. Tiles and augmented examples go through the backbone and the texture
   baseline (``features="combined"``, the default; or either alone); the
   features are standardised over this image's tiles, so a feature that
   does not vary across the image does not drown the others, and the two
   blocks are weighted to count equally.
3. Each class's prototype is the mean of its augmented examples; a tile's
   distance to a prototype is the RMS difference of standardised features.
   Probabilities are a softmax of squared distances at the image's typical
   spread; a tile farther than ``unknown_distance`` from every prototype is
   ``unknown`` (class -1).
4. Optionally (``fine_tune=True``) a linear head is trained on the augmented
   examples, starting from the prototypes, and gives the probabilities.
5. The grid neighbours' probabilities count as a prior whose strength the
   image's own map chooses (``smooth="auto"``, the default; see
   :mod:`nion_autoem_fewshot.neighbours`).
6. A tile with no structure, only noise around a level or nothing at all
   (:mod:`nion_autoem_fewshot.structure`), is ``unknown`` unless a class
   has such an example itself: standardised one by one, a tile of noise
   would otherwise look like anything.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy
import numpy.typing

from nion_autoem_fewshot import suggest
from nion_autoem_fewshot.backbone import Backbone
from nion_autoem_fewshot.backbone import check_tile_size
from nion_autoem_fewshot.backbone import load_backbone
from nion_autoem_fewshot.neighbours import potts_coupling
from nion_autoem_fewshot.neighbours import potts_smoothed
from nion_autoem_fewshot.neighbours import smoothed
from nion_autoem_fewshot.structure import structureless
from nion_autoem_fewshot.support import SupportSet
from nion_autoem_fewshot.texture import texture_features
from nion_autoem_fewshot.tiles import TileGrid
from nion_autoem_fewshot.tiles import cut_tiles
from nion_autoem_fewshot.tiles import tile_size_px

_NDArray = numpy.typing.NDArray[typing.Any]

Features = typing.Literal["combined", "backbone", "texture"]
#: What ``features`` may be.
FEATURE_KINDS = ("combined", "backbone", "texture")
Smooth = float | typing.Literal["auto"]
#: Columns of :meth:`TileMap.to_rows`, the per-tile CSV.
ROW_COLUMNS = ("tile", "row", "col", "y_px", "x_px", "y_nm", "x_nm", "class", "probability", "distance")
#: Class index of a tile far from every prototype.
UNKNOWN = -1
#: The automatic unknown distance: this many times the largest spread of a class's augmented examples around its prototype.
UNKNOWN_SPREAD_FACTOR = 3.0


@dataclasses.dataclass(frozen=True, eq=False)
class TileMap:
    """Every tile's class, probability and distance to the nearest prototype.

    Parameters
    ----------
    grid : TileGrid
        The tiles and where they lie.
    class_names : tuple of str
        The support set's classes; ``classes`` index into it.
    classes : ndarray of int, shape (n,)
        Class of each tile, :data:`UNKNOWN` (-1) for tiles far from every prototype.
    probabilities : ndarray, shape (n, classes)
        Class probabilities of each tile.
    distances : ndarray, shape (n,)
        Distance to the nearest prototype (RMS of standardised features).
    unknown_distance : float
        Distance beyond which a tile is unknown.
    features : ndarray, shape (n, d)
        The tiles' standardised features (for suggestions).
    labelled : tuple of int
        Tiles that are support examples themselves (never suggested).
    structureless : ndarray of bool, shape (n,), optional
        Tiles with no structure (noise around a level, or constant; see
        :mod:`nion_autoem_fewshot.structure`); they are unknown unless a class
        has such an example.
    coupling : float
        Strength of the neighbours' prior used (0: none; see :mod:`nion_autoem_fewshot.neighbours`).
    own_probabilities : ndarray, shape (n, classes), optional
        Each tile's probabilities from its own features, before its neighbours had their say (for suggestions).
    """

    grid: TileGrid
    class_names: tuple[str, ...]
    classes: _NDArray
    probabilities: _NDArray
    distances: _NDArray
    unknown_distance: float
    features: _NDArray
    labelled: tuple[int, ...] = ()
    structureless: _NDArray | None = None
    coupling: float = 0.0
    own_probabilities: _NDArray | None = None

    def __len__(self) -> int:
        return len(self.classes)

    def class_of(self, index: int) -> str:
        """The class name of one tile (``"unknown"`` for -1)."""
        k = int(self.classes[index])
        return "unknown" if k == UNKNOWN else self.class_names[k]

    def counts(self) -> dict[str, int]:
        """Tiles per class, ``"unknown"`` last (always present)."""
        values = numpy.bincount(self.classes + 1, minlength=len(self.class_names) + 1)
        return {**{name: int(values[k + 1]) for k, name in enumerate(self.class_names)}, "unknown": int(values[0])}

    def area_fractions(self) -> dict[str, float]:
        """Fraction of the image's pixels in each class (overlapping tiles counted once), ``"unknown"`` last."""
        weights = self.grid.pixel_weights().astype(float)
        total = float(weights.sum())
        per_class = numpy.bincount(self.classes + 1, weights=weights, minlength=len(self.class_names) + 1) / total
        return {**{name: float(per_class[k + 1]) for k, name in enumerate(self.class_names)}, "unknown": float(per_class[0])}

    def class_image(self) -> _NDArray:
        """Class index of every image pixel (-1 unknown), shape of the image."""
        return self.grid.to_map(self.classes)

    def suggestions(self, k: int = 3, *, exclude: typing.Iterable[int] = ()) -> list[int]:
        """Tiles to label next: tiles of no class first, then the least sure tiles inside regions, one per kind of tile.

        See :func:`nion_autoem_fewshot.suggest.suggest_uncertain_tiles`.
        """
        boundary = suggest.boundary_tiles(self.grid.to_map(self.classes, size="grid"))
        own = self.probabilities if self.own_probabilities is None else self.own_probabilities
        return suggest.suggest_uncertain_tiles(self.features, own, self.distances, self.unknown_distance, k,
                                               exclude=set(self.labelled) | {int(i) for i in exclude}, boundary=boundary)

    def to_rows(self) -> list[tuple[typing.Any, ...]]:
        """One row per tile (columns :data:`ROW_COLUMNS`), for a CSV; nm are None without a calibration."""
        rows_cols = numpy.unravel_index(numpy.arange(len(self)), self.grid.shape)
        centres = self.grid.centres_px
        centres_nm = self.grid.centres_nm
        out = []
        for i in range(len(self)):
            k = int(self.classes[i])
            probability = float(self.probabilities[i].max()) if k == UNKNOWN else float(self.probabilities[i, k])
            y_nm, x_nm = (None, None) if centres_nm is None else (float(centres_nm[i, 0]), float(centres_nm[i, 1]))
            out.append((i, int(rows_cols[0][i]), int(rows_cols[1][i]), float(centres[i, 0]), float(centres[i, 1]), y_nm, x_nm,
                        self.class_of(i), probability, float(self.distances[i])))
        return out


# --- augmentation and features ----------------------------------------------------------


def augment(tiles: _NDArray, *, seed: int = 0) -> _NDArray:
    """Every tile in 16 versions: 8 flips and quarter turns, each as is and with a small scale, contrast and noise change.

    Examples
    --------
    >>> augment(numpy.zeros((2, 16, 16))).shape
    (32, 16, 16)
    """
    rng = numpy.random.default_rng(seed)
    tiles = numpy.asarray(tiles, dtype=numpy.float32)
    dihedral = [numpy.rot90(flipped, turns, axes=(1, 2)) for flipped in (tiles, tiles[:, :, ::-1]) for turns in range(4)]
    out = []
    for version in dihedral:
        out.append(version)
        out.append(_jitter(version, rng))
    return numpy.ascontiguousarray(numpy.stack(out, axis=1).reshape(-1, *tiles.shape[1:]))


def _jitter(tiles: _NDArray, rng: numpy.random.Generator) -> _NDArray:
    """A small zoom (in or out by up to 10 %), a contrast change and noise at a few % of the tile's spread."""
    from scipy import ndimage

    size = tiles.shape[-1]
    out = numpy.empty_like(tiles)
    for index, tile in enumerate(tiles):
        zoom = rng.uniform(0.9, 1.1)
        zoomed = ndimage.zoom(tile, zoom, order=1, mode="reflect")
        if zoomed.shape[0] >= size:
            start = (zoomed.shape[0] - size) // 2
            zoomed = zoomed[start:start + size, start:start + size]
        else:
            zoomed = numpy.pad(zoomed, ((0, size - zoomed.shape[0]), (0, size - zoomed.shape[1])), mode="reflect")
        spread = float(tile.std()) or 1.0
        out[index] = zoomed * rng.uniform(0.8, 1.25) + rng.normal(scale=0.05 * spread, size=zoomed.shape)
    return out


def _resample(tiles: _NDArray, size: int) -> _NDArray:
    """Tiles resampled to ``size`` px (same area in nm at another pixel size)."""
    import torch

    tensor = torch.from_numpy(numpy.ascontiguousarray(tiles, dtype=numpy.float32)).unsqueeze(1)
    mode = "area" if tiles.shape[-1] > size else "bilinear"
    resized = torch.nn.functional.interpolate(tensor, size=(size, size), mode=mode)
    return resized.squeeze(1).numpy()


def tile_features(tiles: _NDArray, features: Features = "combined", *, backbone: Backbone | None = None) -> _NDArray:
    """Features of tiles (n, t, t) from the backbone, the texture baseline, or both side by side (``"combined"``).

    Examples
    --------
    >>> tile_features(numpy.zeros((3, 32, 32)), "texture").shape
    (3, 36)
    >>> tile_features(numpy.zeros((3, 32, 32)), "combined").shape
    (3, 164)
    """
    if features == "backbone":
        return (backbone or load_backbone()).features(tiles)
    if features == "texture":
        return texture_features(tiles)
    if features == "combined":
        return numpy.concatenate([(backbone or load_backbone()).features(tiles), texture_features(tiles)], axis=1)
    raise ValueError(f"features must be one of {FEATURE_KINDS}, got {features!r}")


def feature_blocks(features: Features, dims: int) -> tuple[int, ...]:
    """Lengths of the blocks in a feature vector of ``dims`` numbers: the backbone's and the texture's for ``"combined"``, else one.

    Examples
    --------
    >>> feature_blocks("combined", 164), feature_blocks("texture", 36)
    ((128, 36), (36,))
    """
    if features == "combined":
        texture = texture_features(numpy.zeros((1, 8, 8))).shape[1]
        return (dims - texture, texture)
    return (dims,)


_SUPPORT_CACHE: dict[tuple[str, str, str], tuple[_NDArray, _NDArray]] = {}


def support_features(support: SupportSet, features: Features = "combined", *, backbone: Backbone | None = None) -> tuple[_NDArray, _NDArray]:
    """Features of the support set's augmented examples and their class indices (kept while the set is unchanged).

    Returns
    -------
    features : ndarray, shape (examples * 16, d)
    classes : ndarray of int, shape (examples * 16,)
    """
    model = backbone or (load_backbone() if features != "texture" else None)
    # by content, not identity: a new set with the same tiles reuses the features, a changed one never does
    key = (support.fingerprint, features, f"{model.name}:{model.metadata.get('weights_sha256')}" if model else "")
    cached = _SUPPORT_CACHE.get(key)
    if cached is not None:
        return cached
    stacks, classes = [], []
    for k, name in enumerate(support.class_names):
        augmented = augment(support.tiles(name))
        stacks.append(augmented)
        classes.append(numpy.full(len(augmented), k))
    result = tile_features(numpy.concatenate(stacks), features, backbone=model), numpy.concatenate(classes)
    if len(_SUPPORT_CACHE) > 16:
        _SUPPORT_CACHE.clear()
    _SUPPORT_CACHE[key] = result
    return result


# --- classification -----------------------------------------------------------------


def classify_tiles(image: numpy.typing.ArrayLike, support: SupportSet, *, tile_px: int | None = None, tile_nm: float | None = None,
                   pixel_size_nm: float | None = None, overlap: float = 0.0, features: Features = "combined", unknown_distance: float | None = None,
                   fine_tune: bool = False, smooth: Smooth = "auto", backbone: Backbone | None = None, origin_nm: tuple[float, float] = (0.0, 0.0)) -> TileMap:
    """Classify every tile of an image with a few labelled examples per class.

    Parameters
    ----------
    image : array, shape (rows, cols)
        The frame.
    support : SupportSet
        The labelled example tiles.
    tile_px, tile_nm : optional
        Tile size; by default the support set's (in nm when both the set and the image are calibrated).
        Must match the support set's size.
    pixel_size_nm : float, optional
        The image's calibration (needed for ``tile_nm`` and for positions in nm).
    overlap : float
        Fraction of a tile shared with its neighbour, in [0, 1).
    features : ``"combined"``, ``"backbone"`` or ``"texture"``
        The pretrained backbone and the texture baseline side by side (the default), or either alone.
    unknown_distance : float, optional
        Tiles farther than this from every prototype are unknown; None chooses it from
        the support set (``math.inf`` never answers unknown).
    fine_tune : bool
        Train a light linear head on the augmented examples for the probabilities.
    smooth : ``"auto"`` or float
        ``"auto"``: the grid neighbours are a prior whose strength the image's own map chooses
        (:func:`~nion_autoem_fewshot.neighbours.potts_smoothed`; about none where classes are scattered);
        a number in [0, 1] mixes each tile's probabilities with its neighbours' by that fixed weight
        (:func:`~nion_autoem_fewshot.neighbours.smoothed`); 0 treats every tile on its own.
    backbone : Backbone, optional
        A loaded backbone; None uses the shipped one.
    origin_nm : (y, x)
        The image's calibration offsets (centre of its first pixel in nm).

    Returns
    -------
    TileMap

    Raises
    ------
    ValueError
        For a class without examples, tiles smaller than the backbone reads, a
        size in nm without a calibration, or a tile size other than the support set's.

    Warns
    -----
    IdenticalExamplesWarning
        When a class's examples are all the same tile.

    Examples
    --------
    >>> from nion_autoem_fewshot.tiles import cut_tiles
    >>> from nion_autoem_fewshot.synthetic import interface_scene, tile_truth
    >>> scene = interface_scene((256, 256), seed=1000)
    >>> grid = cut_tiles(scene.image, tile_px=32)
    >>> truth, pure = tile_truth(scene.labels, grid.origins_px, 32)
    >>> picks = {name: [int(i) for i in numpy.flatnonzero(pure & (truth == k))[:2]] for k, name in enumerate(scene.class_names)}
    >>> tile_map = classify_tiles(scene.image, SupportSet.from_grid(grid, picks))
    >>> bool(numpy.mean(tile_map.classes[pure] == truth[pure]) > 0.8), sorted(tile_map.counts())
    (True, ['amorphous', 'honeycomb', 'rock salt', 'unknown'])
    """
    support.check()
    if tile_px is None and tile_nm is None:
        if support.tile_nm is not None and pixel_size_nm is not None:
            tile_nm = support.tile_nm
        else:
            tile_px = support.tile_px
    size = tile_size_px(tile_px=tile_px, tile_nm=tile_nm, pixel_size_nm=pixel_size_nm)
    support.check_tile_size(size, tile_nm)
    if features not in FEATURE_KINDS:
        raise ValueError(f"features must be one of {FEATURE_KINDS}, got {features!r}")
    if features != "texture":
        check_tile_size(min(size, support.tile_px or size))
    grid = cut_tiles(image, tile_px=size, pixel_size_nm=pixel_size_nm, overlap=overlap, origin_nm=origin_nm)
    query_tiles = grid.tiles if support.tile_px in (None, size) else _resample(grid.tiles, int(support.tile_px))
    model = backbone or (load_backbone() if features != "texture" else None)
    query = tile_features(query_tiles, features, backbone=model)
    examples, example_classes = support_features(support, features, backbone=model)
    labelled = _labelled(grid.tiles, support) if support.tile_px == size else ()
    # on the tiles as cut (resampling would correlate their noise); the examples in their own pixels
    empty = structureless(grid.tiles)
    empty_classes = numpy.array([bool(structureless(support.tiles(name)).any()) for name in support.class_names])
    return _classify(grid, support.class_names, query, examples, example_classes, unknown_distance=unknown_distance, fine_tune=fine_tune, smooth=smooth,
                     labelled=labelled, blocks=feature_blocks(features, query.shape[1]), empty=empty, empty_classes=empty_classes)


def _labelled(tiles: _NDArray, support: SupportSet) -> tuple[int, ...]:
    """Indices of tiles that are themselves support examples (matched by content)."""
    known = {hash(tile.tobytes()) for name in support.class_names for tile in support.tiles(name)}
    return tuple(i for i, tile in enumerate(tiles) if hash(tile.tobytes()) in known)


def _classify(grid: TileGrid, class_names: tuple[str, ...], query: _NDArray, examples: _NDArray, example_classes: _NDArray, *,
              unknown_distance: float | None, fine_tune: bool, smooth: Smooth, labelled: tuple[int, ...], blocks: tuple[int, ...] | None = None,
              empty: _NDArray | None = None, empty_classes: _NDArray | None = None) -> TileMap:
    if not (smooth == "auto" or (isinstance(smooth, (int, float)) and 0.0 <= smooth <= 1.0)):
        raise ValueError(f"smooth must be 'auto' or a weight in [0, 1] (0: every tile on its own), got {smooth!r}")
    # standardise over this image's tiles (transductive): the features that vary here decide
    centre = query.mean(axis=0)
    scale = query.std(axis=0) + 1e-3 * (float(query.std()) + 1e-6)
    dims = query.shape[1]
    # each block (backbone, texture) weighs the same in the distance, however many numbers it has
    weights = numpy.concatenate([numpy.full(size, numpy.sqrt(dims / (len(blocks) * size))) for size in blocks]) if blocks else numpy.ones(dims)
    q = (query - centre) / scale * weights
    e = (examples - centre) / scale * weights
    classes = len(class_names)
    prototypes = numpy.stack([e[example_classes == k].mean(axis=0) for k in range(classes)])
    distances = numpy.sqrt(numpy.maximum(_squared_distances(q, prototypes) / dims, 0.0))
    nearest = numpy.argmin(distances, axis=1)
    nearest_distance = distances[numpy.arange(len(q)), nearest]
    # the temperature: how far tiles typically are from their nearest prototype in this image
    temperature = max(float(numpy.median(nearest_distance**2)), 1e-6)
    if fine_tune:
        probabilities = _fine_tuned_probabilities(q, e, example_classes, prototypes)
    else:
        logits = -(distances**2 - nearest_distance[:, None] ** 2) / temperature
        probabilities = numpy.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
    if unknown_distance is None:
        unknown_distance = automatic_unknown_distance(e, example_classes, prototypes)
    if not (isinstance(unknown_distance, (int, float)) and unknown_distance > 0):
        raise ValueError(f"unknown_distance must be a positive distance (math.inf never answers unknown) or None for automatic, got {unknown_distance!r}")
    empty = numpy.zeros(len(q), dtype=bool) if empty is None else numpy.asarray(empty, dtype=bool)
    empty_classes = numpy.zeros(classes, dtype=bool) if empty_classes is None else numpy.asarray(empty_classes, dtype=bool)
    if empty.any():
        # a tile of noise can only be of a class that has a tile of noise among its examples; with none, it tells its neighbours nothing
        allowed = empty_classes if empty_classes.any() else numpy.ones(classes, dtype=bool)
        masked = numpy.where(allowed[None, :], probabilities[empty] + 1e-12, 0.0)  # + 1e-12: a far class's probability may underflow to 0
        probabilities = probabilities.copy()
        probabilities[empty] = masked / masked.sum(axis=1, keepdims=True) if empty_classes.any() else 1.0 / classes
        nearest = nearest.copy()
        nearest[empty] = numpy.argmax(probabilities[empty], axis=1)
    coupling = 0.0
    own_probabilities = probabilities
    if smooth == "auto":
        known = ~empty & (nearest_distance <= unknown_distance)
        coupling = potts_coupling(numpy.argmax(probabilities, axis=1), grid.shape, classes, valid=known)
        probabilities = potts_smoothed(probabilities, grid.shape, coupling)
    elif smooth > 0:
        probabilities = smoothed(probabilities, grid.shape, float(smooth))
    answer = numpy.argmax(probabilities, axis=1) if fine_tune or smooth != 0 else nearest
    if empty.any() and empty_classes.any():
        answer = numpy.where(empty, numpy.argmax(numpy.where(empty_classes[None, :], probabilities, -1.0), axis=1), answer)
    answer = numpy.where((nearest_distance > unknown_distance) | (empty & ~empty_classes.any()), UNKNOWN, answer)
    return TileMap(grid, class_names, answer.astype(int), probabilities, nearest_distance, float(unknown_distance), q.astype(numpy.float32), labelled,
                   structureless=empty, coupling=coupling, own_probabilities=own_probabilities)


def _squared_distances(a: _NDArray, b: _NDArray) -> _NDArray:
    return typing.cast(_NDArray, (a**2).sum(axis=1)[:, None] - 2 * a @ b.T + (b**2).sum(axis=1)[None, :])


def automatic_unknown_distance(examples: _NDArray, example_classes: _NDArray, prototypes: _NDArray) -> float:
    """The distance beyond which a tile is unlike every class, from the support set alone.

    :data:`UNKNOWN_SPREAD_FACTOR` times the largest RMS spread of a class's
    augmented examples around its prototype.  It is conservative: on the
    benchmark scenes about 1 % of the tiles of labelled classes come out
    unknown, and a kind of tile nobody labelled is often *not* unknown (it
    is closer to some prototype than that).  To find new kinds of tile, use
    the suggestions (:meth:`TileMap.suggestions`), which rank the novel ones
    first, or pass an explicit ``unknown_distance``.

    Examples
    --------
    >>> examples = numpy.array([[0.0, 0.1], [0.0, -0.1], [4.0, 0.2], [4.0, -0.2]])
    >>> prototypes = numpy.array([[0.0, 0.0], [4.0, 0.0]])
    >>> round(automatic_unknown_distance(examples, numpy.array([0, 0, 1, 1]), prototypes), 3)
    0.424
    """
    dims = examples.shape[1]
    spread = max(float(numpy.sqrt(numpy.mean(numpy.sum((examples[example_classes == k] - p) ** 2, axis=1)) / dims))
                 for k, p in enumerate(prototypes))
    return max(UNKNOWN_SPREAD_FACTOR * spread, 1e-6)


def _fine_tuned_probabilities(q: _NDArray, e: _NDArray, example_classes: _NDArray, prototypes: _NDArray, *, steps: int = 100) -> _NDArray:
    """A linear head trained on the augmented examples, started at the prototype classifier and kept near it."""
    import torch

    x = torch.from_numpy(e.astype(numpy.float32))
    y = torch.from_numpy(example_classes.astype(numpy.int64))
    start_weight = torch.from_numpy((2 * prototypes).astype(numpy.float32))
    start_bias = torch.from_numpy((-(prototypes**2).sum(axis=1)).astype(numpy.float32))
    scale = 1.0 / max(float(numpy.mean(numpy.sum((e - prototypes[example_classes]) ** 2, axis=1))), 1e-3)
    weight = (start_weight * scale).clone().requires_grad_(True)
    bias = (start_bias * scale).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([weight, bias], lr=0.01)
    counts = numpy.bincount(example_classes, minlength=len(prototypes)).astype(numpy.float32)
    class_weight = torch.from_numpy(counts.sum() / (len(counts) * counts))
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y, weight=class_weight) + 1e-3 * ((weight - start_weight * scale) ** 2).sum()
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    with torch.no_grad():
        probabilities = torch.softmax(torch.from_numpy(q.astype(numpy.float32)) @ weight.T + bias, dim=1).numpy()
    return probabilities.astype(numpy.float64)

