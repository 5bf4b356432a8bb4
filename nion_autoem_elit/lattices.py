"""Projected 2D crystal lattices: which atom columns sit where.

A lattice is a unit cell (two vectors in ångström) with a basis of sites. Each
site kind is occupied by a host column species, some of which are replaced by
substitutional dopants or vacancies with a per-frame concentration. This is all
the synthetic generator needs to know about a material.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing

import nion_autoem_checks as _checks

_NDArray = numpy.typing.NDArray[typing.Any]

# Incoherent ADF (Z-contrast) intensity of a column scales roughly as Z^1.7.
Z_CONTRAST_EXPONENT = 1.7


@dataclasses.dataclass(frozen=True)
class ColumnSpecies:
    """One kind of atom column as seen in projection.

    Parameters
    ----------
    name : str
        Label shown to the microscopist, e.g. ``"S2"`` for two stacked sulphur atoms.
    atomic_numbers : tuple of int
        Atomic number of every atom stacked along the beam in this column.
    """

    name: str
    atomic_numbers: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty column species name, got {_checks.describe(self.name)}")
        expected = "one or more whole numbers between 1 and 118"
        numbers = self.atomic_numbers
        if not isinstance(numbers, (tuple, list)) or not numbers:
            raise ValueError(f"atomic_numbers must be {expected}, got {_checks.describe(numbers)}")
        for z in numbers:
            try:
                _checks.whole(z, "atomic_numbers", 1, 118)
            except (TypeError, ValueError) as error:
                raise type(error)(f"atomic_numbers must be {expected}, got {_checks.describe(numbers)}") from None
        object.__setattr__(self, "atomic_numbers", tuple(int(z) for z in numbers))

    def contrast(self, exponent: float = Z_CONTRAST_EXPONENT) -> float:
        """Relative ADF intensity, the sum of ``Z**exponent`` over the column."""
        return float(sum(z**exponent for z in self.atomic_numbers))


@dataclasses.dataclass(frozen=True)
class Substitution:
    """A replacement of the host column on a site kind.

    Parameters
    ----------
    species : str or None
        Name of the replacing column species; ``None`` leaves the site empty
        (a full column vacancy, which shows no atom at all).
    concentration : tuple of float
        Range ``(low, high)`` of the fraction of sites replaced; each frame draws
        one value uniformly from it.
    """

    species: str | None
    concentration: tuple[float, float]

    def __post_init__(self) -> None:
        if self.species is not None and not isinstance(self.species, str):
            raise TypeError(f"species must be a column species name or None (a vacancy), got {_checks.describe(self.species)}")
        check_concentration(self.concentration, "concentration")


def check_concentration(value: tuple[float, float], name: str) -> tuple[float, float]:
    """A ``(low, high)`` range of site fractions with ``0 <= low <= high <= 1``."""
    expected = "a (low, high) range of fractions with 0 <= low <= high <= 1"
    low, high = _checks.pair(value, name, expected)
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"{name} must be {expected}, got {_checks.describe(value)}")
    return low, high


@dataclasses.dataclass(frozen=True)
class LatticeSpec:
    """A projected 2D crystal with its defect chemistry.

    Parameters
    ----------
    name : str
        Material name, e.g. ``"MoS2"``.
    cell_A : tuple of two (x, y) vectors
        Unit-cell vectors in ångström.
    basis : tuple of (fractional_a, fractional_b, site_kind)
        Sites in the unit cell.
    hosts : dict
        Host column species name for every site kind.
    substitutions : dict
        For every site kind, the substitutions that may replace the host.
    species : tuple of ColumnSpecies
        Every column species that may appear; their order defines the class
        indices (class 0 is background, species ``k`` is class ``k + 1``).
    """

    name: str
    cell_A: tuple[tuple[float, float], tuple[float, float]]
    basis: tuple[tuple[float, float, str], ...]
    hosts: dict[str, str]
    substitutions: dict[str, tuple[Substitution, ...]]
    species: tuple[ColumnSpecies, ...]

    def __post_init__(self) -> None:
        cell_expected = "two finite, non-parallel (x, y) vectors in ångström"
        try:
            a = _checks.pair(self.cell_A[0], "cell_A", cell_expected)
            b = _checks.pair(self.cell_A[1], "cell_A", cell_expected)
        except (TypeError, ValueError, IndexError, KeyError) as error:
            raise type(error)(f"cell_A must be {cell_expected}, got {_checks.describe(self.cell_A)}") from None
        if len(self.cell_A) != 2 or not all(math.isfinite(v) for v in a + b) or abs(a[0] * b[1] - a[1] * b[0]) < 1e-9:
            raise ValueError(f"cell_A must be {cell_expected}, got {_checks.describe(self.cell_A)}")
        if not self.species or not all(isinstance(sp, ColumnSpecies) for sp in self.species):
            raise TypeError(f"species must be one or more ColumnSpecies, got {_checks.describe(self.species)}")
        names = tuple(sp.name for sp in self.species)
        if len(set(names)) != len(names):
            raise ValueError(f"species must have distinct names, got {names}")
        for site in self.basis:
            if len(site) != 3 or not all(_checks.is_number(v) and math.isfinite(float(v)) for v in site[:2]):
                raise ValueError(f"basis must be (fractional_a, fractional_b, site_kind) triples with finite fractions, got {_checks.describe(site)}")
            if site[2] not in self.hosts:
                raise ValueError(f"basis site kind {site[2]!r} must have a host in hosts {sorted(self.hosts)}")
        for kind, host in self.hosts.items():
            if host not in names:
                raise ValueError(f"hosts must name species from {names}, got {host!r} for site kind {kind!r}")
        for kind, substitutions in self.substitutions.items():
            if kind not in self.hosts:
                raise ValueError(f"substitutions must be for site kinds in hosts {sorted(self.hosts)}, got {kind!r}")
            for sub in substitutions:
                if not isinstance(sub, Substitution):
                    raise TypeError(f"substitutions[{kind!r}] must hold Substitution objects, got {_checks.describe(sub)}")
                if sub.species is not None and sub.species not in names:
                    raise ValueError(f"substitutions must name species from {names} or None, got {sub.species!r} for site kind {kind!r}")

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names, background first, as used in label masks and models."""
        return ("background",) + tuple(s.name for s in self.species)

    def class_index(self, species_name: str) -> int:
        """Class index (1-based; 0 is background) of a column species."""
        names = tuple(s.name for s in self.species)
        if species_name not in names:
            raise ValueError(f"species_name must be one of {names}, got {species_name!r}")
        return 1 + names.index(species_name)

    @property
    def nearest_neighbour_A(self) -> float:
        """Shortest projected distance between two sites, in ångström."""
        sites = self.site_positions_A(radius_A=2.5 * max(_norm(v) for v in self.cell_A))[0]
        distances = numpy.hypot(*(sites[:, None, :] - sites[None, :, :]).transpose(2, 0, 1))
        return float(distances[distances > 1e-6].min())

    def site_positions_A(self, radius_A: float) -> tuple[_NDArray, list[str]]:
        """All sites within ``radius_A`` of the origin.

        Returns
        -------
        positions : (N, 2) ndarray
            Site positions ``(x, y)`` in ångström.
        kinds : list of str
            The site kind of each position.
        """
        a = numpy.asarray(self.cell_A[0], dtype=float)
        b = numpy.asarray(self.cell_A[1], dtype=float)
        cell_area = abs(a[0] * b[1] - a[1] * b[0])
        shortest_height = cell_area / max(_norm(self.cell_A[0]), _norm(self.cell_A[1]))
        n = int(math.ceil(radius_A / shortest_height)) + 2
        grid_i, grid_j = numpy.meshgrid(numpy.arange(-n, n + 1), numpy.arange(-n, n + 1), indexing="ij")
        i = grid_i.ravel()
        j = grid_j.ravel()
        positions = []
        kinds: list[str] = []
        for fa, fb, kind in self.basis:
            p = (i + fa)[:, None] * a[None, :] + (j + fb)[:, None] * b[None, :]
            keep = numpy.hypot(p[:, 0], p[:, 1]) <= radius_A
            positions.append(p[keep])
            kinds.extend([kind] * int(keep.sum()))
        return numpy.concatenate(positions, axis=0), kinds


