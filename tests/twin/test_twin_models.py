"""The pure twin models, without Swift."""

from __future__ import annotations

import math
import typing

import numpy
import numpy.typing
import pytest
import scipy.ndimage
from skimage.registration import phase_cross_correlation

from nion_autoem.geometry import ScanFrame
from nion_autoem.twin import lattice
from nion_autoem.twin.clock import SimulatedClock
from nion_autoem.twin.clock import StageDrift
from nion_autoem.twin.damage import KnockOnModel
from nion_autoem.twin.mos2 import MoS2Sample
from nion_autoem.twin.sample import ProbeConditions
from nion_autoem.twin.sample import defocus_blur_nm
from nion_autoem.twin.sample import effective_probe_sigma_nm

_NDArray = numpy.typing.NDArray[typing.Any]


def _registration_shift(reference: _NDArray, moving: _NDArray, upsample_factor: int) -> _NDArray:
    """scikit-image's (untyped) ``phase_cross_correlation``: the (y, x) shift in pixels that registers ``moving`` with ``reference``."""
    register = typing.cast("typing.Callable[..., tuple[_NDArray, float, float]]", phase_cross_correlation)
    return register(reference, moving, upsample_factor=upsample_factor)[0]


def _twin(seed: int, **kwargs: object) -> MoS2Sample:
    return MoS2Sample(lattice.mos2_flake(4.0, seed=seed), seed=seed, **kwargs)  # type: ignore[arg-type]


def test_same_seed_same_frames_and_damage() -> None:
    frame = ScanFrame((128, 128), 3.0)
    runs = []
    for _ in range(2):
        twin = _twin(7)
        images = [twin.render_frame(frame, 50.0, ProbeConditions())["HAADF"] for _ in range(2)]
        runs.append((images, twin.damage_events))
    assert all(numpy.array_equal(a, b) for a, b in zip(runs[0][0], runs[1][0]))
    assert runs[0][1] == runs[1][1]
    assert len(runs[0][1]) > 0
    other = _twin(8).render_frame(frame, 50.0, ProbeConditions())["HAADF"]
    assert not numpy.array_equal(other, runs[0][0][0])


def test_dose_follows_current_and_blanking() -> None:
    twin = _twin(1)
    frame = ScanFrame((64, 64), 2.0)
    twin.render_frame(frame, 10.0, ProbeConditions(100e-12))
    dose_100 = twin.ground_truth().dose_e_per_A2.max()
    twin.render_frame(frame, 10.0, ProbeConditions(100e-12, blanked=True))
    assert twin.ground_truth().dose_e_per_A2.max() == pytest.approx(dose_100)
    twin.render_frame(frame, 10.0, ProbeConditions(200e-12))
    assert twin.ground_truth().dose_e_per_A2.max() == pytest.approx(3 * dose_100)
    # 100 pA for 10 us per (2 nm / 64)^2 pixel
    expected = 100e-12 / 1.602176634e-19 * 10e-6 / (2.0 / 64) ** 2 / 100
    assert dose_100 == pytest.approx(expected, rel=1e-6)


def test_clock_advances_by_acquisition_time_and_drift_moves_a_parked_probe() -> None:
    clock = SimulatedClock()
    twin = _twin(2, drift=StageDrift((0.0, 2.0)), clock=clock, knock_on=KnockOnModel(0.0, 0.0))
    twin.render_frame(ScanFrame((100, 200), 2.0), 5.0, ProbeConditions())
    assert clock.now_s == pytest.approx(100 * 200 * 5e-6)
    truth = twin.ground_truth()
    metal = int(numpy.argmin(numpy.linalg.norm(truth.position_nm, axis=1) + 1e9 * (truth.column_class != lattice.MO)))
    start = truth.position_nm[metal]
    # Parked on the column, the sample drifts away at 2 nm/s: after 0.1 s the probe is 0.2 nm off.
    trace = twin.dwell(numpy.repeat(start[numpy.newaxis], 1000, axis=0), 1e-4, ProbeConditions())["HAADF"]
    assert trace[:50].mean() > 3 * trace[-50:].mean()
    assert twin.ground_truth().position_nm[metal][1] == pytest.approx(start[1] + 0.2, abs=1e-6)


