"""Reading recorded files (HSPY, EMD, NeXus, Swift .h5/.ndata) into calibrated niondata and replaying them."""

from __future__ import annotations

import json
import pathlib
import re
import typing
import zipfile

import numpy
import numpy.typing
import pytest

from nion_autoem import files
from nion_autoem.replay import ReplayMicroscope

_NDArray = numpy.typing.NDArray[typing.Any]
Axis = tuple[str, float, float, str, bool]  # name, offset, scale, units, navigate

ENERGY = (-1.0, 0.1)  # eV


def signal_dict(data: _NDArray, axes: typing.Sequence[Axis], title: str = "signal", quantity: str = "Counts (counts)") -> dict[str, typing.Any]:
    """The dictionary RosettaSciIO's writers take (what HyperSpy hands them)."""
    return {"data": data,
            "axes": [{"name": name, "size": n, "offset": offset, "scale": scale, "units": units, "navigate": navigate, "_type": "UniformDataAxis"}
                     for (name, offset, scale, units, navigate), n in zip(axes, data.shape)],
            "metadata": {"General": {"title": title}, "Signal": {"signal_type": "", "quantity": quantity}},
            "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False}, "learning_results": {}, "models": {},
            "package_info": {"name": "nion_autoem", "version": "test"}}


def write(path: pathlib.Path, signal: dict[str, typing.Any]) -> pathlib.Path:
    import importlib
    module = {".hspy": "rsciio.hspy", ".emd": "rsciio.emd", ".nxs": "rsciio.nexus"}[path.suffix]
    importlib.import_module(module).file_writer(str(path), signal)
    return path


