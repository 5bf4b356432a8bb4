"""What a user watches for in a series, and the spectral quantities it is written in.

A :class:`Condition` is a quantity of the spectrum (the L3/L2 white-line
ratio, the O K pre-peak, the integral of a band), a comparison and a
threshold, and how far ahead to look: "white-line ratio below 4.2 within 8 s".
:func:`parse_condition` reads such a sentence.  Quantities are functions of a
prepared spectrum (background removed, unit area, on the common axis of
:class:`~nion_autoem_forecast.preprocess.Preprocessor`) and its axis, so the
same function gives the measured value, the forecast and the ground truth.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]

Quantity = typing.Callable[[_NDArray, _NDArray], _NDArray]
"""A spectral quantity: ``(spectra (..., channels), axis_eV (channels,)) -> values (...)``."""


def _band(spectra: _NDArray, axis_eV: _NDArray, lo: float, hi: float) -> _NDArray:
    inside = (axis_eV >= lo) & (axis_eV <= hi)
    if not numpy.any(inside):
        raise ValueError(f"the band {lo:g}-{hi:g} eV holds no channel of the axis {axis_eV[0]:g}-{axis_eV[-1]:g} eV; choose a band inside it")
    return typing.cast(_NDArray, numpy.sum(spectra[..., inside], axis=-1))


def _flat_background(spectra: _NDArray, axis_eV: _NDArray, lo: float, hi: float) -> _NDArray:
    """The mean of each spectrum in ``lo``-``hi`` eV, as a flat background (..., 1).

    Flat, not sloped: a slope fitted to a few noisy channels and carried 20 eV
    further would make the measure much noisier than the spectrum.
    """
    inside = (axis_eV >= lo) & (axis_eV <= hi)
    if inside.sum() < 2:
        raise ValueError(f"the background window {lo:g}-{hi:g} eV holds fewer than 2 channels of the axis {axis_eV[0]:g}-{axis_eV[-1]:g} eV")
    return typing.cast(_NDArray, spectra[..., inside].mean(axis=-1)[..., numpy.newaxis])


@dataclasses.dataclass(frozen=True)
class WhiteLineRatio:
    """The L3/L2 white-line ratio: integrals over two bands above a flat pre-edge background.

    The continuum under the white lines is not removed, so the numbers are
    this measure's own (smaller than tabulated Fe ratios); only the trend and
    the threshold a user sets on it matter.

    Examples
    --------
    >>> from nion_autoem.twin.insitu import oxide_spectrum
    >>> from nion_autoem_forecast.preprocess import Preprocessor
    >>> p, e = Preprocessor(align="none"), numpy.arange(480.0, 780.0, 0.5)
    >>> [round(float(WhiteLineRatio()(p.prepare(oxide_spectrum(e, x), e).values, p.axis_eV)), 2) for x in (0.0, 1.0)]  # Fe3+ -> Fe2+ lowers it
    [2.67, 1.65]
    """

    l3_eV: tuple[float, float] = (705.0, 713.0)
    l2_eV: tuple[float, float] = (718.0, 727.0)
    background_eV: tuple[float, float] = (685.0, 703.0)
    name: str = "white-line ratio"

    def __call__(self, spectra: numpy.typing.ArrayLike, axis_eV: numpy.typing.ArrayLike) -> _NDArray:
        s, a = numpy.asarray(spectra, dtype=float), numpy.asarray(axis_eV, dtype=float)
        net = s - _flat_background(s, a, *self.background_eV)
        l2 = _band(net, a, *self.l2_eV)
        return typing.cast(_NDArray, _band(net, a, *self.l3_eV) / numpy.where(numpy.abs(l2) > 1e-12, l2, 1e-12))


@dataclasses.dataclass(frozen=True)
class PrePeak:
    """The O K pre-peak: its integral above the flat level just below it, relative to the main O K edge.

    Examples
    --------
    >>> from nion_autoem.twin.insitu import oxide_spectrum
    >>> from nion_autoem_forecast.preprocess import Preprocessor
    >>> p, e = Preprocessor(align="none"), numpy.arange(480.0, 780.0, 0.5)
    >>> [round(float(PrePeak()(p.prepare(oxide_spectrum(e, x), e).values, p.axis_eV)), 2) for x in (0.0, 1.0)]
    [0.06, 0.01]
    """

    peak_eV: tuple[float, float] = (528.0, 531.0)
    background_eV: tuple[float, float] = (523.0, 527.0)
    edge_eV: tuple[float, float] = (536.0, 548.0)
    name: str = "pre-peak"

    def __call__(self, spectra: numpy.typing.ArrayLike, axis_eV: numpy.typing.ArrayLike) -> _NDArray:
        s, a = numpy.asarray(spectra, dtype=float), numpy.asarray(axis_eV, dtype=float)
        net = s - _flat_background(s, a, *self.background_eV)
        edge = _band(net, a, *self.edge_eV)
        return typing.cast(_NDArray, _band(net, a, *self.peak_eV) / numpy.where(numpy.abs(edge) > 1e-12, edge, 1e-12))


@dataclasses.dataclass(frozen=True)
class BandIntegral:
    """The prepared spectrum's integral over a band (a fraction of the window's area).

    Examples
    --------
    >>> float(BandIntegral((1.0, 2.0))(numpy.full(5, 0.2), numpy.arange(5.0)))
    0.4
    """

    band_eV: tuple[float, float]
    name: str = "band integral"

    def __call__(self, spectra: numpy.typing.ArrayLike, axis_eV: numpy.typing.ArrayLike) -> _NDArray:
        return _band(numpy.asarray(spectra, dtype=float), numpy.asarray(axis_eV, dtype=float), *self.band_eV)


QUANTITIES: dict[str, typing.Callable[[], Quantity]] = {"white-line ratio": WhiteLineRatio, "pre-peak": PrePeak}


@dataclasses.dataclass(frozen=True)
class Condition:
    """A quantity crossing a threshold within a time: what the plan acts before.

    Parameters
    ----------
    quantity : str
        ``"white-line ratio"`` or ``"pre-peak"`` (see :data:`QUANTITIES`).
    comparison : {'below', 'above'}
        Which side of the threshold counts as "happened".
    threshold : float
        In the quantity's units.
    within_s : float
        How far ahead to look (the forecast horizon in seconds).
    confidence : float
        The probability of the crossing within ``within_s`` (the fraction of
        the forecast's drawn paths that cross) the forecast must reach before
        the plan acts: higher values act later and more surely.  The paths
        are drawn whole, so 0.5 means the median forecast meets the condition
        within the time.  The default, 0.5, was chosen on twin runs used for
        nothing else (seeds 300-459): the forecast lags a sigmoidal
        transition, so this probability is conservative; of the updates at
        which it was 0.5 or more, 98 % were followed by a crossing within 8 s
        (all of those at 0.7 or more, but acting there comes about half a
        second later and after the crossing in more runs).

    Examples
    --------
    >>> c = Condition("white-line ratio", "below", 4.2, within_s=8.0)
    >>> c.met(numpy.array([4.5, 4.1])).tolist()
    [False, True]
    >>> str(c)
    'white-line ratio below 4.2 within 8 s'
    """

    quantity: str = "white-line ratio"
    comparison: typing.Literal["below", "above"] = "below"
    threshold: float = 4.2
    within_s: float = 8.0
    confidence: float = 0.5

    def __post_init__(self) -> None:
        if self.quantity not in QUANTITIES:
            raise ValueError(f"quantity must be one of {sorted(QUANTITIES)}, got {self.quantity!r}")
        if self.comparison not in ("below", "above"):
            raise ValueError(f"comparison must be 'below' or 'above', got {self.comparison!r}")
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite value of the {self.quantity}, got {self.threshold!r}")
        if not (math.isfinite(self.within_s) and self.within_s > 0):
            raise ValueError(f"within_s must be a time > 0 s (how far ahead to look), got {self.within_s!r}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be a probability between 0 and 1 (0.5: the median forecast), got {self.confidence!r}")

    def __str__(self) -> str:
        return f"{self.quantity} {self.comparison} {self.threshold:g} within {self.within_s:g} s"

    def measure(self) -> Quantity:
        """The function that measures the quantity on prepared spectra."""
        return QUANTITIES[self.quantity]()

    def met(self, values: numpy.typing.ArrayLike) -> _NDArray:
        """Whether values of the quantity are on the "happened" side of the threshold."""
        v = numpy.asarray(values, dtype=float)
        return typing.cast(_NDArray, v < self.threshold if self.comparison == "below" else v > self.threshold)

    def to_dict(self) -> dict[str, typing.Any]:
        return dataclasses.asdict(self)


_SENTENCE = re.compile(r"^\s*(?P<quantity>white[- ]line ratio|pre-?peak)\s+(?:(?P<comparison>below|above)\s+(?P<threshold>[-+0-9.eE]+)|(?P<gone>gone))"
                       r"(?:\s+within\s+(?P<within>[0-9.eE+]+)\s*s)?\s*$", re.IGNORECASE)


def parse_condition(text: str, *, default_within_s: float = 8.0, gone_below: float = 0.05) -> Condition:
    """A :class:`Condition` from a sentence: "white-line ratio below 4.2 within 8 s", "pre-peak gone".

    "gone" means below ``gone_below`` (a pre-peak at 5 % of the O K edge is no
    longer seen at usual noise levels).

    Examples
    --------
    >>> parse_condition("white-line ratio below 4.2 within 10 s")
    Condition(quantity='white-line ratio', comparison='below', threshold=4.2, within_s=10.0, confidence=0.5)
    >>> str(parse_condition("pre-peak gone"))
    'pre-peak below 0.05 within 8 s'
    """
    match = _SENTENCE.match(text)
    if match is None:
        raise ValueError(f"cannot read the condition {text!r}; write e.g. 'white-line ratio below 4.2 within 8 s' or 'pre-peak gone'")
    quantity = "pre-peak" if match["quantity"].lower().startswith("pre") else "white-line ratio"
    within = float(match["within"]) if match["within"] else default_within_s
    if match["gone"]:
        return Condition(quantity, "below", gone_below, within)
    return Condition(quantity, typing.cast(typing.Literal["below", "above"], match["comparison"].lower()), float(match["threshold"]), within)
