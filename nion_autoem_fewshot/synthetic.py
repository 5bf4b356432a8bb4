"""Simulated STEM images: the backbone's pretraining tiles and the benchmark's scenes.

Two families, kept apart on purpose so the benchmark measures data the
backbone never saw:

- **Pretraining** (:func:`pretraining_patches`): single-species lattices
  (square, rectangular, hexagonal, honeycomb) with spacings of 3.5-10 px,
  amorphous films, random ellipses and random polygons with 5-8 corners,
  vacuum, and two of these split by a straight edge; noise, blur, contrast
  and background changes.  Seeds 0-999.
- **Benchmark scenes**: :func:`interface_scene` (two crystals with
  two-species bases, rock salt and a MoS2-like honeycomb, joined by a wavy
  amorphous layer) and :func:`particle_scene` (regions of equilateral
  triangles, discs and rods on an amorphous support, or bare support).  No
  two-species lattice, no triangle and no rod appears in pretraining, and
  the benchmark uses seeds from 1000 on.

Every function is plain numpy in, numpy out; images are float64, about
0..1 before noise.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
from scipy import ndimage
from skimage import draw

_NDArray = numpy.typing.NDArray[typing.Any]

#: Seeds at or above this are the benchmark's; pretraining stays below.
BENCHMARK_SEED_OFFSET = 1000


@dataclasses.dataclass(frozen=True)
class Scene:
    """A simulated image with the class of every pixel.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        The simulated frame.
    labels : ndarray of int, shape (rows, cols)
        Index into ``class_names`` for every pixel.
    class_names : tuple of str
        Names of the classes, in the microscopist's words.
    """

    image: _NDArray
    labels: _NDArray
    class_names: tuple[str, ...]


# --- textures -------------------------------------------------------------------------


def lattice(shape: tuple[int, int], spacing_px: float, angle_rad: float, kind: str, *, sharpness: float = 4.0, second_species: float = 0.0,
            offset_px: tuple[float, float] = (0.0, 0.0)) -> _NDArray:
    """Atom columns on a 2D lattice, rendered from plane waves (fast, smooth peaks).

    Parameters
    ----------
    shape : (rows, cols)
        Image size in pixels.
    spacing_px : float
        Nearest-neighbour spacing of the bright columns in pixels.
    angle_rad : float
        Rotation of the lattice.
    kind : str
        ``"square"``, ``"rect"`` (aspect 1.5), ``"hex"`` (triangular), ``"honeycomb"`` or ``"rocksalt"``
        (square with alternating species).
    sharpness : float
        Higher gives smaller, sharper columns.
    second_species : float
        Contrast between two sublattices (honeycomb and rocksalt), 0 for one species.
    offset_px : (dy, dx)
        Shift of the lattice.

    Returns
    -------
    ndarray, shape ``shape``, values in [0, 1]

    Examples
    --------
    >>> image = lattice((32, 32), 8.0, 0.0, "square")
    >>> image.shape, round(float(image.max()), 2), bool(image[0, 0] > image[4, 4])
    ((32, 32), 1.0, True)
    """
    y, x = numpy.mgrid[0:shape[0], 0:shape[1]].astype(float)
    y = y - offset_px[0]
    x = x - offset_px[1]
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    u, v = c * x + s * y, -s * x + c * y
    if kind in ("square", "rect", "rocksalt"):
        ay = spacing_px * (1.5 if kind == "rect" else 1.0)
        wave = numpy.cos(2 * math.pi * u / spacing_px) + numpy.cos(2 * math.pi * v / ay)
        image = numpy.exp(sharpness * (wave - 2) / 2)
        if kind == "rocksalt":
            # the second species sits on the half-way positions of the same square net
            other = numpy.cos(2 * math.pi * u / spacing_px + math.pi) + numpy.cos(2 * math.pi * v / ay + math.pi)
            image = image + (1 - second_species) * numpy.exp(sharpness * (other - 2) / 2)
    elif kind in ("hex", "honeycomb"):
        # triangular lattice with nearest-neighbour distance spacing_px: reciprocal vectors of length 4 pi / (sqrt(3) a)
        spacing = spacing_px if kind == "hex" else spacing_px * math.sqrt(3)
        k = 4 * math.pi / (math.sqrt(3) * spacing)
        angles = (math.pi / 6, math.pi / 6 + 2 * math.pi / 3, math.pi / 6 + 4 * math.pi / 3)
        phases = [k * (math.cos(a) * u + math.sin(a) * v) for a in angles]
        cosines = sum(numpy.cos(p) for p in phases)
        if kind == "hex":
            image = numpy.exp(sharpness * (cosines - 3) / 4.5)
        else:
            # the two minima sublattices of the triangular wave are the honeycomb; the sine sum tells them apart
            sines = sum(numpy.sin(p) for p in phases)
            sites = numpy.exp(sharpness * (-cosines - 1.5) / 2.25)
            image = sites * numpy.where(sines > 0, 1.0, 1.0 - second_species)
    else:
        raise ValueError(f"kind must be 'square', 'rect', 'hex', 'honeycomb' or 'rocksalt', got {kind!r}")
    return typing.cast(_NDArray, image / max(float(image.max()), 1e-12))


def amorphous(shape: tuple[int, int], rng: numpy.random.Generator, *, correlation_px: float = 1.5) -> _NDArray:
    """An amorphous film: white noise smoothed over ``correlation_px``, scaled to [0, 1].

    Examples
    --------
    >>> film = amorphous((64, 64), numpy.random.default_rng(0), correlation_px=2.0)
    >>> film.shape, float(film.min()), float(film.max())
    ((64, 64), 0.0, 1.0)
    """
    film = ndimage.gaussian_filter(rng.normal(size=shape), correlation_px, mode="wrap")
    film -= film.min()
    return typing.cast(_NDArray, film / max(float(film.max()), 1e-12))


def particles(shape: tuple[int, int], rng: numpy.random.Generator, shape_name: str, *, count: int, size_px: tuple[float, float],
              texture: _NDArray | None = None) -> _NDArray:
    """A mask-like image of particles of one shape (1 inside, 0 outside), optionally filled with a texture.

    Parameters
    ----------
    shape : (rows, cols)
        Image size.
    rng : Generator
        Random positions, sizes and orientations.
    shape_name : str
        ``"disc"``, ``"ellipse"``, ``"polygon"`` (5-8 random corners), ``"triangle"`` (equilateral),
        ``"square"`` or ``"rod"`` (aspect 3-4).
    count : int
        How many particles to drop (they may overlap).
    size_px : (low, high)
        Range of particle diameters in pixels.
    texture : ndarray or None
        Multiplied into the particles (lattice fringes of a crystalline particle).

    Examples
    --------
    >>> mask = particles((64, 64), numpy.random.default_rng(0), "triangle", count=3, size_px=(10, 12))
    >>> mask.shape, float(mask.max()), 0 < float(mask.mean()) < 0.3
    ((64, 64), 1.0, True)
    """
    image = numpy.zeros(shape)
    for _ in range(count):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        size = rng.uniform(*size_px)
        angle = rng.uniform(0, 2 * math.pi)
        if shape_name == "disc":
            rr, cc = draw.disk((cy, cx), size / 2, shape=shape)  # type: ignore[no-untyped-call]
        elif shape_name == "ellipse":
            rr, cc = draw.ellipse(cy, cx, size / 2, size / 2 * rng.uniform(0.4, 0.9), shape=shape, rotation=angle)  # type: ignore[no-untyped-call]
        elif shape_name == "rod":
            corners = _polygon_corners(4, size * 0.5, angle, aspect=rng.uniform(3.0, 4.0))
            rr, cc = draw.polygon(cy + corners[:, 0], cx + corners[:, 1], shape=shape)  # type: ignore[no-untyped-call]
        else:
            sides = {"triangle": 3, "square": 4}.get(shape_name)
            if sides is None and shape_name != "polygon":
                raise ValueError(f"shape_name must be 'disc', 'ellipse', 'polygon', 'triangle', 'square' or 'rod', got {shape_name!r}")
            if sides is None:
                sides = int(rng.integers(5, 9))
                radii = size / 2 * rng.uniform(0.7, 1.0, sides)
                angles = numpy.sort(rng.uniform(0, 2 * math.pi, sides))
                corners = numpy.stack([radii * numpy.sin(angles), radii * numpy.cos(angles)], axis=1)
            else:
                corners = _polygon_corners(sides, size / 2, angle)
            rr, cc = draw.polygon(cy + corners[:, 0], cx + corners[:, 1], shape=shape)  # type: ignore[no-untyped-call]
        image[rr, cc] = 1.0
    if texture is not None:
        image = image * (0.6 + 0.4 * texture)
    return image


def _polygon_corners(sides: int, radius: float, angle: float, *, aspect: float = 1.0) -> _NDArray:
    """Corners of a regular polygon (or, with ``aspect``, a rectangle stretched along its first axis)."""
    angles = angle + 2 * math.pi * numpy.arange(sides) / sides + (math.pi / 4 if sides == 4 else 0.0)
    along, across = radius * numpy.cos(angles - angle) * aspect, radius * numpy.sin(angles - angle)
    c, s = math.cos(angle), math.sin(angle)
    return numpy.stack([s * along + c * across, c * along - s * across], axis=1)


def imaging(image: _NDArray, rng: numpy.random.Generator, *, blur_px: float = 0.8, noise: float = 0.05, contrast: float = 1.0, background: float = 0.0,
            gradient: float = 0.0) -> _NDArray:
    """What the detector makes of an object image: probe blur, contrast, a slow background, noise.

    Examples
    --------
    >>> clean = numpy.zeros((32, 32)); clean[16, 16] = 1.0
    >>> seen = imaging(clean, numpy.random.default_rng(0), blur_px=1.0, noise=0.0)
    >>> bool(seen[16, 16] < 1.0 and seen[16, 17] > 0.0)
    True
    """
    out = ndimage.gaussian_filter(image, blur_px) if blur_px > 0 else numpy.array(image, dtype=float)
    out = contrast * out + background
    if gradient:
        y, x = numpy.mgrid[0:image.shape[0], 0:image.shape[1]] / max(image.shape)
        theta = rng.uniform(0, 2 * math.pi)
        out = out + gradient * (math.cos(theta) * y + math.sin(theta) * x)
    if noise > 0:
        out = out + rng.normal(scale=noise, size=image.shape)
    return typing.cast(_NDArray, out)


# --- pretraining ----------------------------------------------------------------------


def _random_texture(shape: tuple[int, int], rng: numpy.random.Generator) -> _NDArray:
    """One random pretraining texture: a single-species lattice, a film, particles or vacuum."""
    kind = rng.choice(["lattice", "lattice", "amorphous", "particles", "vacuum"])
    if kind == "lattice":
        return lattice(shape, rng.uniform(3.5, 10.0), rng.uniform(0, math.pi), str(rng.choice(["square", "rect", "hex", "honeycomb"])),
                       sharpness=rng.uniform(2.0, 8.0), offset_px=(rng.uniform(0, 10), rng.uniform(0, 10)))
    if kind == "amorphous":
        return amorphous(shape, rng, correlation_px=rng.uniform(0.7, 4.0))
    if kind == "particles":
        size = rng.uniform(4.0, 22.0)
        count = max(1, int(rng.uniform(0.1, 0.5) * shape[0] * shape[1] / size**2))
        support = amorphous(shape, rng, correlation_px=rng.uniform(0.7, 3.0)) * rng.uniform(0.0, 0.4)
        return typing.cast(_NDArray, support + particles(shape, rng, str(rng.choice(["ellipse", "polygon"])), count=count, size_px=(size * 0.7, size)))
    return numpy.zeros(shape)


def pretraining_patches(count: int, size: int, seed: int) -> _NDArray:
    """Random patches for self-supervised pretraining (see the module docstring for what they hold).

    Parameters
    ----------
    count : int
        How many patches.
    size : int
        Side of each square patch in pixels.
    seed : int
        Random seed; must be below :data:`BENCHMARK_SEED_OFFSET`.

    Returns
    -------
    ndarray of float32, shape (count, size, size)

    Examples
    --------
    >>> pretraining_patches(4, 48, seed=0).shape
    (4, 48, 48)
    """
    if seed >= BENCHMARK_SEED_OFFSET:
        raise ValueError(f"seed must be below {BENCHMARK_SEED_OFFSET} (seeds from there on are the benchmark's), got {seed}")
    rng = numpy.random.default_rng(seed)
    out = numpy.empty((count, size, size), dtype=numpy.float32)
    shape = (size, size)
    for index in range(count):
        texture = _random_texture(shape, rng)
        if rng.random() < 0.25:
            # two textures meeting at a straight edge, so interfaces are not out of distribution
            other = _random_texture(shape, rng)
            y, x = numpy.mgrid[0:size, 0:size] - size / 2
            theta = rng.uniform(0, 2 * math.pi)
            side = (math.cos(theta) * y + math.sin(theta) * x) > rng.uniform(-size / 3, size / 3)
            texture = numpy.where(side, texture, other * rng.uniform(0.3, 1.2))
        out[index] = imaging(texture, rng, blur_px=rng.uniform(0.3, 1.5), noise=rng.uniform(0.0, 0.25), contrast=rng.uniform(0.5, 1.5),
                             background=rng.uniform(-0.2, 0.2), gradient=rng.uniform(0, 0.3))
    return out


# --- benchmark scenes -----------------------------------------------------------------


def _check_benchmark_seed(seed: int) -> None:
    if seed < BENCHMARK_SEED_OFFSET:
        raise ValueError(f"seed must be at least {BENCHMARK_SEED_OFFSET} for a benchmark scene (lower seeds are pretraining's), got {seed}")


def interface_scene(shape: tuple[int, int] = (1024, 1024), seed: int = BENCHMARK_SEED_OFFSET, *, noise: float = 0.12) -> Scene:
    """Two crystals joined by an amorphous layer: rock salt | amorphous | MoS2-like honeycomb.

    The layer runs roughly top to bottom with wavy edges; the two crystals have
    two-species bases and orientations drawn from ``seed``.  Classes:
    ``"rock salt"``, ``"amorphous"``, ``"honeycomb"``.

    Examples
    --------
    >>> scene = interface_scene((128, 128), seed=1000)
    >>> scene.image.shape, scene.class_names, sorted(set(scene.labels.ravel().tolist()))
    ((128, 128), ('rock salt', 'amorphous', 'honeycomb'), [0, 1, 2])
    """
    _check_benchmark_seed(seed)
    rng = numpy.random.default_rng(seed)
    rows, cols = shape
    y, x = numpy.mgrid[0:rows, 0:cols]
    wave = rows / 10
    tilt = rng.uniform(-0.25, 0.25)
    middle = cols * rng.uniform(0.42, 0.58) + tilt * (y - rows / 2)
    left_edge = middle - cols * 0.16 + wave * 0.3 * numpy.sin(2 * math.pi * y / rows * rng.uniform(1, 3) + rng.uniform(0, 6))
    right_edge = middle + cols * 0.16 + wave * 0.3 * numpy.sin(2 * math.pi * y / rows * rng.uniform(1, 3) + rng.uniform(0, 6))
    labels = numpy.where(x < left_edge, 0, numpy.where(x > right_edge, 2, 1))
    rocksalt = lattice(shape, rng.uniform(5.5, 7.0), rng.uniform(0, math.pi / 2), "rocksalt", sharpness=5.0, second_species=rng.uniform(0.4, 0.6))
    honeycomb = lattice(shape, rng.uniform(5.0, 6.5), rng.uniform(0, math.pi / 3), "honeycomb", sharpness=5.0, second_species=rng.uniform(0.3, 0.5))
    film = amorphous(shape, rng, correlation_px=rng.uniform(1.2, 2.0))
    obj = numpy.select([labels == 0, labels == 1], [rocksalt, 0.3 + 0.5 * film], honeycomb)
    image = imaging(obj, rng, blur_px=1.0, noise=noise, contrast=rng.uniform(0.8, 1.2), gradient=0.2)
    return Scene(image, labels, ("rock salt", "amorphous", "honeycomb"))


def particle_scene(shape: tuple[int, int] = (1024, 1024), seed: int = BENCHMARK_SEED_OFFSET, *, regions: int = 8, noise: float = 0.12) -> Scene:
    """A field of particles of several shapes: patches of triangles, of discs, of rods, and bare support.

    The field is split into ``regions`` Voronoi cells, each holding one kind of
    particle (or none) on an amorphous carbon support.  Classes:
    ``"triangles"``, ``"discs"``, ``"rods"``, ``"support"``.

    Examples
    --------
    >>> scene = particle_scene((256, 256), seed=1000)
    >>> scene.image.shape, scene.class_names
    ((256, 256), ('triangles', 'discs', 'rods', 'support'))
    """
    _check_benchmark_seed(seed)
    rng = numpy.random.default_rng(seed)
    rows, cols = shape
    names = ("triangles", "discs", "rods", "support")
    centres = rng.uniform(0, 1, (regions, 2)) * numpy.array(shape)
    # every class at least once, the rest at random
    region_class = numpy.concatenate([rng.permutation(len(names)), rng.integers(0, len(names), max(0, regions - len(names)))])[:regions]
    y, x = numpy.mgrid[0:rows, 0:cols]
    nearest = numpy.argmin((y[..., None] - centres[:, 0]) ** 2 + (x[..., None] - centres[:, 1]) ** 2, axis=-1)
    labels = region_class[nearest]
    support = 0.15 + 0.25 * amorphous(shape, rng, correlation_px=1.5)
    obj = support.copy()
    size = (9.0, 13.0)
    count = int(0.25 * rows * cols / 11.0**2)
    for index, name in enumerate(names[:3]):
        shape_name = {"triangles": "triangle", "discs": "disc", "rods": "rod"}[name]
        mask = particles(shape, rng, shape_name, count=count, size_px=size)
        inside = labels == index
        obj = numpy.where(inside & (mask > 0), 0.7 + 0.3 * mask, obj)
    image = imaging(obj, rng, blur_px=1.0, noise=noise, contrast=rng.uniform(0.8, 1.2), gradient=0.2)
    return Scene(image, labels, names)


def tile_truth(labels: _NDArray, origins_px: _NDArray, tile_px: int, *, purity: float = 0.9) -> tuple[_NDArray, _NDArray]:
    """The majority class of every tile and whether the tile is pure enough to score.

    Parameters
    ----------
    labels : ndarray of int, shape (rows, cols)
        The scene's class per pixel.
    origins_px : ndarray, shape (n, 2)
        Top-left pixel of every tile.
    tile_px : int
        Tile side.
    purity : float
        A tile counts as pure when at least this fraction of its pixels has the majority class.

    Returns
    -------
    majority : ndarray of int, shape (n,)
    pure : ndarray of bool, shape (n,)

    Examples
    --------
    >>> labels = numpy.zeros((8, 8), dtype=int); labels[:, 6:] = 1
    >>> tile_truth(labels, numpy.array([[0, 0], [0, 4]]), 4)
    (array([0, 0]), array([ True, False]))
    """
    classes = int(labels.max()) + 1
    majority = numpy.empty(len(origins_px), dtype=int)
    pure = numpy.empty(len(origins_px), dtype=bool)
    for index, (r, c) in enumerate(numpy.asarray(origins_px, dtype=int)):
        counts = numpy.bincount(labels[r:r + tile_px, c:c + tile_px].ravel(), minlength=classes)
        majority[index] = int(numpy.argmax(counts))
        pure[index] = counts.max() >= purity * counts.sum()
    return majority, pure
