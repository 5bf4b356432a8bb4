"""Dry run: what a plan would do, before anything is done.

:func:`dry_run` runs a plan through the real engine against a
:class:`PlanningMicroscope`, which takes the instrument's geometry, beam
current and limits but delivers nothing: surveys show the MoS2 twin's lattice
(so plans that look for atoms find some), spectra are flat, ADF traces drop
at their middle (an event, so a plan that waits for one moves on), camera
frames are flat.  Every action is
checked against the instrument's limits exactly as in a live run, so bad
input (a stage move beyond the limits, a survey that would keep the beam on
too long, a position outside the field) is caught here.

The report lists the planned steps, the beam-on time, the dose by kind of
action and by region, and the probe and stage path.  A plan that branches on
what it sees follows one plausible path on placeholder data: treat the
figures as the plan's shape and order of magnitude, not a promise.
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import tempfile
import typing

import numpy
import numpy.typing

from nion_autoem import xdata as xdata_builders
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import DropAlarm
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import Microscope
from nion_autoem.instrument import Position
from nion_autoem.instrument import StageLimits
from nion_autoem.plan import Plan
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.simulated import SimulatedBeam
from nion_autoem.twin import catalog
from nion_autoem.twin.sample import ProbeConditions
from nion_autoem.twin.sample import TwinSample

_NDArray = numpy.typing.NDArray[typing.Any]


class PlanningMicroscope(SimulatedBeam):
    """A :class:`~nion_autoem.instrument.Microscope` that records what it is asked and returns placeholders.

    Parameters
    ----------
    like : Microscope or None
        Take the scan frame, beam current, stage position and limits and
        defocus from this instrument (read only); None uses defaults.
    energy_axis : (offset_eV, scale_eV)
        Axis of the placeholder spectra.
    """

    def __init__(self, like: Microscope | None = None, *, energy_axis: tuple[float, float] = (-3.0, 0.025), spectrum_channels: int = 1024) -> None:
        super().__init__(like.scan_frame if like is not None else ScanFrame((256, 256), 16.0), like.beam_current_A if like is not None else 50e-12)
        self.__stage: Position = like.stage_position_nm if like is not None else (0.0, 0.0)
        self.__limits: StageLimits = like.stage_limits_nm if like is not None else ((-1e6, 1e6), (-1e6, 1e6))
        self.__defocus = like.defocus_nm if like is not None else 0.0
        self.__energy_axis = energy_axis
        self.__channels = spectrum_channels
        self.__sample: TwinSample | None = None
        #: Every acquisition asked of it, in order, and every stage position moved to.
        self.ledger: list[Measurement] = []
        self.stage_path: list[Position] = []
        self.name = f"dry run of {like.name}" if like is not None else "dry run"

    def survey(self, frame: ScanFrame | None = None, *, channels: typing.Sequence[str] = ("HAADF",), pixel_time_us: float | None = None) -> Measurement:
        frame = frame or self._frame
        self._frame = frame
        dwell = frame.shape[0] * frame.shape[1] * (pixel_time_us or 1.0) * 1e-6
        rendered = self.__placeholder_sample().render_frame(frame, pixel_time_us or 1.0, ProbeConditions(self._beam_current_A, False), list(channels))
        data = {c: xdata_builders.image_xdata(numpy.asarray(rendered[c], dtype=numpy.float32), frame, channel=c) for c in channels}
        return self.__noted(Measurement.of(data, "survey", dwell_s=dwell, beam_current_A=self._beam_current_A, blanked=self._blanked, frame=frame))

    def __placeholder_sample(self) -> TwinSample:
        if self.__sample is None:
            # a lattice to look at, not a sample to damage: no knock-on in the placeholder
            self.__sample = catalog.build_twins(seed=0, s_cross_section_barn=0.0)[0]
        return self.__sample

    def _outside_field_message(self, position_nm: Position) -> str:
        # a plan's author reads this before Start: rounded numbers and the field's size say more than the frame's repr
        return (f"probe position {tuple(round(v, 3) for v in position_nm)} nm is outside the scan field "
                f"({self._frame.fov_nm:.3g} nm centred on {self._frame.center_nm} nm)")

    def acquire_spectrum(self, exposure_ms: float) -> Measurement:
        spectrum = numpy.full(self.__channels, 100.0)
        data = {"eels": xdata_builders.spectrum_xdata(spectrum, *self.__energy_axis)}
        return self.__noted(Measurement.of(data, "spectrum", dwell_s=exposure_ms * 1e-3, beam_current_A=self._beam_current_A, blanked=self._blanked,
                                           position_nm=self._probe))

    def acquire_camera_frame(self, exposure_ms: float) -> Measurement:
        data = {"ronchigram": xdata_builders.camera_xdata(numpy.full((64, 64), 10.0))}
        return self.__noted(Measurement.of(data, "camera", dwell_s=exposure_ms * 1e-3, beam_current_A=self._beam_current_A, blanked=self._blanked,
                                           position_nm=self._probe))

    def adf_trace(self, samples: int, sample_time_us: float, *, channel: str = "HAADF") -> Measurement:
        return self.__noted(self.__placeholder_trace(samples, sample_time_us, channel))

    def adf_trace_until(self, samples: int, sample_time_us: float, until: DropAlarm, *, channel: str = "HAADF") -> Measurement:
        """The placeholder trace cut where ``until`` fires on it: the ledger counts only the samples dwelt."""
        if not isinstance(until, DropAlarm):
            raise TypeError(f"until must be a DropAlarm, got {type(until).__name__}")
        # only the cut trace goes into the ledger: the samples after the alarm were never dwelt
        return self.__noted(self._cut_trace(self.__placeholder_trace(samples, sample_time_us, channel), until, sample_time_us, channel))

    def __placeholder_trace(self, samples: int, sample_time_us: float, channel: str) -> Measurement:
        trace = numpy.full(samples, 1000.0)
        trace[samples // 2:] = 500.0  # an event half-way, so a plan that waits for one moves on
        data = {channel: xdata_builders.trace_xdata(trace, sample_time_us, channel=channel)}
        return Measurement.of(data, "adf_trace", dwell_s=samples * sample_time_us * 1e-6, beam_current_A=self._beam_current_A,
                              blanked=self._blanked, position_nm=self._probe)

    def __noted(self, measurement: Measurement) -> Measurement:
        self.ledger.append(measurement)
        return measurement

    @property
    def stage_position_nm(self) -> Position:
        return self.__stage

    @property
    def stage_limits_nm(self) -> StageLimits:
        return self.__limits

    def move_stage(self, position_nm: Position) -> None:
        self.__stage = (float(position_nm[0]), float(position_nm[1]))
        self.stage_path.append(self.__stage)

    @property
    def defocus_nm(self) -> float:
        return self.__defocus

    def set_defocus(self, defocus_nm: float) -> None:
        self.__defocus = float(defocus_nm)


@dataclasses.dataclass(frozen=True)
class DryRunReport:
    """What a plan would do: its steps, beam-on time, dose, and paths."""

    plan: str
    steps: int
    actions: typing.Mapping[str, int]
    beam_on_s: float
    dose_e: float
    dose_by_kind: typing.Mapping[str, float]
    surveyed_frames: tuple[ScanFrame, ...]
    survey_dose_e: tuple[float, ...]
    probe_path_nm: tuple[Position, ...]
    point_dose_e: tuple[float, ...]
    stage_path_nm: tuple[Position, ...]
    state: str
    message: str

    @property
    def ok(self) -> bool:
        """Whether the plan ran to its end (or its budget) without an error."""
        return self.state == RunState.FINISHED.value

    def dose_per_region(self, frame: ScanFrame, shape: tuple[int, int] = (16, 16)) -> _NDArray:
        """Electrons per region of ``frame`` (a ``shape`` grid): surveys spread over what they scan, point dose where the probe sat."""
        grid = numpy.zeros(shape)
        rows, cols = numpy.mgrid[0:shape[0], 0:shape[1]]
        centres = frame.fraction_to_nm(numpy.stack([(rows + 0.5) / shape[0], (cols + 0.5) / shape[1]], axis=-1)).reshape(-1, 2)
        for surveyed, dose in zip(self.surveyed_frames, self.survey_dose_e, strict=True):
            # spread over the regions the survey covers, so no electron is lost to the grid's coarseness
            inside = surveyed.contains_nm(centres).reshape(shape)
            if inside.any():
                grid[inside] += dose / inside.sum()
            else:
                self.__add_point(grid, frame, surveyed.center_nm, dose)
        for position, dose in zip(self.probe_path_nm, self.point_dose_e, strict=True):
            self.__add_point(grid, frame, position, dose)
        return grid

    @staticmethod
    def __add_point(grid: _NDArray, frame: ScanFrame, position: Position, dose: float) -> None:
        fy, fx = frame.nm_to_fraction(position)
        if 0 <= fy <= 1 and 0 <= fx <= 1:
            grid[min(int(fy * grid.shape[0]), grid.shape[0] - 1), min(int(fx * grid.shape[1]), grid.shape[1] - 1)] += dose


    def summary(self) -> str:
        """One line for the panel before Start."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.actions.items()))
        dose = ", ".join(f"{kind} {d:.2g} e" for kind, d in sorted(self.dose_by_kind.items()) if d)
        where = f"; probe at {len(set(self.probe_path_nm))} positions" if self.probe_path_nm else ""
        stage = f"; {len(self.stage_path_nm)} stage moves" if self.stage_path_nm else ""
        problem = "" if self.ok else f" — {self.state}: {self.message}"
        return f"{self.steps} steps ({kinds}); beam on {self.beam_on_s:.3g} s; dose {self.dose_e:.3g} e ({dose}){where}{stage}{problem}"


