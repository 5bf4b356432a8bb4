"""Beam targeting: put the probe on chosen atoms, watch the ADF signal, stop the moment one changes.

For every target, in shortest-path order, the policy

1. **registers**: re-images a small field around the target and measures how
   far the sample has drifted since the survey (cross-correlation against the
   survey), then predicts the drift forward to the moment of dwelling;
2. **dwells**: parks the probe on the drift-corrected position and records the
   ADF trace in short chunks, running a Poisson CUSUM test on the counts; the
   dwell ends at the first chunk in which the test fires, or when the target's
   dose limit is reached;
3. **verifies**: re-images the target and asks the atom finder what the column
   is now; a column that is still intact is retried, up to a limit.

The plan is plain control flow over the actions of :mod:`nion_autoem.actions`
(``Survey``, ``Verify``, ``Dwell``), so the engine journals every step, counts
its dose and keeps the beam safe; each target ends at a checkpoint, so a pause
never splits a registration from its dwell.
"""

from __future__ import annotations

import dataclasses
import enum
import typing

import numpy
import numpy.typing
import scipy.ndimage
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem import views
from nion_autoem import xdata as xdata_builders
from nion_autoem.actions import Dwell
from nion_autoem.actions import Survey
from nion_autoem.actions import Verify
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.plan import Checkpoint
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import Publish
from nion_autoem.plan import Report
from nion_autoem.plan import Reward
from nion_autoem.plan import SubPlan
from nion_autoem.products import Product
from nion_autoem_targeting.changepoint import PoissonCusum
from nion_autoem_targeting.changepoint import threshold_for_false_alarm
from nion_autoem_targeting.drift import DriftEstimator
from nion_autoem_targeting.drift import measure_shift
from nion_autoem_targeting.ordering import shortest_path
from nion_autoem_targeting.selection import select_targets

_NDArray = numpy.typing.NDArray[typing.Any]

AtomFinder = typing.Callable[[_NDArray, float], tuple[_NDArray, list[str]]]
"""(image, pixel size in nm) -> (positions in pixels (N, 2), class names (N,))."""


def elit_atom_finder(image: _NDArray, pixel_size_nm: float) -> tuple[_NDArray, list[str]]:
    """The packaged ELIT MoS2 ensemble as an :data:`AtomFinder`, told the image's sampling."""
    from nion_autoem_elit.api import find_atoms

    result = find_atoms(image, pixel_size_nm=pixel_size_nm)
    return result.positions, [result.class_names[int(k)] for k in result.classes]


class Outcome(enum.Enum):
    TRANSFORMED = "transformed"
    NO_EVENT = "no event"
    NOT_VERIFIED = "event not verified"
    SKIPPED = "skipped"


@dataclasses.dataclass(frozen=True)
class TargetingSettings:
    """Where to work and how hard.

    Parameters
    ----------
    survey_frame : ScanFrame
        The field to survey and pick targets in.
    kind : str
        Class of atom column to target (e.g. ``"S2"``).
    region : ((y, x) centre, (height, width)) in nm, optional
        Only targets in this rectangle.
    line : ((y0, x0), (y1, x1), width) in nm, optional
        Only targets in this strip (e.g. to write a line of vacancies).
    points_nm : sequence of (y, x), optional
        Only the columns nearest to these points (e.g. graphics the user drew).
    max_targets : int
        At most this many targets.
    sample_time_us : float
        ADF sample time while dwelling.
    chunk_samples : int
        Samples per dwell chunk; the test runs after each chunk.
    drop_ratio : float
        Expected ADF level after the event relative to before (S2 -> S1 about 0.65).
    false_alarm_probability : float
        Chance of a false alarm per target, which sets the CUSUM threshold.
    max_dose_per_target_e : float
        Electrons after which a target without an event is given up.
    max_retries : int
        Further attempts on a target the verification says is unchanged.
    registration_fov_nm, verify_fov_nm : float
        Fields of the registration and verification images.
    registration_shape : tuple of int
        Pixels of those images.
    pixel_time_us : float
        Pixel time of survey, registration and verification images.
    """

    survey_frame: ScanFrame
    kind: str = "S2"
    region: tuple[tuple[float, float], tuple[float, float]] | None = None
    line: tuple[tuple[float, float], tuple[float, float], float] | None = None
    points_nm: tuple[tuple[float, float], ...] | None = None
    max_targets: int = 10
    sample_time_us: float = 100.0
    chunk_samples: int = 10
    drop_ratio: float = 0.65
    false_alarm_probability: float = 0.01
    max_dose_per_target_e: float = 5e9
    max_retries: int = 1
    registration_fov_nm: float = 1.0
    verify_fov_nm: float = 1.0
    registration_shape: tuple[int, int] = (64, 64)
    pixel_time_us: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.drop_ratio < 1.0:
            raise ValueError(f"drop_ratio must be in (0, 1): the ADF level after the event relative to before; got {self.drop_ratio}")
        if self.chunk_samples < 2 or self.sample_time_us <= 0:
            raise ValueError(f"chunk_samples must be >= 2 and sample_time_us > 0, got {self.chunk_samples} and {self.sample_time_us}")
        if self.max_targets < 1 or self.max_retries < 0:
            raise ValueError(f"max_targets must be >= 1 and max_retries >= 0, got {self.max_targets} and {self.max_retries}")
        if not 0.0 < self.false_alarm_probability < 1.0:
            raise ValueError(f"false_alarm_probability must be in (0, 1), got {self.false_alarm_probability}")


