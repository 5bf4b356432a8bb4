"""The run journal: one JSON line per action, flushed to disk as it happens.

A run directory holds ``journal.jsonl`` and a ``data/`` folder with one
``.npy`` file per recorded channel.  Each step writes its data first and its
journal line last, then flushes and syncs, so a crash loses at most the step
in flight and never leaves a line that points at missing data.  A torn last
line (a crash mid-write) is ignored when the journal is read back.

The journal is enough to replay a run (feed the recorded observations to a
fresh plan) or to resume it (replay, then carry on live).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import threading
import typing

import numpy
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem.actions import Action
from nion_autoem.actions import action_from_dict
from nion_autoem.actions import action_to_dict
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement

JOURNAL_NAME = "journal.jsonl"


def _jsonable(value: typing.Any) -> typing.Any:
    """Best-effort conversion of metadata and summaries to JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, numpy.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no inf or NaN; a journal line stays plain JSON whatever an instrument's metadata holds
    if isinstance(value, numpy.ndarray):
        return value.tolist() if value.size <= 64 else f"<array {value.shape} {value.dtype}>"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _calibration_to_dict(c: Calibration.Calibration) -> dict[str, typing.Any]:
    return {"offset": c.offset, "scale": c.scale, "units": c.units}


def _calibration_from_dict(d: typing.Mapping[str, typing.Any]) -> Calibration.Calibration:
    return Calibration.Calibration(d.get("offset", 0.0), d.get("scale", 1.0), d.get("units", ""))


@dataclasses.dataclass(frozen=True)
class JournalStep:
    """One journaled action, as read back from disk (with the plan's report for it merged into ``entry["result"]``)."""

    step: int
    action: Action
    entry: typing.Mapping[str, typing.Any]
    run_dir: pathlib.Path

    @property
    def source(self) -> str:
        """``"plan"``, or the suspender (``"suspender:<name>"``) whose recovery ran this step."""
        return str(self.entry.get("source", "plan"))

    @property
    def has_result(self) -> bool:
        """Whether the plan's report for this step reached the journal."""
        return bool(self.entry.get("has_result"))

    def load_measurement(self) -> Measurement:
        """Rebuild the recorded :class:`Measurement`, data included."""
        data: dict[str, DataAndMetadata.DataAndMetadata] = {}
        for channel, info in self.entry.get("data", {}).items():
            file = self.run_dir / info["file"]
            try:
                array = numpy.load(file, allow_pickle=False)
            except (OSError, ValueError, EOFError) as e:
                raise ValueError(f"{file}: the {channel} data of step {self.step} cannot be read ({e}); the file is missing, truncated or corrupt, "
                                 "so this step cannot be replayed — resume from a copy of the run cut before it") from e
            descriptor = info.get("data_descriptor")
            data[channel] = DataAndMetadata.new_data_and_metadata(
                array, _calibration_from_dict(info["intensity_calibration"]),
                [_calibration_from_dict(c) for c in info["dimensional_calibrations"]], info.get("metadata", {}),
                data_descriptor=DataAndMetadata.DataDescriptor(*descriptor) if descriptor else None)
        frame = self.entry.get("frame")
        position = self.entry.get("position_nm")
        return Measurement(data, self.entry["measurement_kind"], position_nm=None if position is None else (position[0], position[1]),
                           frame=ScanFrame.from_dict(frame) if frame else None, dwell_s=self.entry.get("dwell_s", 0.0),
                           dose_e=self.entry.get("dose_e", 0.0), started_at=self.entry.get("started_at", 0.0), duration_s=self.entry.get("duration_s", 0.0))


@dataclasses.dataclass(frozen=True)
class JournalRecord:
    """A journal read back from disk."""

    run_dir: pathlib.Path
    header: typing.Mapping[str, typing.Any]
    steps: tuple[JournalStep, ...]
    events: tuple[typing.Mapping[str, typing.Any], ...]
    end: typing.Mapping[str, typing.Any] | None
    torn_lines: int

    @property
    def is_complete(self) -> bool:
        """True if the run ended (finished, stopped or failed) and said so."""
        return self.end is not None


