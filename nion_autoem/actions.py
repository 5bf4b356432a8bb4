"""The small language of microscope actions that plans speak.

A plan yields actions; the engine performs each one on a
:class:`~nion_autoem.instrument.Microscope` and sends its
:class:`~nion_autoem.instrument.Measurement` back into the plan.  The words are
what an operator does at the microscope:

- :class:`Survey`: scan a frame and look at it;
- :class:`Verify`: re-image a small field around a position to check a result;
- :class:`SetField`: change the field of view (magnification), centre or pixels without scanning;
- :class:`MoveStage`: move the stage, absolutely or relatively, with the instrument's own stage controls;
- :class:`ParkProbe`: park the probe at a position;
- :class:`Dwell`: keep the probe at a position and watch the ADF signal;
- :class:`Acquire`: record a spectrum or a camera frame at a position;
- :class:`SetDefocus`: set the objective defocus;
- :class:`Blank`, :class:`Unblank`: beam off and on;
- :class:`Wait`: let time pass (the engine waits, and a stop still stops at once).

Every action is a frozen dataclass, so it can be journaled, compared and
replayed, and it states its planned dwell and dose
(:meth:`planned_dwell_s`, :meth:`planned_dose_e`) before it runs.  Bad values
are refused when the action is made, with a message that says what would be
right; :meth:`check` compares an action with an instrument's limits.
"""

from __future__ import annotations

import dataclasses
import math
import typing

from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import DropAlarm
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import Microscope
from nion_autoem.instrument import Position
from nion_autoem.instrument import electrons

Detector = typing.Literal["eels", "ronchigram"]
ScanChannel = typing.Literal["HAADF", "MAADF"]
StageAxis = typing.Literal["y", "x"]

DETECTORS: tuple[Detector, ...] = ("eels", "ronchigram")
SCAN_CHANNELS: tuple[ScanChannel, ...] = ("HAADF", "MAADF")
STAGE_AXES: tuple[StageAxis, ...] = ("y", "x")

#: A single survey may keep the beam on for at most this long (a 2048² frame at 1 ms per pixel would be 70 minutes).
MAX_SURVEY_BEAM_ON_S = 120.0


