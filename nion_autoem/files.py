"""Recorded microscope files as calibrated niondata.

:func:`read_file` (one signal) and :func:`read_signals` (every signal in a
file) turn DM3/DM4, EMD (NCEM and Velox), HSPY, NeXus and the other formats
RosettaSciIO reads into ``DataAndMetadata`` with calibrations the rest of the
project understands: spatial axes in nm, reciprocal axes in 1/nm, energy axes
in eV.  Swift's own ``.ndata`` (zip of ``data.npy`` and ``metadata.json``) and
``.h5`` (dataset ``data`` with a ``properties`` JSON attribute) files are read
directly.

Navigation axes become collection dimensions and signal axes datum
dimensions; a stack over time (a first navigation axis in s) becomes a
sequence.  A DigitalMicrograph spectrum image, which the file stores energy
first, comes back as (rows, cols, energy).  What the file said (path,
reader, original units, its metadata with the acquisition details RosettaSciIO
maps out of the file's own tags, e.g. ``Acquisition_instrument.TEM.dwell_time``)
is kept under ``metadata["nion_autoem"]["file"]``.

A Velox EMD file may hold several signals (e.g. a HAADF image and an EDS
spectrum image): pick one with ``signal=`` (its title or index); the errors
list the titles it holds.  Velox spectrum images need the optional package
``sparse``; without it the file's images are still read, and asking for its
spectrum image says what to install.

Every failure is a ``FileNotFoundError`` or ``ValueError`` that names the
file and what is wrong with it.
"""

from __future__ import annotations

import importlib
import json
import math
import pathlib
import re
import typing
import warnings
import zipfile

import numpy
import numpy.typing
from nion.data import Calibration
from nion.data import DataAndMetadata

_NDArray = numpy.typing.NDArray[typing.Any]
PathLike = str | pathlib.Path

#: Unit spellings converted to the project's units: name -> (project unit, factor to multiply the scale and offset by).
UNIT_CONVERSIONS: typing.Mapping[str, tuple[str, float]] = {
    "nm": ("nm", 1.0), "pm": ("nm", 1e-3), "\u00c5": ("nm", 0.1), "\u212b": ("nm", 0.1), "A": ("nm", 0.1), "angstrom": ("nm", 0.1),
    "um": ("nm", 1e3), "\u00b5m": ("nm", 1e3), "\u03bcm": ("nm", 1e3), "mm": ("nm", 1e6), "m": ("nm", 1e9),
    "1/nm": ("1/nm", 1.0), "nm^-1": ("1/nm", 1.0), "1/\u00c5": ("1/nm", 10.0), "1/\u212b": ("1/nm", 10.0), "1/A": ("1/nm", 10.0),
    "1/pm": ("1/nm", 1e3), "1/um": ("1/nm", 1e-3), "1/\u00b5m": ("1/nm", 1e-3), "1/\u03bcm": ("1/nm", 1e-3), "1/m": ("1/nm", 1e-9),
    "eV": ("eV", 1.0), "meV": ("eV", 1e-3), "keV": ("eV", 1e3),
}
#: Units of a stack's time axis (a first navigation axis in these makes the data a sequence).
TIME_UNITS = frozenset({"s", "ms", "us", "\u00b5s", "\u03bcs", "ns"})
#: Units that count as a spatial or energy calibration.
CALIBRATED_UNITS = frozenset({"nm", "1/nm", "eV", "mrad", "rad", "s", "ms", "us", "µs"})
#: Formats read directly rather than through RosettaSciIO.
SWIFT_EXTENSIONS = ("ndata", "h5")
# Where an extension is claimed by several RosettaSciIO plugins, the one for microscope files wins.
_PREFERRED_PLUGINS = {"hdf5": "HSPY", "mrc": "MRC", "img": "Hamamatsu", "xml": "EMPAD", "csv": "Protochips"}
_UNDEFINED_UNITS = ("", "<undefined>", "undefined", "None", "px", "pixel", "pixels")


def supported_extensions() -> list[str]:
    """Every file extension :func:`read_signals` accepts, lower case, without the dot."""
    return sorted(set(_plugins_by_extension()) | set(SWIFT_EXTENSIONS))


