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
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ValueError(f"shape must be two positive pixel counts (rows, columns), got {self.shape!r}")
        if not math.isfinite(self.fov_nm) or self.fov_nm <= 0:
            raise ValueError(f"fov_nm must be a positive finite number of nanometres, got {self.fov_nm!r}")
        if len(self.center_nm) != 2 or not all(math.isfinite(v) for v in self.center_nm):
            raise ValueError(f"center_nm must be a finite (y, x) pair in nm, got {self.center_nm!r}")
        if not math.isfinite(self.rotation_rad):
            raise ValueError(f"rotation_rad must be finite, got {self.rotation_rad!r}")
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))
        object.__setattr__(self, "center_nm", (float(self.center_nm[0]), float(self.center_nm[1])))

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
        """Convert fractional scan positions (..., 2) to scan-field nm (..., 2)."""
        f = numpy.asarray(fraction, dtype=float)
        local = (f - 0.5) * numpy.array(self.size_nm)
        return typing.cast(_NDArray, local @ self._rotation().T + numpy.array(self.center_nm))

    def nm_to_fraction(self, position_nm: numpy.typing.ArrayLike) -> _NDArray:
        """Convert scan-field nm (..., 2) to fractional scan positions (..., 2)."""
        p = numpy.asarray(position_nm, dtype=float)
        local = (p - numpy.array(self.center_nm)) @ self._rotation()
        return typing.cast(_NDArray, local / numpy.array(self.size_nm) + 0.5)

    def pixel_to_fraction(self, pixel: numpy.typing.ArrayLike) -> _NDArray:
        """Convert (row, column) pixel coordinates (..., 2) to fractions (..., 2)."""
        return typing.cast(_NDArray, (numpy.asarray(pixel, dtype=float) + 0.5) / numpy.array(self.shape))

    def fraction_to_pixel(self, fraction: numpy.typing.ArrayLike) -> _NDArray:
        """Convert fractions (..., 2) to (row, column) pixel coordinates (..., 2)."""
        return typing.cast(_NDArray, numpy.asarray(fraction, dtype=float) * numpy.array(self.shape) - 0.5)

    def pixel_to_nm(self, pixel: numpy.typing.ArrayLike) -> _NDArray:
        """Convert (row, column) pixel coordinates (..., 2) to scan-field nm (..., 2)."""
        return self.fraction_to_nm(self.pixel_to_fraction(pixel))

    def nm_to_pixel(self, position_nm: numpy.typing.ArrayLike) -> _NDArray:
        """Convert scan-field nm (..., 2) to (row, column) pixel coordinates (..., 2)."""
        return self.fraction_to_pixel(self.nm_to_fraction(position_nm))

    def contains_nm(self, position_nm: numpy.typing.ArrayLike, margin: float = 0.0) -> _NDArray:
        """Whether positions (..., 2) in nm lie inside the scanned area.

        ``margin`` is a fraction of the field kept clear at each edge.
        """
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
        """Rebuild a frame from :meth:`to_dict` output."""
        return cls((int(d["shape"][0]), int(d["shape"][1])), float(d["fov_nm"]), (float(d["center_nm"][0]), float(d["center_nm"][1])), float(d.get("rotation_rad", 0.0)))