def _norm(v: tuple[float, float]) -> float:
    return math.hypot(v[0], v[1])


def _hexagonal_cell(a: float) -> tuple[tuple[float, float], tuple[float, float]]:
    return ((a, 0.0), (0.5 * a, 0.5 * math.sqrt(3.0) * a))


def mos2_lattice(
    s1_concentration: tuple[float, float] = (0.0, 0.12),
    empty_s_concentration: tuple[float, float] = (0.0, 0.02),
    w_concentration: tuple[float, float] = (0.0, 0.05),
) -> LatticeSpec:
    """2H-MoS2 monolayer seen along [001].

    Mo columns and S2 columns (two S atoms stacked) form a honeycomb. Defects:
    S mono-vacancies (an S2 column that lost one atom, class ``S1``), empty S
    sites (both atoms gone) and W substituting Mo.

    Examples
    --------
    >>> spec = mos2_lattice()
    >>> spec.class_names
    ('background', 'Mo', 'S2', 'S1', 'W')
    """
    s1_concentration = check_concentration(s1_concentration, "s1_concentration")
    empty_s_concentration = check_concentration(empty_s_concentration, "empty_s_concentration")
    w_concentration = check_concentration(w_concentration, "w_concentration")
    return LatticeSpec(
        name="MoS2",
        cell_A=_hexagonal_cell(3.16),
        basis=((0.0, 0.0, "metal"), (1.0 / 3.0, 1.0 / 3.0, "chalcogen")),
        hosts={"metal": "Mo", "chalcogen": "S2"},
        substitutions={
            "metal": (Substitution("W", w_concentration),),
            "chalcogen": (
                Substitution("S1", s1_concentration),
                Substitution(None, empty_s_concentration),
            ),
        },
        species=(
            ColumnSpecies("Mo", (42,)),
            ColumnSpecies("S2", (16, 16)),
            ColumnSpecies("S1", (16,)),
            ColumnSpecies("W", (74,)),
        ),
    )


