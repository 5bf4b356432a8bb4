"""The small language of microscope actions that policies speak.

A policy decides *what* to do as a list of actions; the runner performs them
on a :class:`~nion_autoem.instrument.Microscope` and hands each result back as
an :class:`Observation`.  New experiments are new compositions of these
actions, not new acquisition loops:

- :class:`Survey`: scan a frame and look at it;
- :class:`Move`: park the probe at a position;
- :class:`Dwell`: keep the probe at a position and watch the ADF signal;
- :class:`Acquire`: record a spectrum or a camera frame at a position;
- :class:`Verify`: re-image a small field around a position to check a result.

Actions are frozen dataclasses, so they can be journaled, compared and
replayed.  Every action is pure data until :meth:`perform` runs it.
"""

from __future__ import annotations

import dataclasses
import typing

from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import Microscope
from nion_autoem.instrument import Position


def _position(value: typing.Any) -> Position | None:
    return None if value is None else (float(value[0]), float(value[1]))


@dataclasses.dataclass(frozen=True)
class Survey:
    """Scan a frame (default: the current one) on the given channels."""

    frame: ScanFrame | None = None
    channels: tuple[str, ...] = ("HAADF",)
    pixel_time_us: float | None = None
    label: str = "survey"

    kind: typing.ClassVar[str] = "survey"

    def perform(self, microscope: Microscope) -> Measurement:
        return microscope.survey(self.frame, channels=self.channels, pixel_time_us=self.pixel_time_us)

    def planned_dwell_s(self, microscope: Microscope) -> float:
        frame = self.frame or microscope.scan_frame
        return frame.shape[0] * frame.shape[1] * (self.pixel_time_us or 1.0) * 1e-6


@dataclasses.dataclass(frozen=True)
class Move:
    """Park the probe at a scan-field position (nm)."""

    position_nm: Position
    label: str = "move"

    kind: typing.ClassVar[str] = "move"

    def perform(self, microscope: Microscope) -> Measurement:
        microscope.park_probe(self.position_nm)
        return Measurement({}, "move", position_nm=self.position_nm)

    def planned_dwell_s(self, microscope: Microscope) -> float:
        return 0.0


@dataclasses.dataclass(frozen=True)
class Dwell:
    """Hold the probe at a position and record an ADF trace of ``samples`` samples."""

    position_nm: Position | None
    samples: int
    sample_time_us: float
    channel: str = "HAADF"
    label: str = "dwell"

    kind: typing.ClassVar[str] = "dwell"

    def perform(self, microscope: Microscope) -> Measurement:
        if self.position_nm is not None:
            microscope.park_probe(self.position_nm)
        return microscope.adf_trace(self.samples, self.sample_time_us, channel=self.channel)

    def planned_dwell_s(self, microscope: Microscope) -> float:
        return self.samples * self.sample_time_us * 1e-6


@dataclasses.dataclass(frozen=True)
class Acquire:
    """Record a spectrum (``detector="eels"``) or a camera frame (``"ronchigram"``) at a position."""

    position_nm: Position | None
    exposure_ms: float
    detector: str = "eels"
    label: str = "acquire"

    kind: typing.ClassVar[str] = "acquire"

    def __post_init__(self) -> None:
        if self.detector not in ("eels", "ronchigram"):
            raise ValueError(f"detector must be 'eels' or 'ronchigram', got {self.detector!r}")
        if not self.exposure_ms > 0:
            raise ValueError(f"exposure_ms must be positive, got {self.exposure_ms!r}")

    def perform(self, microscope: Microscope) -> Measurement:
        if self.position_nm is not None:
            microscope.park_probe(self.position_nm)
        if self.detector == "eels":
            return microscope.acquire_spectrum(self.exposure_ms)
        return microscope.acquire_camera_frame(self.exposure_ms)

    def planned_dwell_s(self, microscope: Microscope) -> float:
        return self.exposure_ms * 1e-3


@dataclasses.dataclass(frozen=True)
class Verify:
    """Re-image a small square field of ``fov_nm`` around a position."""

    position_nm: Position
    fov_nm: float
    shape: tuple[int, int] = (64, 64)
    pixel_time_us: float | None = None
    label: str = "verify"

    kind: typing.ClassVar[str] = "verify"

    def frame(self, microscope: Microscope) -> ScanFrame:
        rotation = microscope.scan_frame.rotation_rad
        return ScanFrame(self.shape, self.fov_nm, self.position_nm, rotation)

    def perform(self, microscope: Microscope) -> Measurement:
        return microscope.survey(self.frame(microscope), pixel_time_us=self.pixel_time_us)

    def planned_dwell_s(self, microscope: Microscope) -> float:
        return self.shape[0] * self.shape[1] * (self.pixel_time_us or 1.0) * 1e-6


Action = Survey | Move | Dwell | Acquire | Verify

ACTION_TYPES: dict[str, type[typing.Any]] = {cls.kind: cls for cls in (Survey, Move, Dwell, Acquire, Verify)}


def action_to_dict(action: Action) -> dict[str, typing.Any]:
    """A JSON-ready description of an action (its kind plus its fields)."""
    d: dict[str, typing.Any] = {"kind": action.kind}
    for field in dataclasses.fields(action):
        value = getattr(action, field.name)
        if isinstance(value, ScanFrame):
            value = value.to_dict()
        elif isinstance(value, tuple):
            value = list(value)
        d[field.name] = value
    return d


def action_from_dict(d: typing.Mapping[str, typing.Any]) -> Action:
    """Rebuild an action from :func:`action_to_dict` output."""
    kind = d.get("kind")
    if kind not in ACTION_TYPES:
        raise ValueError(f"unknown action kind {kind!r}; expected one of {sorted(ACTION_TYPES)}")
    cls = ACTION_TYPES[kind]
    kwargs = {k: v for k, v in d.items() if k != "kind"}
    if "frame" in kwargs and kwargs["frame"] is not None:
        kwargs["frame"] = ScanFrame.from_dict(kwargs["frame"])
    if "position_nm" in kwargs:
        kwargs["position_nm"] = _position(kwargs["position_nm"])
    for key in ("channels", "shape"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    return typing.cast(Action, cls(**kwargs))


@dataclasses.dataclass(frozen=True)
class Observation:
    """What the runner hands back to the policy after an action.

    Parameters
    ----------
    step : int
        Index of the action in the run, from 0.
    action : Action
        The action performed.
    measurement : Measurement
        Its data, dwell and dose.
    replayed : bool
        True if it came from a journal rather than the instrument.
    """

    step: int
    action: Action
    measurement: Measurement
    replayed: bool = False