def test_raster_drift_shears_the_frame() -> None:
    frame = ScanFrame((128, 128), 3.0)
    still = _twin(3, line_jitter_nm=0.0, knock_on=KnockOnModel(0.0, 0.0))
    moving = _twin(3, line_jitter_nm=0.0, knock_on=KnockOnModel(0.0, 0.0), drift=StageDrift((0.0, 0.5)))
    a = still.render_frame(frame, 20.0, ProbeConditions())["HAADF"].astype(float)
    b = moving.render_frame(frame, 20.0, ProbeConditions())["HAADF"].astype(float)
    # 0.5 nm/s over a 0.33 s frame: the bottom strip sits ~0.14 nm (6 px) further right, the top one ~1 px.
    top = _registration_shift(a[:32], b[:32], upsample_factor=4)
    bottom = _registration_shift(a[-32:], b[-32:], upsample_factor=4)
    assert abs(top[1]) < 2.0
    assert 3.5 < abs(bottom[1]) < 9.0


def test_bad_arguments_say_what_would_be_right() -> None:
    with pytest.raises(ValueError, match="probe_sigma_nm"):
        MoS2Sample(probe_sigma_nm=0.0)
    with pytest.raises(ValueError, match="pixel_time_us"):
        _twin(0).render_frame(ScanFrame((8, 8), 1.0), 0.0, ProbeConditions())
    with pytest.raises(ValueError, match="fraction"):
        lattice.mos2_flake(3.0, se_fraction=2.0)


def test_dopants_and_grain_boundary() -> None:
    flake = lattice.mos2_flake(6.0, seed=0, se_fraction=0.1, w_fraction=0.1, grain_boundary_tilt_rad=0.23)
    species = set(flake.species())
    assert {"W", "Mo", "S2"} <= species
    assert any("Se" in s for s in species)
    assert set(numpy.unique(flake.grain).tolist()) == {0, 1}
    d = numpy.linalg.norm(flake.position_nm[:, numpy.newaxis] - flake.position_nm[numpy.newaxis], axis=-1)
    numpy.fill_diagonal(d, numpy.inf)
    assert d.min() > 0.15


def test_vacancy_migrates_under_a_parked_probe_at_high_dose() -> None:
    twin = _twin(5, knock_on=KnockOnModel(s_cross_section_barn=0.0, se_cross_section_barn=0.0, migration_cross_section_barn=2.0))
    columns = twin.columns
    centre = numpy.linalg.norm(columns.position_nm, axis=1) < 1.0
    target = int(numpy.flatnonzero(centre & (columns.column_class == lattice.S2))[0])
    columns.z_atoms[target] = (lattice.Z_S, 0)  # make it an S1 vacancy site
    atoms_before = int(columns.atom_count.sum())
    position = twin.ground_truth().position_nm[target]
    for _ in range(20):
        twin.dwell(numpy.repeat(position[numpy.newaxis], 100, axis=0), 1e-3, ProbeConditions())
        if twin.damage_events:
            break
    events = twin.damage_events
    assert events and events[0].kind == "migration" and events[0].to_column_id == target
    assert (events[0].before, events[0].after) == ("S2", "S1")
    assert int(columns.atom_count.sum()) == atoms_before
    assert columns.column_class[target] == lattice.S2


def test_parked_trace_switches_at_the_sample_of_the_ejection() -> None:
    twin = _twin(6, knock_on=KnockOnModel(s_cross_section_barn=1.0), line_jitter_nm=0.0)
    truth = twin.ground_truth()
    column = int(numpy.flatnonzero((truth.column_class == lattice.S2) & (numpy.linalg.norm(truth.position_nm, axis=1) < 1.0))[0])
    position = truth.position_nm[column]
    sample_s = 1e-3
    for _ in range(20):
        start_s = twin.clock.now_s
        trace = twin.dwell(numpy.repeat(position[numpy.newaxis], 400, axis=0), sample_s, ProbeConditions())["HAADF"]
        events = [e for e in twin.damage_events if e.column_id == column]
        if events:
            break
    assert events, "no ejection within 8 s of dwell"
    index = int((events[0].time_s - start_s) / sample_s)
    if index < 5 or index > 394 or (len(events) > 1 and events[1].time_s - events[0].time_s < 10 * sample_s):
        pytest.skip("event too close to the trace ends to judge the step")
    high, low = trace[:index].mean(), trace[index + 1:index + 10].mean()
    assert low < 0.8 * high
    threshold = (high + low) / 2
    below = numpy.flatnonzero(trace < threshold)
    assert below[0] in (index, index + 1)


