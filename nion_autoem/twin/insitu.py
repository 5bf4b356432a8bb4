"""An oxide reduced under the beam: a twin for forecasting in-situ EELS series.

The sample is an iron oxide (Fe2O3, Fe3+) that the beam reduces towards FeO
(Fe2+).  Each illuminated area has a hidden reduced fraction ``x`` in [0, 1]
that grows by nucleation and growth (autocatalytic, so a series shows an
induction period, then a sigmoidal transition) at a rate set by the *effective
dose rate*, the beam current averaged over the last few seconds
(``kinetics.memory_s``).  Below a threshold dose rate nothing happens; an
oxidising environment (the in-situ cell's gas) slowly re-oxidises the area,
also while the beam is blanked::

    dx/dt = k0 * max(J_eff - J_th, 0) * (x + x0) * (1 - x) - k_ox * x

What the core-loss spectrum shows of ``x``:

- the Fe L2,3 white lines are a mixture of the Fe3+ and Fe2+ references, so
  the L3 onset moves down by 1.5 eV and the L3/L2 white-line ratio falls;
- the O K pre-peak at 530 eV fades as ``(1 - x)**2`` (it reflects empty Fe 3d
  states hybridised with O 2p), and the O K edge as a whole weakens as oxygen
  leaves (O/Fe goes from 1.5 to 1).

The spectrometer adds an energy drift (a slow ramp plus a random walk), gain
changes (steps of a few percent) and Poisson noise.  Ground truth: the hidden
fraction of every area, its noise-free, drift-free spectrum, and its future
(:meth:`InSituOxide.future`).

:class:`InSituMicroscope` is a pure :class:`~nion_autoem.instrument.Microscope`
over the sample: a parked probe records spectra, moving the stage or the
probe reaches a fresh area, blanking stops the reduction.  Its clock is
simulated: exposures and readouts advance it, and a plan's
:class:`~nion_autoem.actions.Wait` reaches it through :meth:`InSituMicroscope.observe`
(pass it to ``ExperimentRunner(on_measurement=[scope.observe])``).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import typing

import numpy
import numpy.typing
from nion.data import DataAndMetadata

from nion_autoem import xdata as xdata_builders
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import ACQUISITION_CLOCK_KEY
from nion_autoem.instrument import DropAlarm
from nion_autoem.instrument import InstrumentError
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import Position
from nion_autoem.instrument import StageLimits
from nion_autoem.simulated import SimulatedBeam
from nion_autoem.simulated import checked_stage_position
from nion_autoem.twin.clock import SimulatedClock

_NDArray = numpy.typing.NDArray[typing.Any]

#: Energy axis of the simulated spectrometer: (offset eV, eV per channel, channels): 480-780 eV covers O K and Fe L2,3.
SPECTROMETER_AXIS = (480.0, 0.5, 600)
#: Beam current at which the dose rate is 1 (the unit the kinetics use).
NOMINAL_CURRENT_A = 50e-12
#: Areas closer than this (nm) share one hidden state.
AREA_SIZE_NM = 1.0
# Integration step of the kinetics, in s (the rates are at most a few 0.1 / s).
_STEP_S = 0.05


@dataclasses.dataclass(frozen=True)
class ReductionKinetics:
    """How fast an area is reduced, as a function of the dose rate.

    Parameters
    ----------
    rate_per_s : float
        ``k0``: growth rate per unit of dose rate above the threshold.
    threshold_dose_rate : float
        ``J_th``: effective dose rate (in units of the dose rate at
        :data:`NOMINAL_CURRENT_A`) below which no reduction happens.
    seed_fraction : float
        ``x0``: nucleation term; small values give a long induction period.
    reoxidation_per_s : float
        ``k_ox``: re-oxidation by the cell's gas, beam on or off.
    memory_s : float
        The effective dose rate is the beam's dose rate averaged over this time.

    Examples
    --------
    >>> k = ReductionKinetics()
    >>> k.rate(0.2) == 0.0 and k.rate(1.0) > 0.0
    True
    """

    rate_per_s: float = 0.12
    threshold_dose_rate: float = 0.35
    seed_fraction: float = 0.01
    reoxidation_per_s: float = 0.004
    memory_s: float = 3.0

    def __post_init__(self) -> None:
        for name in ("rate_per_s", "threshold_dose_rate", "seed_fraction", "reoxidation_per_s", "memory_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.memory_s <= 0:
            raise ValueError(f"memory_s must be > 0 s (the time over which the dose rate is averaged), got {self.memory_s!r}")

    def rate(self, effective_dose_rate: float) -> float:
        """The autocatalytic growth rate (1/s) at an effective dose rate."""
        return self.rate_per_s * max(effective_dose_rate - self.threshold_dose_rate, 0.0)

    def step(self, x: float, effective_dose_rate: float, dose_rate: float, dt_s: float) -> tuple[float, float]:
        """Advance ``(x, effective dose rate)`` by ``dt_s`` under a beam of ``dose_rate`` (0 when blanked or elsewhere)."""
        n = max(1, int(math.ceil(dt_s / _STEP_S)))
        h = dt_s / n
        relax = math.exp(-h / self.memory_s)
        for _ in range(n):
            effective_dose_rate = dose_rate + (effective_dose_rate - dose_rate) * relax
            k = self.rate(effective_dose_rate)
            x += h * (k * (x + self.seed_fraction) * (1.0 - x) - self.reoxidation_per_s * x)
            x = min(max(x, 0.0), 1.0)
        return x, effective_dose_rate


# --- the spectrum ----------------------------------------------------------------------------------


def _gauss(e: _NDArray, center: float, fwhm: float) -> _NDArray:
    sigma = fwhm / 2.3548
    return numpy.exp(-0.5 * ((e - center) / sigma) ** 2)


def _step(e: _NDArray, onset: float, width: float) -> _NDArray:
    return typing.cast(_NDArray, 0.5 + numpy.arctan((e - onset) / width) / math.pi)


def _fe_l23(e: _NDArray, l3_eV: float, l2_eV: float, l3_over_l2: float) -> _NDArray:
    """Fe L2,3 of one valence: two white lines (areas in the ratio ``l3_over_l2``) on a 2:1 continuum double step."""
    white = 1.4 * (l3_over_l2 / (1 + l3_over_l2) * _gauss(e, l3_eV, 2.0) + 1.0 / (1 + l3_over_l2) * _gauss(e, l2_eV, 2.4) * (2.4 / 2.0))
    continuum = 0.10 * (2 / 3 * _step(e, l3_eV + 1.0, 0.8) + 1 / 3 * _step(e, l2_eV + 1.0, 0.8)) * (710.0 / numpy.maximum(e, 1.0)) ** 2
    return typing.cast(_NDArray, white + continuum)


def oxide_spectrum(energies_eV: numpy.typing.ArrayLike, reduced_fraction: float) -> _NDArray:
    """The noise-free core-loss spectrum (arbitrary units, background included) of an area reduced by ``reduced_fraction``.

    Examples
    --------
    >>> e = numpy.arange(480.0, 780.0, 0.5)
    >>> oxidised, reduced = oxide_spectrum(e, 0.0), oxide_spectrum(e, 1.0)
    >>> bool(oxidised[e == 530.0][0] > reduced[e == 530.0][0])  # the O K pre-peak fades
    True
    """
    e = numpy.asarray(energies_eV, dtype=float)
    x = min(max(float(reduced_fraction), 0.0), 1.0)
    background = 2.0 * (500.0 / numpy.maximum(e, 1.0)) ** 3
    oxygen = 1.0 - x / 3.0
    o_k = oxygen * (0.9 * _step(e, 532.5, 0.5) * (532.0 / numpy.maximum(e, 1.0)) ** 2.5 + 0.6 * _gauss(e, 539.0, 2.5) + 0.35 * _gauss(e, 545.0, 4.0))
    pre_peak = 0.5 * (1.0 - x) ** 2 * _gauss(e, 530.2, 1.4)
    fe = (1.0 - x) * _fe_l23(e, 709.6, 722.8, 5.0) + x * _fe_l23(e, 708.1, 721.2, 3.2)
    return typing.cast(_NDArray, background + o_k + pre_peak + 0.8 * fe)


# --- the sample ------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Area:
    x: float = 0.0
    effective_dose_rate: float = 0.0
    updated_s: float = 0.0
    electrons: float = 0.0


@dataclasses.dataclass(frozen=True)
class SpectrometerNoise:
    """What the spectrometer adds to the sample's spectrum.

    Parameters
    ----------
    drift_eV_per_s : float
        Linear energy drift of the spectrometer.
    drift_walk_eV : float
        Random-walk step of the energy offset per second (sigma).
    gain_step_rate_per_s : float
        How often the gain jumps (Poisson rate).
    gain_step_size : float
        Relative size (sigma) of a gain jump.
    counts_per_unit : float
        Counts per channel per unit of :func:`oxide_spectrum` per second at the nominal current.
    """

    drift_eV_per_s: float = 0.01
    drift_walk_eV: float = 0.03
    gain_step_rate_per_s: float = 0.02
    gain_step_size: float = 0.05
    counts_per_unit: float = 1500.0


class InSituOxide:
    """Fe2O3 reduced by the beam, area by area, with the spectrometer's drift, gain changes and shot noise.

    Parameters
    ----------
    kinetics : ReductionKinetics
        The reduction law; see the module docstring.
    noise : SpectrometerNoise
        Energy drift, gain changes and counts.
    seed : int
        Seeds the drift, gain and shot noise.
    clock : SimulatedClock, optional
        Shared simulated time.

    Examples
    --------
    >>> oxide = InSituOxide(seed=1)
    >>> counts = oxide.expose((0.0, 0.0), 1.0, beam_current_A=100e-12)
    >>> counts.shape, oxide.reduced_fraction((0.0, 0.0)) > 0.0
    ((600,), True)
    """

    def __init__(self, kinetics: ReductionKinetics | None = None, noise: SpectrometerNoise | None = None, *, seed: int = 0,
                 clock: SimulatedClock | None = None) -> None:
        self.kinetics = kinetics or ReductionKinetics()
        self.noise = noise or SpectrometerNoise()
        self.clock = clock or SimulatedClock()
        offset, scale, channels = SPECTROMETER_AXIS
        self.energies_eV = offset + scale * numpy.arange(channels)
        self.__rng = numpy.random.default_rng(seed)
        self.__areas: dict[tuple[int, int], _Area] = {}
        self.__energy_offset_eV = 0.0
        self.__gain = 1.0
        self.__spectrometer_s = 0.0
        self.__lock = threading.RLock()

    @staticmethod
    def area_key(position_nm: Position) -> tuple[int, int]:
        """The area a sample position (nm) falls in."""
        return int(math.floor(position_nm[0] / AREA_SIZE_NM)), int(math.floor(position_nm[1] / AREA_SIZE_NM))

    def __area(self, position_nm: Position) -> _Area:
        key = self.area_key(position_nm)
        area = self.__areas.get(key)
        if area is None:
            area = self.__areas[key] = _Area(updated_s=self.clock.now_s)
        return area

    def __catch_up(self, area: _Area, now_s: float) -> None:
        """Evolve an area beam-off from its last update to ``now_s`` (re-oxidation; the dose-rate memory fades)."""
        if now_s > area.updated_s:
            area.x, area.effective_dose_rate = self.kinetics.step(area.x, area.effective_dose_rate, 0.0, now_s - area.updated_s)
            area.updated_s = now_s

    def __spectrometer_until(self, now_s: float) -> None:
        dt = now_s - self.__spectrometer_s
        if dt <= 0:
            return
        self.__energy_offset_eV += self.noise.drift_eV_per_s * dt + self.noise.drift_walk_eV * math.sqrt(dt) * float(self.__rng.standard_normal())
        for _ in range(int(self.__rng.poisson(self.noise.gain_step_rate_per_s * dt))):
            self.__gain *= float(numpy.exp(self.noise.gain_step_size * self.__rng.standard_normal()))
        self.__spectrometer_s = now_s

    def illuminate(self, position_nm: Position, duration_s: float, *, beam_current_A: float) -> None:
        """Keep a beam of ``beam_current_A`` on ``position_nm`` for ``duration_s`` (0 A: time passes with the beam elsewhere or blanked)."""
        if not (math.isfinite(duration_s) and duration_s >= 0):
            raise ValueError(f"duration_s must be a finite time >= 0 s, got {duration_s!r}")
        with self.__lock:
            start = self.clock.advance(duration_s)
            area = self.__area(position_nm)
            self.__catch_up(area, start)
            rate = beam_current_A / NOMINAL_CURRENT_A
            area.x, area.effective_dose_rate = self.kinetics.step(area.x, area.effective_dose_rate, rate, duration_s)
            area.updated_s = start + duration_s
            area.electrons += beam_current_A * duration_s / 1.602176634e-19

    def expose(self, position_nm: Position, exposure_s: float, *, beam_current_A: float, readout_s: float = 0.0) -> _NDArray:
        """Record a spectrum at ``position_nm``: the area evolves during the exposure, the counts are its mean spectrum.

        Returns counts per channel on :attr:`energies_eV` (float, Poisson).  The
        readout after the exposure keeps the beam on the area (the probe stays parked).
        """
        with self.__lock:
            start = self.clock.now_s
            x_before = self.reduced_fraction(position_nm)
            self.illuminate(position_nm, exposure_s, beam_current_A=beam_current_A)
            x_after = self.reduced_fraction(position_nm)
            self.__spectrometer_until(start + exposure_s / 2)
            # the spectrum is linear in x except for the pre-peak: the mean of the two ends is close enough for one exposure
            expected = 0.5 * (oxide_spectrum(self.energies_eV - self.__energy_offset_eV, x_before) + oxide_spectrum(self.energies_eV - self.__energy_offset_eV, x_after))
            scale = self.noise.counts_per_unit * self.__gain * exposure_s * beam_current_A / NOMINAL_CURRENT_A
            counts = self.__rng.poisson(numpy.clip(expected * scale, 0.0, None)).astype(float)
            if readout_s > 0:
                self.illuminate(position_nm, readout_s, beam_current_A=beam_current_A)
            return counts

    def reduced_fraction(self, position_nm: Position) -> float:
        """Ground truth: the hidden reduced fraction of the area at ``position_nm`` now."""
        with self.__lock:
            area = self.__area(position_nm)
            self.__catch_up(area, self.clock.now_s)
            return area.x

    def effective_dose_rate(self, position_nm: Position) -> float:
        """Ground truth: the area's effective dose rate now (units of the nominal dose rate)."""
        with self.__lock:
            area = self.__area(position_nm)
            self.__catch_up(area, self.clock.now_s)
            return area.effective_dose_rate

    @property
    def energy_offset_eV(self) -> float:
        """Ground truth: how far the spectrometer's energy axis has drifted (eV)."""
        return self.__energy_offset_eV

    @property
    def gain(self) -> float:
        """Ground truth: the spectrometer's relative gain now."""
        return self.__gain

    def future(self, position_nm: Position, times_s: numpy.typing.ArrayLike, *, beam_current_A: float, duty: float = 1.0) -> _NDArray:
        """Ground truth ahead: the reduced fraction of an area at ``times_s`` from now if the beam stays on it.

        Parameters
        ----------
        position_nm : (y, x)
            The area.
        times_s : array_like
            Times from now (s), increasing, >= 0.
        beam_current_A : float
            The beam's current while on the area.
        duty : float
            Fraction of the time the beam is on it (exposure over the spectrum's period).

        Returns
        -------
        ndarray
            The fraction at each time; the sample itself is not changed.
        """
        t = numpy.asarray(times_s, dtype=float)
        if t.ndim != 1 or (t.size and (t[0] < 0 or numpy.any(numpy.diff(t) < 0))):
            raise ValueError("times_s must be a 1D array of increasing times >= 0 s")
        with self.__lock:
            area = self.__area(position_nm)
            self.__catch_up(area, self.clock.now_s)
            x, j = area.x, area.effective_dose_rate
        rate = duty * beam_current_A / NOMINAL_CURRENT_A
        out = numpy.empty(t.shape)
        previous = 0.0
        for i, ti in enumerate(t):
            x, j = self.kinetics.step(x, j, rate, float(ti - previous))
            previous = float(ti)
            out[i] = x
        return out