def read_file(path: PathLike, *, signal: int | str | None = None, require_calibration: bool = True) -> DataAndMetadata.DataAndMetadata:
    """One calibrated signal from ``path``.

    Parameters
    ----------
    path : str or Path
        The file; its extension picks the reader.
    signal : int, str or None
        Which signal of a file holding several: its index, or its title; None
        takes the first.
    require_calibration : bool
        Refuse a signal whose axes carry no spatial / energy calibration
        (units empty and scale 1), except the detector axes of a 4D dataset.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the extension is unknown, the file is truncated, corrupt or of
        another kind, ``signal`` names no signal in it, or it is uncalibrated.
    """
    if signal is not None and not isinstance(signal, str) and (not isinstance(signal, int) or isinstance(signal, bool)):
        raise TypeError(f"signal must be an index, a title or None, got {signal!r}")
    file = pathlib.Path(path)
    signals, not_read = _read_all(file)
    titles = [_title(x) for x in signals]
    unread = f"; not read: {'; '.join(not_read)}" if not_read else ""
    if signal is None:
        chosen = signals[0]
        if not_read:
            warnings.warn(f"{file}: took its first signal {titles[0]!r}; not read: {'; '.join(not_read)}", stacklevel=2)
    elif isinstance(signal, str):
        if signal not in titles:
            raise ValueError(f"{file}: no signal titled {signal!r}; it holds {titles}{unread}")
        chosen = signals[titles.index(signal)]
    else:
        if not -len(signals) <= signal < len(signals):
            raise ValueError(f"{file}: signal index {signal} is out of range; it holds {len(signals)} signal(s): {titles}{unread}")
        chosen = signals[signal]
    if require_calibration:
        check_calibrated(chosen, file)
    return chosen


def read_signals(path: PathLike) -> list[DataAndMetadata.DataAndMetadata]:
    """Every signal in ``path`` as calibrated niondata, in the file's order (no calibration check).

    Where part of the file cannot be read (a Velox spectrum image without the
    ``sparse`` package) the rest comes back with a warning, and each signal's
    ``metadata["nion_autoem"]["file"]["not_read"]`` says what was left out.
    """
    file = pathlib.Path(path)
    signals, not_read = _read_all(file)
    if not_read:
        warnings.warn(f"{file}: not read: {'; '.join(not_read)}", stacklevel=2)
    return signals


def calibration_units(units: str) -> tuple[str, float]:
    """The project's units for ``units`` as a file spells them, and the factor scale and offset are multiplied by.

    Spaces and the ``^-1`` spelling of reciprocal units are forgiven; units
    the project does not convert come back as they are, with factor 1.

    >>> calibration_units("\u00b5m")
    ('nm', 1000.0)
    >>> calibration_units("1 / \u00c5")
    ('1/nm', 10.0)
    >>> calibration_units("nm^-1")
    ('1/nm', 1.0)
    >>> calibration_units("keV")
    ('eV', 1000.0)
    >>> calibration_units("mrad")
    ('mrad', 1.0)
    """
    units = _units(units)
    if units in UNIT_CONVERSIONS:
        return UNIT_CONVERSIONS[units]
    compact = "".join(units.split())
    for reciprocal in ("^-1", "\u207b\u00b9", "-1"):
        if compact.endswith(reciprocal) and not compact.startswith("1/"):
            compact = "1/" + compact[: -len(reciprocal)]
            break
    return UNIT_CONVERSIONS.get(compact, (units, 1.0))


def _read_all(file: pathlib.Path) -> tuple[list[DataAndMetadata.DataAndMetadata], list[str]]:
    """The signals of ``file`` and what of it could not be read."""
    if not file.exists():
        raise FileNotFoundError(f"{file}: no such file")
    if not file.is_file():
        raise ValueError(f"{file}: is not a file")
    extension = file.suffix.lower().lstrip(".")
    if extension == "ndata":
        return [_read_swift_ndata(file)], []
    if extension == "h5":
        return [_read_swift_h5(file)], []
    plugin = _plugins_by_extension().get(extension)
    if plugin is None:
        raise ValueError(f"{file}: unknown file extension {file.suffix!r}; supported: {', '.join(supported_extensions())}")
    dictionaries, not_read = _call_reader(plugin, file)
    if not dictionaries:
        raise ValueError(f"{file}: the {plugin['name']} reader found no data in it")
    return [_from_rsciio(d, file, str(plugin["name"]), index, not_read) for index, d in enumerate(dictionaries)], not_read


