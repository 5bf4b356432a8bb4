"""The twins through the instrument facade, the way every experiment sees them."""

from __future__ import annotations

import typing

import numpy
import scipy.ndimage

from nion_autoem.geometry import ScanFrame
from nion_autoem.twin import lattice


def test_mos2_frame_through_swift_microscope_matches_ground_truth(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2", seed=1, line_jitter_nm=0.0)
    scope = harness.microscope()
    frame = ScanFrame((256, 256), fov_nm=4.0, center_nm=(0.2, -0.1), rotation_rad=0.3)
    image = numpy.asarray(scope.survey(frame, pixel_time_us=16.0).xdata.data, dtype=float)
    truth = harness.configuration.twin.ground_truth()
    smooth = scipy.ndimage.gaussian_filter(image, 1.5)
    peaks = numpy.argwhere((smooth == scipy.ndimage.maximum_filter(smooth, size=7)) & (smooth > 0.1 * smooth.max()))
    visible = numpy.isin(truth.column_class, (lattice.MO, lattice.S2)) & frame.contains_nm(truth.position_nm, margin=0.05)
    pixels = frame.nm_to_pixel(truth.position_nm[visible])
    distance = numpy.min(numpy.linalg.norm(pixels[:, None, :] - peaks[None, :, :], axis=-1), axis=1)
    assert visible.sum() > 150 and numpy.mean(distance <= 2.0) >= 0.9


def test_dwelling_on_s2_through_the_facade_drops_the_trace_at_the_event(twin_harness: typing.Any) -> None:
    harness = twin_harness("mos2", seed=4, s_cross_section_barn=2.0, line_jitter_nm=0.0)
    scope = harness.microscope()
    twin = harness.configuration.twin
    scope.survey(ScanFrame((128, 128), fov_nm=3.0), pixel_time_us=2.0)
    truth = twin.ground_truth()
    column = int(numpy.flatnonzero((truth.column_class == lattice.S2) & (numpy.linalg.norm(truth.position_nm, axis=1) < 0.8))[0])
    scope.park_probe(tuple(truth.position_nm[column]))
    traces, events = [], []
    for _ in range(10):
        traces.append(scope.adf_trace(500, sample_time_us=200.0).xdata.data)
        events = [e for e in twin.damage_events if e.column_id == column]
        if events:
            break
    assert events and (events[0].before, events[0].after) == ("S2", "S1") and events[0].dose_e_per_A2 > 0
    trace = numpy.concatenate(traces)
    start_s = harness.configuration.clock.now_s - len(trace) * 200e-6
    index = int((events[0].time_s - start_s) / 200e-6)
    end = len(trace) if len(events) == 1 else int((events[1].time_s - start_s) / 200e-6)
    assert 5 < index < len(trace) - 10
    before, after = trace[max(index - 100, 0):index - 1].mean(), trace[index + 2:end].mean()
    assert 0.35 * before < after < 0.85 * before
    assert scope.is_blanked is False
    scope.make_safe()
    assert scope.is_blanked and scope.probe_position_nm is None


def test_plasmon_corner_and_centre_through_the_facade(twin_harness: typing.Any) -> None:
    harness = twin_harness("plasmonic", seed=0)
    scope = harness.microscope()
    triangle = harness.configuration.twin.particles[1]
    scope.survey(ScanFrame((128, 128), fov_nm=200.0), pixel_time_us=1.0)
    peaks = []
    for point in (triangle.vertices_nm[0] + (triangle.center_nm - triangle.vertices_nm[0]) * 0.05, numpy.asarray(triangle.center_nm)):
        scope.park_probe((float(point[0]), float(point[1])))
        spectrum = scope.acquire_spectrum(20.0).xdata
        energy = spectrum.dimensional_calibrations[-1]
        energies = energy.offset + energy.scale * numpy.arange(spectrum.data_shape[-1])
        loss = energies > 0.8
        peaks.append(float(energies[loss][numpy.argmax(spectrum.data[loss])]))
    corner, centre = peaks
    assert corner < 2.2 and centre > 3.3


def test_make_safe_cuts_a_running_adf_trace_short(twin_harness: typing.Any) -> None:
    """The trace is read from the scan device, which Swift's own abort does not know: make_safe cancels it."""
    import threading
    import time

    from nion_autoem.instrument import InstrumentError

    scope = twin_harness("mos2", seed=0).microscope()
    scope.park_probe((0.5, 0.5))
    scope.unblank()
    outcome: dict[str, typing.Any] = {}

    def trace() -> None:
        try:
            outcome["trace"] = scope.adf_trace(4_000, 1000.0)  # 4 s of beam in 1 ms samples
        except InstrumentError as e:
            outcome["error"] = e
        outcome["ended"] = time.perf_counter()

    worker = threading.Thread(target=trace)
    worker.start()
    time.sleep(0.3)
    made_safe = time.perf_counter()
    scope.make_safe()
    worker.join(timeout=10.0)
    assert not worker.is_alive() and "trace" not in outcome, outcome
    assert "cut short" in str(outcome["error"]) and outcome["ended"] - made_safe < 1.0
    assert scope.is_blanked and scope.probe_position_nm is None
    scope.park_probe((0.5, 0.5))  # and the instrument still works afterwards
    assert scope.adf_trace(3, 10.0).xdata.data_shape == (3,)
