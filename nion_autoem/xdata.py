"""Calibrated niondata objects for the things experiments measure.

Small builders so that every image, spectrum and trace leaves the facade with
the same calibrations and metadata conventions, whichever microscope made it.
"""

from __future__ import annotations

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
    ValueError
        If the image is not 2D or its axes are not calibrated in nm (or Å).
    """
    md = xdata.metadata.get("nion_autoem", {}) if xdata.metadata else {}
    if isinstance(md, dict) and "scan_frame" in md and tuple(md["scan_frame"]["shape"]) == tuple(xdata.data_shape):
        return ScanFrame.from_dict(md["scan_frame"])
    if len(xdata.data_shape) != 2:
        raise ValueError(f"an image must be 2D, got shape {xdata.data_shape}; pick a single frame")
    factors = {"nm": 1.0, "Å": 0.1, "A": 0.1, "um": 1000.0, "µm": 1000.0}
    cy, cx = xdata.dimensional_calibrations
    if cy.units not in factors or cx.units != cy.units or cy.scale <= 0:
        raise ValueError(f"the image's axes are calibrated in {cy.units!r}/{cx.units!r}; atoms need a spatial calibration in nm (or Å)")
    scale = cy.scale * factors[cy.units]
    rows, cols = xdata.data_shape
    # invert Nion's convention offset = -centre - scale * n / 2
    center = (-(cy.offset * factors[cy.units] + scale * rows / 2), -(cx.offset * factors[cy.units] + scale * cols / 2))
    return ScanFrame((rows, cols), scale * max(rows, cols), center)


def image_xdata(image: _NDArray, frame: ScanFrame, *, channel: str = "HAADF", metadata: typing.Mapping[str, typing.Any] | None = None) -> DataAndMetadata.DataAndMetadata:
    """A survey image with spatial calibrations and its scan geometry in metadata."""
    if image.shape != frame.shape:
        raise ValueError(f"image shape {image.shape} does not match the scan frame shape {frame.shape}")
    md = {"nion_autoem": {"channel": channel, "scan_frame": frame.to_dict()}}
    md.update(metadata or {})
    return DataAndMetadata.new_data_and_metadata(numpy.asarray(image), intensity_calibration=Calibration.Calibration(units="counts"),
                                                 dimensional_calibrations=list(frame_calibrations(frame)), metadata=md)


def spectrum_xdata(spectrum: _NDArray, offset_eV: float, scale_eV: float, *, metadata: typing.Mapping[str, typing.Any] | None = None) -> DataAndMetadata.DataAndMetadata:
    """An EELS spectrum (or a stack of them, last axis energy) with its energy calibration."""
    spectrum = numpy.asarray(spectrum)
    if spectrum.ndim not in (1, 2):
        raise ValueError(f"a spectrum must be 1D (channels) or 2D (spectra, channels), got shape {spectrum.shape}")
    energy = Calibration.Calibration(offset_eV, scale_eV, "eV")
    calibrations = [energy] if spectrum.ndim == 1 else [Calibration.Calibration(), energy]
    descriptor = DataAndMetadata.DataDescriptor(False, 1 if spectrum.ndim == 2 else 0, 1)
    return DataAndMetadata.new_data_and_metadata(spectrum, intensity_calibration=Calibration.Calibration(units="counts"),
                                                 dimensional_calibrations=calibrations, metadata=dict(metadata or {}), data_descriptor=descriptor)


def trace_xdata(trace: _NDArray, sample_time_us: float, *, channel: str = "HAADF", metadata: typing.Mapping[str, typing.Any] | None = None) -> DataAndMetadata.DataAndMetadata:
    """An ADF time trace with a time axis in ms."""
    trace = numpy.asarray(trace).reshape(-1)
    md = {"nion_autoem": {"channel": channel, "sample_time_us": sample_time_us}}
    md.update(metadata or {})
    return DataAndMetadata.new_data_and_metadata(trace, intensity_calibration=Calibration.Calibration(units="counts"),
                                                 dimensional_calibrations=[Calibration.Calibration(0.0, sample_time_us * 1e-3, "ms")], metadata=md)


def camera_xdata(frame: _NDArray, scale_mrad: float = 1.0, *, metadata: typing.Mapping[str, typing.Any] | None = None) -> DataAndMetadata.DataAndMetadata:
    """A camera frame (Ronchigram / diffraction) centred on the optical axis."""
    frame = numpy.asarray(frame)
    if frame.ndim != 2:
        raise ValueError(f"a camera frame must be 2D, got shape {frame.shape}")
    calibrations = [Calibration.Calibration(-scale_mrad * n / 2, scale_mrad, "mrad") for n in frame.shape]
    return DataAndMetadata.new_data_and_metadata(frame, intensity_calibration=Calibration.Calibration(units="counts"),
                                                 dimensional_calibrations=calibrations, metadata=dict(metadata or {}))


def line_xdata(values: _NDArray, axis_units: str, *, units: str = "", metadata: typing.Mapping[str, typing.Any] | None = None) -> DataAndMetadata.DataAndMetadata:
    """A 1D curve (e.g. a convergence plot) indexed from 1 in ``axis_units``."""
    return DataAndMetadata.new_data_and_metadata(numpy.asarray(values, dtype=float), intensity_calibration=Calibration.Calibration(units=units),
                                                 dimensional_calibrations=[Calibration.Calibration(1.0, 1.0, axis_units)], metadata=dict(metadata or {}))
