"""Time the twin simulator on the code paths usim calls.

Frames and spot-scan traces go through ``TwinScanDataGenerator.generate_scan_data``
and spectra through ``TwinEELSCameraSimulator.get_frame_data``, exactly as
usim's scan device and EELS camera call them (no real-time waits, which are
usim's, not the simulator's).  Run on one core::

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/simulator_bench.py

The last line printed is a JSON summary.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import typing

os.environ.setdefault("OMP_NUM_THREADS", "1")

from nion.device_kit import ScanDevice
from nion.instrumentation import stem_controller
from nion.utils import Geometry

from nion_autoem.swift import usim_twin as usim


def _best_ms(fn: typing.Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times), statistics.median(times)


def main() -> None:
    configuration = usim.create_configuration("mos2", seed=0)
    instrument = configuration.instrument
    generator = configuration.scan_data_generator
    configuration.scan_module.device.set_channel_enabled(1, False)

    frame_parameters = ScanDevice.ScanFrameParameters(size=Geometry.IntSize(512, 512), pixel_time_us=1.0, fov_nm=8.0,
                                                      center_nm=Geometry.FloatPoint(), rotation_rad=0.0)
    frame_best, frame_median = _best_ms(lambda: generator.generate_scan_data(instrument, frame_parameters), 10)

    trace_parameters = ScanDevice.ScanFrameParameters(size=Geometry.IntSize(1, 1000), pixel_time_us=100.0, fov_nm=1e-4,
                                                      center_nm=Geometry.FloatPoint(0.1, 0.2), rotation_rad=0.0)
    trace_best, trace_median = _best_ms(lambda: generator.generate_scan_data(instrument, trace_parameters), 20)

    eels = configuration.eels_camera_device.simulator
    context = stem_controller.ScanContext(Geometry.IntSize(512, 512), Geometry.FloatPoint(), 8.0, 0.0)
    readout = Geometry.IntRect.from_tlbr(0, 0, 256, 1024)
    spectrum_best, spectrum_median = _best_ms(lambda: eels.get_frame_data(readout, Geometry.IntSize(1, 1), 0.02, context, Geometry.FloatPoint(0.5, 0.5)), 20)

    configuration.select("plasmonic")
    plasmon_best, _ = _best_ms(lambda: eels.get_frame_data(readout, Geometry.IntSize(1, 1), 0.02, context, Geometry.FloatPoint(0.3, 0.6)), 20)
    survey_parameters = ScanDevice.ScanFrameParameters(size=Geometry.IntSize(512, 512), pixel_time_us=1.0, fov_nm=300.0,
                                                       center_nm=Geometry.FloatPoint(), rotation_rad=0.0)
    plasmonic_frame_best, _ = _best_ms(lambda: generator.generate_scan_data(instrument, survey_parameters), 5)

    summary = {
        "frame_512_ms": round(frame_best, 2),
        "frame_512_median_ms": round(frame_median, 2),
        "spectrum_ms": round(spectrum_best, 2),
        "spectrum_median_ms": round(spectrum_median, 2),
        "adf_trace_ms": round(trace_best, 2),
        "adf_trace_median_ms": round(trace_median, 2),
        "adf_trace_samples": 1000,
        "plasmon_spectrum_ms": round(plasmon_best, 2),
        "plasmonic_frame_512_ms": round(plasmonic_frame_best, 2),
        "cpu_affinity": len(os.sched_getaffinity(0)),
    }
    configuration.close()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