def check_calibrated(xdata: DataAndMetadata.DataAndMetadata, file: PathLike) -> None:
    """ValueError naming ``file`` unless the axes of ``xdata`` are calibrated.

    Every axis needs units in nm, 1/nm, eV, mrad (or time); the detector
    axes of a 4D dataset may stay in pixels.
    """
    descriptor = xdata.data_descriptor
    exempt = set(range(len(xdata.data_shape) - 2, len(xdata.data_shape))) if descriptor.collection_dimension_count >= 1 and descriptor.datum_dimension_count == 2 else set()
    missing = [i for i, c in enumerate(xdata.dimensional_calibrations) if i not in exempt and c.units not in CALIBRATED_UNITS]
    if missing:
        found = ", ".join(f"axis {i}: scale {xdata.dimensional_calibrations[i].scale:g}, units {xdata.dimensional_calibrations[i].units!r}" for i in missing)
        raise ValueError(f"{pathlib.Path(file)}: the file has no calibration for {found}; its image axes need a pixel size in nm (or Å, µm) "
                         f"and its spectrum axis an energy scale in eV; recalibrate and save it again")


# --- RosettaSciIO ----------------------------------------------------------------------------------


def _plugins_by_extension() -> dict[str, dict[str, typing.Any]]:
    import rsciio
    plugins = typing.cast(list[dict[str, typing.Any]], rsciio.IO_PLUGINS)
    by_name = {str(p["name"]): p for p in plugins}
    result: dict[str, dict[str, typing.Any]] = {}
    for plugin in plugins:
        for ext in plugin["file_extensions"]:
            ext = str(ext).lower()
            if ext not in SWIFT_EXTENSIONS:
                result.setdefault(ext, plugin)
    for ext, name in _PREFERRED_PLUGINS.items():
        if name in by_name:
            result[ext] = by_name[name]
    return result


def _call_reader(plugin: typing.Mapping[str, typing.Any], file: pathlib.Path) -> tuple[list[dict[str, typing.Any]], list[str]]:
    """RosettaSciIO's dictionaries for ``file``, read now, and what of the file could not be read."""
    module = importlib.import_module(str(plugin["api"]))
    try:
        dictionaries = _materialised(module.file_reader(str(file), lazy=False))
    except MemoryError:
        raise
    except ImportError as error:  # an optional package the reader needs for this file (Velox spectrum images: sparse)
        package = _missing_package(error)
        needs = (f"the {plugin['name']} reader needs the Python package {package!r} for it, which is not installed (pip install {package})" if package
                 else f"the {plugin['name']} reader needs a Python package that is not installed")
        images = _velox_images(file) if plugin["name"] == "EMD" else []
        if not images:
            raise ValueError(f"{file}: {needs}: {error}") from error
        return images, [f"its spectrum image(s): {needs}"]
    except Exception as error:
        raise ValueError(f"{file}: cannot be read as a {plugin['name']} file (truncated, corrupt or another kind of file?): "
                         f"{type(error).__name__}: {error}") from error
    return dictionaries, []


def _materialised(result: typing.Any) -> list[dict[str, typing.Any]]:
    dictionaries = typing.cast(list[dict[str, typing.Any]], list(result))
    for d in dictionaries:  # force the read now so a truncated file fails here, not later
        d["data"] = numpy.array(d["data"])
    return dictionaries


def _missing_package(error: ImportError) -> str:
    if error.name:
        return error.name.split(".")[0]
    quoted = re.search(r"'([A-Za-z0-9_.\-]+)'", str(error))
    return quoted.group(1) if quoted else ""


def _velox_images(file: pathlib.Path) -> list[dict[str, typing.Any]]:
    """The images of a Velox file whose spectrum image needs a package that is missing ([] if that fails).

    RosettaSciIO reads a Velox file's images before it turns to the
    spectrum stream (and gives up for want of ``sparse``); its reader object
    keeps what it read.
    """
    try:
        import h5py
        from rsciio.emd._emd_velox import FeiEMDReader
        reader = FeiEMDReader(select_type="images", lazy=False)
        with h5py.File(file, "r") as h5:
            try:
                reader.read_file(h5)
            except ImportError:
                pass
            return _materialised(reader.dictionaries)
    except Exception:  # RosettaSciIO internals changed, or not a Velox file: the caller reports the missing package
        return []


