"""A MoS2 monolayer twin: Z-contrast imaging, parked-probe dwell and knock-on damage.

Imaging is incoherent: a column scatters onto the annular detector in
proportion to sum(Z**n) over its atoms (n = 1.7 for HAADF, 1.3 for MAADF),
times the probe intensity at the column.  A raster frame is rendered by
splatting the columns inside the field onto the pixel grid with bilinear
weights and blurring once with the Gaussian probe; the counts are Poisson
draws for the electrons each pixel receives, so dose means something.  Away from focus the probe sigma grows with the
defocus (see :mod:`nion_autoem.twin.sample`), for frames and dwells alike.

A parked probe (or a 1-line spot scan) is a sequence of dwell samples.  Dose
accrues sample by sample, knock-on ejections happen inside a sample at the
fluence where they occur, and each sample's signal follows the column state
at that time, so a feedback loop sees the drop at the right sample.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
import scipy.ndimage

from nion_autoem.geometry import ScanFrame
from nion_autoem.twin import lattice
from nion_autoem.twin import spectra
from nion_autoem.twin.clock import SimulatedClock
from nion_autoem.twin.clock import StageDrift
from nion_autoem.twin.damage import BARN_NM2
from nion_autoem.twin.damage import DamageEvent
from nion_autoem.twin.damage import KnockOnModel
from nion_autoem.twin.sample import CHANNELS
from nion_autoem.twin.sample import ProbeConditions
from nion_autoem.twin.sample import SampleBase
from nion_autoem.twin.sample import add_poisson_noise
from nion_autoem.twin.sample import effective_probe_sigma_nm
from nion_autoem.twin.sample import raster_times_s

_NDArray = numpy.typing.NDArray[typing.Any]

#: Detector exponent of Z and effective collection area (nm^2 per unit of Z**n) per channel.
#: The HAADF area puts ~2 % of the probe on the detector over a Mo column.
DETECTOR_RESPONSE: dict[str, tuple[float, float]] = {"HAADF": (1.7, 1.8e-6), "MAADF": (1.3, 1.2e-5)}


@dataclasses.dataclass(frozen=True)
class AtomGroundTruth:
    """The columns of a MoS2 twin at one moment (tests and benchmarks only).

    Attributes
    ----------
    time_s : float
        Simulated time of the snapshot.
    column_id : ndarray of int, shape (n,)
    position_nm : ndarray, shape (n, 2)
        Scan-field nm at ``time_s`` (stage offset and drift included).
    sample_position_nm : ndarray, shape (n, 2)
        Position in the flake's own frame.
    column_class : ndarray of int, shape (n,)
        Index into ``class_names`` ("Mo", "S2", "S1", "empty").
    species : list of str
        Column content, e.g. "Mo", "W", "S2", "S+Se", "S", "empty".
    dose_e_per_A2 : ndarray, shape (n,)
        Dose each column has received so far.
    """

    time_s: float
    column_id: _NDArray
    position_nm: _NDArray
    sample_position_nm: _NDArray
    column_class: _NDArray
    species: list[str]
    dose_e_per_A2: _NDArray
    class_names: tuple[str, ...] = lattice.COLUMN_CLASSES


def _gaussian_blur(image: _NDArray, sigma_px: float) -> _NDArray:
    if sigma_px < 0.05:
        return image
    if sigma_px > 8.0:
        # Wide kernels are cheaper in Fourier space; the field wraps, but the
        # splat includes a margin of columns outside the field on every side.
        f = numpy.fft.rfft2(image)
        f = scipy.ndimage.fourier_gaussian(f, sigma_px, n=image.shape[1])
        return numpy.fft.irfft2(f, s=image.shape).astype(numpy.float32)
    return typing.cast(_NDArray, scipy.ndimage.gaussian_filter(image, sigma_px, truncate=3.5, mode="constant"))


def _splat(pixels: _NDArray, weights: _NDArray, shape: tuple[int, int], pad: int) -> _NDArray:
    """Bilinear splat of point weights at (row, col) pixels onto a padded grid."""
    h, w = shape[0] + 2 * pad, shape[1] + 2 * pad
    p = pixels + pad
    i0 = numpy.floor(p).astype(numpy.int64)
    f = p - i0
    grid = numpy.zeros(h * w, numpy.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            iy, ix = i0[:, 0] + dy, i0[:, 1] + dx
            wy = f[:, 0] if dy else 1.0 - f[:, 0]
            wx = f[:, 1] if dx else 1.0 - f[:, 1]
            ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
            grid += numpy.bincount(iy[ok] * w + ix[ok], weights=(weights * wy * wx)[ok], minlength=h * w)
    return grid.reshape(h, w).astype(numpy.float32)


class MoS2Sample(SampleBase):
    """A 2H-MoS2 monolayer flake that images, dwells and gets damaged like the real one.

    Parameters
    ----------
    columns : ColumnTable, optional
        The flake; default :func:`nion_autoem.twin.lattice.mos2_flake` with ``seed``.
    title : str
        Name shown in usim's sample chooser.
    seed : int
        Seed of the sample's random stream (noise, jitter, damage draws).
    probe_sigma_nm : float
        Gaussian probe standard deviation in focus.
    knock_on : KnockOnModel, optional
        Damage cross-sections.
    drift : StageDrift, optional
        Stage drift in nm/s of simulated time.
    line_jitter_nm : float
        Standard deviation of the random x offset of each scan line.
    clock : SimulatedClock, optional
        Shared simulated clock (a new one by default).

    Examples
    --------
    >>> from nion_autoem.geometry import ScanFrame
    >>> twin = MoS2Sample(lattice.mos2_flake(3.0), seed=1)
    >>> frame = twin.render_frame(ScanFrame((64, 64), 2.0), 2.0, ProbeConditions())["HAADF"]
    >>> frame.shape
    (64, 64)
    """

    def __init__(self, columns: lattice.ColumnTable | None = None, *, title: str = "MoS2 monolayer (twin)", seed: int = 0,
                 probe_sigma_nm: float = 0.05, knock_on: KnockOnModel | None = None, drift: StageDrift | None = None,
                 line_jitter_nm: float = 0.003, clock: SimulatedClock | None = None) -> None:
        if not math.isfinite(probe_sigma_nm) or probe_sigma_nm <= 0:
            raise ValueError(f"probe_sigma_nm must be a positive probe size in nm (about 0.08-0.1), got {probe_sigma_nm!r}")
        if not math.isfinite(line_jitter_nm) or line_jitter_nm < 0:
            raise ValueError(f"line_jitter_nm must be >= 0 nm, got {line_jitter_nm!r}")
        self.title = title
        self.columns = columns if columns is not None else lattice.mos2_flake(seed=seed)
        self.probe_sigma_nm = float(probe_sigma_nm)
        self.knock_on = knock_on or KnockOnModel()
        super().__init__(seed=seed, drift=drift, clock=clock)
        self.line_jitter_nm = float(line_jitter_nm)
        self.__dose_e_per_nm2 = numpy.zeros(len(self.columns))
        self.__events: list[DamageEvent] = list()

    # -- ground truth ---------------------------------------------------------------------------

    @property
    def damage_events(self) -> list[DamageEvent]:
        """Every ejection so far, in the order they happened within each acquisition."""
        with self._lock:
            return list(self.__events)

    def ground_truth(self) -> AtomGroundTruth:
        """Snapshot of every column now (after any damage)."""
        with self._lock:
            now = self.clock.now_s
            shift = numpy.asarray(self.stage_offset_nm) + self.drift.offset_nm(now)
            return AtomGroundTruth(now, numpy.arange(len(self.columns)), self.columns.position_nm + shift, self.columns.position_nm.copy(),
                                   self.columns.column_class, self.columns.species(), self.__dose_e_per_nm2 / 100.0)

    def _shift_at(self, time_s: numpy.typing.ArrayLike) -> _NDArray:
        return numpy.asarray(self.stage_offset_nm) + self.drift.offset_nm(time_s)

    # -- damage bookkeeping ----------------------------------------------------------------------

    def _eject(self, column: int, slot: int, time_s: float, fluence_before_e_per_nm2: float) -> None:
        before = lattice.COLUMN_CLASSES[int(self.columns.column_class[column])]
        z = int(self.columns.z_atoms[column, slot])
        self.columns.z_atoms[column, slot] = 0
        # Keep a lone atom in the first slot so S1 columns look alike.
        self.columns.z_atoms[column] = numpy.sort(self.columns.z_atoms[column])[::-1]
        after = lattice.COLUMN_CLASSES[int(self.columns.column_class[column])]
        element = "Se" if z == lattice.Z_SE else "S"
        p = self.columns.position_nm[column]
        self.__events.append(DamageEvent(int(column), float(time_s), float(fluence_before_e_per_nm2) / 100.0, element, before, after, (float(p[0]), float(p[1]))))

    # -- raster imaging --------------------------------------------------------------------------

    def render_frame(self, frame: ScanFrame, pixel_time_us: float, probe: ProbeConditions, channels: typing.Sequence[str] = ("HAADF",)) -> dict[str, _NDArray]:
        """Raster ``frame`` once; return expected-plus-noise counts per channel.

        The frame is rendered from the column state at the start of the frame;
        ejections drawn for this frame happen when the probe passes the
        column and show from the next acquisition on.
        """
        for channel in channels:
            if channel not in CHANNELS:
                raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
        with self._lock:
            row_start_s, duration_s = raster_times_s(frame, self.clock.now_s, pixel_time_us)
            t0 = self.clock.advance(duration_s)
            electrons_per_pixel = probe.electrons_per_s * pixel_time_us * 1e-6
            out = {channel: numpy.zeros(frame.shape, numpy.float32) for channel in channels}
            if electrons_per_pixel <= 0:
                return out
            self._electrons += electrons_per_pixel * frame.shape[0] * frame.shape[1]
            p_nm = frame.pixel_size_nm
            # Focus is judged at the middle of the field: a frame is one focus setting.
            defocus = self.defocus_from_focus_nm(probe, self._to_sample(numpy.asarray(frame.center_nm), t0))
            sigma_px = float(effective_probe_sigma_nm(self.probe_sigma_nm, defocus, probe.convergence_semi_angle_rad)) / p_nm
            pad = int(math.ceil(min(4 * sigma_px, 64))) + 2
            # Only columns inside the field (plus the probe's reach) are drawn.
            pix = frame.nm_to_pixel(self.columns.position_nm + self._shift_at(t0))
            inside = numpy.all((pix > -pad) & (pix < numpy.asarray(frame.shape) + pad - 1), axis=1)
            ids = numpy.flatnonzero(inside)
            pix = pix[ids]
            # The sample moves while the raster runs, so each column sits where
            # the drift had taken it when the probe reached it.
            rows = numpy.clip(numpy.rint(pix[:, 0]), 0, frame.shape[0] - 1).astype(int)
            cols = numpy.clip(numpy.rint(pix[:, 1]), 0, frame.shape[1] - 1)
            t_column = row_start_s[rows] + cols * pixel_time_us * 1e-6
            if any(self.drift.velocity_nm_per_s):
                pix = frame.nm_to_pixel(self.columns.position_nm[ids] + self._shift_at(t_column))
            if self.line_jitter_nm > 0:
                # Line jitter displaces each scan line along x.  Shifting each column by the jitter
                # of the line through its centre keeps the cost at one splat (blobs move rigidly).
                jitter_px = self._rng.standard_normal(frame.shape[0]) * (self.line_jitter_nm / p_nm)
                pix = pix.copy()
                pix[:, 1] += jitter_px[rows]
            for channel in channels:
                if channel not in DETECTOR_RESPONSE:
                    continue
                exponent, area_nm2 = DETECTOR_RESPONSE[channel]
                z = self.columns.z_atoms[ids].astype(numpy.float64)
                weights = numpy.sum(numpy.where(z > 0, z, 0.0) ** exponent, axis=1)
                grid = _gaussian_blur(_splat(pix, weights, frame.shape, pad), sigma_px)[pad:-pad, pad:-pad]
                expected = grid * numpy.float32(electrons_per_pixel * area_nm2 / p_nm ** 2)
                out[channel] = add_poisson_noise(expected, self._rng)
            self.__raster_damage(ids, pix, frame, electrons_per_pixel / p_nm ** 2, t_column)
            return out

    def __raster_damage(self, ids: _NDArray, pix: _NDArray, frame: ScanFrame, fluence_e_per_nm2: float, t_column: _NDArray) -> None:
        in_field = numpy.all((pix >= -0.5) & (pix <= numpy.asarray(frame.shape) - 0.5), axis=1)
        hit = ids[in_field]
        z = self.columns.z_atoms[hit]
        thresholds = self.knock_on.thresholds_e_per_nm2(z, self._rng)
        dose_before = self.__dose_e_per_nm2[hit].copy()
        self.__dose_e_per_nm2[hit] += fluence_e_per_nm2
        ejected = numpy.argwhere(thresholds < fluence_e_per_nm2)
        times = t_column[in_field]
        # Eject the later slot first so slot indices stay valid within a column.
        for k, slot in sorted(((int(k), int(s)) for k, s in ejected), key=lambda ks: (ks[0], -ks[1])):
            self._eject(int(hit[k]), slot, float(times[k]), dose_before[k] + thresholds[k, slot])

    # -- parked probe ----------------------------------------------------------------------------

    def dwell(self, positions_nm: numpy.typing.ArrayLike, sample_time_s: float, probe: ProbeConditions) -> dict[str, _NDArray]:
        """Dwell the probe at each scan-field position in turn; return the ADF counts per sample.

        This is what a parked probe sees, sample by sample: a spot scan of
        ``N`` samples is ``positions_nm`` of shape (N, 2), all the same point.

        Parameters
        ----------
        positions_nm : array_like, shape (N, 2)
            Scan-field probe positions in time order.
        sample_time_s : float
            Dwell per sample.
        probe : ProbeConditions

        Returns
        -------
        dict
            ``"HAADF"`` and ``"MAADF"`` counts, each shape (N,), and ``"chalcogen_atoms"``:
            chalcogen atoms under the probe per sample, weighted by the probe profile.
        """
        p = numpy.atleast_2d(numpy.asarray(positions_nm, dtype=float))
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"positions_nm must have shape (N, 2) in scan-field nm, got {p.shape}")
        if not math.isfinite(sample_time_s) or sample_time_s <= 0:
            raise ValueError(f"sample_time_s must be a positive dwell per sample, got {sample_time_s!r}")
        n = p.shape[0]
        with self._lock:
            t0 = self.clock.advance(n * sample_time_s)
            rate = probe.electrons_per_s
            zeros = numpy.zeros(n, numpy.float32)
            if rate <= 0:
                return {"HAADF": zeros, "MAADF": zeros.copy(), "chalcogen_atoms": numpy.zeros(n)}
            self._electrons += rate * n * sample_time_s
            t = t0 + (numpy.arange(n) + 0.5) * sample_time_s
            ps = p - self._shift_at(t)
            # A defocused probe spreads the same electrons wider: less signal and less dose on the column.
            s = effective_probe_sigma_nm(self.probe_sigma_nm, self.defocus_from_focus_nm(probe, ps), probe.convergence_semi_angle_rad)[:, numpy.newaxis]
            reach = 5 * float(s.max())
            lo, hi = ps.min(axis=0) - reach, ps.max(axis=0) + reach
            pos = self.columns.position_nm
            cand = numpy.flatnonzero(numpy.all((pos >= lo) & (pos <= hi), axis=1))
            r2 = ((ps[:, numpy.newaxis, :] - pos[cand][numpy.newaxis, :, :]) ** 2).sum(axis=-1)
            profile = numpy.exp(-r2 / (2 * s * s)) / (2 * math.pi * s * s)  # probe intensity per nm^2, (N, K)
            fluence = rate * sample_time_s * profile  # e/nm^2 per sample, (N, K)
            cumulative = numpy.cumsum(fluence, axis=0)
            z_start = self.columns.z_atoms[cand].copy()
            thresholds = self.knock_on.thresholds_e_per_nm2(z_start, self._rng)
            dose_before = self.__dose_e_per_nm2[cand].copy()
            # Per column, a piecewise-constant z over time: list of (sample, fraction before, slot).
            z_time = numpy.repeat(z_start[numpy.newaxis], n, axis=0).astype(float)  # (N, K, 2), fractional at event samples
            events: list[tuple[float, int, int, float]] = []
            for k, slot in numpy.argwhere(numpy.isfinite(thresholds)):
                target = thresholds[k, slot]
                i = int(numpy.searchsorted(cumulative[:, k], target))
                if i >= n:
                    continue
                before = cumulative[i - 1, k] if i > 0 else 0.0
                frac = float((target - before) / fluence[i, k]) if fluence[i, k] > 0 else 0.0
                z_time[i, k, slot] *= frac
                z_time[i + 1:, k, slot] = 0.0
                events.append((i + frac, int(k), int(slot), float(target)))
            self.__dose_e_per_nm2[cand] += cumulative[-1] if n else 0.0
            for when, k, slot, target in sorted(events):
                slot_now = slot
                # An earlier ejection in the same column may have moved the atom to slot 0.
                if self.columns.z_atoms[cand[k], slot_now] == 0:
                    slot_now = 0
                self._eject(int(cand[k]), slot_now, t0 + when * sample_time_s, dose_before[k] + target)
            self.__migrate(cand, cumulative[-1], dose_before, t0 + n * sample_time_s)
            result: dict[str, typing.Any] = {}
            present = z_time > 0
            for channel, (exponent, area_nm2) in DETECTOR_RESPONSE.items():
                # A fractional entry is an atom present for part of the sample: weight it by that fraction.
                zt = numpy.where(present, z_start[numpy.newaxis].astype(float), 0.0)
                occupancy = numpy.where(present, z_time / numpy.where(z_start[numpy.newaxis] > 0, z_start[numpy.newaxis], 1), 0.0)
                weights = numpy.sum(zt ** exponent * occupancy, axis=-1)
                expected = rate * sample_time_s * area_nm2 * numpy.sum(weights * profile, axis=1)
                result[channel] = add_poisson_noise(expected.astype(numpy.float32), self._rng)
            chalcogen = numpy.where(self.columns.site[cand] == lattice.CHALCOGEN_SITE, 1.0, 0.0)
            occupancy_all = numpy.where(present, z_time / numpy.where(z_start[numpy.newaxis] > 0, z_start[numpy.newaxis], 1), 0.0).sum(axis=-1)
            result["chalcogen_atoms"] = numpy.sum(occupancy_all * chalcogen * profile, axis=1) * 2 * math.pi * s[:, 0] ** 2
            return result

    def __migrate(self, cand: _NDArray, fluence: _NDArray, dose_before: _NDArray, time_s: float) -> None:
        """Vacancy migration at the end of a dwell: a neighbour's S hops into a vacancy the probe sat on."""
        sigma = self.knock_on.migration_cross_section_barn * BARN_NM2
        if sigma <= 0:
            return
        columns = self.columns
        for k in numpy.argsort(-fluence):
            target = int(cand[k])
            if columns.site[target] != lattice.CHALCOGEN_SITE or columns.atom_count[target] == 2:
                continue
            if self._rng.exponential() / sigma >= fluence[k]:
                continue
            d = numpy.linalg.norm(columns.position_nm - columns.position_nm[target], axis=1)
            donors = numpy.flatnonzero((d > 0) & (d < lattice.MOS2_A_NM * 1.05) & (columns.site == lattice.CHALCOGEN_SITE) & (columns.atom_count == 2))
            if len(donors) == 0:
                continue
            donor = int(donors[self._rng.integers(len(donors))])
            before = lattice.COLUMN_CLASSES[int(columns.column_class[donor])]
            z = int(columns.z_atoms[donor, 1])
            columns.z_atoms[donor, 1] = 0
            free = 0 if columns.z_atoms[target, 0] == 0 else 1
            columns.z_atoms[target, free] = z
            columns.z_atoms[target] = numpy.sort(columns.z_atoms[target])[::-1]
            after = lattice.COLUMN_CLASSES[int(columns.column_class[donor])]
            p = columns.position_nm[donor]
            self.__events.append(DamageEvent(donor, time_s, float(dose_before[k] + fluence[k]) / 100.0, "Se" if z == lattice.Z_SE else "S",
                                             before, after, (float(p[0]), float(p[1])), kind="migration", to_column_id=target))

    # -- parked-probe EELS and Ronchigram --------------------------------------------------------

    def spectrum(self, position_nm: typing.Sequence[float], exposure_s: float, probe: ProbeConditions, energies_eV: _NDArray) -> _NDArray:
        """Low-loss EELS at a parked probe: ZLP plus the monolayer's plasmons, Poisson counts.

        The exposure is a dwell (16 sub-samples, so drift and damage during the
        exposure count); the loss intensity follows the atoms under the probe.
        """
        energies = numpy.asarray(energies_eV, dtype=float)
        width = spectra.channel_width_eV(energies)
        n_sub = 16
        trace = self.dwell(numpy.repeat(numpy.asarray(position_nm, float)[numpy.newaxis], n_sub, axis=0), exposure_s / n_sub, probe)
        electrons = probe.electrons_per_s * exposure_s
        if electrons <= 0:
            return numpy.zeros(energies.shape, numpy.float32)
        # A monolayer scatters a few percent inelastically; more atoms under the probe, more loss.
        haadf_fraction = float(numpy.mean(trace["HAADF"])) / max(probe.electrons_per_s * exposure_s / n_sub, 1e-30)
        loss_fraction = min(0.02 + 2.0 * haadf_fraction, 0.5)
        shape = (1 - loss_fraction) * spectra.zero_loss_peak(energies)
        shape += loss_fraction * (0.35 * spectra.lorentzian(energies, 8.5, 3.0) + 0.65 * spectra.lorentzian(energies, 22.0, 9.0))
        return add_poisson_noise((electrons * width * shape).astype(numpy.float32), self._rng)

    def diffraction(self, position_nm: typing.Sequence[float], exposure_s: float, probe: ProbeConditions, shape: tuple[int, int], pixel_mrad: float) -> _NDArray | None:
        """No twin Ronchigram for MoS2: the exposure still dwells (dose, damage, clock), usim draws the frame."""
        self.dwell(numpy.asarray(position_nm, float)[numpy.newaxis], exposure_s, probe)
        return None