# --- the microscope ----------------------------------------------------------------------------------


class InSituMicroscope(SimulatedBeam):
    """A :class:`~nion_autoem.instrument.Microscope` over an :class:`InSituOxide`: parked-probe spectra, stage, blanker.

    Parameters
    ----------
    sample : InSituOxide, optional
    beam_current_A : float
        Probe current; with :data:`NOMINAL_CURRENT_A` the dose rate is 1.
    readout_s : float
        Time between two exposures (beam still on the parked probe).
    frame : ScanFrame or None
        The scan field (the probe must stay inside it); default 20 nm, 64 x 64.
    stage_limits_nm : StageLimits
        How far the stage may go; every stage position shows fresh oxide.

    Examples
    --------
    >>> scope = InSituMicroscope(InSituOxide(seed=0), beam_current_A=80e-12)
    >>> scope.unblank(); scope.park_probe((0.0, 0.0))
    >>> m = scope.acquire_spectrum(500.0)
    >>> m.kind, m.xdata.data_shape, round(m.dose_e / 2.5e8, 1)
    ('spectrum', (600,), 1.0)
    """

    def __init__(self, sample: InSituOxide | None = None, *, beam_current_A: float = NOMINAL_CURRENT_A, readout_s: float = 0.05,
                 frame: ScanFrame | None = None, stage_limits_nm: StageLimits = ((-5000.0, 5000.0), (-5000.0, 5000.0))) -> None:
        if isinstance(beam_current_A, bool) or not isinstance(beam_current_A, (int, float)) or not math.isfinite(beam_current_A) or beam_current_A < 0:
            raise ValueError(f"beam_current_A must be a finite probe current >= 0 A (e.g. 50e-12), got {beam_current_A!r}")
        if not (math.isfinite(readout_s) and readout_s >= 0):
            raise ValueError(f"readout_s must be a finite time >= 0 s, got {readout_s!r}")
        super().__init__(frame or ScanFrame((64, 64), 20.0), beam_current_A)
        self.sample = sample or InSituOxide()
        self.readout_s = float(readout_s)
        self.__limits = stage_limits_nm
        self.__stage: Position = (0.0, 0.0)
        self.__defocus_nm = 0.0

    # --- state ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return "In-situ oxide twin"

    @property
    def now_s(self) -> float:
        """The simulated time (s)."""
        return self.sample.clock.now_s

    def sample_position_nm(self, probe_nm: Position | None = None) -> Position:
        """Where on the sample the probe (default: the parked probe) sits: stage plus probe position."""
        p = probe_nm if probe_nm is not None else (self._probe or (0.0, 0.0))
        return self.__stage[0] + p[0], self.__stage[1] + p[1]

    def observe(self, measurement: Measurement) -> None:
        """Let the time of a measurement the sample did not see pass (a plan's ``Wait``); pass as ``on_measurement``.

        While blanked (or with no parked probe) the time passes beam-off; an
        unblanked parked probe keeps dosing its area.
        """
        if measurement.kind != "none" or measurement.duration_s <= 0:
            return
        with self._lock:
            on = not self._blanked and self._probe is not None
            self.sample.illuminate(self.sample_position_nm(), measurement.duration_s, beam_current_A=self._beam_current_A if on else 0.0)

    # --- acquisitions --------------------------------------------------------------------------

    def acquire_spectrum(self, exposure_ms: float) -> Measurement:
        if isinstance(exposure_ms, bool) or not isinstance(exposure_ms, (int, float)) or not math.isfinite(exposure_ms) or exposure_ms <= 0:
            raise ValueError(f"exposure_ms must be a finite EELS exposure > 0 ms, e.g. 500; got {exposure_ms!r}")
        with self._lock:
            if self._probe is None:
                raise InstrumentError("the probe is not parked: park it (ParkProbe, or Acquire at a position) before recording a spectrum")
            current = 0.0 if self._blanked else self._beam_current_A
            start = self.now_s
            exposure_s = exposure_ms * 1e-3
            counts = self.sample.expose(self.sample_position_nm(), exposure_s, beam_current_A=current, readout_s=self.readout_s)
            offset, scale, _ = SPECTROMETER_AXIS
            metadata = {ACQUISITION_CLOCK_KEY: [start, start + exposure_s], "nion_autoem": {"position_nm": list(self._probe), "exposure_ms": exposure_ms,
                                                                                             "stage_nm": list(self.__stage)}}
            spectrum = xdata_builders.spectrum_xdata(counts, offset, scale, metadata=metadata)
            return Measurement.of({"eels": spectrum}, "spectrum", dwell_s=exposure_s, beam_current_A=self._beam_current_A, blanked=self._blanked,
                                  position_nm=self._probe, started_at=start, duration_s=exposure_s + self.readout_s)

    def acquire_camera_frame(self, exposure_ms: float) -> Measurement:
        raise InstrumentError("the in-situ oxide twin has no camera; record spectra (Acquire with detector='eels')")

    def survey(self, frame: ScanFrame | None = None, *, channels: typing.Sequence[str] = ("HAADF",), pixel_time_us: float | None = None) -> Measurement:
        """A featureless HAADF image of the oxide (the kinetics ignore a survey's dose, which is spread thin)."""
        used = frame or self._frame
        self._frame = used
        pixel = 1.0 if pixel_time_us is None else float(pixel_time_us)
        dwell = used.shape[0] * used.shape[1] * pixel * 1e-6
        with self._lock:
            self.sample.illuminate(self.sample_position_nm(), dwell, beam_current_A=0.0)
        rng = numpy.random.default_rng(int(self.now_s * 1e3))
        data = {c: xdata_builders.image_xdata(rng.poisson(50.0, used.shape).astype(float), used, channel=c) for c in channels}
        return Measurement.of(data, "survey", dwell_s=dwell, beam_current_A=self._beam_current_A, blanked=self._blanked, frame=used, started_at=self.now_s - dwell,
                              duration_s=dwell)

    def adf_trace(self, samples: int, sample_time_us: float, *, channel: str = "HAADF") -> Measurement:
        dwell = samples * sample_time_us * 1e-6
        with self._lock:
            on = not self._blanked and self._probe is not None
            self.sample.illuminate(self.sample_position_nm(), dwell, beam_current_A=self._beam_current_A if on else 0.0)
        trace = numpy.random.default_rng(samples).poisson(50.0, samples).astype(float) if on else numpy.zeros(samples)
        return Measurement.of({channel: xdata_builders.trace_xdata(trace, sample_time_us, channel=channel)}, "adf_trace", dwell_s=dwell,
                              beam_current_A=self._beam_current_A, blanked=self._blanked, position_nm=self._probe, started_at=self.now_s - dwell, duration_s=dwell)

    def adf_trace_until(self, samples: int, sample_time_us: float, until: DropAlarm, *, channel: str = "HAADF") -> Measurement:
        return self._cut_trace(self.adf_trace(samples, sample_time_us, channel=channel), until, sample_time_us, channel)

    # --- probe, beam, field, stage, focus ---------------------------------------------------------

    @property
    def stage_position_nm(self) -> Position:
        return self.__stage

    @property
    def stage_limits_nm(self) -> StageLimits:
        return self.__limits

    def move_stage(self, position_nm: Position) -> None:
        y, x = checked_stage_position(position_nm, self.__limits)
        with self._lock:
            self.__stage = (y, x)

    @property
    def defocus_nm(self) -> float:
        return self.__defocus_nm

    def set_defocus(self, defocus_nm: float) -> None:
        self.__defocus_nm = float(defocus_nm)