def _from_rsciio(d: typing.Mapping[str, typing.Any], file: pathlib.Path, reader: str, index: int, not_read: typing.Sequence[str] = ()) -> DataAndMetadata.DataAndMetadata:
    data = numpy.asarray(d["data"])
    listed = [dict(a) for a in d.get("axes", [])]
    axes = [a for _, a in sorted(enumerate(listed), key=lambda pair: int(pair[1].get("index_in_array", pair[0])))]
    if len(axes) != data.ndim:
        raise ValueError(f"{file}: signal {index} has {data.ndim} dimensions but the {reader} reader describes {len(axes)} axes")
    if data.dtype.kind not in "biufc":
        raise ValueError(f"{file}: signal {index} holds {data.dtype} data (e.g. RGB); only numeric data can be used")
    shaped = _PostProcess(data, axes)
    skipped = shaped.run(d.get("post_process") or [])
    data, axes = shaped.data, shaped.axes
    original_metadata = d.get("original_metadata") or {}
    metadata = _mapped_metadata(dict(d.get("metadata") or {}), original_metadata, d.get("mapping") or {})
    navigate = [bool(a.get("navigate", False)) for a in axes]
    if not any(navigate):
        navigate = _guess_navigation(axes)
    order = [i for i in range(len(axes)) if navigate[i]] + [i for i in range(len(axes)) if not navigate[i]]
    if order != list(range(len(axes))):
        data = numpy.transpose(data, order)
        axes = [axes[i] for i in order]
    n_nav = sum(navigate)
    n_datum = len(axes) - n_nav
    if n_datum == 0:  # a stack of numbers: let the last axis be the datum
        n_nav, n_datum = n_nav - 1, 1
    if n_datum > 2 or n_nav > 3:
        raise ValueError(f"{file}: signal {index} has {n_nav} navigation and {n_datum} signal axes; at most 3 navigation and 2 signal axes can be used")
    calibrations = []
    original_units = []
    for axis in axes:
        units = _units(axis.get("units"))
        original_units.append(units)
        scale, offset = float(axis.get("scale", 1.0) or 1.0), float(axis.get("offset", 0.0) or 0.0)
        new_units, factor = calibration_units(units)
        calibrations.append(Calibration.Calibration(offset * factor, scale * factor, new_units))
    # three navigation axes, or a first one in time (a Velox / DM stack of frames), make a sequence
    is_sequence = n_nav == 3 or (n_nav >= 1 and calibrations[0].units in TIME_UNITS)
    descriptor = DataAndMetadata.DataDescriptor(is_sequence, n_nav - (1 if is_sequence else 0), n_datum)
    record = {"path": str(file.resolve()), "reader": reader, "signal_index": index, "title": _nested(metadata, "General", "title") or "",
              "signal_type": _nested(metadata, "Signal", "signal_type") or "", "axis_names": [str(a.get("name", "")) for a in axes],
              "original_units": original_units, "metadata": _jsonable(metadata), "original_metadata": _jsonable(original_metadata)}
    if skipped:
        record["post_process_skipped"] = skipped
    if not_read:
        record["not_read"] = list(not_read)
    return DataAndMetadata.new_data_and_metadata(data, intensity_calibration=Calibration.Calibration(units=_intensity_units(metadata)),
                                                 dimensional_calibrations=calibrations, data_descriptor=descriptor,
                                                 metadata={"nion_autoem": {"file": record}})


class _PostProcess:
    """Stands in for the HyperSpy signal that a reader's ``post_process`` steps are handed.

    The DigitalMicrograph reader hands back a spectrum image as stored, energy
    axis first and flagged as navigation, and asks for ``to_signal1D()``
    (the first array axis becomes the only signal axis) and ``squeeze()``.
    Steps asking for anything else are skipped and listed.
    """

    def __init__(self, data: _NDArray, axes: list[dict[str, typing.Any]]) -> None:
        self.data = data
        self.axes = axes

    def run(self, steps: typing.Iterable[typing.Any]) -> list[str]:
        skipped = []
        for step in steps:
            try:
                step(self)
            except Exception as error:  # a step needing more of a HyperSpy signal than this stand-in has: skipped and listed
                skipped.append(f"{getattr(step, '__qualname__', step)}: {type(error).__name__}: {error}")
        return skipped

    def to_signal1D(self, optimize: bool = True) -> _PostProcess:  # HyperSpy's name and signature
        for i, axis in enumerate(self.axes):
            axis["navigate"] = i != 0
        return self

    def squeeze(self) -> _PostProcess:
        keep = [i for i, n in enumerate(self.data.shape) if n != 1]
        if keep and len(keep) < self.data.ndim:
            self.data = self.data.reshape([self.data.shape[i] for i in keep])
            self.axes = [self.axes[i] for i in keep]
        return self


_MISSING = object()


