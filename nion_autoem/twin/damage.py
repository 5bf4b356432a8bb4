"""Knock-on damage of chalcogen columns: S2 -> S1 -> empty.

Each chalcogen atom is ejected as a Poisson process in the electron fluence
it receives: the probability of surviving a fluence ``F`` (e/nm^2) is
``exp(-sigma * F)``, with ``sigma`` the knock-on cross-section.  Because the
process is memoryless, every acquisition draws a fresh exponential threshold
per atom: the atom goes at the moment its accumulated fluence in that
acquisition first passes the threshold.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing

from nion_autoem.twin.lattice import Z_S
from nion_autoem.twin.lattice import Z_SE

_NDArray = numpy.typing.NDArray[typing.Any]

BARN_NM2 = 1e-10  # 1 barn = 1e-28 m^2


@dataclasses.dataclass(frozen=True)
class DamageEvent:
    """One chalcogen atom knocked out of a column.

    Attributes
    ----------
    column_id : int
        Row of the column in the sample's column table (stable for the sample's life).
    time_s : float
        Simulated time of the ejection.
    dose_e_per_A2 : float
        Electron dose the column had received, in e/Å^2, at the moment of the ejection.
    element : str
        The ejected atom ("S" or "Se").
    before, after : str
        Column class before and after ("S2" -> "S1", "S1" -> "empty").
    position_nm : tuple of float
        Column position in sample nm.
    kind : str
        "ejection" (knock-on) or "migration" (an atom hopped from this column into
        the vacancy at ``to_column_id``).
    to_column_id : int or None
        Receiving column of a migration.
    """

    column_id: int
    time_s: float
    dose_e_per_A2: float
    element: str
    before: str
    after: str
    position_nm: tuple[float, float]
    kind: str = "ejection"
    to_column_id: int | None = None


@dataclasses.dataclass(frozen=True)
class KnockOnModel:
    """Knock-on cross-sections per chalcogen element.

    Parameters
    ----------
    s_cross_section_barn : float
        Cross-section of S.  Measured values for S in MoS2 are of order 0.1-10
        barn depending on the beam energy; the default makes damage visible
        within a few parked-probe seconds at 200 pA.
    se_cross_section_barn : float
        Cross-section of Se (heavier, so smaller).
    migration_cross_section_barn : float
        Cross-section for a chalcogen atom of a full column next to a
        vacancy to hop into it, per electron that hits the vacancy (0: off).
        Only a parked probe reaches the doses where this matters.
    """

    s_cross_section_barn: float = 5.0
    se_cross_section_barn: float = 1.0
    migration_cross_section_barn: float = 0.0

    def __post_init__(self) -> None:
        for name in ("s_cross_section_barn", "se_cross_section_barn", "migration_cross_section_barn"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite cross-section >= 0 barn, got {value!r}")

    def cross_section_nm2(self, z: _NDArray) -> _NDArray:
        """Cross-section in nm^2 for atoms of atomic number ``z`` (0 for absent or metal atoms)."""
        sigma = numpy.zeros(numpy.shape(z))
        sigma = numpy.where(z == Z_S, self.s_cross_section_barn * BARN_NM2, sigma)
        sigma = numpy.where(z == Z_SE, self.se_cross_section_barn * BARN_NM2, sigma)
        return typing.cast(_NDArray, sigma)

    def thresholds_e_per_nm2(self, z: _NDArray, rng: numpy.random.Generator) -> _NDArray:
        """Fresh exponential ejection thresholds (fluence in e/nm^2) for atoms ``z``; inf where immune."""
        sigma = self.cross_section_nm2(z)
        draws = rng.exponential(size=numpy.shape(z))
        with numpy.errstate(divide="ignore"):
            return numpy.where(sigma > 0, draws / numpy.where(sigma > 0, sigma, 1.0), numpy.inf)