def draw_conditions(seed: int) -> tuple[ReductionKinetics, float]:
    """The kinetics (jittered about the defaults) and the beam current (20-120 pA) of experiment ``seed``.

    Examples
    --------
    >>> kinetics, current = draw_conditions(0)
    >>> 20e-12 <= current <= 120e-12 and kinetics.rate_per_s > 0
    True
    """
    rng = numpy.random.default_rng(10_000 + seed)
    kinetics = ReductionKinetics(rate_per_s=float(0.12 * rng.lognormal(0.0, 0.35)), threshold_dose_rate=float(0.35 * rng.lognormal(0.0, 0.2)),
                                 seed_fraction=float(10 ** rng.uniform(-2.6, -1.6)))
    return kinetics, float(rng.uniform(20e-12, 120e-12))


def parked_probe_series(seed: int, *, steps: int = 150, exposure_ms: float = 1000.0, beam_current_A: float | None = None,
                        kinetics: ReductionKinetics | None = None, noise: SpectrometerNoise | None = None) -> dict[str, typing.Any]:
    """A series of spectra at a parked probe, with its ground truth; for training, tests and benchmarks.

    Parameters
    ----------
    seed : int
        Seeds the sample's kinetics (jittered about the defaults unless
        ``kinetics`` is given), the current (unless given) and the noise.
    steps : int
        Number of spectra.
    exposure_ms : float
        Exposure per spectrum; the readout adds 50 ms.
    beam_current_A : float or None
        None draws one from 20 to 120 pA: some series never cross the threshold dose rate.
    kinetics, noise : optional
        Override the drawn kinetics and the default spectrometer.

    Returns
    -------
    dict
        ``spectra`` (steps, channels) counts, ``energies_eV`` (channels,),
        ``times_s`` (steps,) mid-exposure times, ``fraction`` (steps,) the
        hidden reduced fraction at each spectrum, ``truth`` (steps, channels)
        the noise-free, drift-free spectra (same scale for all), ``energy_offset_eV``
        and ``gain`` (steps,), ``beam_current_A``, ``kinetics``.

    Examples
    --------
    >>> s = parked_probe_series(3, steps=5)
    >>> s["spectra"].shape, s["fraction"].shape
    ((5, 600), (5,))
    """
    drawn_kinetics, drawn_current = draw_conditions(seed)
    kinetics = kinetics or drawn_kinetics
    current = drawn_current if beam_current_A is None else float(beam_current_A)
    sample = InSituOxide(kinetics, noise, seed=seed)
    scope = InSituMicroscope(sample, beam_current_A=current)
    scope.unblank()
    scope.park_probe((0.0, 0.0))
    spectra, times, fraction, offsets, gains = [], [], [], [], []
    for _ in range(steps):
        start = scope.now_s
        x0 = sample.reduced_fraction((0.0, 0.0))
        m = scope.acquire_spectrum(exposure_ms)
        spectra.append(numpy.asarray(m.xdata.data, dtype=float))
        times.append(start + exposure_ms * 5e-4)
        fraction.append(0.5 * (x0 + sample.reduced_fraction((0.0, 0.0))))  # after the readout: close to the exposure's end
        offsets.append(sample.energy_offset_eV)
        gains.append(sample.gain)
    e = sample.energies_eV
    truth = numpy.stack([oxide_spectrum(e, x) for x in fraction])
    return {"spectra": numpy.stack(spectra), "energies_eV": e, "times_s": numpy.asarray(times), "fraction": numpy.asarray(fraction), "truth": truth,
            "energy_offset_eV": numpy.asarray(offsets), "gain": numpy.asarray(gains), "beam_current_A": current, "kinetics": kinetics}