def _finite(name: str, value: float, *, sign: typing.Literal["positive", "non-negative", "any"] = "positive", action: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (sign == "positive" and value <= 0) or (sign == "non-negative" and value < 0):
        need = {"positive": "a finite number > 0", "non-negative": "a finite number >= 0", "any": "a finite number"}[sign]
        raise ValueError(f"{action}: {name} must be {need}, got {value!r}")


def _position(name: str, value: typing.Any, *, action: str) -> Position | None:
    if value is None:
        return None
    try:
        y, x = float(value[0]), float(value[1])
    except (TypeError, IndexError, ValueError):
        raise ValueError(f"{action}: {name} must be a (y, x) pair in nm, got {value!r}") from None
    if len(value) != 2 or not (math.isfinite(y) and math.isfinite(x)):
        raise ValueError(f"{action}: {name} must be a finite (y, x) pair in nm, got {value!r}")
    return y, x


class _ActionBase:
    """What every action says about itself; the dataclasses below fill in the fields."""

    kind: typing.ClassVar[str]
    #: Whether the beam reaches the sample while the action runs (dose is counted, and the engine unblanks first).
    delivers_dose: typing.ClassVar[bool] = False
    label: str

    def planned_dwell_s(self, microscope: Microscope) -> float:
        """Beam-on time on the sample, known before the action runs."""
        return 0.0

    def planned_dose_e(self, microscope: Microscope) -> float:
        """Electrons the action will deliver if the beam is on."""
        return electrons(microscope.beam_current_A, self.planned_dwell_s(microscope)) if self.delivers_dose else 0.0

    def check(self, microscope: Microscope) -> None:
        """Raise ValueError if the instrument cannot do this action as asked; the message says what would work."""


@dataclasses.dataclass(frozen=True)
class Survey(_ActionBase):
    """Scan a frame (default: the current one) on the given channels."""

    frame: ScanFrame | None = None
    channels: tuple[ScanChannel, ...] = ("HAADF",)
    pixel_time_us: float | None = None
    label: str = "survey"

    kind: typing.ClassVar[str] = "survey"
    delivers_dose: typing.ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.pixel_time_us is not None:
            _finite("pixel_time_us", self.pixel_time_us, action=self.label)
        if not self.channels or any(c not in SCAN_CHANNELS for c in self.channels):
            raise ValueError(f"{self.label}: channels must be a non-empty selection of {SCAN_CHANNELS}, got {self.channels!r}")

    def scanned_frame(self, microscope: Microscope) -> ScanFrame:
        """The frame this survey scans: its own, or the current one."""
        return self.frame or microscope.scan_frame

    def perform(self, microscope: Microscope) -> Measurement:
        return microscope.survey(self.frame, channels=self.channels, pixel_time_us=self.pixel_time_us)

    def planned_dwell_s(self, microscope: Microscope) -> float:
        frame = self.scanned_frame(microscope)
        return frame.shape[0] * frame.shape[1] * (self.pixel_time_us or 1.0) * 1e-6

    def check(self, microscope: Microscope) -> None:
        beam_on = self.planned_dwell_s(microscope)
        if beam_on > MAX_SURVEY_BEAM_ON_S:
            frame = self.scanned_frame(microscope)
            raise ValueError(f"{self.label}: a {frame.shape[0]}×{frame.shape[1]} survey at {self.pixel_time_us or 1.0:g} µs per pixel keeps the beam on "
                             f"for {beam_on:.0f} s, more than the {MAX_SURVEY_BEAM_ON_S:g} s allowed for one survey; use fewer pixels or a shorter pixel time")


@dataclasses.dataclass(frozen=True)
class Verify(_ActionBase):
    """Re-image a small square field of ``fov_nm`` around a position (registration, verification)."""

    position_nm: Position
    fov_nm: float
    shape: tuple[int, int] = (64, 64)
    pixel_time_us: float | None = None
    label: str = "verify"

    kind: typing.ClassVar[str] = "verify"
    delivers_dose: typing.ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_nm", _position("position_nm", self.position_nm, action=self.label))
        _finite("fov_nm", self.fov_nm, action=self.label)
        if self.pixel_time_us is not None:
            _finite("pixel_time_us", self.pixel_time_us, action=self.label)

    def frame(self, microscope: Microscope) -> ScanFrame:
        return ScanFrame(self.shape, self.fov_nm, self.position_nm, microscope.scan_frame.rotation_rad)

    def perform(self, microscope: Microscope) -> Measurement:
        return microscope.survey(self.frame(microscope), pixel_time_us=self.pixel_time_us)

    def planned_dwell_s(self, microscope: Microscope) -> float:
        return self.shape[0] * self.shape[1] * (self.pixel_time_us or 1.0) * 1e-6


@dataclasses.dataclass(frozen=True)
class SetField(_ActionBase):
    """Change the scan frame (field of view / magnification, centre, pixels, rotation) without scanning."""

    frame: ScanFrame
    label: str = "set field"

    kind: typing.ClassVar[str] = "set_field"

    def perform(self, microscope: Microscope) -> Measurement:
        microscope.set_scan_frame(self.frame)
        return Measurement({}, "none", frame=self.frame)


@dataclasses.dataclass(frozen=True)
class MoveStage(_ActionBase):
    """Move the stage: ``axes`` is ``(("y", nm), ("x", nm))`` or any subset; ``relative`` adds to where it is.

    Examples
    --------
    >>> MoveStage.to(x=250.0)
    MoveStage(axes=(('x', 250.0),), relative=False, label='move stage')
    >>> MoveStage.by(y=-10.0, x=5.0).target((100.0, 100.0))
    (90.0, 105.0)
    """

    axes: tuple[tuple[str, float], ...]
    relative: bool = False
    label: str = "move stage"

    kind: typing.ClassVar[str] = "move_stage"

    def __post_init__(self) -> None:
        axes = tuple((str(a), v) for a, v in self.axes)
        for axis, value in axes:
            if axis not in STAGE_AXES:
                raise ValueError(f"{self.label}: unknown stage axis {axis!r}; the stage moves along {STAGE_AXES} (nm)")
            _finite(f"the {axis} move", value, sign="any", action=self.label)
        if not axes:
            raise ValueError(f"{self.label}: say where to move, e.g. MoveStage.to(x=100.0) or MoveStage.by(y=-50.0)")
        object.__setattr__(self, "axes", axes)

    @classmethod
    def to(cls, *, y: float | None = None, x: float | None = None, label: str = "move stage") -> MoveStage:
        return cls(tuple((a, v) for a, v in (("y", y), ("x", x)) if v is not None), False, label)

    @classmethod
    def by(cls, *, y: float | None = None, x: float | None = None, label: str = "move stage") -> MoveStage:
        return cls(tuple((a, v) for a, v in (("y", y), ("x", x)) if v is not None), True, label)

    def target(self, current_nm: Position) -> Position:
        """Where the stage ends up from ``current_nm``."""
        position: dict[str, float] = dict(zip(STAGE_AXES, current_nm, strict=True))
        for axis, value in self.axes:
            position[axis] = position[axis] + value if self.relative else value
        return position["y"], position["x"]

    def check(self, microscope: Microscope) -> None:
        target = self.target(microscope.stage_position_nm)
        for axis, value, (low, high) in zip(STAGE_AXES, target, microscope.stage_limits_nm, strict=True):
            if not low <= value <= high:
                raise ValueError(f"{self.label}: the stage {axis} would go to {value:.6g} nm, beyond its limits [{low:.6g}, {high:.6g}] nm; choose a target inside them")

    def perform(self, microscope: Microscope) -> Measurement:
        self.check(microscope)
        microscope.move_stage(self.target(microscope.stage_position_nm))
        return Measurement({}, "none", position_nm=microscope.stage_position_nm)


@dataclasses.dataclass(frozen=True)
class ParkProbe(_ActionBase):
    """Park the probe at a scan-field position (nm)."""

    position_nm: Position
    label: str = "park probe"

    kind: typing.ClassVar[str] = "park_probe"

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_nm", _position("position_nm", self.position_nm, action=self.label))

    def check(self, microscope: Microscope) -> None:
        microscope.probe_fraction(self.position_nm)

    def perform(self, microscope: Microscope) -> Measurement:
        microscope.park_probe(self.position_nm)
        return Measurement({}, "none", position_nm=self.position_nm)


@dataclasses.dataclass(frozen=True)
class Dwell(_ActionBase):
    """Hold the probe at a position and record an ADF trace of up to ``samples`` samples.

    With ``until`` (a :class:`~nion_autoem.instrument.DropAlarm`) the
    instrument watches the counts sample by sample and takes the beam off
    within ``until.within_samples`` samples of the alarm, so the trace (and
    the dose counted) may be shorter than ``samples``; the planned dwell and
    dose are the most it can take.

    Examples
    --------
    >>> from nion_autoem.instrument import DropAlarm
    >>> d = Dwell((0.0, 0.1), 200, 100.0, until=DropAlarm(3000.0, 2000.0, 15.0))
    >>> action_from_dict(action_to_dict(d)) == d
    True
    """

    position_nm: Position | None
    samples: int
    sample_time_us: float
    channel: ScanChannel = "HAADF"
    label: str = "dwell"
    until: DropAlarm | None = None

    kind: typing.ClassVar[str] = "dwell"
    delivers_dose: typing.ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "position_nm", _position("position_nm", self.position_nm, action=self.label))
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"{self.label}: samples must be a whole number >= 1, got {self.samples!r}")
        _finite("sample_time_us", self.sample_time_us, action=self.label)
        if self.channel not in SCAN_CHANNELS:
            raise ValueError(f"{self.label}: channel must be one of {SCAN_CHANNELS}, got {self.channel!r}")
        if self.until is not None and not isinstance(self.until, DropAlarm):
            raise ValueError(f"{self.label}: until must be a DropAlarm (when to stop the dwell) or None, got {self.until!r}")

    def check(self, microscope: Microscope) -> None:
        if self.position_nm is not None:
            microscope.probe_fraction(self.position_nm)

    def perform(self, microscope: Microscope) -> Measurement:
        if self.position_nm is not None:
            microscope.park_probe(self.position_nm)
        if self.until is not None:
            return microscope.adf_trace_until(self.samples, self.sample_time_us, self.until, channel=self.channel)
        return microscope.adf_trace(self.samples, self.sample_time_us, channel=self.channel)

    def planned_dwell_s(self, microscope: Microscope) -> float:
        return self.samples * self.sample_time_us * 1e-6


