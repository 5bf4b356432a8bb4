"""Argument checks at the public boundary, shared by the pure algorithm packages (DKL, ELIT).

Every check raises with a message of the form ``"<name> must be <what is
right>, got <what was given>"``: a ``TypeError`` when the value has the wrong
type (a string, a bool, None where a number is wanted), a ``ValueError`` when
it has the right type but a wrong value (NaN, negative, 1.7 where a whole
number is wanted, out of range). Checks are cheap: no copies of large arrays
beyond the float conversion callers already made.
"""

from __future__ import annotations

import math
import numbers
import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]


def describe(value: object) -> str:
    """A short, readable rendering of a bad value for an error message."""
    if isinstance(value, numpy.ndarray):
        if value.size <= 8:
            return repr(value.tolist())
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, numpy.generic):
        return repr(value.item())
    if isinstance(value, (list, tuple)) and any(isinstance(v, numpy.generic) for v in value):
        plain = [v.item() if isinstance(v, numpy.generic) else v for v in value]
        value = tuple(plain) if isinstance(value, tuple) else plain
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def type_name(value: object) -> str:
    return type(value).__name__


def _unwrap(value: object) -> object:
    if isinstance(value, numpy.ndarray) and value.ndim == 0:
        return value[()]
    return value


def is_number(value: object) -> bool:
    """A real number that is not a bool (numpy scalars and 0-d arrays count)."""
    value = _unwrap(value)
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, numpy.bool_))


def number(value: object, name: str, expected: str, ok: typing.Callable[[float], bool] | None = None, *, allow_inf: bool = False) -> float:
    """``float(value)`` after checking it is a real number (finite unless ``allow_inf``) for which ``ok`` holds."""
    if not is_number(value):
        raise TypeError(f"{name} must be {expected}, got {describe(value)}")
    result = float(typing.cast(typing.SupportsFloat, _unwrap(value)))
    if math.isnan(result) or (math.isinf(result) and not allow_inf) or (ok is not None and not ok(result)):
        raise ValueError(f"{name} must be {expected}, got {describe(value)}")
    return result


def whole(value: object, name: str, minimum: int = 0, maximum: int | None = None) -> int:
    """``int(value)`` after checking it is a whole number in ``[minimum, maximum]`` (integral floats are accepted)."""
    expected = f"a whole number >= {minimum}" if maximum is None else f"a whole number between {minimum} and {maximum}"
    value = _unwrap(value)
    if not is_number(value):
        raise TypeError(f"{name} must be {expected}, got {describe(value)}")
    if isinstance(value, numbers.Integral):
        result = int(value)
    else:
        as_float = float(typing.cast(typing.SupportsFloat, value))
        if not as_float.is_integer():
            raise ValueError(f"{name} must be {expected}, got {describe(value)}")
        result = int(as_float)
    if result < minimum or (maximum is not None and result > maximum):
        raise ValueError(f"{name} must be {expected}, got {describe(value)}")
    return result


def optional_whole(value: object, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    try:
        return whole(value, name, minimum)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name} must be None or a whole number >= {minimum}, got {describe(value)}") from None


def flag(value: object, name: str) -> bool:
    if not isinstance(value, (bool, numpy.bool_)):
        raise TypeError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def real_array(value: object, name: str, expected: str, *, finite: bool = True) -> _NDArray:
    """``value`` as a float64 array after checking it holds real numbers (and only finite ones)."""
    try:
        array = numpy.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be {expected}, got {describe(value)} ({error})") from None
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be {expected}, got an array of dtype {array.dtype}")
    if finite and array.dtype.kind == "f":
        good = numpy.isfinite(array)
        if not good.all():
            bad = int(array.size - numpy.count_nonzero(good))
            raise ValueError(f"{name} must be {expected}, got {bad} NaN or infinite value{'s' if bad != 1 else ''}")
    return array.astype(numpy.float64, copy=False)


def same_shape(array: _NDArray, name: str, reference: _NDArray, reference_name: str) -> None:
    if array.shape != reference.shape:
        raise ValueError(f"{name} must have the shape of {reference_name} {reference.shape}, got {array.shape}")


def indices(value: object, name: str, n: int, *, what: str = "candidate indices") -> _NDArray:
    """Indices (``what`` they index, for the message) as a 1-D int64 array, each a whole number in ``[0, n - 1]``."""
    expected = f"whole-number {what} in [0, {n - 1}]"
    try:
        array = numpy.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be {expected}, got {describe(value)} ({error})") from None
    if array.size == 0:
        return numpy.zeros(0, dtype=numpy.int64)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be {expected}, got an array of dtype {array.dtype}")
    if array.ndim > 1:
        raise ValueError(f"{name} must be a 1-D sequence of {what}, got shape {array.shape}")
    array = array.reshape(-1)
    if array.dtype.kind == "f":
        whole_valued = numpy.isfinite(array) & (numpy.floor(array) == array)
        if not whole_valued.all():
            raise ValueError(f"{name} must be {expected}, got {array[~whole_valued][:5].tolist()}")
    result = array.astype(numpy.int64)
    outside = (result < 0) | (result >= n)
    if outside.any():
        raise ValueError(f"{name} must be {expected}, got {result[outside][:5].tolist()}")
    return result


def measurements(index_values: object, values: object, n: int) -> tuple[_NDArray, _NDArray]:
    """Measured candidate indices and their values: whole indices in range, one finite value each."""
    index_array = indices(index_values, "indices", n)
    value_array = numpy.atleast_1d(real_array(values, "values", "finite real measurements", finite=False))
    if value_array.ndim != 1 or value_array.size != index_array.size:
        raise ValueError(f"values must have one value per index ({index_array.size}), got {value_array.size} in shape {value_array.shape}")
    bad = ~numpy.isfinite(value_array)
    if bad.any():
        first = int(numpy.flatnonzero(bad)[0])
        raise ValueError(f"values must be finite real measurements, got {describe(value_array[first])} at position {first}; drop or repeat failed measurements")
    return index_array, value_array


def mask(value: object, name: str, n: int) -> _NDArray:
    """A boolean mask with one entry per candidate."""
    expected = f"a boolean mask with one entry per candidate ({n})"
    array = numpy.asarray(value)
    if array.dtype != numpy.bool_:
        raise TypeError(f"{name} must be {expected}, got an array of dtype {array.dtype}")
    if array.shape != (n,):
        raise ValueError(f"{name} must be {expected}, got shape {array.shape}")
    return array


def dose(value: object, name: str) -> float:
    """A dose budget: any real number but NaN; ``inf`` means no limit."""
    return number(value, name, "a dose (inf for no limit)", allow_inf=True)


def pair(value: object, name: str, expected: str) -> tuple[float, float]:
    """Two real numbers (NaN and infinity allowed; the caller checks the values)."""
    if not isinstance(value, (tuple, list, numpy.ndarray)) or numpy.ndim(value) != 1 or len(value) != 2:
        raise ValueError(f"{name} must be {expected}, got {describe(value)}")
    if not all(is_number(v) for v in value):
        raise TypeError(f"{name} must be {expected}, got {describe(value)}")
    return float(value[0]), float(value[1])
