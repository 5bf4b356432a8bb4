"""The stage-scale grid square as a usim twin: a montage through SwiftMicroscope and usim's stage control, with an imprecise stage."""

from __future__ import annotations

import pathlib
import typing

import numpy

from nion_autoem.geometry import ScanFrame
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import plan
from nion_autoem.plans.montage import MontageLayout
from nion_autoem.plans.montage import acquire_montage
from nion_autoem.products import MemorySink
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import RunState
from nion_autoem.twin import catalog
from nion_autoem.twin.stage_sample import RARE_CLASS
from nion_autoem.twin.stage_twin import GridSquareSample

#: 3 x 3 tiles of 4 µm at 31 nm per pixel, 30 % overlap, around the grid square's centre.
LAYOUT = MontageLayout((0.0, 0.0), (9000.0, 9000.0), ScanFrame((128, 128), 4000.0), 0.3)
#: A core-loss spectrometer axis: 200-1223 eV, so C K, Fe L3 and Co L3 all show.
CORE_LOSS = {"eels_energy_offset_eV": 200.0, "eels_dispersion_eV": 1.0}


@plan("montage-grid-square")
def montage_run(box: dict[str, typing.Any]) -> PlanGenerator:
    box["montage"] = yield from acquire_montage(LAYOUT, pixel_time_us=1.0, max_stage_error_nm=2000.0)


def test_a_montage_on_usim_finds_the_imprecise_stages_errors(twin_harness: typing.Any, tmp_path: pathlib.Path) -> None:
    harness = twin_harness("grid-square", seed=2, **CORE_LOSS)
    twin = harness.configuration.twin
    assert isinstance(twin, GridSquareSample) and twin.title == catalog.TITLES["grid-square"]
    box: dict[str, typing.Any] = {}
    runner = ExperimentRunner(harness.microscope(), montage_run(box), run_dir=tmp_path, sink=MemorySink())
    progress = runner.run()
    assert progress.state is RunState.FINISHED, progress.message
    montage = box["montage"]
    commanded = LAYOUT.positions_nm()
    assert len(twin.moves) == len(commanded)
    true_error = numpy.array([landed for _, landed in twin.moves]) - numpy.array([c for c, _ in twin.moves])
    assert numpy.abs(true_error).max() > 60.0  # the stage really was off: backlash and repeatability of tens to hundreds of nm
    measured_error = numpy.asarray(montage.fitted_nm) - commanded
    # The montage knows the errors up to one common offset (it has no absolute reference).
    residual = (measured_error - measured_error.mean(axis=0)) - (true_error - true_error.mean(axis=0))
    raw = true_error - true_error.mean(axis=0)
    assert numpy.abs(residual).max() < 31.0, residual  # within a montage pixel
    assert numpy.abs(residual).max() < 0.5 * numpy.abs(raw).max()


def test_a_spectrum_on_a_platelet_shows_its_cobalt_edge(twin_harness: typing.Any) -> None:
    harness = twin_harness("grid-square", seed=2, **CORE_LOSS)
    twin = harness.configuration.twin
    assert isinstance(twin, GridSquareSample)
    scope = harness.microscope()
    platelet = next(o for o in twin.sample.objects if o.kind == RARE_CLASS)
    film = next(p for p in twin.sample.examples_nm("film", 5) if twin.sample.object_at(p) is None)

    def co_edge_jump(where: tuple[float, float]) -> float:
        scope.move_stage(where)
        scope.unblank()
        try:
            frame = scope.survey(ScanFrame((64, 64), 2000.0), pixel_time_us=1.0).frame
            assert frame is not None
            # where the platelet (or the film point) really is in this frame: the stage's error, as registration would find it
            off = twin.viewed_point_nm() - numpy.asarray(where)
            scope.park_probe((float(-off[0]), float(-off[1])))
            spectrum = scope.acquire_spectrum(200.0).xdata
        finally:
            scope.blank()
        axis = spectrum.dimensional_calibrations[-1]
        energies = axis.offset + axis.scale * numpy.arange(spectrum.data_shape[-1])
        assert energies[0] < 745 and energies[-1] > 815, (axis.offset, axis.scale)
        counts = numpy.asarray(spectrum.data, dtype=float)
        after = counts[(energies > 785) & (energies < 815)].mean()
        before = counts[(energies > 745) & (energies < 775)].mean()
        return float(after / max(before, 1e-9))

    on_platelet, on_film = co_edge_jump(platelet.centre_nm), co_edge_jump(film)
    print(f"Co L3 jump: platelet {on_platelet:.3f}, film {on_film:.3f}")
    assert on_platelet > 1.1 * on_film


def test_a_flake_at_atomic_resolution_shows_the_mos2_lattice_and_keeps_its_damage(twin_harness: typing.Any) -> None:
    from nion_autoem.twin import lattice
    from nion_autoem.twin.mos2 import MoS2Sample

    harness = twin_harness("grid-square", seed=0)
    twin = harness.configuration.twin
    assert isinstance(twin, GridSquareSample)
    flake = next(o for o in twin.sample.objects if o.kind == "flake" and o.radius_nm > 900)
    scope = harness.microscope()
    scope.move_stage(flake.centre_nm)
    scope.set_defocus(scope.defocus_nm + float(twin.sample.height_nm(flake.centre_nm)))  # focus on the flake: it sits higher than the film around
    frame = ScanFrame((256, 256), 4.0)
    scope.unblank()
    try:
        image = numpy.asarray(scope.survey(frame, pixel_time_us=4.0).xdata.data, dtype=float)
        assert len(twin.patches) == 1
        # the {100} planes of MoS2 (0.27 nm) dominate the image's spectrum
        power = numpy.abs(numpy.fft.fftshift(numpy.fft.fft2(image - image.mean())))
        k = numpy.fft.fftshift(numpy.fft.fftfreq(256, d=frame.pixel_size_nm))
        kr = numpy.hypot(*numpy.meshgrid(k, k, indexing="ij"))
        assert power[(kr > 1 / 0.30) & (kr < 1 / 0.25)].max() > 5 * power[(kr > 1 / 0.6) & (kr < 1 / 0.45)].max()
        # dwell on an S2 column until it loses atoms
        patch = twin.patches[0][1]
        assert isinstance(patch, MoS2Sample)
        truth = patch.ground_truth()
        near = numpy.hypot(*truth.position_nm.T) < 1.0
        s2 = truth.position_nm[near & (truth.column_class == lattice.S2)][0]
        before = len(patch.damage_events)
        scope.park_probe((float(s2[0]), float(s2[1])))
        scope.adf_trace(50_000, 20.0)  # 1 s of beam on one column
        assert len(patch.damage_events) > before
        damaged = patch.ground_truth().column_class.copy()
        # a field 4 µm wide shows the flake, not atoms, and makes no patch; back at 4 nm the same atoms, damage included
        scope.survey(ScanFrame((128, 128), 4000.0), pixel_time_us=1.0)
        assert len(twin.patches) == 1
        scope.survey(ScanFrame((128, 128), 4.0, (1.0, -1.0)), pixel_time_us=1.0)
        assert len(twin.patches) == 1
        assert numpy.array_equal(patch.ground_truth().column_class[near], damaged[near])
    finally:
        scope.blank()