def _mapped_metadata(metadata: dict[str, typing.Any], original: typing.Mapping[str, typing.Any], mapping: typing.Mapping[str, typing.Any]) -> dict[str, typing.Any]:
    """``metadata`` with the reader's ``mapping`` applied, as HyperSpy does: ``{path in original: (path in metadata, convert or None)}``.

    This is where RosettaSciIO puts beam energy, dwell time, magnification and
    the like; a tag missing from the file, or one its converter cannot take,
    is left out.
    """
    for source, target in mapping.items():
        try:
            target_path, convert = target
        except (TypeError, ValueError):
            continue
        value = _lookup(original, str(source))
        if value is _MISSING:
            continue
        if convert is not None:
            try:
                value = convert(_box(value))
            except Exception:  # the reader's converter refused this file's tag: leave it out, as HyperSpy would fail to map it
                continue
        if value is not None:
            _set_nested(metadata, str(target_path).split("."), value)
    return metadata


def _lookup(mapping: typing.Mapping[str, typing.Any], path: str) -> typing.Any:
    value: typing.Any = mapping
    for key in path.split("."):
        if not isinstance(value, typing.Mapping):
            return _MISSING
        if key not in value:
            alike = [k for k in value if str(k).replace(" ", "_") == key.replace(" ", "_")]
            if not alike:
                return _MISSING
            key = alike[0]
        value = value[key]
    return value


def _box(value: typing.Any) -> typing.Any:
    """A tag group as the dotted-access ``Box`` RosettaSciIO's converters expect; other values as they are."""
    if not isinstance(value, typing.Mapping):
        return value
    try:
        from box import Box
        return Box(value, box_dots=True)
    except Exception:  # a tag group Box cannot hold (e.g. keys with dots): the converter gets the plain dict
        return value


def _set_nested(mapping: dict[str, typing.Any], keys: typing.Sequence[str], value: typing.Any) -> None:
    for key in keys[:-1]:
        child = mapping.get(key)
        if not isinstance(child, dict):
            child = mapping[key] = {}
        mapping = child
    mapping[keys[-1]] = value


def _guess_navigation(axes: typing.Sequence[typing.Mapping[str, typing.Any]]) -> list[bool]:
    """Navigation flags for readers that leave them all False (e.g. NCEM EMD): a spectrum image ends in an energy axis, a 4D dataset in two detector axes."""
    n = len(axes)
    last_units = calibration_units(_units(axes[-1].get("units")))[0] if n else ""
    if n >= 2 and last_units == "eV":
        return [True] * (n - 1) + [False]
    if n >= 3:
        return [True] * (n - 2) + [False, False]
    return [False] * n


def _units(value: object) -> str:
    units = "" if value is None else str(value).strip()
    return "" if units in _UNDEFINED_UNITS else units


def _intensity_units(metadata: typing.Mapping[str, typing.Any]) -> str:
    quantity = _nested(metadata, "Signal", "quantity")
    if isinstance(quantity, str) and quantity.endswith(")") and "(" in quantity:
        return quantity[quantity.rindex("(") + 1:-1].strip()
    return ""


