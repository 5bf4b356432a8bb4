"""The twins driven through usim's real hardware sources, as SwiftMicroscope will drive them."""

from __future__ import annotations

import math
import typing

import numpy
import numpy.typing
import scipy.ndimage
from nion.utils import Geometry

from nion_autoem.geometry import ScanFrame
from nion_autoem.twin import catalog
from nion_autoem.twin import lattice

_NDArray = numpy.typing.NDArray[typing.Any]


def _survey(harness: typing.Any, shape: tuple[int, int], fov_nm: float, center_nm: tuple[float, float] = (0.0, 0.0), rotation_rad: float = 0.0,
            pixel_time_us: float = 4.0, channels: tuple[int, ...] = (0,)) -> tuple[list[_NDArray], ScanFrame]:
    scan = harness.scan
    fp = scan.get_current_frame_parameters()
    fp.pixel_size = Geometry.IntSize(*shape)
    fp.fov_nm = fov_nm
    fp.pixel_time_us = pixel_time_us
    fp.rotation_rad = rotation_rad
    fp.center_nm = Geometry.FloatPoint(y=center_nm[0], x=center_nm[1])
    scan.set_current_frame_parameters(fp)
    for channel in range(4):
        scan.set_channel_enabled(channel, channel in channels)
    xdatas = scan.record_immediate(fp)
    return [numpy.asarray(x.data) for x in xdatas], ScanFrame(shape, fov_nm, center_nm, rotation_rad)


def _spot_trace(harness: typing.Any, position_nm: _NDArray, samples: int, sample_time_us: float) -> _NDArray:
    scan = harness.scan
    fp = scan.get_current_frame_parameters()
    fp.pixel_size = Geometry.IntSize(1, samples)
    fp.fov_nm = 1e-4
    fp.pixel_time_us = sample_time_us
    fp.rotation_rad = 0.0
    fp.center_nm = Geometry.FloatPoint(y=float(position_nm[0]), x=float(position_nm[1]))
    for channel in range(4):
        scan.set_channel_enabled(channel, channel == 0)
    data = numpy.asarray(scan.record_immediate(fp)[0].data)
    assert data.shape == (1, samples)
    return typing.cast(_NDArray, data[0])


