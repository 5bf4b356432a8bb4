"""Calibrated niondata objects for the things experiments measure.

Small builders so that every image, spectrum and trace leaves the facade with
the same calibrations and metadata conventions, whichever microscope made it.
"""

from __future__ import annotations

import math
import numbers
import typing

import numpy
import numpy.typing
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem.geometry import ScanFrame

_NDArray = numpy.typing.NDArray[typing.Any]


def frame_calibrations(frame: ScanFrame) -> tuple[Calibration.Calibration, Calibration.Calibration]:
    """Spatial calibrations of a scan frame, in Nion's convention.

    Nion puts the calibrated origin at ``-center - scale * n / 2`` (see
    ``scan_base.get_scan_calibrations``); we keep that so our images read the
    same as the ones Swift records itself.
    """
    scale = frame.pixel_size_nm
    rows, cols = frame.shape
    return (Calibration.Calibration(-frame.center_nm[0] - scale * rows * 0.5, scale, "nm"),
            Calibration.Calibration(-frame.center_nm[1] - scale * cols * 0.5, scale, "nm"))


def frame_from_xdata(xdata: DataAndMetadata.DataAndMetadata) -> ScanFrame:
    """The scan geometry of a calibrated image: its own record if it has one, else its calibrations.

    Raises
    ------
    TypeError
        If ``xdata`` is not a ``DataAndMetadata``.
    ValueError
        If the image is not 2D, its axes are not calibrated in nm (or Å, µm),
        its calibration is not a positive finite pixel size with finite
        offsets, or its recorded scan frame is broken.
    """
    if not isinstance(xdata, DataAndMetadata.DataAndMetadata):
        raise TypeError(f"xdata must be a DataAndMetadata image with spatial calibrations, got {type(xdata).__name__}")
    md = xdata.metadata.get("nion_autoem", {}) if xdata.metadata else {}
    recorded = md.get("scan_frame") if isinstance(md, typing.Mapping) else None
    if isinstance(recorded, typing.Mapping) and "shape" in recorded and _same_shape(recorded["shape"], xdata.data_shape):
        try:
            return ScanFrame.from_dict(recorded)
        except (TypeError, ValueError) as error:
            raise type(error)(f"xdata's nion_autoem.scan_frame metadata must describe a scan frame: {error}") from None
    if len(xdata.data_shape) != 2:
        raise ValueError(f"xdata must be a 2D image (rows, columns), got shape {tuple(xdata.data_shape)}; pick a single frame")
    factors = {"nm": 1.0, "Å": 0.1, "A": 0.1, "um": 1000.0, "µm": 1000.0}
    cy, cx = xdata.dimensional_calibrations
    if cy.units not in factors or cx.units != cy.units:
        raise ValueError(f"xdata's axes must both have a spatial calibration in nm (or Å, µm), got {cy.units!r}/{cx.units!r}")
    if not (math.isfinite(cy.scale) and cy.scale > 0):
        raise ValueError(f"xdata's pixel size must be a positive finite number of nm, got {cy.scale!r} {cy.units}")
    if not (math.isfinite(cy.offset) and math.isfinite(cx.offset)):
        raise ValueError(f"xdata's calibration offsets must be finite, got ({cy.offset!r}, {cx.offset!r})")
    scale = cy.scale * factors[cy.units]
    rows, cols = xdata.data_shape
    # invert Nion's convention offset = -centre - scale * n / 2
    center = (-(cy.offset * factors[cy.units] + scale * rows / 2), -(cx.offset * factors[cy.units] + scale * cols / 2))
    return ScanFrame((rows, cols), scale * max(rows, cols), center)


def _same_shape(recorded: object, shape: typing.Sequence[int]) -> bool:
    try:
        return tuple(typing.cast(typing.Iterable[typing.Any], recorded)) == tuple(shape)
    except TypeError:
        return False


def _number(value: object, name: str, expected: str, positive: bool = False, nonzero: bool = False) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, numpy.bool_)):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or (positive and result <= 0) or (nonzero and result == 0):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return result


def _real_array(value: object, name: str) -> _NDArray:
    array = numpy.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    return array