def _nested(mapping: typing.Mapping[str, typing.Any], *keys: str) -> typing.Any:
    value: typing.Any = mapping
    for key in keys:
        if not isinstance(value, typing.Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _jsonable(value: typing.Any, depth: int = 0) -> typing.Any:
    """``value`` as plain JSON types; large arrays and unknown objects become short descriptions."""
    if depth > 32:
        return "..."
    if isinstance(value, typing.Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value[:256]]
    if isinstance(value, numpy.ndarray):
        return _jsonable(value.tolist(), depth + 1) if value.size <= 64 and value.dtype.kind in "biufU" else f"<array {value.dtype} {value.shape}>"
    if isinstance(value, (bool, numpy.bool_)):
        return bool(value)
    if isinstance(value, (int, numpy.integer)):
        return int(value)
    if isinstance(value, (float, numpy.floating)):
        return float(value) if math.isfinite(float(value)) else str(float(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _title(xdata: DataAndMetadata.DataAndMetadata) -> str:
    return str(_nested(xdata.metadata, "nion_autoem", "file", "title") or "")


# --- Swift's own files -------------------------------------------------------------------------------


def _read_swift_ndata(file: pathlib.Path) -> DataAndMetadata.DataAndMetadata:
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            if "data.npy" not in names or "metadata.json" not in names:
                raise ValueError(f"{file}: is a zip file but not a Swift .ndata file (needs data.npy and metadata.json, has {names[:8]})")
            properties = json.loads(archive.read("metadata.json").decode("utf-8"))
            with archive.open("data.npy") as fp:
                data = numpy.load(fp)
    except ValueError as error:
        if str(error).startswith(str(file)):
            raise
        raise ValueError(f"{file}: cannot be read as a Swift .ndata file (truncated or corrupt?): {type(error).__name__}: {error}") from error
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, UnicodeDecodeError) as error:
        raise ValueError(f"{file}: cannot be read as a Swift .ndata file (truncated, corrupt or another kind of file?): {type(error).__name__}: {error}") from error
    return _from_swift_properties(data, properties, file, "Swift ndata")


def _read_swift_h5(file: pathlib.Path) -> DataAndMetadata.DataAndMetadata:
    import h5py
    try:
        with h5py.File(file, "r") as h5:
            if "data" not in h5 or "properties" not in h5["data"].attrs:
                raise ValueError(f"{file}: is an HDF5 file but not a Swift .h5 file (needs a dataset 'data' with a 'properties' attribute, "
                                 f"has {list(h5.keys())[:8]}); save HyperSpy data as .hspy")
            dataset = h5["data"]
            properties = json.loads(str(dataset.attrs["properties"]))
            data = numpy.array(dataset)
    except ValueError as error:
        if str(error).startswith(str(file)):
            raise
        raise ValueError(f"{file}: cannot be read as a Swift .h5 file (truncated or corrupt?): {type(error).__name__}: {error}") from error
    except (OSError, KeyError) as error:
        raise ValueError(f"{file}: cannot be read as a Swift .h5 file (truncated, corrupt or another kind of file?): {type(error).__name__}: {error}") from error
    return _from_swift_properties(data, properties, file, "Swift HDF5")


def _swift_calibration(value: object, file: pathlib.Path, what: str) -> tuple[Calibration.Calibration, str]:
    if not isinstance(value, typing.Mapping):
        raise ValueError(f"{file}: Swift {what} must be {{offset, scale, units}}, got {value!r}")
    units = _units(value.get("units"))
    new_units, factor = calibration_units(units)
    try:
        offset, scale = float(value.get("offset", 0.0)), float(value.get("scale", 1.0))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{file}: Swift {what} has a non-numeric offset or scale: {value!r}") from error
    return Calibration.Calibration(offset * factor, scale * factor, new_units), units


def _from_swift_properties(data: _NDArray, properties: object, file: pathlib.Path, reader: str) -> DataAndMetadata.DataAndMetadata:
    if not isinstance(properties, typing.Mapping):
        raise ValueError(f"{file}: its Swift properties are not a JSON object")
    if properties.get("data_shape") is not None and tuple(properties["data_shape"]) != data.shape:
        raise ValueError(f"{file}: data shape {data.shape} differs from the recorded {tuple(properties['data_shape'])} (truncated?)")
    raw = properties.get("dimensional_calibrations")
    if raw is None:
        raw = [{}] * data.ndim
    if not isinstance(raw, list) or len(raw) != data.ndim:
        raise ValueError(f"{file}: has {data.ndim} dimensions but {0 if not isinstance(raw, list) else len(raw)} dimensional calibrations")
    pairs = [_swift_calibration(c, file, f"dimensional calibration {i}") for i, c in enumerate(raw)]
    intensity, _ = _swift_calibration(properties.get("intensity_calibration", {}), file, "intensity calibration")
    collection = int(properties.get("collection_dimension_count", 0) or 0)
    datum = int(properties.get("datum_dimension_count", data.ndim - collection) or 0)
    is_sequence = bool(properties.get("is_sequence", False))
    if is_sequence + collection + datum != data.ndim:
        collection, datum, is_sequence = max(data.ndim - 2, 0), min(data.ndim, 2), False
    metadata = dict(properties.get("metadata") or {})
    own = dict(metadata.get("nion_autoem") or {})
    own["file"] = {"path": str(file.resolve()), "reader": reader, "signal_index": 0, "title": str(properties.get("title", "") or ""),
                   "original_units": [u for _, u in pairs], "properties": _jsonable({k: v for k, v in properties.items() if k != "metadata"})}
    metadata["nion_autoem"] = own
    return DataAndMetadata.new_data_and_metadata(data, intensity_calibration=intensity, dimensional_calibrations=[c for c, _ in pairs],
                                                 data_descriptor=DataAndMetadata.DataDescriptor(is_sequence, collection, datum), metadata=metadata)