class Journal:
    """Append-only writer for one run's journal.

    Parameters
    ----------
    run_dir : path-like
        Directory of the run; created if needed.  An existing journal there is
        appended to (that is how a resumed run continues its own journal).
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = pathlib.Path(run_dir)
        (self.run_dir / "data").mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / JOURNAL_NAME
        _truncate_torn_tail(self.path)
        self.__file = open(self.path, "a", encoding="utf-8")
        self.__lock = threading.Lock()

    def close(self) -> None:
        with self.__lock:
            if not self.__file.closed:
                self.__file.close()

    def __write(self, entry: typing.Mapping[str, typing.Any]) -> None:
        line = json.dumps(_jsonable(entry), allow_nan=False, separators=(",", ":"))
        with self.__lock:
            self.__file.write(line + "\n")
            self.__file.flush()
            os.fsync(self.__file.fileno())

    def write_header(self, run_id: str, *, plan: str, parameters: typing.Mapping[str, typing.Any], microscope: str, resumed_from_step: int | None = None,
                     **details: typing.Any) -> None:
        self.__write({"type": "header", "run_id": run_id, "plan": plan, "parameters": parameters, "microscope": microscope,
                      "time": datetime.datetime.now(datetime.UTC).isoformat(), "resumed_from_step": resumed_from_step, **details})

    def write_event(self, event: str, **details: typing.Any) -> None:
        self.__write({"type": "event", "event": event, "time": datetime.datetime.now(datetime.UTC).isoformat(), **details})

    def write_result(self, step: int, result: typing.Mapping[str, typing.Any], *, rewards: typing.Mapping[str, float] | None = None, model_version: str = "") -> None:
        """The plan's report on a step it has processed, and the rewards' running totals."""
        self.__write({"type": "result", "step": step, "result": dict(result), "rewards": dict(rewards or {}), "model_version": model_version})

    def write_step(self, step: int, action: Action, measurement: Measurement, *, source: str = "plan", model_version: str = "") -> None:
        """Save the data of one action, then journal it."""
        data_entries: dict[str, typing.Any] = {}
        for channel, xd in measurement.data.items():
            name = f"data/step_{step:06d}_{channel}.npy"
            tmp = self.run_dir / (name + ".tmp")
            with open(tmp, "wb") as f:
                numpy.save(f, numpy.asarray(xd.data), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.run_dir / name)
            dd = xd.data_descriptor
            data_entries[channel] = {"file": name, "shape": list(xd.data_shape), "intensity_calibration": _calibration_to_dict(xd.intensity_calibration),
                                     "dimensional_calibrations": [_calibration_to_dict(c) for c in xd.dimensional_calibrations],
                                     "data_descriptor": [dd.is_sequence, dd.collection_dimension_count, dd.datum_dimension_count],
                                     "metadata": _jsonable(dict(xd.metadata))}
        self.__write({"type": "step", "step": step, "action": action_to_dict(action), "measurement_kind": measurement.kind,
                      "position_nm": list(measurement.position_nm) if measurement.position_nm else None,
                      "frame": measurement.frame.to_dict() if measurement.frame else None,
                      "started_at": measurement.started_at, "duration_s": measurement.duration_s,
                      "dwell_s": measurement.dwell_s, "dose_e": measurement.dose_e,
                      "result": {}, "model_version": model_version, "source": source, "data": data_entries})

    def write_end(self, state: str, *, message: str = "", steps: int = 0, dose_e: float = 0.0, **details: typing.Any) -> None:
        self.__write({"type": "end", "state": state, "message": message, "steps": steps, "dose_e": dose_e,
                      "time": datetime.datetime.now(datetime.UTC).isoformat(), **details})


class NullJournal:
    """A journal that keeps nothing (dry runs)."""

    path: pathlib.Path | None = None

    def close(self) -> None:
        pass

    def write_header(self, run_id: str, **details: typing.Any) -> None:
        pass

    def write_event(self, event: str, **details: typing.Any) -> None:
        pass

    def write_result(self, step: int, result: typing.Mapping[str, typing.Any], **details: typing.Any) -> None:
        pass

    def write_step(self, step: int, action: Action, measurement: Measurement, **details: typing.Any) -> None:
        pass

    def write_end(self, state: str, **details: typing.Any) -> None:
        pass


def _truncate_torn_tail(path: pathlib.Path) -> None:
    """Cut a line left half-written by a crash, so that appended lines start on a line of their own."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def read_journal(run_dir: str | os.PathLike[str]) -> JournalRecord:
    """Read a run's journal, skipping a torn last line left by a crash.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` holds no journal.
    ValueError
        If a line other than the last cannot be parsed (the journal is corrupt,
        not merely cut short).
    """
    run_dir = pathlib.Path(run_dir)
    path = run_dir / JOURNAL_NAME
    if not path.exists():
        raise FileNotFoundError(f"no journal at {path}; pass the run directory that contains {JOURNAL_NAME}")
    lines = path.read_bytes().split(b"\n")
    header: typing.Mapping[str, typing.Any] = {}
    steps: dict[int, JournalStep] = {}
    events: list[typing.Mapping[str, typing.Any]] = []
    end: typing.Mapping[str, typing.Any] | None = None
    torn = 0
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for number, raw in enumerate(lines):
        if not raw.strip():
            continue
        where = f"{path}:{number + 1}"
        try:
            entry = json.loads(raw.decode("utf-8"))
            if not isinstance(entry, dict):
                raise ValueError(f"a journal line is a JSON object, this one is {type(entry).__name__}")
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            if number == last and not raw.endswith(b"}"):
                torn += 1  # the line a crash cut short; resuming truncates it
                continue
            raise ValueError(f"{where} is not a valid journal line ({e}); the journal is corrupt from here on: "
                             "copy the run directory, cut the journal before this line, and resume from the copy") from e
        kind = entry.get("type")
        try:
            if kind == "header":
                header = header or entry
                end = None  # a resumed run reopens its journal
            elif kind == "step":
                # a resumed run re-journals nothing it replayed, but be tolerant
                steps[int(entry["step"])] = JournalStep(int(entry["step"]), action_from_dict(entry["action"]), entry, run_dir)
            elif kind == "result" and entry.get("step") in steps:
                step = steps[entry["step"]]
                merged = {**step.entry, "result": {**step.entry.get("result", {}), **entry.get("result", {})}, "rewards": entry.get("rewards", {}), "has_result": True}
                steps[entry["step"]] = dataclasses.replace(step, entry=merged)
            elif kind == "event":
                events.append(entry)
            elif kind == "end":
                end = entry
            elif kind != "result":
                raise ValueError(f"unknown line type {kind!r}; expected header, step, result, event or end")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            missing = f"it has no {e} field" if isinstance(e, KeyError) else str(e)
            raise ValueError(f"{where} is a {kind!r} line the journal cannot use: {missing}; the journal is corrupt — "
                             "cut it before this line to keep the steps before it") from e
    return JournalRecord(run_dir, header, tuple(steps[k] for k in sorted(steps)), tuple(events), end, torn)
