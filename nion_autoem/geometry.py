"""Scan geometry: where a pixel of a scan frame sits on the sample.

Every position an experiment stores is in *scan-field nanometres*: a
frame-independent (y, x) coordinate in the microscope's scan plane, with the
optical axis at (0, 0). A frame with centre ``c``, field of view ``fov`` and
rotation ``theta`` covers the square of side ``fov`` centred on ``c``, turned by
``theta``.  Positions in nm therefore survive a change of field of view, centre
or rotation, which is what lets a policy pick atoms on one survey and park the
probe on them while scanning with other settings.

Pixel coordinates are array indices (row, column) with pixel centres on
integers, as in scikit-image.  The probe's *fractional* position is the one
``stem_controller.probe_position`` uses: (0, 0) is the top-left corner of the
scan and (1, 1) the bottom-right one, so pixel centre ``i`` of ``n`` pixels sits
at fraction ``(i + 0.5) / n``.

This module is pure numpy; it knows nothing of Swift.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]


@dataclasses.dataclass(frozen=True)
class ScanFrame:
    """The geometry of one scan: pixel grid, field of view, centre and rotation.

    Parameters
    ----------
    shape : tuple of int
        Pixels (rows, columns).
    fov_nm : float
        Field of view along the longer side, in nm, as Nion defines it.
    center_nm : tuple of float
        Scan centre (y, x) in scan-field nm.
    rotation_rad : float
        Scan rotation in radians, counter-clockwise as seen on screen.

    Examples
    --------
    >>> frame = ScanFrame((512, 512), fov_nm=8.0)
    >>> frame.pixel_size_nm
    0.015625
    >>> frame.pixel_to_nm((255.5, 255.5))
    array([0., 0.])
    """

    shape: tuple[int, int]
    fov_nm: float
    center_nm: tuple[float, float] = (0.0, 0.0)
    rotation_rad: float = 0.0

    def __post_init__(self) -> None:
        expected = "two whole pixel counts >= 1 (rows, columns)"
        shape: typing.Any = self.shape
        if not _is_pair(shape) or not all(_is_number(v) for v in shape):
            raise TypeError(f"shape must be {expected}, got {_describe(shape)}")
        if len(shape) != 2 or not all(float(v).is_integer() and v >= 1 for v in shape):
            raise ValueError(f"shape must be {expected}, got {_describe(shape)}")
        _number(self.fov_nm, "fov_nm", "a positive finite number of nanometres", positive=True)
        center: typing.Any = self.center_nm
        if not _is_pair(center) or not all(_is_number(v) for v in center):
            raise TypeError(f"center_nm must be a finite (y, x) pair in nm, got {_describe(center)}")
        if len(center) != 2 or not all(math.isfinite(v) for v in center):
            raise ValueError(f"center_nm must be a finite (y, x) pair in nm, got {_describe(center)}")
        _number(self.rotation_rad, "rotation_rad", "a finite angle in radians")
        object.__setattr__(self, "shape", (int(shape[0]), int(shape[1])))
        object.__setattr__(self, "center_nm", (float(center[0]), float(center[1])))

    @property
    def pixel_size_nm(self) -> float:
        """Side of one pixel in nm (Nion scales the longer side to ``fov_nm``)."""
        return self.fov_nm / max(self.shape)

    @property
    def size_nm(self) -> tuple[float, float]:
        """Height and width of the scanned area in nm."""
        return self.shape[0] * self.pixel_size_nm, self.shape[1] * self.pixel_size_nm

    def _rotation(self) -> _NDArray:
        # Acts on (y, x) column vectors: a positive angle turns the scan axes
        # counter-clockwise on screen, where y points down.
        c, s = math.cos(self.rotation_rad), math.sin(self.rotation_rad)
        return numpy.array([[c, -s], [s, c]])

    def fraction_to_nm(self, fraction: numpy.typing.ArrayLike) -> _NDArray:
        """Convert fractional scan positions (..., 2) to scan-field nm (..., 2).

        Like every conversion here it checks the shape and type of its input
        but lets NaN through (a NaN position converts to NaN, which the
        microscopes then refuse as outside the field).
        """
        f = _pairs(fraction, "fraction", "(y, x) fraction")
        local = (f - 0.5) * numpy.array(self.size_nm)
        return typing.cast(_NDArray, local @ self._rotation().T + numpy.array(self.center_nm))

    def nm_to_fraction(self, position_nm: numpy.typing.ArrayLike) -> _NDArray:
        """Convert scan-field nm (..., 2) to fractional scan positions (..., 2)."""
        p = _pairs(position_nm, "position_nm", "(y, x) nm")
        local = (p - numpy.array(self.center_nm)) @ self._rotation()
        return typing.cast(_NDArray, local / numpy.array(self.size_nm) + 0.5)

    def pixel_to_fraction(self, pixel: numpy.typing.ArrayLike) -> _NDArray:
        """Convert (row, column) pixel coordinates (..., 2) to fractions (..., 2)."""
        return typing.cast(_NDArray, (_pairs(pixel, "pixel", "(row, column)") + 0.5) / numpy.array(self.shape))

    def fraction_to_pixel(self, fraction: numpy.typing.ArrayLike) -> _NDArray:
        """Convert fractions (..., 2) to (row, column) pixel coordinates (..., 2)."""
        return typing.cast(_NDArray, _pairs(fraction, "fraction", "(y, x) fraction") * numpy.array(self.shape) - 0.5)

    def pixel_to_nm(self, pixel: numpy.typing.ArrayLike) -> _NDArray:
        """Convert (row, column) pixel coordinates (..., 2) to scan-field nm (..., 2)."""
        return self.fraction_to_nm(self.pixel_to_fraction(pixel))

    def nm_to_pixel(self, position_nm: numpy.typing.ArrayLike) -> _NDArray:
        """Convert scan-field nm (..., 2) to (row, column) pixel coordinates (..., 2)."""
        return self.fraction_to_pixel(self.nm_to_fraction(position_nm))

    def contains_nm(self, position_nm: numpy.typing.ArrayLike, margin: float = 0.0) -> _NDArray:
        """Whether positions (..., 2) in nm lie inside the scanned area.

        ``margin`` is a fraction of the field kept clear at each edge, in [0, 0.5).
        """
        if not _is_number(margin):
            raise TypeError(f"margin must be a fraction of the field in [0, 0.5), got {_describe(margin)}")
        if not 0.0 <= float(margin) < 0.5:
            raise ValueError(f"margin must be a fraction of the field in [0, 0.5), got {_describe(margin)}")
        f = self.nm_to_fraction(position_nm)
        return typing.cast(_NDArray, numpy.all((f >= margin) & (f <= 1.0 - margin), axis=-1))

    def pixel_grid_nm(self) -> _NDArray:
        """Scan-field nm of every pixel centre, shape (rows, columns, 2)."""
        rows, cols = numpy.meshgrid(numpy.arange(self.shape[0]), numpy.arange(self.shape[1]), indexing="ij")
        return self.pixel_to_nm(numpy.stack([rows, cols], axis=-1))

    def to_dict(self) -> dict[str, typing.Any]:
        """A JSON-ready description, used in journals and data-item metadata."""
        return {"shape": list(self.shape), "fov_nm": self.fov_nm, "center_nm": list(self.center_nm), "rotation_rad": self.rotation_rad}

    @classmethod
    def from_dict(cls, d: typing.Mapping[str, typing.Any]) -> ScanFrame:
        """Rebuild a frame from :meth:`to_dict` output.

        Raises
        ------
        TypeError, ValueError
            If ``d`` is not a mapping, lacks ``shape`` or ``fov_nm``, or holds values
            :class:`ScanFrame` rejects.
        """
        expected = "a scan frame dict with 'shape' and 'fov_nm' (and optionally 'center_nm', 'rotation_rad')"
        if not isinstance(d, typing.Mapping):
            raise TypeError(f"d must be {expected}, got {type(d).__name__}")
        missing = [key for key in ("shape", "fov_nm") if key not in d]
        if missing:
            raise ValueError(f"d must be {expected}, got the keys {sorted(d)}: missing {', '.join(repr(k) for k in missing)}")
        shape = d["shape"]
        center = d.get("center_nm", (0.0, 0.0))
        return cls(tuple(shape) if isinstance(shape, (list, tuple)) else shape, d["fov_nm"],
                   tuple(center) if isinstance(center, (list, tuple)) else center, d.get("rotation_rad", 0.0))


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, numpy.bool_))


def _is_pair(value: object) -> bool:
    return isinstance(value, (tuple, list, numpy.ndarray)) and numpy.ndim(value) == 1


def _describe(value: object) -> str:
    if isinstance(value, numpy.generic):
        return repr(value.item())
    if isinstance(value, (tuple, list)):
        return repr(type(value)(v.item() if isinstance(v, numpy.generic) else v for v in value))
    if isinstance(value, numpy.ndarray):
        return repr(value.tolist())
    return repr(value)


def _number(value: object, name: str, expected: str, positive: bool = False) -> float:
    if not _is_number(value):
        raise TypeError(f"{name} must be {expected}, got {_describe(value)}")
    result = float(typing.cast(float, value))
    if not math.isfinite(result) or (positive and result <= 0):
        raise ValueError(f"{name} must be {expected}, got {_describe(value)}")
    return result


def _pairs(value: numpy.typing.ArrayLike, name: str, what: str) -> _NDArray:
    """Coordinates as a float array of shape (..., 2); NaN passes (conversions propagate it)."""
    expected = f"numeric {what} pairs of shape (..., 2)"
    array = numpy.asarray(value)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be {expected}, got an array of dtype {array.dtype}")
    if array.ndim == 0 or array.shape[-1] != 2:
        raise ValueError(f"{name} must be {expected}, got shape {array.shape}")
    return array.astype(float, copy=False)
