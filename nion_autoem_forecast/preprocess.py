"""Preparing a series of EELS spectra for forecasting: align, remove the background, crop, resample.

Each function takes numpy arrays (counts and their energy axis in eV) and
returns new arrays; :class:`Preprocessor` chains them for one spectrum at a
time, as a live series arrives, and says in :attr:`Prepared.notes` what it
had to repair (NaN channels filled, another energy axis resampled).  What it
cannot repair (a window outside the recorded axis, a spectrum mostly NaN)
raises :class:`SeriesError` naming the argument and what would be right.

The order matters: the energy drift is measured first (on a feature that the
sample's change does not move: the zero-loss peak, or an edge onset such as
the main O K edge), the background is fitted on the aligned spectrum, and the
window is cropped and resampled last onto a common axis, so every spectrum of
a series has the same channels.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
import scipy.ndimage

_NDArray = numpy.typing.NDArray[typing.Any]


class SeriesError(ValueError):
    """A spectrum or series that cannot be prepared as asked; the message says what would be right."""


def _axis(energies_eV: numpy.typing.ArrayLike, n: int, name: str = "energies_eV") -> _NDArray:
    e = numpy.asarray(energies_eV, dtype=float)
    if e.ndim != 1 or e.shape[0] != n:
        raise SeriesError(f"{name} must be a 1D axis with one energy per channel ({n}), got shape {e.shape}")
    if n < 2 or not numpy.all(numpy.isfinite(e)) or not numpy.all(numpy.diff(e) > 0):
        raise SeriesError(f"{name} must be finite and increasing (eV per channel > 0), got {e[:3]}...")
    return e


def _window(window_eV: tuple[float, float], energies_eV: _NDArray, name: str) -> tuple[float, float]:
    lo, hi = float(window_eV[0]), float(window_eV[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise SeriesError(f"{name} must be (low, high) in eV with low < high, got {window_eV!r}")
    if lo < energies_eV[0] - 1e-9 or hi > energies_eV[-1] + 1e-9:
        raise SeriesError(f"{name} {lo:g}-{hi:g} eV lies outside the recorded axis {energies_eV[0]:g}-{energies_eV[-1]:g} eV; "
                          "choose an interval inside it (or record a wider range)")
    return lo, hi


def shift_spectrum(spectrum: numpy.typing.ArrayLike, energies_eV: numpy.typing.ArrayLike, shift_eV: float) -> _NDArray:
    """The spectrum moved by ``shift_eV`` along its axis (a feature at E appears at E + shift), linearly interpolated.

    Examples
    --------
    >>> e = numpy.arange(10.0)
    >>> int(shift_spectrum(numpy.eye(10)[3], e, 2.0).argmax())
    5
    """
    s = numpy.asarray(spectrum, dtype=float)
    e = _axis(energies_eV, s.shape[-1])
    return typing.cast(_NDArray, numpy.interp(e - shift_eV, e, s))


def zero_loss_shift_eV(spectrum: numpy.typing.ArrayLike, energies_eV: numpy.typing.ArrayLike) -> float:
    """Where the zero-loss peak sits (eV), to sub-channel precision (a parabola through the maximum).

    Subtract it from the axis (or shift the spectrum by its negative) to put the peak at 0 eV.

    Examples
    --------
    >>> e = numpy.arange(-5.0, 20.0, 0.1)
    >>> round(zero_loss_shift_eV(numpy.exp(-0.5 * ((e - 0.33) / 0.2) ** 2), e), 2)
    0.33
    """
    s = numpy.asarray(spectrum, dtype=float)
    e = _axis(energies_eV, s.shape[-1])
    if not numpy.any(numpy.isfinite(s)):
        raise SeriesError("the spectrum has no finite channel, so it has no zero-loss peak")
    i = int(numpy.nanargmax(s))
    return float(e[i] + _parabola_offset(s, i) * (e[1] - e[0]))


def _parabola_offset(values: _NDArray, i: int) -> float:
    if i <= 0 or i >= len(values) - 1:
        return 0.0
    a, b, c = values[i - 1], values[i], values[i + 1]
    denominator = a - 2 * b + c
    return 0.0 if denominator == 0 or not math.isfinite(denominator) else float(numpy.clip(0.5 * (a - c) / denominator, -0.5, 0.5))


def edge_shift_eV(spectrum: numpy.typing.ArrayLike, reference: numpy.typing.ArrayLike, energies_eV: numpy.typing.ArrayLike,
                  window_eV: tuple[float, float], *, max_shift_eV: float = 5.0, smooth_eV: float = 0.6) -> float:
    """How far ``spectrum`` is shifted against ``reference`` (eV), from the edge onset in ``window_eV``.

    The reference, shifted in steps of a tenth of a channel, is fitted to
    the spectrum in the window together with a gain and a linear background
    (least squares), so a change of intensity or a sloping background does
    not bias the result; the best shift is refined with a parabola.

    Parameters
    ----------
    spectrum, reference : array_like
        Counts on the same axis.
    energies_eV : array_like
        The axis (uniform).
    window_eV : (low, high)
        Around an edge onset that the sample's change does not move.
    max_shift_eV : float
        Largest drift looked for.
    smooth_eV : float
        Gaussian smoothing of the reference (its shot noise).

    Returns
    -------
    float
        The shift: a feature at E in ``reference`` is at E + shift in ``spectrum``.

    Examples
    --------
    >>> e = numpy.arange(500.0, 600.0, 0.5)
    >>> ref = 1.0 / (1.0 + numpy.exp(-(e - 532.0)))
    >>> round(edge_shift_eV(1.0 / (1.0 + numpy.exp(-(e - 533.2))), ref, e, (520.0, 545.0)), 1)
    1.2
    """
    s, r = numpy.asarray(spectrum, dtype=float), numpy.asarray(reference, dtype=float)
    e = _axis(energies_eV, s.shape[-1])
    if r.shape != s.shape:
        raise SeriesError(f"reference must be on the spectrum's axis ({s.shape[-1]} channels), got shape {r.shape}")
    lo, hi = _window(window_eV, e, "window_eV")
    step = float(e[1] - e[0])
    r = scipy.ndimage.gaussian_filter1d(numpy.nan_to_num(r), max(smooth_eV / step, 1e-3))
    inside = (e >= lo) & (e <= hi)
    ew, sw = e[inside], numpy.nan_to_num(s[inside])
    shifts = numpy.arange(-max_shift_eV, max_shift_eV + 1e-9, step / 10)
    # every shifted reference at once: (shifts, channels)
    shifted = numpy.interp((ew[numpy.newaxis, :] - shifts[:, numpy.newaxis]).ravel(), e, r).reshape(len(shifts), -1)
    x = (ew - ew.mean()) / (ew.std() + 1e-12)
    # the linear background, projected out of both sides (x is centred, so [1, x] is already orthogonal)
    q = numpy.stack([numpy.ones_like(x) / math.sqrt(len(x)), x / math.sqrt(float(x @ x))], axis=1)
    sw_r = sw - q @ (q.T @ sw)
    sh_r = shifted - (shifted @ q) @ q.T
    norms = numpy.einsum("ij,ij->i", sh_r, sh_r)
    explained = numpy.where(norms > 0, (sh_r @ sw_r) ** 2 / numpy.where(norms > 0, norms, 1.0), 0.0)
    explained = numpy.where(sh_r @ sw_r > 0, explained, 0.0)  # a negative gain is no match
    best = int(numpy.argmax(explained))
    return float(shifts[best] + _parabola_offset(explained, best) * step / 10)


def remove_power_law_background(spectrum: numpy.typing.ArrayLike, energies_eV: numpy.typing.ArrayLike, fit_window_eV: tuple[float, float]) -> _NDArray:
    """The spectrum minus a power law ``A * E**-r`` fitted (in log-log) to the pre-edge ``fit_window_eV``.

    Examples
    --------
    >>> e = numpy.arange(400.0, 600.0, 1.0)
    >>> edge = numpy.where(e > 500, 10.0, 0.0)
    >>> out = remove_power_law_background(1e9 * e ** -3.0 + edge, e, (420.0, 495.0))
    >>> abs(round(float(out[e < 495].mean()), 3)), round(float(out[e > 510].mean()), 1)
    (0.0, 10.0)
    """
    s = numpy.asarray(spectrum, dtype=float)
    e = _axis(energies_eV, s.shape[-1])
    lo, hi = _window(fit_window_eV, e, "fit_window_eV")
    inside = (e >= lo) & (e <= hi) & (s > 0) & numpy.isfinite(s)
    if inside.sum() < 3:
        raise SeriesError(f"the background fit window {lo:g}-{hi:g} eV holds {int(inside.sum())} channels with counts; it needs at least 3 (widen it)")
    # a straight line in log-log, in closed form (a LAPACK least-squares call is slow on a busy machine)
    x, y = numpy.log(e[inside]), numpy.log(s[inside])
    xm, ym = x.mean(), y.mean()
    slope = float(((x - xm) @ (y - ym)) / ((x - xm) @ (x - xm)))
    intercept = ym - slope * xm
    return typing.cast(_NDArray, s - numpy.exp(intercept) * e ** slope)


def crop(spectrum: numpy.typing.ArrayLike, energies_eV: numpy.typing.ArrayLike, window_eV: tuple[float, float]) -> tuple[_NDArray, _NDArray]:
    """The channels inside ``window_eV`` and their energies.

    Examples
    --------
    >>> crop(numpy.arange(10.0), numpy.arange(10.0) * 0.5, (1.0, 2.0))[0]
    array([2., 3., 4.])
    """
    s = numpy.asarray(spectrum, dtype=float)
    e = _axis(energies_eV, s.shape[-1])
    lo, hi = _window(window_eV, e, "window_eV")
    inside = (e >= lo - 1e-9) & (e <= hi + 1e-9)
    return s[..., inside], e[inside]


def resample(spectrum: numpy.typing.ArrayLike, energies_eV: numpy.typing.ArrayLike, axis_eV: numpy.typing.ArrayLike) -> _NDArray:
    """The spectrum on another axis (linear interpolation of counts per eV, so the integral is kept).

    Examples
    --------
    >>> resample(numpy.ones(11), numpy.linspace(0.0, 10.0, 11), [0.0, 2.0, 4.0])
    array([2., 2., 2.])
    """
    s = numpy.asarray(spectrum, dtype=float)
    e = _axis(energies_eV, s.shape[-1])
    a = numpy.asarray(axis_eV, dtype=float)
    if a.ndim != 1 or a.size < 2 or a[0] < e[0] - 1e-9 or a[-1] > e[-1] + 1e-9:
        raise SeriesError(f"axis_eV ({a[0] if a.size else '?'}-{a[-1] if a.size else '?'} eV) must lie inside the spectrum's axis {e[0]:g}-{e[-1]:g} eV")
    per_eV = s / numpy.gradient(e)
    return typing.cast(_NDArray, numpy.interp(a, e, per_eV) * numpy.gradient(a))


def fill_nan_channels(spectrum: numpy.typing.ArrayLike, *, max_fraction: float = 0.05) -> tuple[_NDArray, int]:
    """NaN or infinite channels replaced by linear interpolation from their neighbours; returns the spectrum and how many were filled.

    Raises :class:`SeriesError` if more than ``max_fraction`` of the channels are bad.

    Examples
    --------
    >>> fill_nan_channels([1.0, numpy.nan, 3.0], max_fraction=0.5)
    (array([1., 2., 3.]), 1)
    """
    s = numpy.array(spectrum, dtype=float)
    bad = ~numpy.isfinite(s)
    n = int(bad.sum())
    if n == 0:
        return s, 0
    if n > max_fraction * s.size:
        raise SeriesError(f"{n} of {s.size} channels are NaN or infinite, more than the {max_fraction:.0%} that can be filled; check the detector "
                          "(dead columns, a saturated zero-loss peak) or mask fewer channels")
    good = numpy.flatnonzero(~bad)
    s[bad] = numpy.interp(numpy.flatnonzero(bad), good, s[good])
    return s, n


@dataclasses.dataclass(frozen=True)
class Prepared:
    """One spectrum ready to forecast.

    Attributes
    ----------
    values : ndarray
        Counts on the common axis, background removed, divided by the window's total counts (unit area).
    axis_eV : ndarray
        The common axis.
    shift_eV : float
        The energy drift measured and removed.
    total_counts : float
        Counts in the window before the normalisation (gain times dose).
    notes : tuple of str
        What had to be repaired.
    """

    values: _NDArray
    axis_eV: _NDArray
    shift_eV: float
    total_counts: float
    notes: tuple[str, ...] = ()


@dataclasses.dataclass
class Preprocessor:
    """Align, remove the background, crop, resample and normalise spectra of one series, one at a time.

    Parameters
    ----------
    window_eV : (low, high)
        The energy window forecast (what a user marks with an interval on a spectrum in Swift).
    step_eV : float
        Channel width of the common axis.
    align : {'edge', 'zero_loss', 'none'}
        How the energy drift is measured.
    align_window_eV : (low, high) or None
        For ``align='edge'``: an edge onset that the sample's change does not move.
    background_fit_eV : (low, high) or None
        Pre-edge window for a power-law background; None keeps the background.

    Examples
    --------
    >>> from nion_autoem.twin.insitu import parked_probe_series
    >>> s = parked_probe_series(0, steps=2)
    >>> p = Preprocessor()
    >>> out = p.prepare(s["spectra"][0], s["energies_eV"])
    >>> out.values.shape, round(float(out.values.sum()), 6)
    ((221,), 1.0)
    """

    window_eV: tuple[float, float] = (520.0, 740.0)
    step_eV: float = 1.0
    align: typing.Literal["edge", "zero_loss", "none"] = "edge"
    align_window_eV: tuple[float, float] | None = (534.0, 560.0)
    background_fit_eV: tuple[float, float] | None = (482.0, 527.0)
    reference: _NDArray | None = None
    reference_axis_eV: _NDArray | None = None

    def __post_init__(self) -> None:
        lo, hi = float(self.window_eV[0]), float(self.window_eV[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise SeriesError(f"window_eV must be (low, high) in eV with low < high, got {self.window_eV!r}")
        if not (math.isfinite(self.step_eV) and 0 < self.step_eV <= (hi - lo) / 4):
            raise SeriesError(f"step_eV must be > 0 and leave at least 4 channels in the window, got {self.step_eV!r}")
        if self.align not in ("edge", "zero_loss", "none"):
            raise SeriesError(f"align must be 'edge', 'zero_loss' or 'none', got {self.align!r}")
        if self.align == "edge" and self.align_window_eV is None:
            raise SeriesError("align='edge' needs align_window_eV: an edge onset the sample's change does not move")

    @property
    def axis_eV(self) -> _NDArray:
        """The common axis of every prepared spectrum."""
        lo, hi = self.window_eV
        n = int(math.floor((hi - lo) / self.step_eV + 1e-9)) + 1
        return typing.cast(_NDArray, lo + self.step_eV * numpy.arange(n))

    def reset(self) -> None:
        """Forget the alignment reference (a new series starts, e.g. at a fresh area)."""
        self.reference, self.reference_axis_eV = None, None

    def prepare(self, counts: numpy.typing.ArrayLike, energies_eV: numpy.typing.ArrayLike) -> Prepared:
        """Prepare one spectrum of the series; the first one becomes the alignment reference."""
        s, filled = fill_nan_channels(counts)
        e = _axis(energies_eV, s.shape[-1])
        notes: list[str] = []
        if filled:
            notes.append(f"{filled} NaN channel(s) filled by interpolation")
        _window(self.window_eV, e, "window_eV")
        if self.reference_axis_eV is not None and (self.reference_axis_eV.shape != e.shape or not numpy.allclose(self.reference_axis_eV, e)):
            notes.append(f"energy axis changed ({e[0]:.2f}-{e[-1]:.2f} eV, {e[1] - e[0]:.3g} eV/ch); resampled to the series' first axis")
            inside = (self.reference_axis_eV >= e[0]) & (self.reference_axis_eV <= e[-1])
            if not numpy.all(inside):
                lo, hi = self.window_eV
                keep = (self.reference_axis_eV >= lo - 5) & (self.reference_axis_eV <= hi + 5)
                if not numpy.all(inside[keep]):
                    raise SeriesError(f"the new energy axis {e[0]:g}-{e[-1]:g} eV no longer covers the window {lo:g}-{hi:g} eV")
            s = numpy.interp(self.reference_axis_eV, e, s / numpy.gradient(e)) * numpy.gradient(self.reference_axis_eV)
            e = self.reference_axis_eV
        shift = 0.0
        if self.align == "zero_loss":
            shift = zero_loss_shift_eV(s, e)
        elif self.align == "edge":
            assert self.align_window_eV is not None
            if self.reference is None:
                self.reference, self.reference_axis_eV = s.copy(), e.copy()
            else:
                shift = edge_shift_eV(s, self.reference, e, self.align_window_eV)
        if self.reference_axis_eV is None:
            self.reference_axis_eV = e.copy()
        if shift:
            s = shift_spectrum(s, e, -shift)
        if self.background_fit_eV is not None:
            s = remove_power_law_background(s, e, self.background_fit_eV)
        axis = self.axis_eV
        values = resample(s, e, axis)
        lo, hi = self.window_eV
        total = float(numpy.sum(s[(e >= lo) & (e <= hi)]))
        area = float(values.sum())
        if not area > 0:
            raise SeriesError(f"the window {lo:g}-{hi:g} eV holds no counts above the background (area {area:.3g}); was the beam blanked?")
        return Prepared(values / area, axis, shift, total, tuple(notes))