def dry_run(plan: Plan, microscope: Microscope | None = None, *, budget: Budget | None = None, max_steps: int = 5000) -> DryRunReport:
    """Run ``plan`` on a :class:`PlanningMicroscope` shaped like ``microscope`` and report what it would do.

    Nothing is sent to ``microscope``: it is only read (scan frame, beam
    current, stage, defocus).  The run is not journaled.  ``max_steps`` caps
    plans that would run for very long on placeholder data.
    """
    planner = PlanningMicroscope(microscope)
    budget = budget or Budget()
    capped = Budget(min(budget.max_steps or max_steps, max_steps), budget.max_dose_e, None)
    with tempfile.TemporaryDirectory(prefix="nion-autoem-dry-run-") as folder:
        runner = ExperimentRunner(planner, plan, run_dir=pathlib.Path(folder), budget=capped, journal=False, sink=_Discard())
        progress = runner.run()
    ledger = planner.ledger
    dose_by_kind: dict[str, float] = collections.defaultdict(float)
    for m in ledger:
        dose_by_kind[m.kind] += m.dose_e
    surveys = [m for m in ledger if m.kind == "survey" and m.frame is not None]
    points = [m for m in ledger if m.kind != "survey" and m.position_nm is not None]
    return DryRunReport(plan.name, progress.step, dict(collections.Counter(m.kind for m in ledger)), sum(m.dwell_s for m in ledger), progress.dose_e,
                        dict(dose_by_kind), tuple(typing.cast(ScanFrame, m.frame) for m in surveys), tuple(m.dose_e for m in surveys),
                        tuple(typing.cast(Position, m.position_nm) for m in points), tuple(m.dose_e for m in points), tuple(planner.stage_path),
                        progress.state.value, progress.message)


class _Discard:
    """Products of a dry run go nowhere."""

    def publish(self, product: typing.Any, run_metadata: typing.Mapping[str, typing.Any]) -> None:
        pass
