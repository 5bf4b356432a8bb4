"""Sub-plans every experiment shares: pieces of plans, used with ``yield from``.

Each returns what it found, so compositions read like the operator's notes::

    frame = yield Survey(ScanFrame((256, 256), 4.0))
    atoms = yield from find_atoms(frame)
    spectra = yield from spectra_at(atoms.positions_nm("S1"), exposure_ms=20.0)

- :func:`spectra_at`: a spectrum (or camera frame) at each position, a checkpoint between;
- :func:`autofocus`: a through-focus series of surveys, then the sharpest defocus;
- :func:`~nion_autoem.plans.atom_finding.find_atoms`: ELIT on a surveyed frame
  (re-exported here).
"""

from __future__ import annotations

import typing

import numpy

from nion_autoem.actions import Acquire
from nion_autoem.actions import Detector
from nion_autoem.actions import SetDefocus
from nion_autoem.actions import Survey
from nion_autoem.focus import best_focus
from nion_autoem.focus import sharpness
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import Position
from nion_autoem.plan import Checkpoint
from nion_autoem.plan import Report
from nion_autoem.plan import SubPlan
from nion_autoem.plans.atom_finding import FoundAtoms
from nion_autoem.plans.atom_finding import find_atoms

__all__ = ["FoundAtoms", "autofocus", "find_atoms", "spectra_at"]


def spectra_at(positions_nm: typing.Iterable[Position], exposure_ms: float = 20.0, *, detector: Detector = "eels", label: str = "spectrum") -> SubPlan:
    """A spectrum (or, with ``detector="ronchigram"``, a camera frame) at each position; returns the measurements in order."""
    measurements: list[Measurement] = []
    for index, position in enumerate(positions_nm):
        yield Checkpoint()
        measurements.append((yield Acquire(position, exposure_ms, detector, label=f"{label} {index + 1}")))
    return measurements


def autofocus(half_range_nm: float = 20.0, steps: int = 9, *, frame: ScanFrame | None = None, pixel_time_us: float | None = None) -> SubPlan:
    """Survey at ``steps`` defocus values across ±``half_range_nm`` around the present focus and settle on the sharpest.

    Moves are relative, so the sub-plan needs no reading of the instrument
    and replays exactly.  Returns the chosen defocus relative to where it
    started (nm); the focus is left there.
    """
    if not half_range_nm > 0 or steps < 3:
        raise ValueError(f"autofocus needs half_range_nm > 0 and at least 3 steps, got {half_range_nm!r} and {steps!r}")
    offsets = [float(v) for v in numpy.linspace(-half_range_nm, half_range_nm, steps)]
    scores: list[float] = []
    position = 0.0
    for offset in offsets:
        yield SetDefocus(offset - position, relative=True, label=f"defocus {offset:+.3g} nm")
        position = offset
        image = yield Survey(frame, pixel_time_us=pixel_time_us, label=f"focus series {offset:+.3g} nm")
        scores.append(sharpness(numpy.asarray(image.xdata.data, dtype=float)))
    best = best_focus(offsets, scores)
    yield SetDefocus(best - position, relative=True, label=f"focus at {best:+.3g} nm")
    yield Report({"autofocus_nm": best, "sharpness": dict(zip((f"{o:+.3g}" for o in offsets), scores, strict=True))})
    return best
