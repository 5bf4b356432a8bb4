"""DKL active spectroscopy as a plan: survey, then spectra where they matter.

The plan speaks the action language of :mod:`nion_autoem.actions`: one
:class:`~nion_autoem.actions.Survey` (or a survey the user already has), then
batches of :class:`~nion_autoem.actions.Acquire` at the candidates the
:class:`DKLAgent` suggests, with a checkpoint after each batch.  Every spectrum is scalarized and fed back; the maps (prediction,
uncertainty, acquisition), the stack of measured signals, the exploration path
and the convergence curve are published as products after each batch.

The agent itself knows nothing of microscopes; this module only translates
between candidate indices and scan-field positions.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import numpy
import numpy.typing
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem import xdata as xdata_builders
from nion_autoem.actions import Acquire
from nion_autoem.actions import Detector
from nion_autoem.actions import Survey
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.plan import Checkpoint
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import Publish
from nion_autoem.plan import Report
from nion_autoem.plan import SubPlan
from nion_autoem.products import Display
from nion_autoem.products import Product
from nion_autoem.xdata import frame_from_xdata
from nion_autoem_dkl.agent import AgentConfig
from nion_autoem_dkl.agent import DKLAgent
from nion_autoem_dkl.candidates import Candidates
from nion_autoem_dkl.candidates import Normalization
from nion_autoem_dkl.candidates import extract_patches
from nion_autoem_dkl.scalarizers import DIFFRACTION_SCALARIZERS
from nion_autoem_dkl.scalarizers import BandIntegral
from nion_autoem_dkl.scalarizers import PeakEnergy
from nion_autoem_dkl.scalarizers import diffraction_scalarizer

_NDArray = numpy.typing.NDArray[typing.Any]

#: Seconds between two refreshes of the maps and stacks while measuring.
PUBLISH_INTERVAL_S = 1.0

SignalScalarizer = typing.Callable[[_NDArray], float]
"""A function of the measured signal (spectrum or camera frame) alone."""

AxisScalarizer = typing.Callable[[tuple[float, float]], SignalScalarizer]
"""Builds a :data:`SignalScalarizer` once the energy axis (offset, scale) is known."""


@dataclasses.dataclass(frozen=True)
class band_integral:
    """Integrated intensity in an energy band, on whatever axis the spectrometer reports.

    The band is kept, so the spectra can be shown zoomed on it.

    Examples
    --------
    >>> make = band_integral((1.0, 3.0))
    >>> make((0.0, 1.0))(numpy.ones(5))
    2.0
    """

    band_eV: tuple[float, float]

    def __call__(self, axis: tuple[float, float]) -> SignalScalarizer:
        return BandIntegral(axis, self.band_eV)


@dataclasses.dataclass(frozen=True)
class peak_energy:
    """Energy of the peak in an energy band (a plasmon or exciton energy), on whatever axis the spectrometer reports.

    Examples
    --------
    >>> e = numpy.linspace(0.0, 10.0, 201)
    >>> round(peak_energy((2.0, 8.0))((0.0, 0.05))(numpy.exp(-0.5 * ((e - 4.013) / 0.4) ** 2)), 3)
    4.013
    """

    band_eV: tuple[float, float]

    def __call__(self, axis: tuple[float, float]) -> SignalScalarizer:
        return PeakEnergy(axis, self.band_eV)


#: Every scalarizer a DKL experiment can be given by name, with what a microscopist calls it: EELS ones need a band.
SCALARIZERS: dict[str, str] = {
    "band_integral": "EELS intensity in an energy band",
    "peak_energy": "EELS peak energy in an energy band",
    **DIFFRACTION_SCALARIZERS,
}


@dataclasses.dataclass(frozen=True)
class NamedScalarizer:
    """A scalarizer chosen by name: what it is called, which detector it needs, and the function.

    Build it with :func:`named_scalarizer`.
    """

    name: str
    title: str
    detector: Detector
    function: SignalScalarizer | AxisScalarizer
    calibrated: bool
    band_eV: tuple[float, float] | None = None


def named_scalarizer(name: str, *, band_eV: tuple[float, float] | None = None, centre: tuple[float, float] | None = None) -> NamedScalarizer:
    """The scalarizer called ``name`` in :data:`SCALARIZERS`, ready for :class:`DKLSpectroscopy`.

    Parameters
    ----------
    name : str
        ``"band_integral"`` or ``"peak_energy"`` (EELS, with ``band_eV``), or
        ``"com_magnitude"`` or ``"com_angle"`` (diffraction frames from the
        Ronchigram camera: the centre-of-mass shift's magnitude or direction).
    band_eV : (low, high), optional
        The energy band of an EELS scalarizer; refused for a diffraction one.
    centre : (row, column), optional
        Where the undeflected disc sits on the (binned) camera frame, for a
        diffraction scalarizer; the frame's geometric centre by default.

    Returns
    -------
    NamedScalarizer

    Raises
    ------
    ValueError
        If ``name`` is unknown, or an EELS scalarizer has no band.

    Examples
    --------
    >>> named_scalarizer("com_angle").detector
    'ronchigram'
    >>> named_scalarizer("band_integral", band_eV=(1.0, 2.0)).calibrated
    True
    """
    if not isinstance(name, str) or name not in SCALARIZERS:
        raise ValueError(f"scalarizer must be one of {sorted(SCALARIZERS)}, got {name!r}")
    if name in DIFFRACTION_SCALARIZERS:
        if band_eV is not None:
            raise ValueError(f"the {name!r} scalarizer works on diffraction frames and takes no energy band; pass band_eV=None")
        return NamedScalarizer(name, SCALARIZERS[name], "ronchigram", diffraction_scalarizer(name, centre), calibrated=False)
    if centre is not None:
        raise ValueError(f"the {name!r} scalarizer works on spectra and takes no camera centre; pass centre=None")
    if band_eV is None or len(band_eV) != 2 or not float(band_eV[0]) < float(band_eV[1]):
        raise ValueError(f"the {name!r} scalarizer needs band_eV=(low, high) in eV with low < high, got {band_eV!r}")
    band = (float(band_eV[0]), float(band_eV[1]))
    function: AxisScalarizer = band_integral(band) if name == "band_integral" else peak_energy(band)
    return NamedScalarizer(name, SCALARIZERS[name], "eels", function, calibrated=True, band_eV=band)


#: Frames in the published stack of measured diffraction frames are binned to at most this many pixels a side
#: (the journal keeps them whole): hundreds of full camera frames would make a data item of gigabytes.
STACK_FRAME_MAX_SIDE = 128


def _binned_for_display(frame: _NDArray, max_side: int = STACK_FRAME_MAX_SIDE) -> tuple[_NDArray, int]:
    """``frame`` summed over square blocks so that no side exceeds ``max_side``; returns it with the block size."""
    factor = max(1, -(-max(frame.shape) // max_side))
    if factor == 1:
        return frame, 1
    rows, cols = frame.shape[0] // factor, frame.shape[1] // factor
    binned = frame[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor).sum(axis=(1, 3))
    return binned, factor


@dataclasses.dataclass(frozen=True)
class DKLSettings:
    """What a DKL experiment measures and how it chooses.

    Parameters
    ----------
    patch_size : int
        Side of the survey patch around each candidate, in survey pixels.
    stride : int
        Spacing of the candidate grid, in survey pixels.
    normalization : {'global', 'patch', 'none'}
        Patch normalisation before the embedding.
    detector : {'eels', 'ronchigram'}
        What is measured at each candidate.
    exposure_ms : float
        Exposure per measurement.
    batch_size : int
        Candidates measured per decision (q).
    max_measurements : int
        Stop after this many.
    survey_frame : ScanFrame or None
        Frame to survey; None keeps the current one.
    pixel_time_us : float or None
        Survey pixel time.
    """

    patch_size: int = 16
    stride: int = 4
    normalization: Normalization = "global"
    detector: Detector = "eels"
    exposure_ms: float = 20.0
    batch_size: int = 1
    max_measurements: int = 100
    survey_frame: ScanFrame | None = None
    pixel_time_us: float | None = None

    def __post_init__(self) -> None:
        if self.detector not in ("eels", "ronchigram"):
            raise ValueError(f"detector must be 'eels' or 'ronchigram', got {self.detector!r}")
        if self.batch_size < 1 or self.max_measurements < 1:
            raise ValueError(f"batch_size and max_measurements must be >= 1, got {self.batch_size} and {self.max_measurements}")
        if self.patch_size < 3 or self.stride < 1:
            raise ValueError(f"patch_size must be >= 3 px and stride >= 1 px, got {self.patch_size} and {self.stride}")


class DKLSpectroscopy:
    """Deep-kernel active spectroscopy on a survey's local structure.

    Parameters
    ----------
    scalarizer : callable
        Either a :data:`SignalScalarizer` (signal -> float; e.g.
        ``CenterOfMassMagnitude()`` for camera frames) or, with
        ``calibrated=True``, an :data:`AxisScalarizer` that receives the
        spectrum's energy axis first (e.g. ``band_integral((1.0, 2.5))``).
    settings : DKLSettings
        Candidates, detector, exposure, batch size, budget.
    agent_config : AgentConfig
        Acquisition function, refits, exclusion radius, seed, ...
    calibrated : bool
        Whether ``scalarizer`` needs the energy axis.
    survey : DataAndMetadata, optional
        An existing survey image to take the candidates from instead of
        scanning a new one; its scan geometry comes from its metadata or its
        calibrations, and the probe must be able to reach it in the current
        scan field.
    scalarizer_name : str, optional
        The scalarizer's name in :data:`SCALARIZERS`, journaled with the
        parameters so a comparison can say what the run looked for (set by
        :meth:`named`).
    restrict_to_nm : (n, 2) array_like, optional
        Keep only the candidates within half a candidate spacing of these
        scan positions (nm), e.g. where a finished run recorded its signals.
        The candidates then no longer form a grid, so no maps are published.

    Examples
    --------
    >>> policy = DKLSpectroscopy(band_integral((1.0, 2.5)), DKLSettings(max_measurements=50))  # doctest: +SKIP
    >>> ExperimentRunner(SwiftMicroscope(), policy, run_dir="runs/dkl").run()  # doctest: +SKIP
    """

    name = "dkl-spectroscopy"

    def __init__(self, scalarizer: SignalScalarizer | AxisScalarizer, settings: DKLSettings | None = None, agent_config: AgentConfig | None = None,
                 *, calibrated: bool = True, survey: DataAndMetadata.DataAndMetadata | None = None, scalarizer_name: str | None = None,
                 restrict_to_nm: numpy.typing.ArrayLike | None = None) -> None:
        self.settings = settings or DKLSettings()
        self.scalarizer_name = scalarizer_name
        self.__restrict_to_nm = None if restrict_to_nm is None else numpy.asarray(restrict_to_nm, dtype=float).reshape(-1, 2)
        if self.__restrict_to_nm is not None and (not len(self.__restrict_to_nm) or not numpy.all(numpy.isfinite(self.__restrict_to_nm))):
            raise ValueError(f"restrict_to_nm must be finite (y, x) positions in nm, at least one, got {len(self.__restrict_to_nm)} positions")
        self.__given_survey = survey
        self.__given_frame = frame_from_xdata(survey) if survey is not None else None
        self.agent_config = agent_config or AgentConfig()
        self.__make_scalarizer = scalarizer if calibrated else None
        self.__scalarizer: SignalScalarizer | None = None if calibrated else typing.cast(SignalScalarizer, scalarizer)
        self.agent: DKLAgent | None = None
        self.frame: ScanFrame | None = None
        self.__survey: DataAndMetadata.DataAndMetadata | None = None
        self.__positions_nm: _NDArray = numpy.zeros((0, 2))
        self.__grid_shape: tuple[int, int] | None = None
        self.__signals: list[_NDArray] = []
        self.__signal_calibrations: list[Calibration.Calibration] = []
        self.measured: list[int] = []
        self.values: list[float] = []
        self.__published_at = 0.0

    @classmethod
    def named(cls, scalarizer: str, settings: DKLSettings | None = None, agent_config: AgentConfig | None = None, *,
              band_eV: tuple[float, float] | None = None, centre: tuple[float, float] | None = None,
              survey: DataAndMetadata.DataAndMetadata | None = None, restrict_to_nm: numpy.typing.ArrayLike | None = None) -> DKLSpectroscopy:
        """A DKL experiment with a scalarizer chosen by name (see :data:`SCALARIZERS`); the detector follows from it.

        Parameters
        ----------
        scalarizer : str
            ``"band_integral"``, ``"peak_energy"`` (EELS, with ``band_eV``),
            ``"com_magnitude"`` or ``"com_angle"`` (diffraction frames).
        settings, agent_config, survey
            As for :class:`DKLSpectroscopy`; ``settings.detector`` is replaced
            by the scalarizer's.
        band_eV : (low, high), optional
            The energy band of an EELS scalarizer.
        centre : (row, column), optional
            The undeflected disc's position on the camera frame, for a
            diffraction scalarizer (see :func:`named_scalarizer`).
        restrict_to_nm : (n, 2) array_like, optional
            Take only the candidates within half a candidate spacing of these
            scan positions (nm): a replay on signals recorded only there.

        Examples
        --------
        >>> DKLSpectroscopy.named("com_magnitude", DKLSettings(max_measurements=10)).settings.detector
        'ronchigram'
        """
        choice = named_scalarizer(scalarizer, band_eV=band_eV, centre=centre)
        settings = dataclasses.replace(settings or DKLSettings(), detector=choice.detector)
        return cls(choice.function, settings, agent_config, calibrated=choice.calibrated, survey=survey, scalarizer_name=choice.name,
                   restrict_to_nm=restrict_to_nm)

    @property
    def model_version(self) -> str:
        n = len(self.values)
        return f"dkl/{self.agent_config.acquisition}/n{n}"

    @property
    def parameters(self) -> dict[str, typing.Any]:
        settings = dataclasses.asdict(self.settings)
        settings["survey_frame"] = self.settings.survey_frame.to_dict() if self.settings.survey_frame else None
        given = self.__given_frame.to_dict() if self.__given_frame else None
        parameters: dict[str, typing.Any] = {"settings": settings, "agent": dataclasses.asdict(self.agent_config), "given_survey_frame": given}
        if self.scalarizer_name is not None:
            band = getattr(self.__make_scalarizer, "band_eV", None)
            centre = getattr(self.__scalarizer, "centre", None) if self.__make_scalarizer is None else None
            parameters["scalarizer"] = {"name": self.scalarizer_name, "band_eV": None if band is None else list(band),
                                        "centre": None if centre is None else list(centre)}
        if self.__restrict_to_nm is not None:
            parameters["restricted_to_positions"] = len(self.__restrict_to_nm)
        return parameters

    def fraction_done(self) -> float | None:
        return min(len(self.values) / self.settings.max_measurements, 1.0)

    @property
    def survey(self) -> DataAndMetadata.DataAndMetadata | None:
        """The survey the candidates came from (None before the run started)."""
        return self.__survey

    @property
    def measured_positions_nm(self) -> _NDArray:
        """Scan positions (n, 2) in nm of the measurements so far, in the order taken: the exploration path."""
        return self.__positions_nm[self.measured].reshape(-1, 2).copy()

    @property
    def signals(self) -> list[_NDArray]:
        """Every measured signal, in order; re-scalarize them with :func:`scalarize_all`."""
        return list(self.__signals)

    # -- the plan ----------------------------------------------------------------

    def messages(self) -> PlanGenerator:
        self.agent, self.frame, self.__survey, self.__signals, self.measured, self.values = None, None, None, [], [], []
        self.__scalarizer = None if self.__make_scalarizer is not None else self.__scalarizer
        if self.__given_survey is not None:
            yield Report(self.__start(self.__given_survey, self.__given_frame))
        else:
            survey = yield Survey(self.settings.survey_frame, pixel_time_us=self.settings.pixel_time_us)
            yield Report(self.__start(survey.xdata, survey.frame))
        yield from self.__publish()
        assert self.agent is not None
        while len(self.values) < self.settings.max_measurements and not self.agent.should_stop:
            yield Checkpoint()
            batch = [int(i) for i in self.agent.suggest(q=min(self.settings.batch_size, self.settings.max_measurements - len(self.values)))]
            for index in batch:
                measurement = yield Acquire((float(self.__positions_nm[index, 0]), float(self.__positions_nm[index, 1])), self.settings.exposure_ms,
                                            self.settings.detector, label=f"measurement {len(self.values) + 1}")
                yield Report(self.__measured(index, measurement), fraction=self.fraction_done(), model_version=self.model_version)
            # Maps for a person, not for the plan: refreshed at most once a second (and at the end), so the window keeps up.
            if time.monotonic() - self.__published_at >= PUBLISH_INTERVAL_S:
                yield from self.__publish()
        yield from self.__publish()
        if not self.values:
            return "no measurements taken"
        best = int(numpy.argmax(self.values))
        y, x = self.__positions_nm[self.measured[best]]
        held, count = self.agent.prospective_coverage95, self.agent.prospective_count
        honesty = "" if not count else f"; 95 % intervals held {round(held * count)} of the last {count}"
        return f"{len(self.values)} measurements; the highest value {self.values[best]:.4g} at ({y:.3g}, {x:.3g}) nm{honesty}"

    def __measured(self, index: int, measurement: Measurement) -> dict[str, typing.Any]:
        assert self.agent is not None
        signal = numpy.asarray(measurement.xdata.data, dtype=float)
        value = self.__scalarize(measurement.xdata)
        error = self.__standard_error(measurement.xdata)
        self.agent.observe([index], [value], None if error is None else [error])
        self.__signals.append(signal)
        self.__signal_calibrations = list(measurement.xdata.dimensional_calibrations)
        self.measured.append(index)
        self.values.append(value)
        held = self.agent.prospective_coverage95
        return {"candidate": index, "value": value, "best": max(self.values), "coverage95": self.agent.coverage95 if self.agent.has_model else None,
                "prospective_coverage95": None if numpy.isnan(held) else held, "interval_scale": self.agent.interval_scale,
                "step_ms": self.agent.step_timings[-1] if self.agent.step_timings else None}

    def __scalarize(self, xdata: DataAndMetadata.DataAndMetadata) -> float:
        if self.__scalarizer is None:
            assert self.__make_scalarizer is not None
            energy = xdata.dimensional_calibrations[-1]
            make = typing.cast(AxisScalarizer, self.__make_scalarizer)
            self.__scalarizer = make((energy.offset, energy.scale))
        value = float(self.__scalarizer(numpy.asarray(xdata.data, dtype=float)))
        if not numpy.isfinite(value):
            raise ValueError(f"the scalarizer returned {value} for measurement {len(self.values) + 1}; it must return a finite number")
        return value

    def __standard_error(self, xdata: DataAndMetadata.DataAndMetadata) -> float | None:
        """The value's counting error where the scalarizer knows it (band integrals, ratios) and the detector says its counts per electron.

        Data in other units (a recorded spectrum image, background-subtracted
        or normalised) get None: the noise model then learns one noise level.
        """
        standard_error = getattr(self.__scalarizer, "standard_error", None)
        gain = dict(xdata.metadata.get("hardware_source", {})).get("counts_per_electron")
        if not callable(standard_error) or not isinstance(gain, (int, float)) or not gain > 0:
            return None
        error = float(standard_error(numpy.asarray(xdata.data, dtype=float), float(gain)))
        return error if numpy.isfinite(error) and error >= 0 else None

    def __start(self, survey: DataAndMetadata.DataAndMetadata, frame: ScanFrame | None) -> dict[str, typing.Any]:
        assert frame is not None
        image = numpy.asarray(survey.data, dtype=float)
        candidates = extract_patches(image, self.settings.patch_size, stride=self.settings.stride, normalization=self.settings.normalization)
        if self.__restrict_to_nm is not None:
            candidates = self.__restricted(candidates, frame)
        rows = numpy.unique(candidates.positions[:, 0])
        cols = numpy.unique(candidates.positions[:, 1])
        self.__grid_shape = (len(rows), len(cols)) if len(rows) * len(cols) == len(candidates) else None
        self.frame = frame
        self.__survey = survey
        self.__positions_nm = frame.pixel_to_nm(candidates.positions)
        self.agent = DKLAgent(candidates.patches, candidates.positions, self.agent_config)
        return {"candidates": len(candidates), "embedding_s": round(self.agent.embedding_seconds, 3)}

    def __restricted(self, candidates: Candidates, frame: ScanFrame) -> Candidates:
        """The candidates within half a candidate spacing of the allowed positions (recorded signals exist only there)."""
        assert self.__restrict_to_nm is not None
        allowed_px = frame.nm_to_pixel(self.__restrict_to_nm).reshape(-1, 2)
        distance = numpy.linalg.norm(candidates.positions[:, numpy.newaxis, :] - allowed_px[numpy.newaxis, :, :], axis=2).min(axis=1)
        keep = distance <= max(self.settings.stride / 2, 0.5) + 1e-6
        if not keep.any():
            raise ValueError(f"none of the {len(allowed_px)} positions in restrict_to_nm lies on a candidate of this survey "
                             f"(patch {self.settings.patch_size} px, stride {self.settings.stride} px); use the survey and settings they were recorded with")
        return Candidates(candidates.patches[keep], candidates.positions[keep])

    # -- products ----------------------------------------------------------------

    def __map_xdata(self, values: _NDArray, units: str) -> DataAndMetadata.DataAndMetadata | None:
        """Candidate values as an image on the candidate grid, calibrated in nm."""
        if self.__grid_shape is None or self.frame is None:
            return None
        grid = values.reshape(self.__grid_shape)
        stride_nm = self.settings.stride * self.frame.pixel_size_nm
        first = self.frame.pixel_to_nm((self.settings.patch_size // 2, self.settings.patch_size // 2))
        calibrations = [Calibration.Calibration(float(first[0]) - stride_nm / 2, stride_nm, "nm"), Calibration.Calibration(float(first[1]) - stride_nm / 2, stride_nm, "nm")]
        return DataAndMetadata.new_data_and_metadata(grid, intensity_calibration=Calibration.Calibration(units=units), dimensional_calibrations=calibrations)

    def acquisition_map(self) -> _NDArray | None:
        """The acquisition score over all candidates (UCB for Thompson, as a stable stand-in)."""
        if self.agent is None or not self.agent.has_model:
            return None
        return self.agent.acquisition_function(stable=True)(self.agent.posterior())

    def __publish(self) -> SubPlan:
        assert self.frame is not None and self.__survey is not None and self.agent is not None
        self.__published_at = time.monotonic()
        path = self.frame.nm_to_fraction(self.__positions_nm[self.measured]) if self.measured else numpy.zeros((0, 2))
        yield Publish(Product("survey", "DKL exploration path", self.__survey, points=tuple((float(y), float(x)) for y, x in path),
                              labels=tuple(str(i + 1) for i in range(len(self.measured))), caption=f"{len(self.measured)} positions, numbered in the order measured"))
        if self.agent.has_model:
            mean, std = self.agent.predict()
            for key, title, values in (("prediction", "DKL prediction", mean), ("uncertainty", "DKL uncertainty (1σ)", std),
                                       ("acquisition", f"DKL acquisition ({self.agent_config.acquisition})", self.acquisition_map())):
                if values is not None and (xd := self.__map_xdata(numpy.asarray(values, dtype=float), "value")) is not None:
                    caption = f"{title} on the candidate grid ({len(self.values)} measurements)"
                    if key == "uncertainty" and self.agent.interval_scale != 1.0:
                        caption += f"; the model's times {self.agent.interval_scale:.2f}, so that 95 % intervals held 95 % of recent measurements"
                    yield Publish(Product(key, title, xd, display=Display(color_map="viridis" if key == "prediction" else "magma"), caption=caption))
        if self.__signals:
            calibrations = [Calibration.Calibration(units="measurement")] + self.__signal_calibrations
            if self.settings.detector == "ronchigram" and self.__signals[0].ndim == 2:
                stack = numpy.stack([_binned_for_display(signal)[0] for signal in self.__signals])
                factor = _binned_for_display(self.__signals[0])[1]
                calibrations = [calibrations[0]] + [Calibration.Calibration(c.offset, c.scale * factor, c.units) for c in self.__signal_calibrations]
            else:
                stack = numpy.stack(self.__signals)
            # a sequence: Swift shows one spectrum with a slider to browse them all
            descriptor = DataAndMetadata.DataDescriptor(True, 0, stack.ndim - 1)
            metadata = {"nion_autoem": {"positions_nm": self.__positions_nm[self.measured].tolist(), "values": list(self.values)}}
            band = getattr(self.__make_scalarizer, "band_eV", None) if self.settings.detector == "eels" else None
            interval = None if band is None else (band[0] - 0.5 * (band[1] - band[0]), band[1] + 0.5 * (band[1] - band[0]))
            yield Publish(Product("signals", f"DKL measured {'spectra' if self.settings.detector == 'eels' else 'frames'}",
                                  DataAndMetadata.new_data_and_metadata(stack, intensity_calibration=Calibration.Calibration(units="counts"),
                                                                        dimensional_calibrations=calibrations, metadata=metadata, data_descriptor=descriptor),
                                  caption=f"{len(self.values)} measurements, in the order taken (slider); values {min(self.values):.4g}..{max(self.values):.4g}"
                                  + ("" if band is None else f"; shown around the band {band[0]:g}-{band[1]:g} eV"),
                                  display=Display(interval=interval)))
            best_so_far = numpy.maximum.accumulate(numpy.asarray(self.values))
            yield Publish(Product("convergence", "DKL best value so far",
                                    xdata_builders.line_xdata(best_so_far, "measurement", metadata={"nion_autoem": {"values": list(self.values)}})))