@dataclasses.dataclass
class Target:
    """One column to work on, and what happened to it."""

    index: int
    position_nm: tuple[float, float]
    corrected_nm: tuple[float, float] | None = None
    trace: list[float] = dataclasses.field(default_factory=list)
    dose_e: float = 0.0
    dwell_s: float = 0.0
    attempts: int = 0
    cusum: PoissonCusum | None = None
    alarm_sample: int | None = None
    change_sample: int | None = None
    dose_to_event_e: float | None = None
    time_to_event_s: float | None = None
    verified_class: str | None = None
    outcome: Outcome | None = None


class BeamTargeting:
    """Atom-by-atom fabrication: transform chosen columns one by one, with drift correction and dose limits.

    Parameters
    ----------
    settings : TargetingSettings
        Targets, dwell and detection settings, limits.
    atom_finder : AtomFinder, optional
        Finds and classifies columns in an image (default: the packaged ELIT ensemble).
    """

    name = "beam-targeting"

    rewards = (Reward("targets transformed", lambda measurement, result: float(result.get("outcome") == Outcome.TRANSFORMED.value), units="targets"),)

    def __init__(self, settings: TargetingSettings, atom_finder: AtomFinder | None = None) -> None:
        self.settings = settings
        self.__find_atoms = atom_finder or elit_atom_finder
        # the journal records which model picked and verified the targets
        self.model_version = "beam-targeting/1+" + ("elit-mos2" if atom_finder is None else getattr(atom_finder, "__name__", "custom-atom-finder"))
        self.targets: list[Target] = []
        self.atoms_found = 0
        self.__survey: DataAndMetadata.DataAndMetadata | None = None
        self.__reference: _NDArray | None = None
        self.__after: DataAndMetadata.DataAndMetadata | None = None
        self.__drift = DriftEstimator()
        self.__clock_s = 0.0

    @property
    def parameters(self) -> dict[str, typing.Any]:
        d = dataclasses.asdict(self.settings)
        d["survey_frame"] = self.settings.survey_frame.to_dict()
        return d

    def fraction_done(self) -> float:
        if not self.targets:
            return 0.0
        return sum(t.outcome is not None for t in self.targets) / len(self.targets)

    # -- the plan ----------------------------------------------------------------

    def messages(self) -> PlanGenerator:
        s = self.settings
        self.targets, self.atoms_found, self.__survey, self.__after, self.__drift, self.__clock_s = [], 0, None, None, DriftEstimator(), 0.0
        survey = yield Survey(s.survey_frame, pixel_time_us=s.pixel_time_us, label="survey before")
        yield Report(self.__choose_targets(self.__observed(survey)), fraction=0.0, status=f"{len(self.targets)} {s.kind} targets chosen")
        yield from self.__publish()
        for target in self.targets:
            yield Checkpoint(f"target {target.index + 1}")
            yield from self.__transform(target)
            if target.trace:
                yield from self.__publish_trace(target)
            yield from self.__publish()
            yield Report(fraction=self.fraction_done(), status=f"target {target.index + 1} of {len(self.targets)}: {target.outcome.value if target.outcome else ''}")
        if self.targets:
            after = yield Survey(s.survey_frame, pixel_time_us=s.pixel_time_us, label="survey after")
            self.__after = self.__observed(after).xdata
            yield Report(self.summary())
            yield from self.__publish()
        return self.outcome_sentence()

    def __transform(self, target: Target) -> SubPlan:
        """Register, dwell until the column changes, verify; retry an unchanged column."""
        s = self.settings
        while target.outcome is None:
            registration = yield Verify(self.__predicted(target.position_nm), s.registration_fov_nm, s.registration_shape, s.pixel_time_us,
                                        label=f"register target {target.index + 1}")
            yield Report(self.__registered(target, self.__observed(registration)))
            if target.outcome is not None:
                return
            while target.outcome is None and target.alarm_sample is None:
                position = target.corrected_nm or self.__predicted(target.position_nm)
                chunk = yield Dwell(position, s.chunk_samples, s.sample_time_us, label=f"dwell on target {target.index + 1}")
                yield Report(self.__dwelled(target, self.__observed(chunk)))
            if target.outcome is not None:
                return
            verification = yield Verify(target.corrected_nm or self.__predicted(target.position_nm), s.verify_fov_nm, s.registration_shape, s.pixel_time_us,
                                        label=f"verify target {target.index + 1}")
            yield Report(self.__verified(target, self.__observed(verification)))

    def __observed(self, measurement: Measurement) -> Measurement:
        self.__clock_s = measurement.started_at + measurement.duration_s
        return measurement

    def __predicted(self, position_nm: tuple[float, float]) -> tuple[float, float]:
        dy, dx = self.__drift.predict(self.__clock_s)
        return position_nm[0] + float(dy), position_nm[1] + float(dx)

    # -- what each step means ------------------------------------------------------

    def __choose_targets(self, measurement: Measurement) -> dict[str, typing.Any]:
        s = self.settings
        frame = s.survey_frame
        survey = measurement.xdata
        image = numpy.asarray(survey.data, dtype=float)
        self.__survey = survey
        self.__reference = image
        pixels, classes = self.__find_atoms(image, frame.pixel_size_nm)
        self.atoms_found = len(classes)
        positions = frame.pixel_to_nm(pixels) if len(pixels) else numpy.zeros((0, 2))
        inside = frame.contains_nm(positions, margin=0.08) if len(positions) else numpy.zeros(0, dtype=bool)
        chosen = select_targets(positions, numpy.asarray(classes), kind=s.kind,
                                region=s.region, line=s.line, points=None if s.points_nm is None else numpy.asarray(s.points_nm))
        chosen = numpy.asarray([i for i in chosen if inside[i]], dtype=int)
        if chosen.size:
            chosen = chosen[shortest_path(positions[chosen])][: s.max_targets]
        self.targets = [Target(k, (float(positions[i, 0]), float(positions[i, 1]))) for k, i in enumerate(chosen)]
        self.__drift.add(self.__clock_s, (0.0, 0.0))
        return {"atoms": len(classes), "targets": len(self.targets), "classes": {c: classes.count(c) for c in set(classes)}}

    def __registered(self, target: Target, measurement: Measurement) -> dict[str, typing.Any]:
        assert self.__reference is not None and measurement.frame is not None
        frame = measurement.frame
        image = numpy.asarray(measurement.xdata.data, dtype=float)
        reference = self.__reference_patch(frame)
        dy, dx = measure_shift(reference, image, frame.pixel_size_nm)
        # measure_shift works along the image axes; turn that into scan-field nm with the frame's rotation.
        middle = (numpy.asarray(frame.shape, dtype=float) - 1) / 2
        shift_nm = frame.pixel_to_nm(middle + numpy.array([dy, dx]) / frame.pixel_size_nm) - frame.pixel_to_nm(middle)
        # The reference patch was cut where the sample was predicted to be, so the residual adds to the prediction.
        predicted = self.__drift.predict(self.__clock_s)
        offset = (float(predicted[0] + shift_nm[0]), float(predicted[1] + shift_nm[1]))
        self.__drift.add(self.__clock_s, offset)
        target.corrected_nm = (target.position_nm[0] + offset[0], target.position_nm[1] + offset[1])
        if not self.settings.survey_frame.contains_nm(target.corrected_nm, margin=0.02):
            target.outcome = Outcome.SKIPPED
            return {"target": target.index, "skipped": "drifted out of the surveyed field", "outcome": target.outcome.value}
        target.cusum = None
        target.trace = []
        target.alarm_sample = None
        target.attempts += 1
        return {"target": target.index, "drift_nm": [offset[0], offset[1]], "velocity_nm_per_s": list(map(float, self.__drift.velocity_nm_per_s)),
                "drift_nm_per_s": float(numpy.hypot(*self.__drift.velocity_nm_per_s))}

    def __reference_patch(self, frame: ScanFrame) -> _NDArray:
        """The survey resampled onto a registration frame's pixels."""
        assert self.__reference is not None
        pixels = self.settings.survey_frame.nm_to_pixel(frame.pixel_grid_nm())
        return typing.cast(_NDArray, scipy.ndimage.map_coordinates(self.__reference, [pixels[..., 0], pixels[..., 1]], order=1, mode="nearest"))

    def __dwelled(self, target: Target, measurement: Measurement) -> dict[str, typing.Any]:
        s = self.settings
        chunk = numpy.asarray(measurement.xdata.data, dtype=float)
        dose_e, dwell_s = measurement.dose_e, measurement.dwell_s
        start = len(target.trace)
        target.trace.extend(chunk.tolist())
        dose_per_sample = dose_e / max(len(chunk), 1)
        if target.cusum is None:
            # The first samples set the level to watch.  Their largest, not their typical value: an ejection
            # within them would otherwise set the level at the S1 count, and only the next ejection would be seen.
            # Over-estimating by a standard deviation costs nothing: the CUSUM still drifts down on an intact column.
            before = float(numpy.max(chunk[:3]))
            budget_samples = int(s.max_dose_per_target_e / max(dose_per_sample, 1e-30)) + 1
            # Siegmund's approximation, not the exact Poisson chain: it leaves room for counts a little
            # noisier than Poisson (probe jitter on the column) at the cost of well under a sample of delay.
            threshold = threshold_for_false_alarm(before, before * s.drop_ratio, max(budget_samples, s.chunk_samples), s.false_alarm_probability,
                                                  method="siegmund")
            target.cusum = PoissonCusum(before, before * s.drop_ratio, threshold)
        alarm = target.cusum.update(chunk)
        target.dose_e += dose_e
        target.dwell_s += dwell_s
        if alarm is not None:
            target.alarm_sample = int(alarm)
            target.change_sample = int(target.cusum.change_index) if target.cusum.change_index is not None else int(alarm)
            target.dose_to_event_e = target.dose_e - dose_e + dose_per_sample * (target.change_sample - start + 1)
            target.time_to_event_s = (target.change_sample + 1) * s.sample_time_us * 1e-6
        elif target.dose_e >= s.max_dose_per_target_e:
            target.outcome = Outcome.NO_EVENT
        return {"target": target.index, "samples": len(target.trace), "alarm": target.alarm_sample, "dose_e": target.dose_e,
                **({"outcome": target.outcome.value} if target.outcome else {})}

    def __verified(self, target: Target, measurement: Measurement) -> dict[str, typing.Any]:
        assert measurement.frame is not None
        frame = measurement.frame
        image = numpy.asarray(measurement.xdata.data, dtype=float)
        pixels, classes = self.__find_atoms(image, frame.pixel_size_nm)
        position = target.corrected_nm or target.position_nm
        if len(pixels):
            distances = numpy.linalg.norm(frame.pixel_to_nm(pixels) - numpy.asarray(position), axis=1)
            nearest = int(numpy.argmin(distances))
            # no column within a third of the Mo-S spacing: the site is empty
            target.verified_class = classes[nearest] if distances[nearest] < 0.06 else "empty"
        else:
            target.verified_class = "empty"
        if target.verified_class != self.settings.kind:
            target.outcome = Outcome.TRANSFORMED
        elif target.attempts <= self.settings.max_retries:
            target.alarm_sample = None
            return {"target": target.index, "verified": target.verified_class, "retry": target.attempts}
        else:
            target.outcome = Outcome.NOT_VERIFIED
        return {"target": target.index, "verified": target.verified_class, "outcome": target.outcome.value, "dose_to_event_e": target.dose_to_event_e}

    # -- results -----------------------------------------------------------------

    def summary(self) -> dict[str, typing.Any]:
        outcomes = [t.outcome.value if t.outcome else "pending" for t in self.targets]
        doses = [t.dose_to_event_e for t in self.targets if t.dose_to_event_e is not None]
        return {"targets": len(self.targets), "transformed": outcomes.count("transformed"), "no_event": outcomes.count("no event"),
                "not_verified": outcomes.count("event not verified"), "skipped": outcomes.count("skipped"),
                "median_dose_to_event_e": float(numpy.median(doses)) if doses else None, "total_dose_e": float(sum(t.dose_e for t in self.targets))}

    def events(self) -> views.Table:
        """One row per target, in words: target, y, x (nm), outcome, dose and time to the event, alarm sample, class found after."""
        return views.Table(("target", "y_nm", "x_nm", "outcome", "dose_to_event_e", "time_to_event_s", "alarm_sample", "verified_class"),
                           tuple((t.index + 1, t.position_nm[0], t.position_nm[1], t.outcome.value if t.outcome else "pending", t.dose_to_event_e,
                                  t.time_to_event_s, t.alarm_sample, t.verified_class) for t in self.targets))

    def __target_points(self) -> tuple[tuple[tuple[float, float], ...], tuple[str, ...]]:
        frame = self.settings.survey_frame
        points = tuple((float(f[0]), float(f[1])) for f in frame.nm_to_fraction(numpy.asarray([t.position_nm for t in self.targets]).reshape(-1, 2)))
        labels = tuple(f"{t.index + 1}{'' if t.outcome is None else ' ' + t.outcome.value}" for t in self.targets)
        return points, labels

    def outcome_sentence(self) -> str:
        """What the run achieved, in words."""
        if not self.targets:
            return (f"no {self.settings.kind} columns to target: {self.atoms_found} columns found in the survey, none of them {self.settings.kind} "
                    "in the chosen region; try another field or region")
        summary = self.summary()
        return (f"{summary['transformed']} of {summary['targets']} targets transformed"
                + "".join(f", {summary[key]} {words}" for key, words in (("no_event", "without an event within the dose limit"),
                                                                          ("not_verified", "with an event not verified"), ("skipped", "skipped (drifted out)"))
                          if summary[key]))

    def __publish(self) -> SubPlan:
        points, labels = self.__target_points()
        if self.__survey is not None:
            yield Publish(Product("before", "Targets before", self.__survey, points=points, labels=labels))
        if self.__after is not None:
            yield Publish(Product("after", "Targets after", self.__after, points=points, labels=labels))
        table = self.events()
        dose = numpy.asarray([numpy.nan if t.dose_to_event_e is None else t.dose_to_event_e for t in self.targets], dtype=float)
        xdata = DataAndMetadata.new_data_and_metadata(numpy.nan_to_num(dose), intensity_calibration=Calibration.Calibration(units="e"),
                                                      dimensional_calibrations=[Calibration.Calibration(1.0, 1.0, "target")],
                                                      metadata={"nion_autoem": {"columns": list(table.columns), "summary": self.summary()}})
        outcomes = "; ".join(f"{t.index + 1}: {t.outcome.value if t.outcome else 'pending'}" for t in self.targets)
        yield Publish(Product("events", "Targeting events (dose to event per target)", xdata, caption=f"{self.outcome_sentence()}\n{outcomes}", table=table))

    def __publish_trace(self, target: Target) -> SubPlan:
        trace = xdata_builders.trace_xdata(numpy.asarray(target.trace), self.settings.sample_time_us,
                                           metadata={"target": target.index + 1, "position_nm": list(target.corrected_nm or target.position_nm),
                                                     "alarm_sample": target.alarm_sample, "change_sample": target.change_sample,
                                                     "outcome": target.outcome.value if target.outcome else None})
        yield Publish(Product(f"trace-{target.index + 1}", f"ADF trace, target {target.index + 1}", trace))
