"""numpy arrays on the wire as raw bytes with dtype and shape, never as lists and never pickled.

A 512 x 512 float32 frame is one 1 MiB bytes object in a msgpack map:
``{"dtype": "<f4", "shape": [512, 512], "data": b"..."}``.  Decoding checks the
dtype against numeric kinds only (no objects, so nothing executable), the
shape against the byte count, and the size against a limit.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]

#: numpy dtype kinds that may travel: bool, signed and unsigned integers, floats, complex.
ALLOWED_KINDS = frozenset("biufc")
MAX_DIMENSIONS = 8
#: Largest array decoded (bytes).
MAX_ARRAY_BYTES = 512 * 1024 * 1024


def encode_array(array: numpy.typing.ArrayLike) -> dict[str, typing.Any]:
    """An array as ``{"dtype", "shape", "data"}`` with the bytes in C order and an explicit byte order.

    Examples
    --------
    >>> encoded = encode_array(numpy.arange(6, dtype=numpy.float32).reshape(2, 3))
    >>> encoded["dtype"], encoded["shape"], len(encoded["data"])
    ('<f4', [2, 3], 24)
    """
    a = numpy.ascontiguousarray(array)
    if a.dtype.kind not in ALLOWED_KINDS:
        raise TypeError(f"only numeric arrays travel (bool, int, uint, float, complex), got dtype {a.dtype}")
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return {"dtype": a.dtype.str, "shape": [int(n) for n in a.shape], "data": a.tobytes()}


def decode_array(encoded: typing.Any, *, max_bytes: int = MAX_ARRAY_BYTES) -> _NDArray:
    """The array :func:`encode_array` encoded (read-only, sharing the received bytes); refuses anything else.

    Examples
    --------
    >>> decode_array(encode_array(numpy.eye(2))).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    >>> decode_array({"dtype": "|O", "shape": [1], "data": b"12345678"})
    Traceback (most recent call last):
    ...
    TypeError: an encoded array's dtype must be numeric (bool, int, uint, float, complex), got '|O'
    """
    if not isinstance(encoded, dict) or set(encoded) != {"dtype", "shape", "data"}:
        raise TypeError("an encoded array is a map with exactly 'dtype', 'shape' and 'data'")
    dtype_text, shape, data = encoded["dtype"], encoded["shape"], encoded["data"]
    if not isinstance(dtype_text, str) or len(dtype_text) > 8:
        raise TypeError(f"an encoded array's dtype must be a short numpy type string such as '<f4', got {dtype_text!r}")
    try:
        dtype = numpy.dtype(dtype_text)
    except TypeError as e:
        raise TypeError(f"an encoded array's dtype {dtype_text!r} is not a numpy type") from e
    if dtype.kind not in ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise TypeError(f"an encoded array's dtype must be numeric (bool, int, uint, float, complex), got {dtype_text!r}")
    if (not isinstance(shape, (list, tuple)) or len(shape) > MAX_DIMENSIONS
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise TypeError(f"an encoded array's shape must be a list of at most {MAX_DIMENSIONS} whole numbers >= 0, got {shape!r}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"an encoded array's data must be bytes, got {type(data).__name__}")
    expected = math.prod(shape) * dtype.itemsize
    if expected > max_bytes:
        raise ValueError(f"an encoded array of {expected} bytes is larger than the {max_bytes} allowed")
    if len(data) != expected:
        raise ValueError(f"an encoded array of shape {list(shape)} and dtype {dtype_text} has {expected} bytes, got {len(data)}")
    return numpy.frombuffer(data, dtype=dtype).reshape(shape)


def plain(value: typing.Any, *, depth: int = 0) -> typing.Any:
    """JSON-like data only (dicts with str keys, lists, str, int, float, bool, None): numpy scalars become numbers, anything else its text.

    Examples
    --------
    >>> plain({"n": numpy.int64(3), "xs": (1.5, numpy.float32(2))})
    {'n': 3, 'xs': [1.5, 2.0]}
    """
    if depth > 32:
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, numpy.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): plain(v, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, depth=depth + 1) for v in value]
    if isinstance(value, numpy.ndarray) and value.size <= 4096:
        return plain(value.tolist(), depth=depth + 1)
    return str(value)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """``calibrated = offset + scale * index``, in ``units``."""

    offset: float = 0.0
    scale: float = 1.0
    units: str = ""


@dataclasses.dataclass(frozen=True)
class CalibratedArray:
    """Data with its calibrations and metadata, as it arrives at a client (no Swift needed there)."""

    data: _NDArray
    dimensional_calibrations: tuple[Calibration, ...] = ()
    intensity_calibration: Calibration = Calibration()
    metadata: typing.Mapping[str, typing.Any] = dataclasses.field(default_factory=dict)

    def axis(self, dimension: int = -1) -> _NDArray:
        """The calibrated coordinates along one dimension (e.g. the energy axis of a spectrum)."""
        c = self.dimensional_calibrations[dimension] if self.dimensional_calibrations else Calibration()
        return typing.cast(_NDArray, c.offset + c.scale * numpy.arange(self.data.shape[dimension]))


def _calibration(c: typing.Any) -> dict[str, typing.Any]:
    return {"offset": float(c.offset), "scale": float(c.scale), "units": str(c.units or "")}


def encode_xdata(xdata: typing.Any) -> dict[str, typing.Any]:
    """Swift's DataAndMetadata as an encoded array, its calibrations and its metadata."""
    return {"array": encode_array(xdata.data), "dimensional_calibrations": [_calibration(c) for c in xdata.dimensional_calibrations],
            "intensity_calibration": _calibration(xdata.intensity_calibration), "metadata": plain(dict(xdata.metadata))}