def test_sample_chooser_lists_usim_and_twin_samples(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2")
    generator = harness.stem.scan_data_generator
    titles = generator.sample_titles
    assert titles[:3] == ["Flake", "Amorphous", "CTS"]
    for title in catalog.TITLES.values():
        assert title in titles
    assert titles[generator.sample_index] == catalog.TITLES["mos2"]
    # Choosing a usim sample gives usim's behaviour back.
    generator.sample_index = 0
    assert harness.configuration.twin is None


def test_mos2_columns_sit_on_image_maxima(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2", seed=1, line_jitter_nm=0.0)
    (haadf, maadf), frame = _survey(harness, (256, 256), 4.0, pixel_time_us=16.0, channels=(0, 1))
    assert haadf.shape == maadf.shape == (256, 256)
    assert not numpy.array_equal(haadf, maadf)
    truth = harness.configuration.twin.ground_truth()
    smooth = scipy.ndimage.gaussian_filter(haadf.astype(float), 1.5)
    maxima = smooth == scipy.ndimage.maximum_filter(smooth, size=7)
    pixels = frame.nm_to_pixel(truth.position_nm)
    visible = numpy.isin(truth.column_class, (lattice.MO, lattice.S2)) & frame.contains_nm(truth.position_nm, margin=0.05)
    assert visible.sum() > 150
    peak_yx = numpy.argwhere(maxima & (smooth > 0.1 * smooth.max()))
    distance = numpy.min(numpy.linalg.norm(pixels[visible][:, numpy.newaxis, :] - peak_yx[numpy.newaxis, :, :], axis=-1), axis=1)
    assert numpy.mean(distance <= 2.0) >= 0.9
    # Mo columns are brighter than S2 columns (Z contrast).
    values = smooth[tuple(numpy.rint(pixels[visible]).astype(int).T)]
    classes = truth.column_class[visible]
    assert numpy.median(values[classes == lattice.MO]) > 1.5 * numpy.median(values[classes == lattice.S2])


def test_same_atom_same_scan_field_position_under_other_fov_centre_rotation(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2", seed=2, line_jitter_nm=0.0)
    truth = harness.configuration.twin.ground_truth()
    metal = numpy.flatnonzero((truth.column_class == lattice.MO) & (numpy.linalg.norm(truth.position_nm - [0.3, 0.4], axis=1) < 0.2))[0]
    atom_nm = truth.position_nm[metal]
    for fov, center, rotation in ((3.0, (0.0, 0.0), 0.0), (2.0, (0.5, 0.2), 0.0), (2.5, (0.3, 0.4), math.radians(25.0))):
        (image,), frame = _survey(harness, (192, 192), fov, center, rotation, pixel_time_us=8.0)
        smooth = scipy.ndimage.gaussian_filter(image.astype(float), 1.5)
        expected = frame.nm_to_pixel(atom_nm)
        r0, c0 = numpy.rint(expected).astype(int)
        window = smooth[r0 - 4:r0 + 5, c0 - 4:c0 + 5]
        peak = numpy.unravel_index(numpy.argmax(window), window.shape)
        found_nm = frame.pixel_to_nm((r0 - 4 + peak[0], c0 - 4 + peak[1]))
        assert numpy.linalg.norm(found_nm - atom_nm) < 2.5 * frame.pixel_size_nm, (fov, center, rotation)


def test_spot_scan_on_s2_column_drops_to_s1_level_and_records_the_event(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2", seed=4, s_cross_section_barn=2.0)
    twin = harness.configuration.twin
    truth = twin.ground_truth()
    # An intact S2 column near the middle.
    candidates = numpy.flatnonzero((truth.column_class == lattice.S2) & (numpy.linalg.norm(truth.position_nm, axis=1) < 1.0))
    column = int(candidates[0])
    position = truth.position_nm[column]
    traces = []
    for _ in range(10):
        traces.append(_spot_trace(harness, position, 500, 200.0))
        events = [e for e in twin.damage_events if e.column_id == column]
        if events:
            break
    assert events, "no S ejected after 1 s of dwell at 200 pA"
    event = events[0]
    assert (event.before, event.after) == ("S2", "S1")
    assert event.dose_e_per_A2 > 0
    assert twin.ground_truth().dose_e_per_A2[column] >= event.dose_e_per_A2
    trace = numpy.concatenate(traces)
    # The trace switches at the sample where the event happened: clock and samples share the same time base.
    trace_start_s = harness.configuration.clock.now_s - len(trace) * 200e-6
    index = int((event.time_s - trace_start_s) / 200e-6)
    before = trace[max(index - 100, 0):index - 2].mean()
    after_end = len(trace)
    if len(events) > 1:
        after_end = min(after_end, int((events[1].time_s - trace_start_s) / 200e-6))
    after = trace[index + 2:after_end].mean() if after_end > index + 10 else None
    assert index > 5
    if after is not None:
        # Losing one of two S atoms removes about a third of the signal at the column (neighbours remain).
        assert after < 0.85 * before
        assert after > 0.35 * before


def test_parked_eels_dwells_and_blanking_gives_no_dose(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2", seed=5)
    twin = harness.configuration.twin
    _survey(harness, (64, 128), 2.0)
    harness.stem.probe_position = Geometry.FloatPoint(y=0.5, x=0.5)
    eels = harness.eels
    cfp = eels.get_current_frame_parameters()
    cfp.exposure_ms = 20
    cfp.binning = 1  # usim bins the energy axis too; unbinned keeps eels_x_scale per channel
    cfp.processing = "sum_project"
    electrons = twin.electrons_received
    spectrum = numpy.asarray(eels.start_recording(frame_parameters=cfp).grab_xdatas(timeout=10)[0].data)
    assert spectrum.shape == (1024,)
    assert twin.electrons_received > electrons
    offset, scale = harness.stem.GetVal("eels_x_offset"), harness.stem.GetVal("eels_x_scale")
    energies = offset + scale * numpy.arange(1024)
    assert abs(energies[int(numpy.argmax(spectrum))]) < 0.2
    harness.stem.SetVal("C_Blank", 1.0)
    electrons = twin.electrons_received
    dose = twin.ground_truth().dose_e_per_A2.sum()
    (image,), _ = _survey(harness, (8, 512), 2.0)
    assert numpy.all(image == 0)
    assert twin.electrons_received == electrons
    assert twin.ground_truth().dose_e_per_A2.sum() == dose


def test_plasmon_peak_energy_differs_between_corner_and_centre(twin_harness: typing.Any) -> None:
    harness = twin_harness("plasmonic", seed=0)
    twin = harness.configuration.twin
    triangle = twin.particles[1]
    _, frame = _survey(harness, (128, 128), 200.0, pixel_time_us=1.0)
    eels = harness.eels
    offset, scale = harness.stem.GetVal("eels_x_offset"), harness.stem.GetVal("eels_x_scale")
    energies = offset + scale * numpy.arange(1024)
    peaks = []
    for point in (triangle.vertices_nm[0] + (triangle.center_nm - triangle.vertices_nm[0]) * 0.05, numpy.asarray(triangle.center_nm)):
        f = frame.nm_to_fraction(point)
        harness.stem.probe_position = Geometry.FloatPoint(y=float(f[0]), x=float(f[1]))
        cfp = eels.get_current_frame_parameters()
        cfp.exposure_ms = 20
        cfp.binning = 1
        cfp.processing = "sum_project"
        spectrum = numpy.asarray(eels.start_recording(frame_parameters=cfp).grab_xdatas(timeout=10)[0].data)
        loss = energies > 0.8
        peaks.append(float(energies[loss][numpy.argmax(spectrum[loss])]))
    corner, centre = peaks
    assert corner < 2.2
    assert centre > 3.3


def test_ronchigram_centre_of_mass_differs_between_domains(twin_harness: typing.Any) -> None:
    harness = twin_harness("polar-domains", seed=0)
    twin = harness.configuration.twin
    _, frame = _survey(harness, (128, 128), 200.0, pixel_time_us=1.0)
    ronchigram = harness.ronchigram
    coms = []
    for point in ((0.0, 0.0), (60.0, -60.0)):
        f = frame.nm_to_fraction(point)
        harness.stem.probe_position = Geometry.FloatPoint(y=float(f[0]), x=float(f[1]))
        cfp = ronchigram.get_current_frame_parameters()
        cfp.exposure_ms = 10
        image = numpy.asarray(ronchigram.start_recording(frame_parameters=cfp).grab_xdatas(timeout=10)[0].data, float)
        coms.append(numpy.array(scipy.ndimage.center_of_mass(image)))
    assert twin.domain_index((0.0, 0.0)) != twin.domain_index((60.0, -60.0))
    assert numpy.linalg.norm(coms[0] - coms[1]) > 0.5


def test_synchronized_spectrum_image_exposes_the_twin_at_the_pixel_being_scanned(twin_harness: typing.Any, monkeypatch: typing.Any) -> None:
    harness = twin_harness("plasmonic", seed=0)
    twin = harness.configuration.twin
    frame = ScanFrame((3, 4), 60.0, (60.0, -60.0), 0.4)  # off-centre, turned and not square: every convention shows
    fp = harness.scan.get_current_frame_parameters()
    fp.pixel_size = Geometry.IntSize(*frame.shape)
    fp.fov_nm = frame.fov_nm
    fp.center_nm = Geometry.FloatPoint(*frame.center_nm)
    fp.rotation_rad = frame.rotation_rad
    fp.pixel_time_us = 10.0
    harness.scan.set_current_frame_parameters(fp)
    cfp = harness.eels.get_current_frame_parameters()
    cfp.exposure_ms = 5
    cfp.processing = "sum_project"
    seen: list[tuple[float, float]] = []
    spectrum = twin.spectrum

    def recording_spectrum(position_nm: typing.Sequence[float], *args: typing.Any) -> _NDArray:
        seen.append((float(position_nm[0]), float(position_nm[1])))
        return typing.cast(_NDArray, spectrum(position_nm, *args))

    monkeypatch.setattr(twin, "spectrum", recording_spectrum)
    harness.scan.grab_synchronized(scan_frame_parameters=fp, camera=harness.eels, camera_frame_parameters=cfp)
    pixels = frame.nm_to_pixel(numpy.array(seen))
    on_pixel = numpy.all(numpy.abs(pixels - numpy.rint(pixels)) < 1e-6, axis=1)
    # Every pixel of the frame is exposed where the scan has put the probe (usim may expose a pixel twice) ...
    assert {tuple(p) for p in numpy.rint(pixels[on_pixel]).astype(int).tolist()} == {(r, c) for r in range(3) for c in range(4)}
    # ... and an exposure the camera squeezes in between frames falls back to the middle of the field.
    assert numpy.allclose(pixels[~on_pixel], (1.0, 1.5)) and numpy.count_nonzero(~on_pixel) <= 2, pixels[~on_pixel]
