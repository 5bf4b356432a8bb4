"""Export a recorded run as Bluesky event-model documents.

A run directory (``journal.jsonl`` plus ``data/*.npy``) becomes the document
stream a Bluesky ``RunEngine`` would have emitted for the same experiment, so
the Bluesky tools (databroker/tiled ingestion, ``suitcase`` serializers,
``event_model.Filler``, live callbacks) can read this project's runs:

- one ``start`` document, from the journal header;
- for each journaled step, in step order: a ``descriptor`` when the step opens
  a stream (or changes an array's shape or dtype within it), one ``resource``
  and one ``datum`` per recorded channel, then the step's ``event``;
- one ``stop`` document, from the journal's end line.

Streams are named by action kind (``"survey"``, ``"park_probe"``, ``"dwell"``,
``"acquire"``, ...).  If one kind appears with different channel sets
(or with and without a position or a frame) in the same run, each variant gets
its own stream, ``<kind>_<channel>_<channel>...``, because event-model requires
every descriptor of a stream to have the same fields.

Events carry the step's scalars (``step``, ``dwell_s``, ``dose_e``,
``duration_s``, ``position_y_nm``/``position_x_nm`` for point acquisitions, the
scan frame for surveys, ``source``: the plan or the suspender that ran it) and
the action and the plan's result as JSON strings; the event ``time`` is the
step's ``started_at``.  Journal keys this module does not know are ignored.  Arrays are not copied into the
documents: as Bluesky does for large detector data, each channel is a datum
pointing at its ``.npy`` file through a resource with ``spec="NPY"``, ``root``
the run directory and ``resource_path`` the file's path relative to it.  Read
them back with :class:`NpyHandler` and ``event_model.Filler``.

Unique ids are derived from the run id (UUID5), so exporting a run twice gives
the same documents: re-ingesting an export does not create a second run.

A run without an end line (it crashed, or is still running) is exported, not
refused: its stop document says ``exit_status="fail"`` and its ``reason`` says
that the journal has no end line.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import typing
import uuid

import event_model
import numpy
import numpy.lib.format

from nion_autoem.journal import JournalRecord
from nion_autoem.journal import JournalStep
from nion_autoem.journal import read_journal

Document = tuple[str, dict[str, typing.Any]]

NPY_SPEC = "NPY"
"""The resource ``spec`` of the exported ``.npy`` files (register :class:`NpyHandler` under it)."""

EXIT_STATUS = {"finished": "success", "stopped": "abort", "failed": "fail"}
"""Journal end state to RunStop ``exit_status``; anything else (or no end line) is ``"fail"``."""

NO_END_REASON = "the journal has no end line: the run crashed or is still running"

_NAMESPACE = uuid.UUID("0d8e6f0e-7b8a-5a49-9a51-6e696f6e6175")  # fixed namespace for this project's document uids
_EXIT = typing.Literal["success", "abort", "fail"]


class NpyHandler:
    """An ``event_model.Filler`` handler for resources with ``spec="NPY"``: one array per file.

    Parameters
    ----------
    resource_path : str
        Full path of the ``.npy`` file (the Filler joins ``root`` and ``resource_path``).

    Examples
    --------
    >>> import event_model
    >>> documents = to_event_documents("runs/20240101-120000-abc123")  # doctest: +SKIP
    >>> with event_model.Filler({"NPY": NpyHandler}, inplace=False) as filler:  # doctest: +SKIP
    ...     filled = [filler(name, doc) for name, doc in documents]
    """

    def __init__(self, resource_path: str, **resource_kwargs: typing.Any) -> None:
        self._path = resource_path

    def __call__(self, **datum_kwargs: typing.Any) -> numpy.ndarray[typing.Any, typing.Any]:
        return typing.cast(numpy.ndarray[typing.Any, typing.Any], numpy.load(self._path, allow_pickle=False))


def _epoch(iso: typing.Any, default: float) -> float:
    """Seconds since the epoch of an ISO time from the journal, or ``default`` if it has none."""
    if not isinstance(iso, str) or not iso:
        return default
    try:
        moment = datetime.datetime.fromisoformat(iso)
    except ValueError:
        return default
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _npy_dtype(path: pathlib.Path) -> str:
    """The numpy dtype string of a ``.npy`` file, read from its header only."""
    with open(path, "rb") as f:
        version = numpy.lib.format.read_magic(f)
        if version == (1, 0):
            return str(numpy.lib.format.read_array_header_1_0(f)[2].str)
        if version == (2, 0):
            return str(numpy.lib.format.read_array_header_2_0(f)[2].str)
    return str(numpy.load(path, mmap_mode="r", allow_pickle=False).dtype.str)  # other header versions: let numpy parse it


class _StreamKey(typing.NamedTuple):
    kind: str
    channels: tuple[str, ...]
    has_position: bool
    has_frame: bool


def _stream_key(step: JournalStep) -> _StreamKey:
    entry = step.entry
    return _StreamKey(step.action.kind, tuple(entry.get("data", {})), entry.get("position_nm") is not None, bool(entry.get("frame")))


def _stream_names(steps: typing.Sequence[JournalStep]) -> dict[_StreamKey, str]:
    """Name each stream by its action kind, telling variants of one kind apart by their channels."""
    keys: list[_StreamKey] = []
    for step in steps:
        key = _stream_key(step)
        if key not in keys:
            keys.append(key)
    names: dict[_StreamKey, str] = {}
    for key in keys:
        variants = [k for k in keys if k.kind == key.kind]
        base = key.kind if len(variants) == 1 else f"{key.kind}_{'_'.join(key.channels) or 'nodata'}"
        name, n = base, 1
        while name in names.values():  # same kind and channels, with and without a position or frame
            n += 1
            name = f"{base}_{n}"
        names[key] = name
    return names


def _scalar_keys(key: _StreamKey) -> dict[str, event_model.DataKey]:
    source = f"nion_autoem:{key.kind}"
    keys: dict[str, event_model.DataKey] = {
        "step": {"dtype": "integer", "shape": [], "source": source, "object_name": "microscope"},
        "label": {"dtype": "string", "shape": [], "source": source, "object_name": "microscope"},
        "measurement_kind": {"dtype": "string", "shape": [], "source": source, "object_name": "microscope"},
        "dwell_s": {"dtype": "number", "shape": [], "source": source, "units": "s", "object_name": "microscope"},
        "dose_e": {"dtype": "number", "shape": [], "source": source, "units": "electrons", "object_name": "microscope"},
        "duration_s": {"dtype": "number", "shape": [], "source": source, "units": "s", "object_name": "microscope"},
        "action": {"dtype": "string", "shape": [], "source": source, "object_name": "microscope"},
        "result": {"dtype": "string", "shape": [], "source": source, "object_name": "microscope"},
        "model_version": {"dtype": "string", "shape": [], "source": source, "object_name": "microscope"},
        "source": {"dtype": "string", "shape": [], "source": source, "object_name": "microscope"},
    }
    if key.has_position:
        keys["position_y_nm"] = {"dtype": "number", "shape": [], "source": source, "units": "nm", "object_name": "microscope"}
        keys["position_x_nm"] = {"dtype": "number", "shape": [], "source": source, "units": "nm", "object_name": "microscope"}
    if key.has_frame:
        keys["frame_rows"] = {"dtype": "integer", "shape": [], "source": source, "object_name": "microscope"}
        keys["frame_columns"] = {"dtype": "integer", "shape": [], "source": source, "object_name": "microscope"}
        keys["frame_fov_nm"] = {"dtype": "number", "shape": [], "source": source, "units": "nm", "object_name": "microscope"}
        keys["frame_center_y_nm"] = {"dtype": "number", "shape": [], "source": source, "units": "nm", "object_name": "microscope"}
        keys["frame_center_x_nm"] = {"dtype": "number", "shape": [], "source": source, "units": "nm", "object_name": "microscope"}
        keys["frame_rotation_rad"] = {"dtype": "number", "shape": [], "source": source, "units": "rad", "object_name": "microscope"}
    return keys


def _scalar_values(step: JournalStep, key: _StreamKey) -> dict[str, typing.Any]:
    entry = step.entry
    values: dict[str, typing.Any] = {
        "step": int(step.step),
        "label": str(step.action.label),
        "measurement_kind": str(entry.get("measurement_kind", "")),
        "dwell_s": float(entry.get("dwell_s", 0.0)),
        "dose_e": float(entry.get("dose_e", 0.0)),
        "duration_s": float(entry.get("duration_s", 0.0)),
        "action": json.dumps(entry.get("action", {}), sort_keys=True),
        "result": json.dumps(entry.get("result", {}), sort_keys=True),
        "model_version": str(entry.get("model_version", "")),
        "source": str(entry.get("source", "plan")),
    }
    if key.has_position:
        position = entry["position_nm"]
        values["position_y_nm"] = float(position[0])
        values["position_x_nm"] = float(position[1])
    if key.has_frame:
        frame = entry["frame"]
        values["frame_rows"] = int(frame["shape"][0])
        values["frame_columns"] = int(frame["shape"][1])
        values["frame_fov_nm"] = float(frame["fov_nm"])
        values["frame_center_y_nm"] = float(frame.get("center_nm", (0.0, 0.0))[0])
        values["frame_center_x_nm"] = float(frame.get("center_nm", (0.0, 0.0))[1])
        values["frame_rotation_rad"] = float(frame.get("rotation_rad", 0.0))
    return values


def _array_key(channel: str, info: typing.Mapping[str, typing.Any], dtype: str) -> event_model.DataKey:
    units = info.get("intensity_calibration", {}).get("units") or None
    return {"dtype": "array", "shape": [int(n) for n in info.get("shape", [])], "dtype_numpy": dtype, "source": f"nion_autoem:{channel}",
            "external": "FILESTORE:", "units": units, "object_name": channel}


def _start_document(record: JournalRecord, uid: str, channels: typing.Sequence[str]) -> event_model.ComposeRunBundle:
    header = record.header
    first_started = min((float(s.entry.get("started_at") or 0.0) for s in record.steps), default=0.0) or 0.0
    plan = header.get("plan", header.get("policy", ""))  # journals from before plans said "policy"
    metadata: dict[str, typing.Any] = {
        "plan_name": str(plan or ""),
        "plan_type": "nion_autoem",
        "detectors": list(channels),
        "nion_autoem": {
            "run_id": str(header.get("run_id", "")),
            "parameters": header.get("parameters", {}),
            "microscope": header.get("microscope"),
            "resumed_from_step": header.get("resumed_from_step"),
            "run_dir": str(record.run_dir),
            "journal_torn_lines": record.torn_lines,
        },
    }
    return event_model.compose_run(uid=uid, time=_epoch(header.get("time"), first_started), metadata=metadata)


def to_event_documents(run_dir: str | os.PathLike[str], *, include_data: bool = True) -> list[Document]:
    """The run in ``run_dir`` as an ordered list of Bluesky ``(name, document)`` pairs.

    Parameters
    ----------
    run_dir : path-like
        A run directory holding ``journal.jsonl`` (and ``data/``).
    include_data : bool
        If True (default), every recorded channel is an array field whose
        value is a datum id, with ``resource`` and ``datum`` documents that
        point at the step's ``.npy`` file (``spec="NPY"``); the arrays stay in
        their files.  If False, events carry the scalars only and no resource
        or datum documents are made.

    Returns
    -------
    list of (str, dict)
        ``("start", ...)``, then per step an optional ``("descriptor", ...)``,
        ``("resource", ...)``/``("datum", ...)`` pairs and one
        ``("event", ...)``, then ``("stop", ...)``.  Every document is
        validated against the event-model schemas as it is composed.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no journal, or (with ``include_data``) a step's data
        file is missing.
    ValueError
        If the journal is corrupt, or has no header line.

    Examples
    --------
    >>> documents = to_event_documents("runs/20240101-120000-abc123")  # doctest: +SKIP
    >>> [name for name, _ in documents][:2]  # doctest: +SKIP
    ['start', 'descriptor']
    """
    record = read_journal(run_dir)
    if not record.header:
        raise ValueError(f"{record.run_dir / 'journal.jsonl'} has no header line; it is not a nion_autoem run journal")
    run_dir_abs = record.run_dir.resolve()
    run_id = str(record.header.get("run_id") or run_dir_abs)
    namespace = uuid.uuid5(_NAMESPACE, run_id)

    def uid(*parts: typing.Any) -> str:
        return str(uuid.uuid5(namespace, "/".join(str(p) for p in parts)))

    channels = list(dict.fromkeys(channel for step in record.steps for channel in step.entry.get("data", {})))
    bundle = _start_document(record, uid("start"), channels)
    documents: list[Document] = [("start", dict(bundle.start_doc))]
    names = _stream_names(record.steps)
    descriptors: dict[tuple[str, tuple[tuple[str, tuple[int, ...], str], ...]], event_model.ComposeDescriptorBundle] = {}
    start_time = float(bundle.start_doc["time"])
    last_time = start_time

    for step in record.steps:
        key = _stream_key(step)
        name = names[key]
        entry = step.entry
        started = float(entry.get("started_at") or 0.0) or last_time
        data_keys = _scalar_keys(key)
        data = _scalar_values(step, key)
        filled: dict[str, bool | str] = {}
        layout: list[tuple[str, tuple[int, ...], str]] = []
        files: dict[str, pathlib.Path] = {}
        if include_data:
            for channel, info in entry.get("data", {}).items():
                path = record.run_dir / info["file"]
                if not path.exists():
                    raise FileNotFoundError(f"step {step.step} channel {channel!r}: {path} is missing; the run directory is incomplete")
                dtype = _npy_dtype(path)
                data_keys[channel] = _array_key(channel, info, dtype)
                layout.append((channel, tuple(int(n) for n in info.get("shape", [])), dtype))
                files[channel] = path
        descriptor_id = (name, tuple(layout))
        if descriptor_id not in descriptors:
            object_keys = {"microscope": [k for k in data_keys if k not in files], **{channel: [channel] for channel in files}}
            descriptors[descriptor_id] = bundle.compose_descriptor(name=name, data_keys=data_keys, object_keys=object_keys, time=started,
                                                                   uid=uid("descriptor", len(descriptors)), hints={channel: {"fields": [channel]} for channel in files})
            documents.append(("descriptor", dict(descriptors[descriptor_id].descriptor_doc)))
        for channel, path in files.items():
            resource = bundle.compose_resource(spec=NPY_SPEC, root=str(run_dir_abs), resource_path=path.relative_to(record.run_dir).as_posix(),
                                               resource_kwargs={}, path_semantics="posix", uid=uid("resource", step.step, channel))
            datum = resource.compose_datum(datum_kwargs={})
            documents.append(("resource", dict(resource.resource_doc)))
            documents.append(("datum", dict(datum)))
            data[channel] = datum["datum_id"]
            filled[channel] = False
        event = descriptors[descriptor_id].compose_event(data=data, timestamps=dict.fromkeys(data, started), filled=filled, time=started, uid=uid("event", step.step))
        documents.append(("event", dict(event)))
        last_time = max(last_time, started + float(entry.get("duration_s") or 0.0))

    end = record.end
    if end is None:
        exit_status: _EXIT = "fail"
        reason = NO_END_REASON
        stop_time = last_time
    else:
        exit_status = typing.cast(_EXIT, EXIT_STATUS.get(str(end.get("state")), "fail"))
        reason = str(end.get("message") or "")
        stop_time = _epoch(end.get("time"), last_time)
    stop = dict(bundle.compose_stop(exit_status=exit_status, reason=reason, uid=uid("stop"), time=stop_time))
    stop["nion_autoem"] = {"state": None if end is None else end.get("state"), "steps": len(record.steps),
                           "dose_e": float(sum(float(s.entry.get("dose_e") or 0.0) for s in record.steps)),
                           "journal_events": [dict(e) for e in record.events]}
    event_model.schema_validators[event_model.DocumentNames.stop].validate(stop)
    documents.append(("stop", stop))
    return documents


def write_event_documents(run_dir: str | os.PathLike[str], path: str | os.PathLike[str], *, include_data: bool = True) -> pathlib.Path:
    """Write the run's documents to ``path`` as JSON lines, one ``[name, document]`` per line.

    That is the layout of Bluesky's "jsonl" serializer (``suitcase-jsonl``), so
    the file can be replayed into any Bluesky callback or ingested as is.  The
    file is written to a temporary name and renamed, so a reader never sees a
    half-written export.

    Parameters
    ----------
    run_dir : path-like
        The run directory.
    path : path-like
        The ``.jsonl`` file to write; its directory must exist.
    include_data : bool
        As for :func:`to_event_documents`.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> write_event_documents("runs/20240101-120000-abc123", "run.jsonl")  # doctest: +SKIP
    PosixPath('run.jsonl')
    """
    path = pathlib.Path(path)
    documents = to_event_documents(run_dir, include_data=include_data)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for name, doc in documents:
            f.write(json.dumps([name, doc], allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path
