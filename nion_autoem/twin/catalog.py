"""The twin samples offered in usim's sample chooser, by key and title."""

from __future__ import annotations

import math

from nion_autoem.twin import lattice
from nion_autoem.twin.clock import SimulatedClock
from nion_autoem.twin.clock import StageDrift
from nion_autoem.twin.damage import KnockOnModel
from nion_autoem.twin.mos2 import MoS2Sample
from nion_autoem.twin.sample import TwinSample

TITLES = {
    "mos2": "MoS2 monolayer (twin)",
    "mos2-doped": "MoS2 with Se/W dopants and a grain boundary (twin)",
    "plasmonic": "Ag nanoparticles on SiN (twin)",
    "polar-domains": "Polar domains, 4D-STEM (twin)",
    "grid-square": "Grid square: flakes, particles, platelets (stage-scale twin)",
}
KEYS = tuple(TITLES)


def key_of(title: str) -> str | None:
    """The catalog key of a twin title, or ``None``."""
    for key, t in TITLES.items():
        if t == title:
            return key
    return None


def build_twins(*, seed: int = 0, clock: SimulatedClock | None = None, drift_nm_per_s: tuple[float, float] = (0.0, 0.0),
                probe_sigma_nm: float = 0.05, s_cross_section_barn: float = 5.0, line_jitter_nm: float = 0.003,
                migration_cross_section_barn: float = 0.0) -> list[TwinSample]:
    """One of each twin sample, sharing one simulated clock and one stage drift (they sit on the same stage)."""
    from nion_autoem.twin.diffraction import PolarDomainSample
    from nion_autoem.twin.plasmonic import PlasmonicSample
    from nion_autoem.twin.stage_twin import GridSquareSample

    clock = clock or SimulatedClock()
    drift = StageDrift(drift_nm_per_s)
    knock_on = KnockOnModel(s_cross_section_barn=s_cross_section_barn, se_cross_section_barn=s_cross_section_barn / 5,
                            migration_cross_section_barn=migration_cross_section_barn)
    mos2 = MoS2Sample(lattice.mos2_flake(20.0, seed=seed), title=TITLES["mos2"], seed=seed, probe_sigma_nm=probe_sigma_nm,
                      knock_on=knock_on, drift=drift, line_jitter_nm=line_jitter_nm, clock=clock)
    doped = MoS2Sample(lattice.mos2_flake(20.0, seed=seed + 1, se_fraction=0.05, w_fraction=0.05, grain_boundary_tilt_rad=math.radians(13.2)),
                       title=TITLES["mos2-doped"], seed=seed + 1, probe_sigma_nm=probe_sigma_nm, knock_on=knock_on, drift=drift,
                       line_jitter_nm=line_jitter_nm, clock=clock)
    plasmonic = PlasmonicSample(title=TITLES["plasmonic"], seed=seed + 2, drift=drift, clock=clock)
    polar = PolarDomainSample(title=TITLES["polar-domains"], seed=seed + 3, drift=drift, clock=clock)
    grid_square = GridSquareSample(title=TITLES["grid-square"], seed=seed + 4, drift=drift, clock=clock)
    return [mos2, doped, plasmonic, polar, grid_square]
