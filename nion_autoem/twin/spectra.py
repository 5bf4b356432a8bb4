"""Line shapes shared by the twins' low-loss EELS spectra.

All shapes are evaluated on an energy axis in eV and normalised to unit area,
so a spectrum is a sum of (electron count) x (shape) x (channel width).
"""

from __future__ import annotations

import math
import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]


def channel_width_eV(energies_eV: _NDArray) -> float:
    """Width of one energy channel; the axis must be uniform and increasing."""
    if energies_eV.ndim != 1 or energies_eV.shape[0] < 2:
        raise ValueError(f"energies_eV must be a 1D axis of at least 2 channels, got shape {energies_eV.shape}")
    width = float(energies_eV[1] - energies_eV[0])
    if width <= 0:
        raise ValueError(f"energies_eV must increase, got a step of {width} eV")
    return width


def zero_loss_peak(energies_eV: _NDArray, fwhm_eV: float = 0.3) -> _NDArray:
    """Zero-loss peak: a Gaussian core with a weak Lorentzian tail, unit area."""
    sigma = max(fwhm_eV, 1e-3) / 2.3548
    core = numpy.exp(-0.5 * (energies_eV / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    gamma = fwhm_eV
    tail = (gamma / math.pi) / (energies_eV ** 2 + gamma ** 2)
    return typing.cast(_NDArray, 0.97 * core + 0.03 * tail)


def lorentzian(energies_eV: _NDArray, center_eV: float, fwhm_eV: float) -> _NDArray:
    """A unit-area Lorentzian loss peak, cut off below zero loss."""
    half = fwhm_eV / 2
    shape = (half / math.pi) / ((energies_eV - center_eV) ** 2 + half ** 2)
    return numpy.where(energies_eV > 0, shape, 0.0)


def power_law_background(energies_eV: _NDArray, onset_eV: float = 1.0, exponent: float = 3.0) -> _NDArray:
    """A decaying inelastic background that sets in smoothly above ``onset_eV`` (unnormalised, peak ~1)."""
    e = numpy.maximum(energies_eV, 1e-3)
    rise = 1.0 / (1.0 + numpy.exp(-(energies_eV - onset_eV) / 0.2))
    return typing.cast(_NDArray, rise * (onset_eV / numpy.maximum(e, onset_eV)) ** exponent)
