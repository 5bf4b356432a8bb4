"""Beam targeting: put the probe on chosen atoms, watch the ADF signal, stop the moment one changes.

For every target, in shortest-path order, the policy

1. **registers**: re-images a small, low-dose field around where the drift
   model puts the target and measures what the prediction missed
   (cross-correlation against the survey, taken back by the predicted drift);
2. **centres**: a 3 x 3 excursion of the probe around the column finds its
   centre and brightness (atom tracking);
3. **dwells**: parks the probe on the column and lets the instrument watch the
   ADF counts sample by sample with a Poisson CUSUM (a
   :class:`~nion_autoem.instrument.DropAlarm`): the beam leaves the column
   within ``stop_within_samples`` samples of the alarm.  While nothing happens
   the dwell is cut into pieces short enough that the predicted drift stays
   below ``track_tolerance_nm``, and the probe is re-centred between them; every
   fix updates the drift estimate;
4. **checks** an alarm before counting it: an excursion shows whether the
   column is as bright as before somewhere else (the probe slid off: re-centre
   and resume) or dimmer where it was (an atom left);
5. **verifies**: re-images the target and asks the atom finder what the column
   is now; a column that is still intact is retried, up to a limit.

Time is the instrument's own (:func:`~nion_autoem.instrument.acquisition_time_s`):
on the twin, whose sample only moves while the beam is on, the drift model
repeats run after run.  Each target ends in words: transformed, no event
within the dose limit, event not verified, lost the column (or skipped).

The plan is plain control flow over the actions of :mod:`nion_autoem.actions`
(``Survey``, ``Verify``, ``Dwell``), so the engine journals every step, counts
its dose and keeps the beam safe; each target ends at a checkpoint, so a pause
never splits a registration from its dwell.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import typing

import numpy
import numpy.typing
import scipy.ndimage
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem import views
from nion_autoem.actions import Dwell
from nion_autoem.actions import Survey
from nion_autoem.actions import Verify
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import DropAlarm
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import acquisition_time_s
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
from nion_autoem_targeting.tracking import locate_column

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
    LOST = "lost the column"
    SKIPPED = "skipped"


#: What each outcome means, in the words the events table and the summary use.
OUTCOME_WORDS = {
    Outcome.TRANSFORMED: "transformed",
    Outcome.NO_EVENT: "no event within the dose limit",
    Outcome.NOT_VERIFIED: "event not verified",
    Outcome.LOST: "lost the column",
    Outcome.SKIPPED: "skipped (drifted out of the field)",
}


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
        Most samples of one dwell; between dwells the probe is re-centred on
        the column when the drift calls for it.  The instrument watches every
        sample (see ``stop_within_samples``) whatever the chunk.
    stop_within_samples : int
        The instrument takes the beam off within this many samples of the
        alarm (0 to 3).
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
    registration_shape, verify_shape : tuple of int
        Pixels of those images.
    pixel_time_us : float
        Pixel time of the survey.
    after_pixel_time_us : float
        Pixel time of the survey after the run, which only shows the result
        (every target was verified on its own): a quarter of the survey's dose.
    registration_pixel_time_us : float
        Pixel time of registration images (lower dose than the survey:
        registration needs the lattice).
    verify_pixel_time_us : float
        Pixel time of the verification image.  It lands on a column that has
        just lost an atom, so it is the lowest at which the finder still
        tells S2 from S1: more would risk ejecting the second S atom.
    track : bool
        Re-centre the probe on the column with short excursions (atom tracking).
    track_fov_nm, track_pixel_time_us : float
        Width and pixel time of the 3 x 3 excursion around the column.
    check_pixel_time_us : float
        Pixel time of the excursion that checks an alarm.  The column may
        just have lost an atom, so it gets a fifth of a tracking excursion's
        dose: enough to tell a dimmer column from a probe that slid off.
    track_tolerance_nm : float
        Re-centre once the predicted drift since the last fix exceeds this.
    max_slides : int
        Alarms that the excursion shows were the probe sliding off an intact
        column, re-centred and resumed, before the column counts as lost.
    """

    survey_frame: ScanFrame
    kind: str = "S2"
    region: tuple[tuple[float, float], tuple[float, float]] | None = None
    line: tuple[tuple[float, float], tuple[float, float], float] | None = None
    points_nm: tuple[tuple[float, float], ...] | None = None
    max_targets: int = 10
    sample_time_us: float = 100.0
    chunk_samples: int = 500
    stop_within_samples: int = 1
    drop_ratio: float = 0.65
    false_alarm_probability: float = 0.01
    max_dose_per_target_e: float = 5e9
    max_retries: int = 1
    registration_fov_nm: float = 1.0
    verify_fov_nm: float = 0.6
    registration_shape: tuple[int, int] = (32, 32)
    verify_shape: tuple[int, int] = (40, 40)
    pixel_time_us: float = 1.0
    registration_pixel_time_us: float = 1.0
    verify_pixel_time_us: float = 0.25
    after_pixel_time_us: float = 0.25
    track: bool = True
    track_fov_nm: float = 0.12
    track_pixel_time_us: float = 25.0
    check_pixel_time_us: float = 5.0
    track_tolerance_nm: float = 0.01
    max_slides: int = 4

    def __post_init__(self) -> None:
        if not 0.0 < self.drop_ratio < 1.0:
            raise ValueError(f"drop_ratio must be in (0, 1): the ADF level after the event relative to before; got {self.drop_ratio}")
        if self.chunk_samples < 2 or self.sample_time_us <= 0:
            raise ValueError(f"chunk_samples must be >= 2 and sample_time_us > 0, got {self.chunk_samples} and {self.sample_time_us}")
        if self.max_targets < 1 or self.max_retries < 0:
            raise ValueError(f"max_targets must be >= 1 and max_retries >= 0, got {self.max_targets} and {self.max_retries}")
        if not 0.0 < self.false_alarm_probability < 1.0:
            raise ValueError(f"false_alarm_probability must be in (0, 1), got {self.false_alarm_probability}")
        if not 0 <= self.stop_within_samples <= 3:
            raise ValueError(f"stop_within_samples must be 0 to 3 samples (how soon after the alarm the beam leaves the column), got {self.stop_within_samples}")
        for name in ("registration_fov_nm", "verify_fov_nm", "pixel_time_us", "registration_pixel_time_us", "verify_pixel_time_us", "after_pixel_time_us",
                     "track_fov_nm", "track_pixel_time_us", "check_pixel_time_us", "track_tolerance_nm"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("registration_shape", "verify_shape"):
            shape = getattr(self, name)
            if len(shape) != 2 or min(shape) < 8:
                raise ValueError(f"{name} must be (rows, columns) of at least 8 x 8 pixels, got {shape!r}")
        if self.max_slides < 0:
            raise ValueError(f"max_slides must be >= 0, got {self.max_slides}")


@dataclasses.dataclass
class Target:
    """One column to work on, and what happened to it.

    ``position_nm`` is where the survey saw it; ``corrected_nm`` where it was
    last found (registration or excursion), at ``fixed_at_s`` on the
    instrument's clock.
    """

    index: int
    position_nm: tuple[float, float]
    survey_time_s: float = 0.0
    corrected_nm: tuple[float, float] | None = None
    fixed_at_s: float = 0.0
    trace: list[float] = dataclasses.field(default_factory=list)
    dose_e: float = 0.0
    dwell_s: float = 0.0
    attempts: int = 0
    cusum: PoissonCusum | None = None
    cusum_start: int = 0
    level: float | None = None
    alarm_sample: int | None = None
    change_sample: int | None = None
    dose_to_event_e: float | None = None
    time_to_event_s: float | None = None
    detected_by: str | None = None
    slides: int = 0
    lost_fixes: int = 0
    centred: bool = False
    verified_class: str | None = None
    outcome: Outcome | None = None

    def explanation(self, settings: TargetingSettings) -> str:
        """What happened to this target, in a sentence."""
        if self.outcome is Outcome.TRANSFORMED:
            dose = f" after {self.dose_to_event_e:.3g} e" if self.dose_to_event_e is not None else ""
            return f"transformed: the {settings.kind} column became {self.verified_class}{dose}, seen by {self.detected_by or 'the verification'}"
        if self.outcome is Outcome.NO_EVENT:
            return f"no event within the dose limit: {self.dose_e:.3g} e of {settings.max_dose_per_target_e:.3g} e allowed; raise the limit or pick another column"
        if self.outcome is Outcome.NOT_VERIFIED:
            return (f"event not verified: the signal dropped but the column still looked {self.verified_class} after {self.attempts} attempt(s); "
                    "the drop was noise or a neighbour")
        if self.outcome is Outcome.LOST:
            return (f"lost the column: the probe could not be kept on it ({self.slides} slide(s) off, {self.lost_fixes} failed re-centring(s)); "
                    "the drift may be faster than the tracking, or the column is not there")
        if self.outcome is Outcome.SKIPPED:
            return "skipped: the sample drifted it out of the surveyed field"
        return "pending"


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
        self.model_version = "beam-targeting/2+" + ("elit-mos2" if atom_finder is None else getattr(atom_finder, "__name__", "custom-atom-finder"))
        self.targets: list[Target] = []
        self.atoms_found = 0
        self.classes_found: dict[str, int] = {}
        self.__survey: DataAndMetadata.DataAndMetadata | None = None
        self.__reference: _NDArray | None = None
        self.__after: DataAndMetadata.DataAndMetadata | None = None
        self.__drift = DriftEstimator(max_measurements=12)
        self.__clock_s = 0.0
        self.__levels: list[float] = []
        self.__electrons_per_s = 0.0
        self.__context: ScanFrame | None = None

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
        self.targets, self.atoms_found, self.classes_found, self.__survey, self.__after = [], 0, {}, None, None
        self.__drift, self.__clock_s, self.__levels, self.__context = DriftEstimator(max_measurements=12), 0.0, [], None
        survey = yield Survey(s.survey_frame, pixel_time_us=s.pixel_time_us, label="survey before")
        yield Report(self.__choose_targets(self.__observed(survey)), fraction=0.0, status=f"{len(self.targets)} {s.kind} targets chosen")
        yield from self.__publish()
        for target in self.targets:
            yield Checkpoint(f"target {target.index + 1}")
            yield from self.__transform(target)
            if target.trace:
                yield from self.__publish_traces()
            yield from self.__publish()
            yield Report(fraction=self.fraction_done(), status=f"target {target.index + 1} of {len(self.targets)}: {target.explanation(s)}")
        if self.targets:
            after = yield Survey(s.survey_frame, pixel_time_us=s.after_pixel_time_us, label="survey after")
            self.__after = self.__observed(after).xdata
            yield Report(self.summary())
            yield from self.__publish()
        return self.outcome_sentence()

    def __transform(self, target: Target) -> SubPlan:
        """Register, centre, dwell (re-centring as the sample drifts) until the column changes, verify; retry an unchanged column."""
        s = self.settings
        while target.outcome is None:
            registration = yield Verify(self.__predicted(target), s.registration_fov_nm, s.registration_shape, s.registration_pixel_time_us,
                                        label=f"register target {target.index + 1}")
            yield Report(self.__registered(target, self.__observed(registration)))
            while target.outcome is None and target.detected_by is None and target.corrected_nm is not None:
                if s.track and (not target.centred or self.__drifted_since_fix(target) > s.track_tolerance_nm or not self.__in_context(target)):
                    excursion = yield Verify(self.__predicted(target), s.track_fov_nm, (3, 3), self.__excursion_pixel_time_us(target),
                                             label=f"centre on target {target.index + 1}")
                    yield Report(self.__centred(target, self.__observed(excursion)))
                    continue
                dwell = yield Dwell(self.__predicted(target), self.__dwell_samples(target), s.sample_time_us, until=self.__alarm(target),
                                    label=f"dwell on target {target.index + 1}")
                yield Report(self.__dwelled(target, self.__observed(dwell)))
            if target.outcome is not None:
                return
            if target.detected_by is None:
                continue  # the column was lost: register again
            verification = yield Verify(self.__predicted(target), s.verify_fov_nm, s.verify_shape, s.verify_pixel_time_us,
                                        label=f"verify target {target.index + 1}")
            yield Report(self.__verified(target, self.__observed(verification)))

    def __observed(self, measurement: Measurement) -> Measurement:
        self.__clock_s = acquisition_time_s(measurement)
        if measurement.frame is not None:
            self.__context = measurement.frame
        if measurement.dwell_s > 0 and measurement.dose_e > 0:
            self.__electrons_per_s = measurement.dose_e / measurement.dwell_s
        return measurement

    def __in_context(self, target: Target) -> bool:
        """Whether the probe can be parked on the column in the current scan field (the last frame imaged)."""
        return self.__context is None or bool(self.__context.contains_nm(self.__predicted(target)))

    # -- drift: the column's position as time goes on ----------------------------------

    def __estimated_drift(self, time_s: float) -> _NDArray:
        return self.__drift.predict(time_s)

    def __predicted(self, target: Target) -> tuple[float, float]:
        """Where the column is now: from its last fix, moved on by the drift since."""
        if target.corrected_nm is None:
            base, since = target.position_nm, target.survey_time_s
        else:
            base, since = target.corrected_nm, target.fixed_at_s
        moved = self.__estimated_drift(self.__clock_s) - self.__estimated_drift(since)
        return float(base[0] + moved[0]), float(base[1] + moved[1])

    def __drifted_since_fix(self, target: Target) -> float:
        return float(numpy.hypot(*(self.__estimated_drift(self.__clock_s) - self.__estimated_drift(target.fixed_at_s))))

    def __fix(self, target: Target, position_nm: tuple[float, float], time_s: float) -> None:
        """The column was found at ``position_nm`` at ``time_s``: that measures the sample's drift since the survey saw it."""
        displacement = numpy.asarray(position_nm) - numpy.asarray(target.position_nm) + self.__estimated_drift(target.survey_time_s)
        self.__drift.add(max(time_s, float(self.__drift.times_s[-1]) if len(self.__drift) else time_s), displacement)
        target.corrected_nm = (float(position_nm[0]), float(position_nm[1]))
        target.fixed_at_s = time_s

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
        self.classes_found = {c: classes.count(c) for c in sorted(set(classes))}
        positions = frame.pixel_to_nm(pixels) if len(pixels) else numpy.zeros((0, 2))
        inside = frame.contains_nm(positions, margin=0.08) if len(positions) else numpy.zeros(0, dtype=bool)
        chosen = select_targets(positions, numpy.asarray(classes), kind=s.kind,
                                region=s.region, line=s.line, points=None if s.points_nm is None else numpy.asarray(s.points_nm))
        chosen = numpy.asarray([i for i in chosen if inside[i]], dtype=int)
        if chosen.size:
            chosen = chosen[shortest_path(positions[chosen])][: s.max_targets]
        # Each column was scanned when the raster passed its row; the drift since then is what registration measures.
        ended = self.__clock_s
        started = ended - measurement.dwell_s if measurement.dwell_s > 0 else ended
        rows = frame.nm_to_pixel(positions[chosen])[:, 0] if chosen.size else numpy.zeros(0)
        times = started + (numpy.clip(rows, 0, frame.shape[0] - 1) + 0.5) / frame.shape[0] * (ended - started)
        self.targets = [Target(k, (float(positions[i, 0]), float(positions[i, 1])), survey_time_s=float(t)) for k, (i, t) in enumerate(zip(chosen, times))]
        self.__drift.add(started, (0.0, 0.0))
        return {"atoms": len(classes), "targets": len(self.targets), "classes": self.classes_found}

    def __registered(self, target: Target, measurement: Measurement) -> dict[str, typing.Any]:
        assert self.__reference is not None and measurement.frame is not None
        frame = measurement.frame
        image = numpy.asarray(measurement.xdata.data, dtype=float)
        # The frame was centred where the column was predicted to be; the reference is the survey around where the
        # column was then, so the shift between them is what the prediction missed.
        predicted = numpy.asarray(frame.center_nm)
        reference = self.__reference_patch(frame, predicted - numpy.asarray(target.position_nm))
        dy, dx = measure_shift(reference, image, frame.pixel_size_nm)
        # measure_shift works along the image axes; turn that into scan-field nm with the frame's rotation.
        middle = (numpy.asarray(frame.shape, dtype=float) - 1) / 2
        residual = frame.pixel_to_nm(middle + numpy.array([dy, dx]) / frame.pixel_size_nm) - frame.pixel_to_nm(middle)
        found = predicted + residual
        self.__fix(target, (float(found[0]), float(found[1])), self.__clock_s)
        target.centred = False
        if not self.settings.survey_frame.contains_nm(found, margin=0.02):
            target.outcome = Outcome.SKIPPED
            return {"target": target.index, "skipped": "drifted out of the surveyed field", "outcome": target.outcome.value}
        target.cusum = None
        target.level = None
        target.trace = []
        target.alarm_sample = None
        target.detected_by = None
        target.attempts += 1
        offset = found - numpy.asarray(target.position_nm)
        return {"target": target.index, "drift_nm": [float(offset[0]), float(offset[1])], "residual_nm": [float(residual[0]), float(residual[1])],
                "velocity_nm_per_s": list(map(float, self.__drift.velocity_nm_per_s)), "drift_nm_per_s": float(numpy.hypot(*self.__drift.velocity_nm_per_s)),
                "offset_nm": self.__offset_report()}

    def __reference_patch(self, frame: ScanFrame, moved_nm: _NDArray) -> _NDArray:
        """The survey resampled onto a frame's pixels, taken ``moved_nm`` back (where those features were at the survey)."""
        assert self.__reference is not None
        pixels = self.settings.survey_frame.nm_to_pixel(frame.pixel_grid_nm() - moved_nm)
        return typing.cast(_NDArray, scipy.ndimage.map_coordinates(self.__reference, [pixels[..., 0], pixels[..., 1]], order=1, mode="nearest"))

    def __offset_report(self) -> list[float]:
        """The drift estimate now (nm since the survey began), journaled so a dose map can put each exposure where the sample was."""
        offset = self.__estimated_drift(self.__clock_s)
        return [float(offset[0]), float(offset[1])]

    def __centred(self, target: Target, measurement: Measurement) -> dict[str, typing.Any]:
        """An excursion around the column: where it is, and whether it is still as bright as before."""
        s = self.settings
        frame = measurement.frame
        assert frame is not None
        target.dose_e += measurement.dose_e
        target.dwell_s += measurement.dwell_s
        fix = locate_column(numpy.asarray(measurement.xdata.data, dtype=float), frame.pixel_grid_nm())
        level = fix.peak_counts * s.sample_time_us / self.__excursion_pixel_time_us(target)
        report: dict[str, typing.Any] = {"target": target.index, "found": fix.found, "position_nm": list(fix.position_nm), "level": level}
        known = target.level if target.level is not None else (float(numpy.median(self.__levels)) if self.__levels else None)
        if target.alarm_sample is not None and not (fix.found and bool(frame.contains_nm(fix.position_nm))):
            # After an alarm the excursion finds no column where it was: both atoms may have gone (the second within the stop
            # latency or during this look), or the probe slid far.  Not "lost": the verification image decides (S2 again: retried).
            empty = known is not None and level < known * s.drop_ratio / 2
            target.detected_by = "the ADF trace (the excursion found the site empty)" if empty else "the ADF trace (checked by the verification image)"
            report["event"] = target.detected_by
            return report
        if not (fix.found and bool(frame.contains_nm(fix.position_nm))):
            # No peak under the excursion: the column is not where the drift model put it.  Register again, a few times.
            target.lost_fixes += 1
            target.centred = False
            if target.lost_fixes > 2:
                target.outcome = Outcome.LOST
                report["outcome"] = target.outcome.value
            else:
                target.corrected_nm = None
            report["lost"] = target.lost_fixes
            return report
        # As bright as before (or as the targets before it): intact.  Dimmer by more than half the expected drop: it lost an atom.
        changed = known is not None and level < known * (1 + s.drop_ratio) / 2
        if not (changed and target.alarm_sample is not None):
            # The fit is the column's place halfway through the excursion.  A check after an alarm that confirms the event
            # is a short, noisy look at a changed column: it says nothing the drift model should learn from.
            self.__fix(target, fix.position_nm, self.__clock_s - measurement.dwell_s / 2)
        target.centred = True
        report["offset_nm"] = self.__offset_report()
        if changed:
            if target.alarm_sample is not None:
                target.detected_by = "the ADF trace (checked by an excursion)"
            else:
                target.detected_by = "a re-centring excursion"
                target.alarm_sample = target.change_sample = len(target.trace)
                target.dose_to_event_e, target.time_to_event_s = target.dose_e, target.dwell_s
            report["event"] = target.detected_by
            return report
        if target.alarm_sample is not None:
            # The alarm came from the probe sliding off an intact column: re-centred, the test starts afresh.
            target.slides += 1
            target.alarm_sample = target.change_sample = target.dose_to_event_e = target.time_to_event_s = None
            report["slide"] = target.slides
            if target.slides > s.max_slides:
                target.outcome = Outcome.LOST
                report["outcome"] = target.outcome.value
                return report
            target.cusum = None
        if target.cusum is None:
            target.level = level if target.level is None else target.level
            if len(self.__levels) < target.index + 1:
                self.__levels.append(level)
            target.cusum = PoissonCusum(target.level, target.level * s.drop_ratio, self.__threshold(target.level))
            target.cusum_start = len(target.trace)
        return report

    def __excursion_pixel_time_us(self, target: Target) -> float:
        return self.settings.check_pixel_time_us if target.alarm_sample is not None else self.settings.track_pixel_time_us

    def __threshold(self, level: float) -> float:
        """The CUSUM threshold that keeps false alarms below the set probability over the whole dose budget of a target."""
        s = self.settings
        electrons_per_sample = (self.__electrons_per_s or 1.25e9) * s.sample_time_us * 1e-6
        budget_samples = int(s.max_dose_per_target_e / electrons_per_sample) + 1
        # Siegmund's approximation, not the exact Poisson chain: it leaves room for counts a little
        # noisier than Poisson (probe jitter on the column) at the cost of well under a sample of delay.
        return threshold_for_false_alarm(level, level * s.drop_ratio, max(budget_samples, s.chunk_samples), s.false_alarm_probability, method="siegmund")

    def __alarm(self, target: Target) -> DropAlarm | None:
        s = self.settings
        if target.cusum is None:
            return None
        return DropAlarm(target.cusum.rate_before, target.cusum.rate_after, target.cusum.threshold, target.cusum.statistic, s.stop_within_samples)

    def __dwell_samples(self, target: Target) -> int:
        """Samples until the drift calls for re-centring, the dose limit, or a chunk, whichever comes first."""
        s = self.settings
        sample_s = s.sample_time_us * 1e-6
        samples = s.chunk_samples
        speed = float(numpy.hypot(*self.__drift.velocity_nm_per_s))
        if s.track and speed > 0:
            samples = min(samples, max(10, int((s.track_tolerance_nm - self.__drifted_since_fix(target)) / (speed * sample_s))))
        if target.trace and target.dose_e > 0:
            per_sample = target.dose_e / max(len(target.trace), 1)
            samples = min(samples, max(1, int((s.max_dose_per_target_e - target.dose_e) / per_sample) + 1))
        return max(samples, 2)

    def __dwelled(self, target: Target, measurement: Measurement) -> dict[str, typing.Any]:
        s = self.settings
        chunk = numpy.asarray(measurement.xdata.data, dtype=float)
        dose_e, dwell_s = measurement.dose_e, measurement.dwell_s
        start = len(target.trace)
        target.trace.extend(chunk.tolist())
        dose_per_sample = dose_e / max(len(chunk), 1)
        if target.cusum is None:
            # Without tracking the first samples set the level to watch.  Their largest, not their typical value: an
            # ejection within them would otherwise set the level at the S1 count, and only the next ejection would be seen.
            target.level = float(numpy.max(chunk[:3]))
            self.__levels.append(target.level)
            target.cusum = PoissonCusum(target.level, target.level * s.drop_ratio, self.__threshold(target.level))
            target.cusum_start = start
        alarm = target.cusum.update(chunk)
        target.dose_e += dose_e
        target.dwell_s += dwell_s
        report: dict[str, typing.Any] = {"target": target.index, "samples": len(target.trace), "dose_e": target.dose_e}
        if alarm is not None:
            alarm += target.cusum_start
            change = target.cusum.change_index
            target.alarm_sample = int(alarm)
            target.change_sample = int(change) + target.cusum_start if change is not None else int(alarm)
            target.dose_to_event_e = target.dose_e - dose_e + dose_per_sample * (target.change_sample - start + 1)
            target.time_to_event_s = target.dwell_s - dwell_s + (target.change_sample - start + 1) * s.sample_time_us * 1e-6
            report.update({"alarm": target.alarm_sample, "alarm_in_step": int(alarm) - start})
            if s.track:
                target.centred = False  # check before counting: an excursion tells an ejection from the probe sliding off
            else:
                target.detected_by = "the ADF trace"
        elif target.dose_e >= s.max_dose_per_target_e:
            target.outcome = Outcome.NO_EVENT
            report["outcome"] = target.outcome.value
        report["offset_nm"] = self.__offset_report()
        return report

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
            target.detected_by = None
            return {"target": target.index, "verified": target.verified_class, "retry": target.attempts}
        else:
            target.outcome = Outcome.NOT_VERIFIED
        return {"target": target.index, "verified": target.verified_class, "outcome": target.outcome.value, "dose_to_event_e": target.dose_to_event_e,
                "explanation": target.explanation(self.settings)}

    # -- results -----------------------------------------------------------------

    def summary(self) -> dict[str, typing.Any]:
        outcomes = [t.outcome.value if t.outcome else "pending" for t in self.targets]
        doses = [t.dose_to_event_e for t in self.targets if t.dose_to_event_e is not None and t.outcome is Outcome.TRANSFORMED]
        return {"targets": len(self.targets), "transformed": outcomes.count("transformed"), "no_event": outcomes.count("no event"),
                "not_verified": outcomes.count("event not verified"), "lost": outcomes.count("lost the column"), "skipped": outcomes.count("skipped"),
                "slides": sum(t.slides for t in self.targets),
                "median_dose_to_event_e": float(numpy.median(doses)) if doses else None, "total_dose_e": float(sum(t.dose_e for t in self.targets))}

    def events(self) -> views.Table:
        """One row per target, in words: target, y, x (nm), outcome, dose and time to the event, alarm sample, class found after, what happened."""
        return views.Table(("target", "y_nm", "x_nm", "outcome", "dose_to_event_e", "time_to_event_s", "alarm_sample", "verified_class", "what_happened"),
                           tuple((t.index + 1, t.position_nm[0], t.position_nm[1], t.outcome.value if t.outcome else "pending", t.dose_to_event_e,
                                  t.time_to_event_s, t.alarm_sample, t.verified_class, t.explanation(self.settings)) for t in self.targets))

    def __target_points(self) -> tuple[tuple[tuple[float, float], ...], tuple[str, ...]]:
        frame = self.settings.survey_frame
        points = tuple((float(f[0]), float(f[1])) for f in frame.nm_to_fraction(numpy.asarray([t.position_nm for t in self.targets]).reshape(-1, 2)))
        labels = tuple(f"{t.index + 1}{'' if t.outcome is None else ' ' + t.outcome.value}" for t in self.targets)
        return points, labels

    def no_targets_reason(self) -> str:
        """Why a survey gave no target, and what to change, in words."""
        s = self.settings
        if self.atoms_found == 0:
            return ("the atom finder found no columns in the survey: the field may be vacuum, out of focus or empty of atoms already "
                    "(an area exposed to a long live view loses its S); focus, move to a fresh area or check the survey's contrast")
        found = ", ".join(f"{n} {c}" for c, n in self.classes_found.items())
        restricted = " inside the chosen region" if (s.region or s.line or s.points_nm) else ""
        if self.classes_found.get(s.kind, 0) == 0:
            return (f"{self.atoms_found} columns found ({found}), none of them {s.kind}: the area may already have lost its {s.kind} columns to dose "
                    f"(a live view at the default pixel time empties S sites in minutes); move to a fresh area, or target another class")
        return (f"{self.classes_found[s.kind]} {s.kind} columns found ({found}), none{restricted} and away from the field's edge; "
                "move the region or line onto them, or widen it")

    def outcome_sentence(self) -> str:
        """What the run achieved, in words."""
        if not self.targets:
            return f"no {self.settings.kind} columns to target: {self.no_targets_reason()}"
        summary = self.summary()
        return (f"{summary['transformed']} of {summary['targets']} targets transformed"
                + "".join(f", {summary[key]} {words}" for key, words in (("no_event", "without an event within the dose limit"),
                                                                          ("not_verified", "with an event not verified"), ("lost", "lost (the probe could not stay on the column)"),
                                                                          ("skipped", "skipped (drifted out)"))
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

    def __publish_traces(self) -> SubPlan:
        """Every target's ADF trace in one item, a sequence browsed with its slider (not one item per target)."""
        dwelt = [t for t in self.targets if t.trace]
        length = max(len(t.trace) for t in dwelt)
        traces = numpy.full((len(dwelt), length), numpy.nan)  # shorter traces end in NaN: samples not dwelt
        for row, target in zip(traces, dwelt, strict=True):
            row[:len(target.trace)] = target.trace
        per_target = [{"target": t.index + 1, "samples": len(t.trace), "position_nm": list(t.corrected_nm or t.position_nm), "alarm_sample": t.alarm_sample,
                       "change_sample": t.change_sample, "outcome": t.outcome.value if t.outcome else None} for t in dwelt]
        xdata = DataAndMetadata.new_data_and_metadata(
            traces, intensity_calibration=Calibration.Calibration(units="counts"),
            dimensional_calibrations=[Calibration.Calibration(1.0, 1.0, "target"), Calibration.Calibration(0.0, self.settings.sample_time_us * 1e-3, "ms")],
            metadata={"nion_autoem": {"channel": "HAADF", "sample_time_us": self.settings.sample_time_us, "targets": per_target}},
            data_descriptor=DataAndMetadata.DataDescriptor(True, 0, 1))
        caption = "; ".join(f"target {d['target']}: {d['samples']} samples" + (f", alarm at sample {d['alarm_sample']}" if d["alarm_sample"] is not None else "")
                            + (f" ({d['outcome']})" if d["outcome"] else "") for d in per_target)
        yield Publish(Product("traces", "ADF traces (one per target)", xdata, caption=caption))