def spectrum_xdata_of(counts: _NDArray) -> DataAndMetadata.DataAndMetadata:
    """Counts on the twin's spectrometer axis as a calibrated spectrum."""
    offset, scale, _ = SPECTROMETER_AXIS
    return xdata_builders.spectrum_xdata(counts, offset, scale)


@dataclasses.dataclass
class HeadlessRun:
    """What :func:`run_on_twin` saw: the plan's reports, its products, its outcome, and the actions in order."""

    results: list[dict[str, typing.Any]]
    products: dict[str, typing.Any]
    outcome: str
    actions: list[str]
    dose_e: float


def run_on_twin(plan: typing.Any, scope: InSituMicroscope, *, max_actions: int = 100_000,
                on_report: typing.Callable[[typing.Mapping[str, typing.Any]], None] | None = None) -> HeadlessRun:
    """Run a plan on the twin in simulated time: a ``Wait`` passes on the twin's clock at once instead of on the wall clock.

    For benchmarks and tests that need many runs; the engine
    (:class:`~nion_autoem.runner.ExperimentRunner`, with
    ``on_measurement=[scope.observe]``) runs the same plan in real time with
    its journal, budgets and safety.  Like the engine, this unblanks before
    the first action that delivers dose unless the plan blanked the beam itself.
    ``on_report`` sees every report the moment the plan makes it (a benchmark
    reads the ground truth there, before the plan acts on its decision).

    Examples
    --------
    >>> from nion_autoem.actions import Acquire, Wait
    >>> from nion_autoem.plan import plan
    >>> @plan("two spectra")
    ... def two_spectra():
    ...     yield Acquire((0.0, 0.0), 500.0)
    ...     yield Wait(30.0)
    ...     yield Acquire((0.0, 0.0), 500.0)
    >>> scope = InSituMicroscope(InSituOxide(seed=0))
    >>> run = run_on_twin(two_spectra(), scope)
    >>> run.actions, round(scope.now_s, 2)
    (['acquire', 'wait', 'acquire'], 31.1)
    """
    from nion_autoem.actions import Blank
    from nion_autoem.actions import Unblank
    from nion_autoem.actions import is_action
    from nion_autoem.plan import Publish
    from nion_autoem.plan import Report

    generator = plan.messages()
    results: list[dict[str, typing.Any]] = []
    products: dict[str, typing.Any] = {}
    actions: list[str] = []
    plan_blanked = False
    dose = 0.0
    reply: typing.Any = None
    try:
        while True:
            try:
                message = generator.send(reply)
            except StopIteration as stop:
                return HeadlessRun(results, products, "" if stop.value is None else str(stop.value), actions, dose)
            reply = None
            if isinstance(message, Report):
                results.append(dict(message.result))
                if on_report is not None:
                    on_report(message.result)
            elif isinstance(message, Publish):
                products[message.product.key] = message.product
            elif is_action(message):
                if len(actions) >= max_actions:
                    raise RuntimeError(f"the plan took more than max_actions={max_actions} actions")
                action = typing.cast(typing.Any, message)
                if action.delivers_dose and scope.is_blanked and not plan_blanked:
                    scope.unblank()
                reply = action.perform(scope)
                scope.observe(reply)
                if isinstance(action, (Blank, Unblank)):
                    plan_blanked = isinstance(action, Blank)
                actions.append(action.kind)
                dose += reply.dose_e
    finally:
        generator.close()