def graphene_lattice(
    vacancy_concentration: tuple[float, float] = (0.0, 0.03),
    si_concentration: tuple[float, float] = (0.0, 0.03),
) -> LatticeSpec:
    """Graphene with single vacancies and substitutional Si.

    Examples
    --------
    >>> graphene_lattice().class_names
    ('background', 'C', 'Si')
    """
    vacancy_concentration = check_concentration(vacancy_concentration, "vacancy_concentration")
    si_concentration = check_concentration(si_concentration, "si_concentration")
    return LatticeSpec(
        name="graphene",
        cell_A=_hexagonal_cell(2.46),
        basis=((0.0, 0.0, "carbon"), (1.0 / 3.0, 1.0 / 3.0, "carbon")),
        hosts={"carbon": "C"},
        substitutions={
            "carbon": (
                Substitution(None, vacancy_concentration),
                Substitution("Si", si_concentration),
            )
        },
        species=(ColumnSpecies("C", (6,)), ColumnSpecies("Si", (14,))),
    )


def square_lattice(
    lattice_constant_A: float = 2.8,
    atomic_number: int = 30,
    vacancy_concentration: tuple[float, float] = (0.0, 0.05),
) -> LatticeSpec:
    """A general single-species square lattice, e.g. for testing other crystals.

    Examples
    --------
    >>> square_lattice().class_names
    ('background', 'X')
    """
    lattice_constant_A = _checks.number(lattice_constant_A, "lattice_constant_A", "a positive finite length in ångström", lambda v: v > 0)
    atomic_number = _checks.whole(atomic_number, "atomic_number", 1, 118)
    vacancy_concentration = check_concentration(vacancy_concentration, "vacancy_concentration")
    return LatticeSpec(
        name="square",
        cell_A=((lattice_constant_A, 0.0), (0.0, lattice_constant_A)),
        basis=((0.0, 0.0, "site"),),
        hosts={"site": "X"},
        substitutions={"site": (Substitution(None, vacancy_concentration),)},
        species=(ColumnSpecies("X", (atomic_number,)),),
    )


LATTICES: dict[str, typing.Callable[[], LatticeSpec]] = {
    "mos2": mos2_lattice,
    "graphene": graphene_lattice,
    "square": square_lattice,
}


def resolve_lattice(lattice: LatticeSpec | str) -> LatticeSpec:
    """A :class:`LatticeSpec` from a spec or a name in :data:`LATTICES` (``"mos2"``, ``"graphene"``, ``"square"``).

    Examples
    --------
    >>> resolve_lattice("graphene").name
    'graphene'
    """
    if isinstance(lattice, LatticeSpec):
        return lattice
    expected = f"a LatticeSpec or one of {', '.join(repr(name) for name in sorted(LATTICES))}"
    if not isinstance(lattice, str):
        raise TypeError(f"lattice must be {expected}, got {type(lattice).__name__}")
    if lattice not in LATTICES:
        raise ValueError(f"lattice must be {expected}, got {lattice!r}")
    return LATTICES[lattice]()
