"""Argument checks at the public boundary.

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


def pair(value: object, name: str, expected: str) -> tuple[float, float]:
    """Two real numbers (NaN and infinity allowed; the caller checks the values)."""
    if not isinstance(value, (tuple, list, numpy.ndarray)) or numpy.ndim(value) != 1 or len(value) != 2:
        raise ValueError(f"{name} must be {expected}, got {describe(value)}")
    if not all(is_number(v) for v in value):
        raise TypeError(f"{name} must be {expected}, got {describe(value)}")
    return float(value[0]), float(value[1])


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