def recording(shape: tuple[int, int] = (48, 48), si_shape: tuple[int, int] = (24, 24), fov_nm: float = 12.0) -> tuple[_NDArray, _NDArray]:
    """A smooth textured survey and a spectrum image whose 2 eV peak follows it."""
    rng = numpy.random.default_rng(3)
    rows, cols = numpy.meshgrid(numpy.linspace(0, 1, shape[0]), numpy.linspace(0, 1, shape[1]), indexing="ij")
    survey = 1.0 + numpy.sin(9 * rows) * numpy.cos(7 * cols) + 0.05 * rng.standard_normal(shape)
    energies = ENERGY[0] + ENERGY[1] * numpy.arange(64)
    peak = numpy.exp(-0.5 * ((energies - 2.0) / 0.3) ** 2)
    zlp = 50 * numpy.exp(-0.5 * (energies / 0.2) ** 2)
    sub = survey[:: shape[0] // si_shape[0], :: shape[1] // si_shape[1]]
    si = zlp[None, None, :] + 20 * sub[:, :, None] * peak[None, None, :]
    return survey, si


def survey_axes(fov_nm: float, n: int, units: str = "nm", factor: float = 1.0) -> list[Axis]:
    return [("y", 0.0, fov_nm / n * factor, units, False), ("x", 0.0, fov_nm / n * factor, units, False)]


def si_axes(fov_nm: float, n: int, energy: tuple[float, float] = ENERGY, energy_units: str = "eV") -> list[Axis]:
    return [("y", 0.0, fov_nm / n, "nm", True), ("x", 0.0, fov_nm / n, "nm", True), ("Energy loss", energy[0], energy[1], energy_units, False)]


@pytest.fixture
def hspy_pair(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, _NDArray, _NDArray]:
    survey, si = recording()
    survey_path = write(tmp_path / "survey.hspy", signal_dict(survey, survey_axes(12.0, 48), "HAADF"))
    si_path = write(tmp_path / "si.hspy", signal_dict(si, si_axes(12.0, 24), "EELS SI"))
    return survey_path, si_path, survey, si


# --- calibrations ----------------------------------------------------------------------------------


def test_hspy_comes_back_in_nm_and_ev_with_the_files_record(tmp_path: pathlib.Path) -> None:
    survey, si = recording()
    # the survey in Å and the spectrum image's energy in keV: both are converted
    write(tmp_path / "survey.hspy", signal_dict(survey, survey_axes(12.0, 48, "Å", 10.0), "HAADF"))
    write(tmp_path / "si.hspy", signal_dict(si, si_axes(12.0, 24, (ENERGY[0] * 1e-3, ENERGY[1] * 1e-3), "keV"), "EELS SI"))
    image = files.read_file(tmp_path / "survey.hspy")
    assert image.data_shape == (48, 48) and image.data_descriptor.datum_dimension_count == 2
    assert [c.units for c in image.dimensional_calibrations] == ["nm", "nm"]
    assert image.dimensional_calibrations[0].scale == pytest.approx(0.25)
    assert image.intensity_calibration.units == "counts"
    record = image.metadata["nion_autoem"]["file"]
    assert record["reader"] == "HSPY" and record["original_units"] == ["Å", "Å"] and record["title"] == "HAADF"
    assert record["path"] == str((tmp_path / "survey.hspy").resolve())
    json.dumps(image.metadata)  # the kept metadata is plain JSON
    cube = files.read_file(tmp_path / "si.hspy")
    descriptor = cube.data_descriptor
    assert (descriptor.is_sequence, descriptor.collection_dimension_count, descriptor.datum_dimension_count) == (False, 2, 1)
    energy = cube.dimensional_calibrations[2]
    assert energy.units == "eV" and energy.offset == pytest.approx(ENERGY[0]) and energy.scale == pytest.approx(ENERGY[1])
    assert numpy.allclose(cube.data, si)


def test_ncem_emd_spectrum_image_and_4d_dataset_get_scan_and_signal_axes(tmp_path: pathlib.Path) -> None:
    # rsciio writes the NCEM flavour of EMD, which keeps no navigation flags: the reader infers them
    _, si = recording()
    write(tmp_path / "si.emd", signal_dict(si, si_axes(12.0, 24), "EELS SI"))
    cube = files.read_file(tmp_path / "si.emd")
    assert cube.metadata["nion_autoem"]["file"]["reader"] == "EMD"
    assert (cube.data_descriptor.collection_dimension_count, cube.data_descriptor.datum_dimension_count) == (2, 1)
    assert [c.units for c in cube.dimensional_calibrations] == ["nm", "nm", "eV"]
    assert cube.dimensional_calibrations[0].scale == pytest.approx(0.5)
    assert cube.dimensional_calibrations[2].offset == pytest.approx(ENERGY[0])
    four_d = numpy.random.default_rng(0).random((6, 6, 8, 8))
    write(tmp_path / "4d.emd", signal_dict(four_d, [("y", 0.0, 2.0, "nm", True), ("x", 0.0, 2.0, "nm", True),
                                                    ("ky", -4.0, 1.0, "mrad", False), ("kx", -4.0, 1.0, "mrad", False)], "4D"))
    dataset = files.read_file(tmp_path / "4d.emd")
    assert (dataset.data_descriptor.collection_dimension_count, dataset.data_descriptor.datum_dimension_count) == (2, 2)
    assert [c.units for c in dataset.dimensional_calibrations] == ["nm", "nm", "mrad", "mrad"]


def test_nexus_file_holds_several_signals_and_one_can_be_picked(tmp_path: pathlib.Path) -> None:
    _, si = recording()
    write(tmp_path / "si.nxs", signal_dict(si, si_axes(12.0, 24), "EELS SI"))
    signals = files.read_signals(tmp_path / "si.nxs")
    assert len(signals) >= 1 and signals[0].data_shape == (24, 24, 64)
    picked = files.read_file(tmp_path / "si.nxs", signal="EELS SI")
    assert picked.dimensional_calibrations[2].units == "eV" and numpy.allclose(picked.data, si)
    with pytest.raises(ValueError, match="no signal titled 'nope'"):
        files.read_file(tmp_path / "si.nxs", signal="nope")
    with pytest.raises(ValueError, match="out of range"):
        files.read_file(tmp_path / "si.nxs", signal=99)


def swift_properties(shape: tuple[int, ...]) -> dict[str, typing.Any]:
    return {"type": "data-item", "data_shape": list(shape), "data_dtype": "float64", "is_sequence": False,
            "collection_dimension_count": 2, "datum_dimension_count": 1, "intensity_calibration": {"offset": 0.0, "scale": 2.0, "units": "counts"},
            "dimensional_calibrations": [{"offset": 1.0, "scale": 5.0, "units": "Å"}, {"offset": 2.0, "scale": 0.5, "units": "nm"},
                                         {"offset": 100.0, "scale": 0.25, "units": "eV"}],
            "metadata": {"instrument": {"high_tension": 60000}}, "title": "SI", "version": 13}


def test_swift_ndata_reads_with_its_calibrations(tmp_path: pathlib.Path) -> None:
    from nion.swift.model import NDataHandler
    data = numpy.arange(24.0).reshape(2, 3, 4)
    path = tmp_path / "si.ndata"
    NDataHandler.write_zip(str(path), data, swift_properties(data.shape))
    xdata = files.read_file(path)
    assert numpy.array_equal(xdata.data, data)
    assert (xdata.data_descriptor.collection_dimension_count, xdata.data_descriptor.datum_dimension_count) == (2, 1)
    cy, cx, ce = xdata.dimensional_calibrations
    assert cy.offset == pytest.approx(0.1) and cy.scale == pytest.approx(0.5) and cy.units == "nm"
    assert (cx.offset, cx.scale, cx.units) == (2.0, 0.5, "nm") and (ce.offset, ce.scale, ce.units) == (100.0, 0.25, "eV")
    assert xdata.intensity_calibration.scale == 2.0 and xdata.intensity_calibration.units == "counts"
    assert xdata.metadata["instrument"] == {"high_tension": 60000}
    assert xdata.metadata["nion_autoem"]["file"]["reader"] == "Swift ndata"


def test_swift_h5_saved_by_a_headless_swift_session_reads_back(tmp_path: pathlib.Path) -> None:
    from nion.data import Calibration
    from nion.data import DataAndMetadata
    from nion.swift.model import DataItem

    from nion_autoem.swift.session import UsimSession

    data = numpy.arange(24.0).reshape(2, 3, 4)
    original = DataAndMetadata.new_data_and_metadata(
        data, intensity_calibration=Calibration.Calibration(0.0, 2.0, "counts"),
        dimensional_calibrations=[Calibration.Calibration(1.0, 0.5, "nm"), Calibration.Calibration(2.0, 0.5, "nm"), Calibration.Calibration(100.0, 0.25, "eV")],
        data_descriptor=DataAndMetadata.DataDescriptor(False, 2, 1), metadata={"a": 1})
    with UsimSession(project_dir=tmp_path / "project") as session:
        session.document_model.append_data_item(DataItem.new_data_item(original))
        session.pump(0.2)
    saved = [p for p in (tmp_path / "project").rglob("*") if p.suffix in (".h5", ".ndata")]
    assert len(saved) == 1
    xdata = files.read_file(saved[0])
    assert numpy.array_equal(xdata.data, data) and xdata.metadata["a"] == 1
    assert xdata.dimensional_calibrations == original.dimensional_calibrations
    assert xdata.intensity_calibration == original.intensity_calibration
    assert xdata.data_descriptor == original.data_descriptor


# --- replay from files -----------------------------------------------------------------------------


def test_replay_from_hspy_serves_the_files_spectrum_at_the_parked_position(hspy_pair: tuple[pathlib.Path, pathlib.Path, _NDArray, _NDArray]) -> None:
    survey_path, si_path, survey, si = hspy_pair
    scope = ReplayMicroscope.from_files(survey_path, si_path)
    frame = scope.recorded_frame
    assert frame.shape == (48, 48) and frame.fov_nm == pytest.approx(12.0)
    assert numpy.allclose(scope.survey().xdata.data, survey)
    for row, col in [(0, 0), (5, 17), (23, 23)]:
        scope.park_probe(tuple(frame.pixel_to_nm((2 * row + 1, 2 * col + 1))))
        spectrum = scope.acquire_spectrum(10).xdata
        assert numpy.allclose(spectrum.data, si[row, col])
        assert spectrum.dimensional_calibrations[0].offset == pytest.approx(ENERGY[0])
        assert spectrum.dimensional_calibrations[0].scale == pytest.approx(ENERGY[1])


def test_replay_from_emd_4d_dataset_serves_its_frames(tmp_path: pathlib.Path) -> None:
    survey, _ = recording()
    four_d = numpy.random.default_rng(0).random((12, 12, 8, 8))
    write(tmp_path / "survey.emd", signal_dict(survey, survey_axes(12.0, 48), "HAADF"))
    write(tmp_path / "4d.emd", signal_dict(four_d, [("y", 0.0, 1.0, "nm", True), ("x", 0.0, 1.0, "nm", True),
                                                    ("ky", 0.0, 1.0, "", False), ("kx", 0.0, 1.0, "", False)], "4D"))
    scope = ReplayMicroscope.from_files(tmp_path / "survey.emd", datacube=tmp_path / "4d.emd")
    scope.park_probe(tuple(scope.recorded_frame.pixel_to_nm((4 * 7 + 1, 4 * 2 + 1))))
    assert numpy.allclose(scope.acquire_camera_frame(5).xdata.data, four_d[7, 2])


def test_dkl_runs_on_a_replay_built_from_files(hspy_pair: tuple[pathlib.Path, pathlib.Path, _NDArray, _NDArray], tmp_path: pathlib.Path) -> None:
    from nion_autoem.plans.dkl_spectroscopy import DKLSettings
    from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
    from nion_autoem.plans.dkl_spectroscopy import band_integral
    from nion_autoem.runner import ExperimentRunner
    from nion_autoem.runner import RunState
    from nion_autoem_dkl.agent import AgentConfig

    survey_path, si_path, _, _ = hspy_pair
    scope = ReplayMicroscope.from_files(survey_path, si_path)
    plan = DKLSpectroscopy(band_integral((1.0, 3.0)), DKLSettings(max_measurements=5, patch_size=8, stride=4),
                           AgentConfig(n_initial=3, seed=1, full_iterations=10))
    progress = ExperimentRunner(scope, plan, run_dir=tmp_path / "run").run()
    assert progress.state is RunState.FINISHED, progress.message
    assert len(plan.values) == 5


def test_a_spectrum_image_of_another_field_or_not_in_ev_is_refused(hspy_pair: tuple[pathlib.Path, pathlib.Path, _NDArray, _NDArray],
                                                                   tmp_path: pathlib.Path) -> None:
    survey_path, _, _, si = hspy_pair
    write(tmp_path / "wide.hspy", signal_dict(si, si_axes(20.0, 24), "EELS SI"))
    with pytest.raises(ValueError, match=r"wide\.hspy: the spectrum image does not cover the survey's field"):
        ReplayMicroscope.from_files(survey_path, tmp_path / "wide.hspy")
    axes = si_axes(12.0, 24)
    axes[2] = ("Wavelength", 400.0, 1.0, "mrad", False)
    write(tmp_path / "mrad.hspy", signal_dict(si, axes, "not EELS"))
    with pytest.raises(ValueError, match=r"mrad\.hspy: .*must be in eV"):
        ReplayMicroscope.from_files(survey_path, tmp_path / "mrad.hspy")
    with pytest.raises(ValueError, match=r"si\.hspy.*survey must be a 2D image"):
        ReplayMicroscope.from_files(hspy_pair[1], hspy_pair[1])


# --- errors ------------------------------------------------------------------------------------------


def test_missing_and_unknown_files_are_named(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.dm4"):
        files.read_file(tmp_path / "nothing.dm4")
    (tmp_path / "notes.xyz").write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.xyz: unknown file extension '\.xyz'; supported: .*dm3, dm4.*hspy.*ndata"):
        files.read_file(tmp_path / "notes.xyz")
    assert {"dm3", "dm4", "emd", "hspy", "nxs", "ndata", "h5"} <= set(files.supported_extensions())


@pytest.mark.parametrize("name", ["image.dm4", "image.dm3", "image.emd", "image.hspy", "image.ndata", "image.h5"])
def test_a_file_of_the_wrong_kind_is_named_with_the_readers_complaint(tmp_path: pathlib.Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("this is a text file, not a microscope recording\n" * 20)
    with pytest.raises(ValueError, match=re.escape(name) + r": cannot be read as a .* file"):
        files.read_file(path)


def test_truncated_files_are_named(hspy_pair: tuple[pathlib.Path, pathlib.Path, _NDArray, _NDArray], tmp_path: pathlib.Path) -> None:
    from nion.swift.model import NDataHandler
    _, si_path, _, _ = hspy_pair
    whole = si_path.read_bytes()
    (tmp_path / "cut.hspy").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"cut\.hspy: cannot be read as a HSPY file \(truncated"):
        files.read_file(tmp_path / "cut.hspy")
    data = numpy.arange(24.0).reshape(2, 3, 4)
    NDataHandler.write_zip(str(tmp_path / "whole.ndata"), data, swift_properties(data.shape))
    whole = (tmp_path / "whole.ndata").read_bytes()
    (tmp_path / "cut.ndata").write_bytes(whole[: len(whole) - 40])
    with pytest.raises(ValueError, match=r"cut\.ndata: cannot be read as a Swift \.ndata file"):
        files.read_file(tmp_path / "cut.ndata")


def test_a_zip_or_hdf5_that_is_not_swifts_is_named(tmp_path: pathlib.Path) -> None:
    import h5py
    with zipfile.ZipFile(tmp_path / "other.ndata", "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(ValueError, match=r"other\.ndata: is a zip file but not a Swift \.ndata file"):
        files.read_file(tmp_path / "other.ndata")
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.create_dataset("image", data=numpy.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"other\.h5: is an HDF5 file but not a Swift \.h5 file"):
        files.read_file(tmp_path / "other.h5")


def test_an_uncalibrated_file_is_refused_unless_asked_not_to(tmp_path: pathlib.Path) -> None:
    survey, _ = recording()
    write(tmp_path / "raw.hspy", signal_dict(survey, [("y", 0.0, 1.0, "", False), ("x", 0.0, 1.0, "<undefined>", False)], "raw"))
    with pytest.raises(ValueError, match=r"raw\.hspy: the file has no calibration for axis 0: scale 1, units ''.*pixel size in nm"):
        files.read_file(tmp_path / "raw.hspy")
    with pytest.raises(ValueError, match=r"raw\.hspy: the file has no calibration"):
        ReplayMicroscope.from_files(tmp_path / "raw.hspy")
    assert files.read_file(tmp_path / "raw.hspy", require_calibration=False).data_shape == (48, 48)