def _gradient_energy(image: _NDArray, sigma_px: float = 1.0) -> float:
    return float((scipy.ndimage.gaussian_gradient_magnitude(image.astype(float), sigma_px) ** 2).mean())


def test_defocus_widens_the_probe_as_a_30_mrad_probe_does() -> None:
    assert float(defocus_blur_nm(10.0)) == pytest.approx(0.15)
    assert float(effective_probe_sigma_nm(0.05, 0.0)) == pytest.approx(0.05)
    assert float(effective_probe_sigma_nm(0.05, -20.0)) == pytest.approx(math.hypot(0.05, 0.3))
    twin = _twin(0)
    twin.focus_c10_nm = 500.0
    assert float(twin.defocus_from_focus_nm(ProbeConditions(defocus_nm=510.0), (0.0, 0.0))) == pytest.approx(10.0)
    assert float(twin.defocus_from_focus_nm(ProbeConditions(), (0.0, 0.0))) == 0.0  # no C10 reading: in focus
    # A tilted sample: 50 nm of focus per um along x puts a point 200 nm to the right 10 nm further from the lens setting.
    twin.focus_gradient_nm_per_um = (0.0, 50.0)
    assert float(twin.defocus_from_focus_nm(ProbeConditions(defocus_nm=500.0), (0.0, 200.0))) == pytest.approx(-10.0)
    with pytest.raises(ValueError, match="defocus_nm"):
        ProbeConditions(defocus_nm=float("nan"))


def test_mos2_frame_and_parked_probe_blur_with_defocus() -> None:
    frame = ScanFrame((96, 96), 3.0)
    sharpness, column_signal = [], []
    for defocus in (0.0, 5.0, 10.0):
        twin = _twin(4, line_jitter_nm=0.0, knock_on=KnockOnModel(0.0, 0.0))
        probe = ProbeConditions(defocus_nm=defocus)
        image = twin.render_frame(frame, 20.0, probe)["HAADF"]
        sharpness.append(_gradient_energy(image))
        truth = twin.ground_truth()
        metal = int(numpy.argmin(numpy.linalg.norm(truth.position_nm, axis=1) + 1e9 * (truth.column_class != lattice.MO)))
        trace = twin.dwell(numpy.repeat(truth.position_nm[metal][numpy.newaxis], 100, axis=0), 1e-5, probe)["HAADF"]
        column_signal.append(float(trace.mean()))
        # The probe spreads its electrons, it does not lose them: the frame's total signal stays.
        assert image.mean() == pytest.approx(_twin(4, line_jitter_nm=0.0).render_frame(frame, 20.0, ProbeConditions())["HAADF"].mean(), rel=0.02)
    # measured: gradient energy about 36000, 1600, 34; signal on the Mo column about 820, 290, 210 counts
    assert sharpness[0] > 10 * sharpness[1] > 10 * sharpness[2]
    assert column_signal[0] > 2 * column_signal[1] and column_signal[1] > 1.2 * column_signal[2]


def test_plasmonic_and_polar_surveys_blur_with_defocus() -> None:
    from nion_autoem.twin.diffraction import PolarDomainSample
    from nion_autoem.twin.plasmonic import PlasmonicSample

    for make, frame, pixel_time_us in ((lambda: PlasmonicSample(seed=0), ScanFrame((96, 96), 200.0), 20.0),
                                       (lambda: PolarDomainSample(seed=0), ScanFrame((96, 96), 300.0), 2000.0)):
        energies = []
        for defocus in (0.0, 2000.0):
            sample = make()
            image = sample.render_frame(frame, pixel_time_us, ProbeConditions(defocus_nm=defocus))["HAADF"]
            # Smoothing over 2 pixels keeps shot noise out of the comparison.
            energies.append(_gradient_energy(image, 2.0))
        # measured: plasmonic about 7100 -> 77, polar domains about 270000 -> 300
        assert energies[0] > 10 * energies[1], (type(sample).__name__, energies)