def encode_calibrated(data: numpy.typing.ArrayLike, dimensional_calibrations: typing.Sequence[typing.Mapping[str, typing.Any]] = (),
                      intensity_calibration: typing.Mapping[str, typing.Any] | None = None, metadata: typing.Mapping[str, typing.Any] | None = None) -> dict[str, typing.Any]:
    """Like :func:`encode_xdata`, from an array and calibrations given as maps (as the journal keeps them)."""
    return {"array": encode_array(data), "dimensional_calibrations": [_calibration(Calibration(**_known(c))) for c in dimensional_calibrations],
            "intensity_calibration": _calibration(Calibration(**_known(intensity_calibration or {}))), "metadata": plain(dict(metadata or {}))}


def _known(c: typing.Mapping[str, typing.Any]) -> dict[str, typing.Any]:
    return {k: c[k] for k in ("offset", "scale", "units") if k in c and c[k] is not None}


def decode_calibrated(encoded: typing.Any) -> CalibratedArray:
    """The :class:`CalibratedArray` that :func:`encode_xdata` or :func:`encode_calibrated` encoded.

    Examples
    --------
    >>> wire = encode_calibrated(numpy.ones(4), [{"offset": -1.0, "scale": 0.5, "units": "eV"}])
    >>> decode_calibrated(wire).axis().tolist()
    [-1.0, -0.5, 0.0, 0.5]
    """
    if not isinstance(encoded, dict) or "array" not in encoded:
        raise TypeError("encoded data is a map with 'array', 'dimensional_calibrations', 'intensity_calibration' and 'metadata'")

    def calibration(c: typing.Any) -> Calibration:
        if not isinstance(c, dict):
            raise TypeError(f"a calibration is a map of offset, scale and units, got {type(c).__name__}")
        return Calibration(float(c.get("offset", 0.0)), float(c.get("scale", 1.0)), str(c.get("units", "")))

    return CalibratedArray(decode_array(encoded["array"]), tuple(calibration(c) for c in encoded.get("dimensional_calibrations", [])),
                           calibration(encoded.get("intensity_calibration", {})), dict(encoded.get("metadata") or {}))