@dataclasses.dataclass(frozen=True)
class Acquire(_ActionBase):
    """Record a spectrum (``detector="eels"``) or a camera frame (``"ronchigram"``) at a position."""

    position_nm: Position | None
    exposure_ms: float
    detector: Detector = "eels"
    label: str = "acquire"

    kind: typing.ClassVar[str] = "acquire"
    delivers_dose: typing.ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"{self.label}: detector must be one of {DETECTORS}, got {self.detector!r}")
        _finite("exposure_ms", self.exposure_ms, action=self.label)
        object.__setattr__(self, "position_nm", _position("position_nm", self.position_nm, action=self.label))

    def check(self, microscope: Microscope) -> None:
        if self.position_nm is not None:
            microscope.probe_fraction(self.position_nm)

    def perform(self, microscope: Microscope) -> Measurement:
        if self.position_nm is not None:
            microscope.park_probe(self.position_nm)
        if self.detector == "eels":
            return microscope.acquire_spectrum(self.exposure_ms)
        return microscope.acquire_camera_frame(self.exposure_ms)

    def planned_dwell_s(self, microscope: Microscope) -> float:
        return self.exposure_ms * 1e-3


@dataclasses.dataclass(frozen=True)
class SetDefocus(_ActionBase):
    """Set the objective defocus (C10) in nm; ``relative`` adds to the present value (a focus series needs no reading)."""

    defocus_nm: float
    relative: bool = False
    label: str = "set defocus"

    kind: typing.ClassVar[str] = "set_defocus"

    def __post_init__(self) -> None:
        _finite("defocus_nm", self.defocus_nm, sign="any", action=self.label)

    def perform(self, microscope: Microscope) -> Measurement:
        microscope.set_defocus(microscope.defocus_nm + self.defocus_nm if self.relative else self.defocus_nm)
        return Measurement({}, "none")