def image_xdata(image: _NDArray, frame: ScanFrame, *, channel: str = "HAADF", metadata: typing.Mapping[str, typing.Any] | None = None) -> DataAndMetadata.DataAndMetadata:
    """A survey image with spatial calibrations and its scan geometry in metadata."""
    image = _real_array(image, "image")
    if not isinstance(frame, ScanFrame):
        raise TypeError(f"frame must be a ScanFrame, got {type(frame).__name__}")
    if image.shape != frame.shape:
        raise ValueError(f"image must have the scan frame's shape {frame.shape}, got {image.shape}")
    md = {"nion_autoem": {"channel": channel, "scan_frame": frame.to_dict()}}
    md.update(metadata or {})
    return DataAndMetadata.new_data_and_metadata(image, intensity_calibration=Calibration.Calibration(units="counts"),
                                                 dimensional_calibrations=list(frame_calibrations(frame)), metadata=md)


def spectrum_xdata(spectrum: _NDArray, offset_eV: float, scale_eV: float, *, metadata: typing.Mapping[str, typing.Any] | None = None) -> DataAndMetadata.DataAndMetadata:
    """An EELS spectrum (or a stack of them, last axis energy) with its energy calibration."""
    spectrum = _real_array(spectrum, "spectrum")
    if spectrum.ndim not in (1, 2):
        raise ValueError(f"spectrum must be 1D (channels) or 2D (spectra, channels), got shape {spectrum.shape}")
    offset_eV = _number(offset_eV, "offset_eV", "a finite energy in eV")
    # A spectrometer may run its energy axis backwards, so only zero is refused.
    scale_eV = _number(scale_eV, "scale_eV", "a non-zero finite number of eV per channel", nonzero=True)
    energy = Calibration.Calibration(offset_eV, scale_eV, "eV")
    calibrations = [energy] if spectrum.ndim == 1 else [Calibration.Calibration(), energy]
    descriptor = DataAndMetadata.DataDescriptor(False, 1 if spectrum.ndim == 2 else 0, 1)
    return DataAndMetadata.new_data_and_metadata(spectrum, intensity_calibration=Calibration.Calibration(units="counts"),
                                                 dimensional_calibrations=calibrations, metadata=dict(metadata or {}), data_descriptor=descriptor)


def trace_xdata(trace: _NDArray, sample_time_us: float, *, channel: str = "HAADF", metadata: typing.Mapping[str, typing.Any] | None = None) -> DataAndMetadata.DataAndMetadata:
    """An ADF time trace with a time axis in ms."""
    trace = _real_array(trace, "trace").reshape(-1)
    sample_time_us = _number(sample_time_us, "sample_time_us", "a positive finite dwell time in µs", positive=True)
    md = {"nion_autoem": {"channel": channel, "sample_time_us": sample_time_us}}
    md.update(metadata or {})
    return DataAndMetadata.new_data_and_metadata(trace, intensity_calibration=Calibration.Calibration(units="counts"),
                                                 dimensional_calibrations=[Calibration.Calibration(0.0, sample_time_us * 1e-3, "ms")], metadata=md)


def camera_xdata(frame: _NDArray, scale_mrad: float = 1.0, *, metadata: typing.Mapping[str, typing.Any] | None = None) -> DataAndMetadata.DataAndMetadata:
    """A camera frame (Ronchigram / diffraction) centred on the optical axis."""
    frame = _real_array(frame, "frame")
    if frame.ndim != 2:
        raise ValueError(f"frame must be a 2D camera frame (rows, columns), got shape {frame.shape}")
    scale_mrad = _number(scale_mrad, "scale_mrad", "a positive finite number of mrad per pixel", positive=True)
    calibrations = [Calibration.Calibration(-scale_mrad * n / 2, scale_mrad, "mrad") for n in frame.shape]
    return DataAndMetadata.new_data_and_metadata(frame, intensity_calibration=Calibration.Calibration(units="counts"),
                                                 dimensional_calibrations=calibrations, metadata=dict(metadata or {}))


def line_xdata(values: _NDArray, axis_units: str, *, units: str = "", metadata: typing.Mapping[str, typing.Any] | None = None) -> DataAndMetadata.DataAndMetadata:
    """A 1D curve (e.g. a convergence plot) indexed from 1 in ``axis_units``."""
    values = _real_array(values, "values")
    if values.ndim != 1:
        raise ValueError(f"values must be a 1D curve, got shape {values.shape}")
    return DataAndMetadata.new_data_and_metadata(values.astype(float, copy=False), intensity_calibration=Calibration.Calibration(units=units),
                                                 dimensional_calibrations=[Calibration.Calibration(1.0, 1.0, axis_units)], metadata=dict(metadata or {}))
