"""Seeded synthetic STEM surveys whose spectral property depends on local structure.

The sample is a polycrystal of hexagonal and square grains with grain
boundaries, vacancies and Z-contrast dopants (isolated and in clusters). The
"spectral feature" at a probe position is high near a rare motif -- two
neighbouring dopants -- weaker near a single dopant or a vacancy sitting at a
grain boundary, and zero elsewhere. The motif occurs at scattered places in
any lattice orientation, so interpolating in probe position cannot find it;
only something that recognises the local structure can.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy
import numpy.typing
import scipy.ndimage
import scipy.spatial

import nion_autoem_checks as _checks

_NDArray = numpy.typing.NDArray[typing.Any]


@dataclasses.dataclass(frozen=True)
class SyntheticSample:
    """A rendered survey with its ground-truth structure.

    Attributes
    ----------
    image : (M, N) ndarray
        Noisy HAADF-like survey.
    atoms : (K, 2) ndarray
        Atom column positions ``(row, column)`` in pixels.
    is_dopant : (K,) bool ndarray
        Brighter (higher-Z) columns.
    vacancies : (V, 2) ndarray
        Positions of missing columns.
    motif_sites : (S, 2) ndarray
        Centres of the motifs that carry the property.
    motif_weights : (S,) ndarray
        Strength of each motif (1 for a dopant pair, less for weaker motifs).
    motif_width : float
        Gaussian width in pixels over which a motif is seen by the probe.
    """

    image: _NDArray
    atoms: _NDArray
    is_dopant: _NDArray
    vacancies: _NDArray
    motif_sites: _NDArray
    motif_weights: _NDArray
    motif_width: float

    def property_at(self, positions: _NDArray) -> _NDArray:
        """Noise-free property at probe positions ``(row, column)``.

        Parameters
        ----------
        positions : (N, 2) ndarray
            Probe positions in pixels.

        Returns
        -------
        values : (N,) ndarray
            Sum of Gaussian footprints of all motifs.
        """
        probe = _checks.real_array(positions, "positions", "(row, column) pixel positions of shape (N, 2)", finite=False)
        if probe.ndim != 2 or probe.shape[1] != 2:
            raise ValueError(f"positions must be (row, column) pixel positions of shape (N, 2), got shape {probe.shape}")
        if self.motif_sites.shape[0] == 0:
            return numpy.zeros(probe.shape[0])
        d2 = ((probe[:, None, :] - self.motif_sites[None, :, :]) ** 2).sum(-1)
        footprint = numpy.exp(-d2 / (2.0 * self.motif_width**2))
        return typing.cast(_NDArray, footprint @ self.motif_weights)


def _lattice_vectors(kind: str, spacing: float, angle: float) -> _NDArray:
    if kind == "hexagonal":
        basis = numpy.array([[1.0, 0.0], [0.5, numpy.sqrt(3.0) / 2.0]])
    else:
        basis = numpy.array([[1.0, 0.0], [0.0, 1.0]])
    rotation = numpy.array([[numpy.cos(angle), -numpy.sin(angle)], [numpy.sin(angle), numpy.cos(angle)]])
    return typing.cast(_NDArray, spacing * basis @ rotation.T)


def _grain_atoms(
    rng: numpy.random.Generator, shape: tuple[int, int], grain_seeds: _NDArray
) -> tuple[_NDArray, _NDArray, _NDArray]:
    """Atoms of every grain, each grain clipped to its Voronoi cell."""
    extent = float(max(shape))
    all_atoms, all_grain, all_spacing = [], [], []
    owner_tree = scipy.spatial.cKDTree(grain_seeds)
    for index in range(grain_seeds.shape[0]):
        kind = "hexagonal" if rng.random() < 0.5 else "square"
        grain_spacing = float(rng.uniform(9.0, 12.0))
        vectors = _lattice_vectors(kind, grain_spacing, rng.uniform(0.0, numpy.pi))
        n = int(numpy.ceil(1.6 * extent / grain_spacing))
        ij = numpy.stack(numpy.meshgrid(numpy.arange(-n, n), numpy.arange(-n, n), indexing="ij"), -1).reshape(-1, 2)
        points = ij @ vectors + grain_seeds[index] + rng.uniform(0.0, grain_spacing, 2)
        inside = (points >= 2).all(1) & (points[:, 0] < shape[0] - 2) & (points[:, 1] < shape[1] - 2)
        points = points[inside]
        points = points[owner_tree.query(points)[1] == index]
        all_atoms.append(points)
        all_grain.append(numpy.full(points.shape[0], index))
        all_spacing.append(numpy.full(points.shape[0], grain_spacing))
    atoms = numpy.concatenate(all_atoms)
    grain = numpy.concatenate(all_grain)
    spacing = numpy.concatenate(all_spacing)
    # Where two grains meet, columns closer than ~0.6 lattice spacings cannot
    # both exist; drop the later one, which leaves a disordered boundary.
    tree = scipy.spatial.cKDTree(atoms)
    keep = numpy.ones(atoms.shape[0], dtype=bool)
    for i, j in sorted(tree.query_pairs(r=6.0)):
        if keep[i] and keep[j] and grain[i] != grain[j] and numpy.hypot(*(atoms[i] - atoms[j])) < 0.6 * spacing[i]:
            keep[j] = False
    return atoms[keep], grain[keep], spacing[keep]


def _render(
    rng: numpy.random.Generator, shape: tuple[int, int], atoms: _NDArray, brightness: _NDArray, noise: float
) -> _NDArray:
    """Bilinear splat of column intensities, blurred into probe-sized spots, plus noise."""
    canvas = numpy.zeros(shape)
    base = numpy.floor(atoms).astype(numpy.int64)
    frac = atoms - base
    for dr in (0, 1):
        for dc in (0, 1):
            weight = (frac[:, 0] if dr else 1 - frac[:, 0]) * (frac[:, 1] if dc else 1 - frac[:, 1])
            r = numpy.clip(base[:, 0] + dr, 0, shape[0] - 1)
            c = numpy.clip(base[:, 1] + dc, 0, shape[1] - 1)
            numpy.add.at(canvas, (r, c), brightness * weight)
    image = scipy.ndimage.gaussian_filter(canvas, 1.6) * (2 * numpy.pi * 1.6**2)
    # Slowly varying thickness/background so that raw brightness alone is not the answer.
    rows, cols = numpy.mgrid[0 : shape[0], 0 : shape[1]] / max(shape)
    phase = rng.uniform(0, 2 * numpy.pi, 2)
    image += 0.25 * (1 + numpy.sin(2.5 * rows + phase[0]) * numpy.cos(2.0 * cols + phase[1]))
    dose = 40.0 / max(noise, 1e-6)
    image = rng.poisson(numpy.clip(image, 0, None) * dose) / dose
    return typing.cast(_NDArray, image + rng.normal(0.0, 0.05 * noise, shape))


def make_textured_sample(
    seed: int,
    shape: tuple[int, int] = (544, 544),
    *,
    n_grains: int = 4,
    vacancy_fraction: float = 0.03,
    dopant_fraction: float = 0.008,
    n_dopant_clusters: int = 8,
    noise: float = 1.0,
) -> SyntheticSample:
    """Render a seeded polycrystalline survey with defects and its property.

    Parameters
    ----------
    seed : int
        Seed of the random generator; the same seed gives the same sample.
    shape : tuple of int
        Survey size in pixels.
    n_grains : int
        Number of Voronoi grains, each hexagonal or square with random
        orientation and spacing (9-12 px).
    vacancy_fraction : float
        Probability that a column is missing.
    dopant_fraction : float
        Background probability that a column is a dopant.
    n_dopant_clusters : int
        Number of small regions (radius 20 px) where dopants are common.
    noise : float
        Scales shot and read noise; 1 is a typical survey, 0 nearly clean.

    Returns
    -------
    sample : SyntheticSample
        Image, structure and the motif list used by ``property_at``.

    Examples
    --------
    >>> s = make_textured_sample(0, (128, 128), n_grains=2)
    >>> s.image.shape
    (128, 128)
    """
    seed = _checks.whole(seed, "seed", 0)
    if not isinstance(shape, (tuple, list, numpy.ndarray)) or len(shape) != 2 or not all(_checks.is_number(v) for v in shape):
        raise TypeError(f"shape must be two whole pixel counts >= 16, got {_checks.describe(shape)}")
    try:
        shape = (_checks.whole(shape[0], "shape", 16), _checks.whole(shape[1], "shape", 16))
    except ValueError:
        raise ValueError(f"shape must be two whole pixel counts >= 16, got {_checks.describe(shape)}") from None
    n_grains = _checks.whole(n_grains, "n_grains", 1)
    vacancy_fraction = _checks.number(vacancy_fraction, "vacancy_fraction", "a probability in [0, 1]", lambda v: 0 <= v <= 1)
    dopant_fraction = _checks.number(dopant_fraction, "dopant_fraction", "a probability in [0, 1]", lambda v: 0 <= v <= 1)
    n_dopant_clusters = _checks.whole(n_dopant_clusters, "n_dopant_clusters", 0)
    noise = _checks.number(noise, "noise", "a finite number >= 0", lambda v: v >= 0)
    rng = numpy.random.default_rng(seed)
    grain_seeds = rng.uniform(0, 1, (n_grains, 2)) * numpy.array(shape)
    atoms, grain, spacing = _grain_atoms(rng, shape, grain_seeds)
    missing = rng.random(atoms.shape[0]) < vacancy_fraction
    vacancies, atoms, grain, spacing = atoms[missing], atoms[~missing], grain[~missing], spacing[~missing]
    p_dopant = numpy.full(atoms.shape[0], dopant_fraction)
    for centre in rng.uniform(0, 1, (n_dopant_clusters, 2)) * numpy.array(shape):
        p_dopant[numpy.hypot(*(atoms - centre).T) < 20.0] = 0.3
    is_dopant = rng.random(atoms.shape[0]) < p_dopant
    brightness = numpy.where(is_dopant, 1.9, numpy.where(spacing > 10.5, 1.1, 0.9))
    image = _render(rng, shape, atoms, brightness, noise)

    sites, weights = [], []
    dopants = atoms[is_dopant]
    paired = numpy.zeros(dopants.shape[0], dtype=bool)
    if dopants.shape[0] > 1:
        dopant_spacing = spacing[is_dopant]
        for i, j in scipy.spatial.cKDTree(dopants).query_pairs(r=14.0):
            if numpy.hypot(*(dopants[i] - dopants[j])) < 1.2 * min(dopant_spacing[i], dopant_spacing[j]):
                sites.append((dopants[i] + dopants[j]) / 2)
                weights.append(1.0)
                paired[[i, j]] = True
    for position in dopants[~paired]:
        sites.append(position)
        weights.append(0.25)
    if vacancies.shape[0] and atoms.shape[0]:
        # A vacancy "at the interface": a column of another grain is within reach.
        distance, nearest = scipy.spatial.cKDTree(atoms).query(vacancies, k=6)
        for v in range(vacancies.shape[0]):
            grains_near = set(grain[nearest[v][distance[v] < 14.0]].tolist())
            if len(grains_near) > 1:
                sites.append(vacancies[v])
                weights.append(0.4)
    return SyntheticSample(
        image=image,
        atoms=atoms,
        is_dopant=is_dopant,
        vacancies=vacancies,
        motif_sites=numpy.asarray(sites, dtype=numpy.float64).reshape(-1, 2),
        motif_weights=numpy.asarray(weights, dtype=numpy.float64),
        motif_width=5.0,
    )
