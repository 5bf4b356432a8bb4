"""Every experiment, as a plan (see :mod:`nion_autoem.plan`).

- :class:`PointSpectroscopy`: survey, spectra on the brightest features, then a closer look at the best;
- :class:`~nion_autoem.plans.dkl_spectroscopy.DKLSpectroscopy`: deep-kernel active spectroscopy;
- :class:`~nion_autoem.plans.atom_finding.AtomFinding`: live ELIT atom finding;
- :class:`~nion_autoem.plans.beam_targeting.BeamTargeting`: atom-by-atom fabrication;
- :mod:`~nion_autoem.plans.subplans`: the pieces they share (spectra at points, autofocus, find atoms).

The DKL, ELIT and targeting plans import torch and GPyTorch when used, not
when this package is imported.
"""

from nion_autoem.plans.point_spectroscopy import PointSpectroscopy

__all__ = ["PointSpectroscopy"]
