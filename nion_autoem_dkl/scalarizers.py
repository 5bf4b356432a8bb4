"""Scalarizers: turn one measured signal (spectrum or diffraction frame) into the number the agent optimises.

Every scalarizer is a callable ``scalarizer(signal) -> float``. Spectra are
1D arrays with an energy axis given either as ``(offset_eV, scale_eV_per_channel)``
or as an explicit array of energies. The caller keeps the full signals, so a
finished run can be re-scalarized with a different choice.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing

import nion_autoem_checks as _checks

_NDArray = numpy.typing.NDArray[typing.Any]

EnergyAxis = tuple[float, float] | _NDArray
Scalarizer = typing.Callable[[_NDArray], float]


def _check_axis(axis: EnergyAxis) -> None:
    """Check a calibration ``(offset_eV, scale_eV_per_channel)`` or an explicit energy array (channel count aside)."""
    if isinstance(axis, tuple):
        if len(axis) != 2:
            raise ValueError(f"axis must be (offset_eV, scale_eV_per_channel) or an array of energies, got {_checks.describe(axis)}")
        _checks.number(axis[0], "axis offset", "a finite energy in eV")
        _checks.number(axis[1], "axis scale", "a positive finite number of eV per channel", lambda v: v > 0)
        return
    energies = _checks.real_array(axis, "axis", "finite, strictly increasing energies in eV", finite=False)
    if energies.ndim != 1 or not numpy.all(numpy.isfinite(energies)) or not numpy.all(numpy.diff(energies) > 0):
        raise ValueError(f"axis must be finite, strictly increasing energies in eV, got {_checks.describe(energies)}")


def energy_axis(n_channels: int, axis: EnergyAxis) -> _NDArray:
    """Energies of the channels of a spectrum.

    Parameters
    ----------
    n_channels : int
        Number of channels.
    axis : (offset_eV, scale_eV_per_channel) or (n_channels,) ndarray
        Calibration or explicit energies (must increase).

    Returns
    -------
    energies : (n_channels,) ndarray

    Examples
    --------
    >>> energy_axis(3, (10.0, 0.5)).tolist()
    [10.0, 10.5, 11.0]
    """
    n_channels = _checks.whole(n_channels, "n_channels", 1)
    _check_axis(axis)
    if isinstance(axis, tuple):
        offset, scale = float(axis[0]), float(axis[1])
        return offset + scale * numpy.arange(n_channels)
    energies = numpy.asarray(axis, dtype=numpy.float64)
    if energies.shape != (n_channels,):
        raise ValueError(f"axis must have one energy per channel ({n_channels} channels), got shape {energies.shape}")
    return energies


def _spectrum(signal: _NDArray) -> _NDArray:
    spectrum = _checks.real_array(signal, "signal", "a finite 1D spectrum", finite=False)
    if spectrum.ndim != 1:
        raise ValueError(f"signal must be a 1D spectrum (channels,), got shape {spectrum.shape}")
    finite = numpy.isfinite(spectrum)
    if not finite.all():
        bad = int(spectrum.size - numpy.count_nonzero(finite))
        raise ValueError(f"signal must be a finite 1D spectrum, got {bad} NaN or infinite channel{'s' if bad != 1 else ''}")
    return spectrum


def _check_band(band: tuple[float, float], name: str) -> None:
    expected = "a finite (low_eV, high_eV) pair with low < high"
    if not isinstance(band, (tuple, list, numpy.ndarray)) or len(band) != 2 or not all(_checks.is_number(v) for v in band):
        raise TypeError(f"{name} must be {expected}, got {_checks.describe(band)}")
    low, high = float(band[0]), float(band[1])
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"{name} must be {expected}, got {_checks.describe(band)}")


def _band(energies: _NDArray, band: tuple[float, float], what: str) -> _NDArray:
    low, high = float(band[0]), float(band[1])
    inside = (energies >= low) & (energies <= high)
    if not inside.any():
        raise ValueError(
            f"{what} band {band} eV contains no channel; the spectrum covers "
            f"{energies[0]:.3g}..{energies[-1]:.3g} eV."
        )
    return inside


def _trapezoid_weights(x: _NDArray) -> _NDArray:
    """Weights ``w`` with ``sum(w * y) == _trapezoid(y, x)``."""
    if x.size < 2:
        return numpy.ones(x.size)
    steps = numpy.diff(x)
    weights = numpy.zeros(x.size)
    weights[:-1] += 0.5 * steps
    weights[1:] += 0.5 * steps
    return weights


def _check_gain(gain: float) -> float:
    return _checks.number(gain, "gain", "a positive finite number of signal units per detected electron", lambda v: v > 0)


def _trapezoid(y: _NDArray, x: _NDArray) -> float:
    if y.size < 2:
        return float(y.sum()) * (float(x[1] - x[0]) if x.size > 1 else 1.0)
    return float(numpy.sum(0.5 * (y[1:] + y[:-1]) * numpy.diff(x)))


@dataclasses.dataclass(frozen=True)
class BandMaximum:
    """Largest intensity in an energy band.

    Examples
    --------
    >>> import numpy
    >>> BandMaximum((0.0, 1.0), (2.0, 3.0))(numpy.array([9.0, 1.0, 2.0, 3.0, 1.0]))
    3.0
    """

    axis: EnergyAxis
    band: tuple[float, float]

    def __post_init__(self) -> None:
        _check_axis(self.axis)
        _check_band(self.band, "band")

    def __call__(self, signal: _NDArray) -> float:
        spectrum = _spectrum(signal)
        inside = _band(energy_axis(spectrum.size, self.axis), self.band, "signal")
        return float(spectrum[inside].max())


@dataclasses.dataclass(frozen=True)
class BandIntegral:
    """Integrated intensity (counts x eV) in an energy band, trapezoidal rule.

    Examples
    --------
    >>> import numpy
    >>> BandIntegral((0.0, 1.0), (1.0, 3.0))(numpy.ones(5))
    2.0
    """

    axis: EnergyAxis
    band: tuple[float, float]

    def __post_init__(self) -> None:
        _check_axis(self.axis)
        _check_band(self.band, "band")

    def __call__(self, signal: _NDArray) -> float:
        spectrum = _spectrum(signal)
        energies = energy_axis(spectrum.size, self.axis)
        inside = _band(energies, self.band, "signal")
        return _trapezoid(spectrum[inside], energies[inside])

    def standard_error(self, signal: _NDArray, gain: float = 1.0) -> float:
        """Poisson standard error of the band integral.

        Parameters
        ----------
        signal : (channels,) ndarray
            The spectrum, ``gain`` signal units per detected electron.
        gain : float
            Signal units per detected electron (1 for a counting detector).

        Returns
        -------
        error : float
            Standard deviation of the integral from counting statistics; hand
            it to ``DKLAgent.observe(..., errors=...)``.

        Examples
        --------
        >>> import numpy
        >>> BandIntegral((0.0, 1.0), (0.0, 1.0)).standard_error(numpy.array([4.0, 4.0]))
        1.4142135623730951
        """
        gain = _check_gain(gain)
        spectrum = _spectrum(signal)
        energies = energy_axis(spectrum.size, self.axis)
        inside = _band(energies, self.band, "signal")
        weights = _trapezoid_weights(energies[inside])
        return float(numpy.sqrt(numpy.sum(weights**2 * gain * numpy.clip(spectrum[inside], 0.0, None))))


@dataclasses.dataclass(frozen=True)
class PeakRatio:
    """Ratio of the integrals of two bands, e.g. L3/L2 white lines.

    Examples
    --------
    >>> import numpy
    >>> PeakRatio((0.0, 1.0), (0.0, 1.0), (2.0, 3.0))(numpy.array([2.0, 2.0, 1.0, 1.0]))
    2.0
    """

    axis: EnergyAxis
    numerator_band: tuple[float, float]
    denominator_band: tuple[float, float]

    def __post_init__(self) -> None:
        _check_axis(self.axis)
        _check_band(self.numerator_band, "numerator_band")
        _check_band(self.denominator_band, "denominator_band")

    def __call__(self, signal: _NDArray) -> float:
        denominator = BandIntegral(self.axis, self.denominator_band)(signal)
        if denominator == 0:
            return math.nan
        return BandIntegral(self.axis, self.numerator_band)(signal) / denominator

    def standard_error(self, signal: _NDArray, gain: float = 1.0) -> float:
        """Poisson standard error of the ratio (first-order propagation of both band integrals).

        A noisy elemental ratio is where this matters: the agent then knows
        which measurements to trust (see ``DKLAgent.observe``'s ``errors``).

        Examples
        --------
        >>> import numpy
        >>> ratio = PeakRatio((0.0, 1.0), (0.0, 1.0), (2.0, 3.0))
        >>> round(ratio.standard_error(numpy.array([100.0, 100.0, 100.0, 100.0])), 4)
        0.1
        """
        numerator = BandIntegral(self.axis, self.numerator_band)
        denominator = BandIntegral(self.axis, self.denominator_band)
        top, bottom = numerator(signal), denominator(signal)
        if bottom == 0:
            return math.inf
        return math.hypot(numerator.standard_error(signal, gain) / bottom, top * denominator.standard_error(signal, gain) / bottom**2)


@dataclasses.dataclass(frozen=True)
class PeakEnergy:
    """Energy of the peak in a band, refined by a parabola through log intensities.

    The parabola through the log of the three channels around the maximum is
    exact for a Gaussian peak, which gives sub-channel precision for
    plasmon or exciton energies.

    Examples
    --------
    >>> import numpy
    >>> e = numpy.linspace(0.0, 10.0, 201)
    >>> round(PeakEnergy(e, (2.0, 8.0))(numpy.exp(-0.5 * ((e - 4.013) / 0.4) ** 2)), 3)
    4.013
    """

    axis: EnergyAxis
    band: tuple[float, float]

    def __post_init__(self) -> None:
        _check_axis(self.axis)
        _check_band(self.band, "band")

    def __call__(self, signal: _NDArray) -> float:
        spectrum = _spectrum(signal)
        energies = energy_axis(spectrum.size, self.axis)
        inside = numpy.flatnonzero(_band(energies, self.band, "peak"))
        peak = int(inside[numpy.argmax(spectrum[inside])])
        if peak == 0 or peak == spectrum.size - 1:
            return float(energies[peak])
        three = spectrum[peak - 1 : peak + 2]
        values = numpy.log(three) if numpy.all(three > 0) else three
        denominator = values[0] - 2 * values[1] + values[2]
        if denominator >= 0:
            return float(energies[peak])
        shift = 0.5 * (values[0] - values[2]) / denominator
        step = 0.5 * (energies[peak + 1] - energies[peak - 1])
        return float(energies[peak] + shift * step)


@dataclasses.dataclass(frozen=True)
class EdgeIntensity:
    """Core-loss edge intensity above a power-law background ``A * E**-r``.

    The background is fitted by linear least squares in log-log space over
    the pre-edge window, extrapolated under the edge and subtracted; the
    remainder is integrated over the signal window.

    Examples
    --------
    >>> import numpy
    >>> e = numpy.arange(200.0, 400.0, 0.5)
    >>> s = 1e7 * e ** -3.0 + numpy.where(e >= 284.0, 5.0, 0.0)
    >>> round(EdgeIntensity(e, (230.0, 280.0), (290.0, 330.0))(s), 3)
    200.0
    """

    axis: EnergyAxis
    pre_edge: tuple[float, float]
    signal_window: tuple[float, float]

    def __post_init__(self) -> None:
        _check_axis(self.axis)
        _check_band(self.pre_edge, "pre_edge")
        _check_band(self.signal_window, "signal_window")

    def background(self, signal: _NDArray) -> _NDArray:
        """Fitted power-law background over all channels."""
        spectrum = _spectrum(signal)
        energies = energy_axis(spectrum.size, self.axis)
        if energies[0] <= 0:
            raise ValueError("a power-law background needs positive energies; check the energy offset.")
        window = _band(energies, self.pre_edge, "pre-edge") & (spectrum > 0)
        if window.sum() < 2:
            raise ValueError(f"pre-edge window {self.pre_edge} eV needs at least 2 positive channels.")
        slope, intercept = numpy.polyfit(numpy.log(energies[window]), numpy.log(spectrum[window]), 1)
        return typing.cast(_NDArray, numpy.exp(intercept) * energies**slope)

    def __call__(self, signal: _NDArray) -> float:
        spectrum = _spectrum(signal)
        energies = energy_axis(spectrum.size, self.axis)
        inside = _band(energies, self.signal_window, "signal")
        net = spectrum - self.background(spectrum)
        return _trapezoid(net[inside], energies[inside])


def _check_centre(centre: tuple[float, float] | None) -> None:
    if centre is None:
        return
    expected = "None or a finite (row, column) pair"
    if not isinstance(centre, (tuple, list, numpy.ndarray)) or len(centre) != 2 or not all(_checks.is_number(v) for v in centre):
        raise TypeError(f"centre must be {expected}, got {_checks.describe(centre)}")
    if not all(math.isfinite(float(v)) for v in centre):
        raise ValueError(f"centre must be {expected}, got {_checks.describe(centre)}")


def center_of_mass(frame: _NDArray, centre: tuple[float, float] | None = None) -> tuple[float, float]:
    """Centre-of-mass shift of a diffraction frame: magnitude and angle.

    Parameters
    ----------
    frame : (M, N) ndarray
        Camera frame (non-negative intensities).
    centre : (row, column), optional
        Reference (unshifted) centre; the geometric centre by default.

    Returns
    -------
    magnitude : float
        Shift in pixels.
    angle : float
        Direction in radians, ``atan2(-d_row, d_column)`` (counter-clockwise
        from the +column axis with rows pointing down).

    Examples
    --------
    >>> import numpy
    >>> f = numpy.zeros((5, 5)); f[2, 4] = 1.0
    >>> center_of_mass(f)
    (2.0, 0.0)
    """
    image = _checks.real_array(frame, "frame", "a finite 2D diffraction frame", finite=False)
    if image.ndim != 2:
        raise ValueError(f"frame must be a 2D diffraction frame (rows, columns), got shape {image.shape}")
    finite = numpy.isfinite(image)
    if not finite.all():
        bad = int(image.size - numpy.count_nonzero(finite))
        raise ValueError(f"frame must be a finite 2D diffraction frame, got {bad} NaN or infinite pixel{'s' if bad != 1 else ''}")
    _check_centre(centre)
    total = float(image.sum())
    if total <= 0:
        raise ValueError(f"frame must have a positive total intensity to have a centre of mass, got a total of {total:.6g}")
    rows, cols = numpy.indices(image.shape)
    reference = ((image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2) if centre is None else (float(centre[0]), float(centre[1]))
    d_row = float((rows * image).sum()) / total - reference[0]
    d_col = float((cols * image).sum()) / total - reference[1]
    # "+ 0.0" turns atan2's signed zero into a plain 0.0 for a shift along +column.
    return math.hypot(d_row, d_col), math.atan2(-d_row, d_col) + 0.0


@dataclasses.dataclass(frozen=True)
class CenterOfMassMagnitude:
    """Magnitude of the diffraction centre-of-mass shift (e.g. a field or strain proxy)."""

    centre: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _check_centre(self.centre)

    def __call__(self, signal: _NDArray) -> float:
        return center_of_mass(signal, self.centre)[0]


@dataclasses.dataclass(frozen=True)
class CenterOfMassAngle:
    """Direction (radians) of the diffraction centre-of-mass shift."""

    centre: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _check_centre(self.centre)

    def __call__(self, signal: _NDArray) -> float:
        return center_of_mass(signal, self.centre)[1]


@dataclasses.dataclass(frozen=True)
class Custom:
    """Wrap any user function ``signal -> number`` and check that it returns a finite float.

    Examples
    --------
    >>> import numpy
    >>> Custom(lambda s: s.sum())(numpy.ones(3))
    3.0
    """

    function: typing.Callable[[_NDArray], typing.Any]

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise TypeError(f"function must be a callable signal -> number, got {_checks.type_name(self.function)}")

    def __call__(self, signal: _NDArray) -> float:
        result = self.function(numpy.asarray(signal))
        if not _checks.is_number(result):
            raise TypeError(f"the custom scalarizer must return a finite number, got {_checks.describe(result)}")
        value = float(result)
        if not math.isfinite(value):
            raise ValueError(f"the custom scalarizer must return a finite number, got the non-finite value {value!r}")
        return value


def scalarize_all(signals: typing.Iterable[_NDArray], scalarizer: Scalarizer) -> _NDArray:
    """Apply a scalarizer to stored signals (to re-scalarize a finished run).

    Examples
    --------
    >>> import numpy
    >>> scalarize_all([numpy.ones(2), numpy.zeros(2)], Custom(numpy.sum)).tolist()
    [2.0, 0.0]
    """
    if not callable(scalarizer):
        raise TypeError(f"scalarizer must be a callable signal -> float, got {_checks.type_name(scalarizer)}")
    return numpy.asarray([scalarizer(signal) for signal in signals], dtype=numpy.float64)


#: Scalarizers of a diffraction frame by name, with what a microscopist calls them (the panel's and the console's choices).
DIFFRACTION_SCALARIZERS: dict[str, str] = {
    "com_magnitude": "centre-of-mass shift, magnitude (field or polarization strength)",
    "com_angle": "centre-of-mass shift, direction (field or polarization direction)",
}


def diffraction_scalarizer(name: str, centre: tuple[float, float] | None = None) -> Scalarizer:
    """A diffraction-frame scalarizer by its name in :data:`DIFFRACTION_SCALARIZERS`.

    Parameters
    ----------
    name : {'com_magnitude', 'com_angle'}
        The magnitude (pixels) or the direction (radians) of the frame's
        centre-of-mass shift.
    centre : (row, column), optional
        Where the undeflected disc sits on the camera; the camera's geometric
        centre by default.

    Returns
    -------
    Scalarizer
        ``frame -> float``.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`DIFFRACTION_SCALARIZERS`.

    Examples
    --------
    >>> import numpy
    >>> f = numpy.zeros((5, 5)); f[0, 2] = 1.0
    >>> diffraction_scalarizer("com_magnitude")(f), round(diffraction_scalarizer("com_angle")(f), 4)
    (2.0, 1.5708)
    """
    if name == "com_magnitude":
        return CenterOfMassMagnitude(centre)
    if name == "com_angle":
        return CenterOfMassAngle(centre)
    raise ValueError(f"name must be a diffraction scalarizer, one of {sorted(DIFFRACTION_SCALARIZERS)}, got {_checks.describe(name)}")