@dataclasses.dataclass(frozen=True)
class Blank(_ActionBase):
    """Blank the beam; it stays blanked until :class:`Unblank` (dose-delivering actions then deliver none)."""

    label: str = "blank"

    kind: typing.ClassVar[str] = "blank"

    def perform(self, microscope: Microscope) -> Measurement:
        microscope.blank()
        return Measurement({}, "none")


@dataclasses.dataclass(frozen=True)
class Unblank(_ActionBase):
    """Unblank the beam."""

    label: str = "unblank"

    kind: typing.ClassVar[str] = "unblank"

    def perform(self, microscope: Microscope) -> Measurement:
        microscope.unblank()
        return Measurement({}, "none")


@dataclasses.dataclass(frozen=True)
class Wait(_ActionBase):
    """Let ``seconds`` pass; the engine waits (interruptibly), so a stop still stops at once."""

    seconds: float
    label: str = "wait"

    kind: typing.ClassVar[str] = "wait"

    def __post_init__(self) -> None:
        _finite("seconds", self.seconds, sign="non-negative", action=self.label)

    def perform(self, microscope: Microscope) -> Measurement:
        return Measurement({}, "none", duration_s=self.seconds)


Action = Survey | Verify | SetField | MoveStage | ParkProbe | Dwell | Acquire | SetDefocus | Blank | Unblank | Wait

ACTION_TYPES: dict[str, type[typing.Any]] = {cls.kind: cls for cls in typing.get_args(Action)}


def is_action(value: object) -> bool:
    """Whether ``value`` is one of the actions above."""
    return isinstance(value, typing.get_args(Action))


def action_to_dict(action: Action) -> dict[str, typing.Any]:
    """A JSON-ready description of an action (its kind plus its fields)."""
    d: dict[str, typing.Any] = {"kind": action.kind}
    for field in dataclasses.fields(action):
        value = getattr(action, field.name)
        if isinstance(value, (ScanFrame, DropAlarm)):
            value = value.to_dict()
        elif isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        d[field.name] = value
    return d


def action_from_dict(d: typing.Mapping[str, typing.Any]) -> Action:
    """Rebuild an action from :func:`action_to_dict` output.

    Examples
    --------
    >>> a = Acquire((1.0, 2.0), 20.0, label="spectrum 1")
    >>> action_from_dict(action_to_dict(a)) == a
    True
    """
    kind = d.get("kind")
    if kind not in ACTION_TYPES:
        raise ValueError(f"unknown action kind {kind!r}; expected one of {sorted(ACTION_TYPES)}")
    cls = ACTION_TYPES[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names - {"kind"}
    if unknown:
        raise ValueError(f"a {kind!r} action has no field(s) {sorted(unknown)}; its fields are {sorted(names)}")
    kwargs = {k: v for k, v in d.items() if k != "kind"}
    if kwargs.get("frame") is not None:
        kwargs["frame"] = ScanFrame.from_dict(kwargs["frame"])
    if kwargs.get("until") is not None:
        kwargs["until"] = DropAlarm.from_dict(kwargs["until"])
    for key in ("channels", "shape", "position_nm"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    if "axes" in kwargs:
        kwargs["axes"] = tuple((str(a), float(v)) for a, v in kwargs["axes"])
    return typing.cast(Action, cls(**kwargs))
