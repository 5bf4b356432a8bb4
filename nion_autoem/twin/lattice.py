"""Geometry of a 2H-MoS2 monolayer seen down the c axis: the column table.

Projected along c, 2H-MoS2 is a honeycomb.  One sublattice holds single metal
atoms (Mo, or W as a dopant); the other holds chalcogen columns of two atoms,
one above and one below the metal plane (S2).  Beam damage removes chalcogen
atoms one at a time (S2 -> S1 -> empty site); an empty site stays in the
table so that ground truth can name it.

Positions are in *sample* nm (y, x): the flake's own frame, centred on its
middle.  See :mod:`nion_autoem.twin.sample` for the link to scan-field nm.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
import scipy.spatial

_NDArray = numpy.typing.NDArray[typing.Any]

#: In-plane lattice constant of MoS2 in nm.
MOS2_A_NM = 0.316
Z_MO, Z_S, Z_W, Z_SE = 42, 16, 74, 34

#: Column classes, in the order used by :attr:`ColumnTable.column_class`.
COLUMN_CLASSES = ("Mo", "S2", "S1", "empty")
MO, S2, S1, EMPTY = 0, 1, 2, 3

METAL_SITE, CHALCOGEN_SITE = 0, 1


@dataclasses.dataclass
class ColumnTable:
    """Every atomic column of the flake.

    Attributes
    ----------
    position_nm : ndarray, shape (n, 2)
        Column positions (y, x) in sample nm.
    site : ndarray of int, shape (n,)
        ``METAL_SITE`` or ``CHALCOGEN_SITE``.
    z_atoms : ndarray of int, shape (n, 2)
        Atomic numbers of the (up to) two atoms in the column, 0 where no atom.
        Metal columns use only the first entry.
    grain : ndarray of int, shape (n,)
        Grain index (0, or 1 on the far side of a grain boundary).
    """

    position_nm: _NDArray
    site: _NDArray
    z_atoms: _NDArray
    grain: _NDArray

    def __len__(self) -> int:
        return int(self.position_nm.shape[0])

    @property
    def atom_count(self) -> _NDArray:
        """Atoms left in each column."""
        return typing.cast(_NDArray, numpy.count_nonzero(self.z_atoms, axis=1))

    @property
    def column_class(self) -> _NDArray:
        """Index into :data:`COLUMN_CLASSES` for every column (dopants keep their site's class)."""
        n = self.atom_count
        cls = numpy.where(n == 2, S2, numpy.where(n == 1, S1, EMPTY))
        return numpy.where(self.site == METAL_SITE, numpy.where(n > 0, MO, EMPTY), cls)

    def contrast_weight(self, exponent: float = 1.7) -> _NDArray:
        """Incoherent Z-contrast weight per column: the sum of Z**exponent over its atoms."""
        z = self.z_atoms.astype(float)
        return typing.cast(_NDArray, numpy.sum(numpy.where(z > 0, z, 0.0) ** exponent, axis=1))

    def species(self) -> list[str]:
        """Human-readable content of each column, e.g. ``"Mo"``, ``"S2"``, ``"S+Se"``, ``"empty"``."""
        names = {Z_MO: "Mo", Z_W: "W", Z_S: "S", Z_SE: "Se"}
        out: list[str] = []
        for z in self.z_atoms:
            atoms = sorted(names.get(int(v), str(int(v))) for v in z if v > 0)
            if not atoms:
                out.append("empty")
            elif len(atoms) == 2 and atoms[0] == atoms[1]:
                out.append(f"{atoms[0]}2")
            else:
                out.append("+".join(atoms))
        return out


def _honeycomb(radius_nm: float, rotation_rad: float, origin_nm: tuple[float, float]) -> tuple[_NDArray, _NDArray]:
    """Metal and chalcogen column positions (y, x) covering a disc of ``radius_nm``."""
    a = MOS2_A_NM
    a1 = numpy.array([0.0, a])
    a2 = numpy.array([a * math.sqrt(3) / 2, a / 2])
    n = int(math.ceil(2 * radius_nm / a)) + 2
    i, j = numpy.meshgrid(numpy.arange(-n, n + 1), numpy.arange(-n, n + 1), indexing="ij")
    metal = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2
    chalcogen = metal + (a1 + a2) / 3
    c, s = math.cos(rotation_rad), math.sin(rotation_rad)
    rot = numpy.array([[c, -s], [s, c]])
    o = numpy.asarray(origin_nm)
    return metal @ rot.T + o, chalcogen @ rot.T + o


def _inside_hexagon(p: _NDArray, radius_nm: float, rotation_rad: float) -> _NDArray:
    # Zigzag edges (the common ones in MoS2) run along the lattice vectors, so
    # the flake's hexagon shares the lattice rotation.
    inside = numpy.ones(p.shape[0], bool)
    apothem = radius_nm * math.sqrt(3) / 2
    for k in range(6):
        ang = rotation_rad + math.pi / 2 + k * math.pi / 3
        normal = numpy.array([math.sin(ang), math.cos(ang)])
        inside &= p @ normal <= apothem
    return inside


def mos2_flake(radius_nm: float = 20.0, *, rotation_rad: float = 0.1, seed: int = 0, s_vacancy_fraction: float = 0.01,
               se_fraction: float = 0.0, w_fraction: float = 0.0, grain_boundary_tilt_rad: float | None = None) -> ColumnTable:
    """Build a hexagonal MoS2 monolayer flake centred on the sample origin.

    Parameters
    ----------
    radius_nm : float
        Corner-to-centre size of the hexagonal flake; beyond it is vacuum (flake edges).
    rotation_rad : float
        Orientation of the lattice (and the flake's zigzag edges).
    seed : int
        Seed for the random point defects and dopants.
    s_vacancy_fraction : float
        Fraction of chalcogen atoms missing before any beam damage.
    se_fraction, w_fraction : float
        Substitutional dopants: fraction of S atoms replaced by Se, of Mo atoms by W.
    grain_boundary_tilt_rad : float or None
        If given, the half x > 0 is a second grain turned by this angle; atoms
        of that grain closer than 0.2 nm to the first grain's atoms are removed.

    Returns
    -------
    ColumnTable

    Examples
    --------
    >>> flake = mos2_flake(2.0, seed=1)
    >>> sorted(set(flake.column_class.tolist()))[:2]
    [0, 1]
    """
    if not math.isfinite(radius_nm) or radius_nm <= 0.5:
        raise ValueError(f"radius_nm must be a flake size > 0.5 nm, got {radius_nm!r}")
    for label, fraction in (("s_vacancy_fraction", s_vacancy_fraction), ("se_fraction", se_fraction), ("w_fraction", w_fraction)):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"{label} must be a fraction in [0, 1], got {fraction!r}")
    rng = numpy.random.default_rng(seed)
    metal, chalcogen = _honeycomb(radius_nm, rotation_rad, (0.0, 0.0))
    positions = [metal, chalcogen]
    sites = [numpy.full(len(metal), METAL_SITE), numpy.full(len(chalcogen), CHALCOGEN_SITE)]
    grains = [numpy.zeros(len(metal), int), numpy.zeros(len(chalcogen), int)]
    if grain_boundary_tilt_rad is not None:
        keep = [p[:, 1] <= 0 for p in positions]
        positions = [p[k] for p, k in zip(positions, keep)]
        sites = [s[k] for s, k in zip(sites, keep)]
        grains = [g[k] for g, k in zip(grains, keep)]
        metal2, chalcogen2 = _honeycomb(radius_nm, rotation_rad + grain_boundary_tilt_rad, (0.0, 0.07))
        first = numpy.concatenate(positions)
        for p2, site_kind in ((metal2, METAL_SITE), (chalcogen2, CHALCOGEN_SITE)):
            p2 = p2[p2[:, 1] > 0]
            # Keep the second grain's atoms clear of the first grain's boundary atoms.
            distance, _ = scipy.spatial.cKDTree(first).query(p2, distance_upper_bound=0.3)
            p2 = p2[distance > 0.2]
            positions.append(p2)
            sites.append(numpy.full(len(p2), site_kind))
            grains.append(numpy.ones(len(p2), int))
    position = numpy.concatenate(positions)
    site = numpy.concatenate(sites)
    grain = numpy.concatenate(grains)
    inside = _inside_hexagon(position, radius_nm, rotation_rad)
    position, site, grain = position[inside], site[inside], grain[inside]
    z = numpy.zeros((len(position), 2), int)
    is_metal = site == METAL_SITE
    z[is_metal, 0] = numpy.where(rng.random(int(is_metal.sum())) < w_fraction, Z_W, Z_MO)
    n_ch = int((~is_metal).sum())
    chalcogen_z = numpy.where(rng.random((n_ch, 2)) < se_fraction, Z_SE, Z_S)
    chalcogen_z[rng.random((n_ch, 2)) < s_vacancy_fraction] = 0
    # A lone chalcogen atom sits in the first slot, which keeps S1 columns uniform.
    chalcogen_z = numpy.sort(chalcogen_z, axis=1)[:, ::-1]
    z[~is_metal] = chalcogen_z
    return ColumnTable(position, site, z, grain)
