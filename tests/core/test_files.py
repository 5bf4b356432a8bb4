"""Reading recorded files (real DM3/DM4 and Velox EMD files; HSPY, NCEM EMD, NeXus, Swift .h5/.ndata written here) into calibrated niondata and replaying them."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
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


# --- real DM3 / DM4 / Velox EMD files (tests/data/files: see its README for where they come from) ------------------

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "files"
#: unpacked name -> sha256 of the unpacked file (as published by HyperSpy / RosettaSciIO)
SAMPLES = {
    "test_STEM_image.dm3": "fcba806af75bc3c2e50e7d7b0626cba545c1464f39e99c8922b225b0b0b0224c",
    "test_diffraction_pattern.dm3": "ebd6c192ce39e6bd5e67e2c6d53a36809307723023b16c9e149c7afbc3ef601a",
    "test-MonarcCL_mono-image.dm4": "4ea04a10ad46595de79a20c283555f299dd07b4667f6112b44db1699f28993b6",
    "EELS_SI.dm4": "f9b8203f384cc355437594b649d4ea3a12cddeb231ebb65508a841a379fa171a",
    "test-1.dm4": "c02359ad86d741d90e7ec981ef0a38a682f38f5156a196d95992c419f490255f",
    "1532_Camera_Ceta.emd": "38c4e684307271adeda37e88a0ca0ca7007636ef543fefed4a652fffaf644200",
    "fei_emd_si.emd": "f4c29211588e7b1bd3cdf1d61bccb5eb406f860fe2f654e5c4a02f7241c7b86f",
    "fei_example_dpc_titles.emd": "c06422c623e7a7b18ed8864c99d34590488b98fef85423ac33e1ea10bef66b2f",
    "fei_example_tem_stack.emd": "397d5076b0133db608abd985985fad275bf6594823393f72a069020e47c21a1e",
    "fei_example_complex_fft.emd": "eec20bd422428dc498334143e2a721aa793e79f399bfe16c21cb8b0313ff0c07",
}


def sample(name: str, folder: pathlib.Path) -> pathlib.Path:
    """The real file ``name`` unpacked into ``folder``, checked against its published sha256."""
    content = gzip.decompress((DATA / f"{name}.gz").read_bytes())
    assert hashlib.sha256(content).hexdigest() == SAMPLES[name], f"{name} is not the published file"
    path = folder / name
    path.write_bytes(content)
    return path


def rsciio_read(path: pathlib.Path, **kwargs: typing.Any) -> list[dict[str, typing.Any]]:
    """What RosettaSciIO itself reads from ``path``: the reference the conversions are checked against."""
    module = importlib.import_module({".dm3": "rsciio.digitalmicrograph", ".dm4": "rsciio.digitalmicrograph", ".emd": "rsciio.emd"}[path.suffix])
    return typing.cast(list[dict[str, typing.Any]], module.file_reader(str(path), **kwargs))


def dm_dimensions(path: pathlib.Path) -> list[dict[str, typing.Any]]:
    """The file's own calibration tags, fastest axis first (DigitalMicrograph's order: x, y, then energy for a spectrum image)."""
    dimension = rsciio_read(path)[0]["original_metadata"]["ImageList"]["TagGroup0"]["ImageData"]["Calibrations"]["Dimension"]
    return [dimension[f"TagGroup{i}"] for i in range(len(dimension))]


def test_the_sample_files_are_the_published_ones_and_the_readme_lists_them(tmp_path: pathlib.Path) -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    stored = sorted(p.name.removesuffix(".gz") for p in DATA.glob("*.gz"))
    assert stored == sorted(SAMPLES)
    for name, digest in SAMPLES.items():
        assert sample(name, tmp_path).stat().st_size > 0
        assert f"`{name}`" in readme and digest in readme
        assert hashlib.sha256((DATA / f"{name}.gz").read_bytes()).hexdigest() in readme
    assert sum((DATA / f"{name}.gz").stat().st_size for name in SAMPLES) < 400_000


def test_dm3_stem_image_is_calibrated_as_its_tags_say_with_its_acquisition_details(tmp_path: pathlib.Path) -> None:
    path = sample("test_STEM_image.dm3", tmp_path)
    image = files.read_file(path)
    raw = rsciio_read(path)[0]
    assert image.data_shape == (68, 68) and image.data.dtype == numpy.uint32
    assert numpy.array_equal(image.data, raw["data"])
    assert (image.data_descriptor.collection_dimension_count, image.data_descriptor.datum_dimension_count) == (0, 2)
    x_tag, y_tag = dm_dimensions(path)
    for calibration, tag in zip(image.dimensional_calibrations, (y_tag, x_tag)):
        assert tag["Units"] == "nm" and calibration.units == "nm"
        assert calibration.scale == pytest.approx(tag["Scale"]) and calibration.offset == pytest.approx(-tag["Origin"] * tag["Scale"])
    assert image.dimensional_calibrations[0].scale == pytest.approx(0.248538, rel=1e-5)
    record = image.metadata["nion_autoem"]["file"]
    assert record["reader"] == "DigitalMicrograph" and record["title"] == "test_STEM_image"
    tem = record["metadata"]["Acquisition_instrument"]["TEM"]  # mapped from the file's own tags, as HyperSpy maps them
    assert tem["dwell_time"] == pytest.approx(3.5e-6) and tem["beam_energy"] == pytest.approx(200.0)
    assert tem["microscope"] == "FEI Titan" and tem["acquisition_mode"] == "STEM"
    json.dumps(image.metadata)


def test_dm3_diffraction_pattern_stays_in_1_per_nm_and_is_no_survey(tmp_path: pathlib.Path) -> None:
    path = sample("test_diffraction_pattern.dm3", tmp_path)
    pattern = files.read_file(path)
    x_tag, y_tag = dm_dimensions(path)
    assert x_tag["Units"] == "1/nm" and [c.units for c in pattern.dimensional_calibrations] == ["1/nm", "1/nm"]
    assert pattern.dimensional_calibrations[1].scale == pytest.approx(x_tag["Scale"]) == pytest.approx(0.174433, rel=1e-5)
    assert pattern.data_shape == (87, 87) and numpy.array_equal(pattern.data, rsciio_read(path)[0]["data"])
    with pytest.raises(ValueError, match=r"test_diffraction_pattern\.dm3: the survey's axes must be calibrated in nm"):
        ReplayMicroscope.from_files(path)


def test_dm4_image_in_micrometres_comes_back_in_nm(tmp_path: pathlib.Path) -> None:
    path = sample("test-MonarcCL_mono-image.dm4", tmp_path)
    image = files.read_file(path)
    x_tag, _ = dm_dimensions(path)
    assert x_tag["Units"] == "\u00b5m"
    assert [c.units for c in image.dimensional_calibrations] == ["nm", "nm"]
    assert image.dimensional_calibrations[1].scale == pytest.approx(x_tag["Scale"] * 1e3) == pytest.approx(18325.35, rel=1e-6)
    assert image.data_shape == (2, 2) and numpy.array_equal(image.data, rsciio_read(path)[0]["data"])
    assert image.intensity_calibration.units == "counts"
    record = image.metadata["nion_autoem"]["file"]
    assert record["original_units"] == ["\u00b5m", "\u00b5m"] and record["signal_type"] == "CL"
    assert record["metadata"]["Acquisition_instrument"]["SEM"]["dwell_time"] == pytest.approx(1e-5)


def test_dm4_eels_spectrum_image_comes_back_scan_first_with_its_energy_axis(tmp_path: pathlib.Path) -> None:
    # DigitalMicrograph stores a spectrum image energy first; RosettaSciIO leaves moving it to HyperSpy (post_process)
    path = sample("EELS_SI.dm4", tmp_path)
    cube = files.read_file(path)
    raw = rsciio_read(path)[0]
    assert raw["data"].shape == (2048, 2, 2)
    descriptor = cube.data_descriptor
    assert cube.data_shape == (2, 2, 2048) and (descriptor.is_sequence, descriptor.collection_dimension_count, descriptor.datum_dimension_count) == (False, 2, 1)
    assert numpy.array_equal(cube.data, numpy.moveaxis(raw["data"], 0, -1))
    assert numpy.array_equal(cube.data[1, 0], raw["data"][:, 1, 0])
    x_tag, y_tag, energy_tag = dm_dimensions(path)
    assert (x_tag["Units"], energy_tag["Units"]) == ("\u00b5m", "eV")
    cy, cx, ce = cube.dimensional_calibrations
    assert cy.units == cx.units == "nm" and cx.scale == pytest.approx(x_tag["Scale"] * 1e3) == pytest.approx(1.992074, rel=1e-6)
    assert ce.units == "eV" and ce.scale == pytest.approx(energy_tag["Scale"]) and ce.offset == pytest.approx(-energy_tag["Origin"] * energy_tag["Scale"])
    assert (ce.offset, ce.scale) == pytest.approx((300.0, 1.0))
    record = cube.metadata["nion_autoem"]["file"]
    assert record["signal_type"] == "EELS" and record["axis_names"] == ["y", "x", "Energy loss"]
    assert cube.intensity_calibration.units == "Counts"
    assert record["metadata"]["Acquisition_instrument"]["TEM"]["convergence_angle"] == pytest.approx(21.0)
    assert "post_process_skipped" not in record


def test_dm4_image_without_a_calibration_is_refused(tmp_path: pathlib.Path) -> None:
    path = sample("test-1.dm4", tmp_path)
    with pytest.raises(ValueError, match=r"test-1\.dm4: the file has no calibration for axis 0: scale 1, units ''"):
        files.read_file(path)
    with pytest.raises(ValueError, match=r"test-1\.dm4: the file has no calibration"):
        ReplayMicroscope.from_files(path)
    raw = files.read_file(path, require_calibration=False)
    assert raw.data_shape == (2, 2) and numpy.array_equal(raw.data, rsciio_read(path)[0]["data"])


def test_velox_camera_image_is_calibrated_as_its_metadata_says(tmp_path: pathlib.Path) -> None:
    path = sample("1532_Camera_Ceta.emd", tmp_path)
    image = files.read_file(path)
    raw = rsciio_read(path)[0]
    assert image.data_shape == (64, 64) and numpy.array_equal(image.data, raw["data"])
    result = raw["original_metadata"]["BinaryResult"]  # Velox's own record: pixel size and offset in metres
    assert (result["PixelUnitX"], result["PixelUnitY"]) == ("m", "m")
    cy, cx = image.dimensional_calibrations
    assert cy.units == cx.units == "nm"
    assert cx.scale == pytest.approx(float(result["PixelSize"]["width"]) * 1e9) and cy.scale == pytest.approx(float(result["PixelSize"]["height"]) * 1e9)
    assert cx.offset == pytest.approx(float(result["Offset"]["x"]) * 1e9) and cy.offset == pytest.approx(float(result["Offset"]["y"]) * 1e9)
    record = image.metadata["nion_autoem"]["file"]
    assert record["reader"] == "EMD" and record["title"] == "Ceta"
    assert record["metadata"]["Acquisition_instrument"]["TEM"]["beam_energy"] == pytest.approx(80.0)
    json.dumps(image.metadata)


def test_velox_file_of_several_signals_lets_one_be_picked_by_title(tmp_path: pathlib.Path) -> None:
    path = sample("fei_example_dpc_titles.emd", tmp_path)
    titles = ["B-D", "DPC", "iDPC", "DF4-C", "DF4-B", "DF4-A", "A-C", "DF4-D", "Filtered iDPC"]
    signals = files.read_signals(path)
    assert [s.metadata["nion_autoem"]["file"]["title"] for s in signals] == titles
    raw = rsciio_read(path)
    idpc = files.read_file(path, signal="iDPC")
    assert numpy.array_equal(idpc.data, raw[2]["data"])
    assert raw[2]["axes"][0]["units"] == "pm"
    assert [c.units for c in idpc.dimensional_calibrations] == ["nm", "nm"]
    assert idpc.dimensional_calibrations[0].scale == pytest.approx(raw[2]["axes"][0]["scale"] * 1e-3) == pytest.approx(0.0996199, rel=1e-5)
    assert files.read_file(path, signal="DPC").data.dtype == numpy.complex64
    assert files.read_file(path).metadata["nion_autoem"]["file"]["title"] == "B-D"
    with pytest.raises(ValueError, match=r"fei_example_dpc_titles\.emd: no signal titled 'HAADF'; it holds \['B-D', 'DPC', 'iDPC'"):
        files.read_file(path, signal="HAADF")


def test_velox_stack_of_frames_is_a_sequence_in_nm(tmp_path: pathlib.Path) -> None:
    path = sample("fei_example_tem_stack.emd", tmp_path)
    stack = files.read_file(path)
    raw = rsciio_read(path)[0]
    assert [(a["name"], a["units"]) for a in raw["axes"]] == [("Time", "s"), ("y", "pm"), ("x", "pm")]
    descriptor = stack.data_descriptor
    assert stack.data_shape == (2, 3, 3) and (descriptor.is_sequence, descriptor.collection_dimension_count, descriptor.datum_dimension_count) == (True, 0, 2)
    time, cy, cx = stack.dimensional_calibrations
    assert time.units == "s" and time.scale == pytest.approx(0.8)
    assert cy.units == cx.units == "nm" and cx.scale == pytest.approx(raw["axes"][2]["scale"] * 1e-3) and cx.offset == pytest.approx(raw["axes"][2]["offset"] * 1e-3)
    assert numpy.array_equal(stack.data, raw["data"])
    with pytest.raises(ValueError, match=r"fei_example_tem_stack\.emd: the survey must be a 2D image"):
        ReplayMicroscope.from_files(path)


def test_velox_reciprocal_units_spelled_with_spaces_are_converted(tmp_path: pathlib.Path) -> None:
    path = sample("fei_example_complex_fft.emd", tmp_path)
    fft = files.read_file(path)
    raw = rsciio_read(path)[0]
    assert raw["axes"][0]["units"] == "1 / \u00b5m"
    assert [c.units for c in fft.dimensional_calibrations] == ["1/nm", "1/nm"]
    assert fft.dimensional_calibrations[0].scale == pytest.approx(raw["axes"][0]["scale"] * 1e-3) == pytest.approx(0.0980158, rel=1e-5)
    assert fft.data.dtype == numpy.complex64 and numpy.array_equal(fft.data, raw["data"])


@pytest.mark.parametrize(("units", "expected"), [("\u00b5m", ("nm", 1e3)), ("\u03bcm", ("nm", 1e3)), ("um", ("nm", 1e3)), ("\u00c5", ("nm", 0.1)), ("pm", ("nm", 1e-3)),
                                                 ("1/nm", ("1/nm", 1.0)), ("1 / nm", ("1/nm", 1.0)), ("nm^-1", ("1/nm", 1.0)), ("\u00c5^-1", ("1/nm", 10.0)),
                                                 ("1 / \u00b5m", ("1/nm", 1e-3)), ("keV", ("eV", 1e3)), ("eV", ("eV", 1.0)), ("mrad", ("mrad", 1.0)), ("", ("", 1.0))])
def test_unit_spellings(units: str, expected: tuple[str, float]) -> None:
    new_units, factor = files.calibration_units(units)
    assert new_units == expected[0] and factor == pytest.approx(expected[1])


def hide_sparse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make RosettaSciIO believe ``sparse`` is not installed (it asks importlib.util.find_spec)."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "sparse" else find_spec(name, *args))


def test_velox_spectrum_image_without_sparse_keeps_its_image_and_says_what_to_install(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = sample("fei_emd_si.emd", tmp_path)
    hide_sparse(monkeypatch)
    haadf = files.read_file(path, signal="HAADF")
    assert haadf.data_shape == (16, 16) and [c.units for c in haadf.dimensional_calibrations] == ["nm", "nm"]
    assert haadf.dimensional_calibrations[0].scale == pytest.approx(5.302415, rel=1e-6)
    assert "sparse" in haadf.metadata["nion_autoem"]["file"]["not_read"][0]
    with pytest.raises(ValueError, match=r"fei_emd_si\.emd: no signal titled 'EDS'; it holds \['HAADF'\]; not read: its spectrum image\(s\): .*'sparse'.*pip install sparse"):
        files.read_file(path, signal="EDS")
    with pytest.warns(UserWarning, match=r"fei_emd_si\.emd: not read: its spectrum image"):
        assert len(files.read_signals(path)) == 1
    with pytest.raises(ValueError, match=r"fei_emd_si\.emd: no signal titled 'EDS'.*'sparse'"):
        ReplayMicroscope.from_files(path, path, survey_signal="HAADF", spectrum_signal="EDS")
    scope = ReplayMicroscope.from_files(path, survey_signal="HAADF")  # the survey alone needs no sparse
    assert scope.recorded_frame.shape == (16, 16) and scope.recorded_frame.fov_nm == pytest.approx(16 * 5.302415, rel=1e-6)
    assert numpy.array_equal(scope.survey().xdata.data, haadf.data)


def test_velox_spectrum_image_reads_in_ev_and_replays_with_its_haadf_image(tmp_path: pathlib.Path) -> None:
    import sparse  # noqa: F401  (RosettaSciIO needs it for Velox spectrum images; the dev extra installs it, so this never skips)

    path = sample("fei_emd_si.emd", tmp_path)
    raw = rsciio_read(path)
    assert [d["metadata"]["General"]["title"] for d in raw] == ["HAADF", "EDS"]
    energy_axis = raw[1]["axes"][2]
    assert energy_axis["units"] == "keV" and (energy_axis["scale"], energy_axis["offset"]) == pytest.approx((0.01, -1.0))
    cube = files.read_file(path, signal="EDS")
    assert cube.data_shape == (16, 16, 4096) and (cube.data_descriptor.collection_dimension_count, cube.data_descriptor.datum_dimension_count) == (2, 1)
    assert numpy.array_equal(cube.data, numpy.asarray(raw[1]["data"])) and cube.data.sum() > 0
    cy, cx, ce = cube.dimensional_calibrations
    assert ce.units == "eV" and (ce.scale, ce.offset) == pytest.approx((10.0, -1000.0))
    haadf = files.read_file(path, signal="HAADF")
    hy, hx = haadf.dimensional_calibrations  # the spectrum image was scanned on the HAADF image's frame
    assert (cy.scale, cy.offset, cx.scale, cx.offset) == pytest.approx((hy.scale, hy.offset, hx.scale, hx.offset))
    assert cube.metadata["nion_autoem"]["file"]["signal_type"] == "EDS_TEM"
    scope = ReplayMicroscope.from_files(path, path, survey_signal="HAADF", spectrum_signal="EDS")
    frame = scope.recorded_frame
    assert frame.shape == (16, 16)
    for row, col in [(0, 0), (5, 9), (15, 15)]:
        scope.park_probe(tuple(frame.pixel_to_nm((row, col))))
        spectrum = scope.acquire_spectrum(10).xdata
        assert numpy.array_equal(spectrum.data, cube.data[row, col])
        assert spectrum.dimensional_calibrations[0].offset == pytest.approx(-1000.0) and spectrum.dimensional_calibrations[0].scale == pytest.approx(10.0)


def test_replay_from_a_dm3_survey_and_a_dm4_spectrum_image_of_another_field(tmp_path: pathlib.Path) -> None:
    survey_path, si_path = sample("test_STEM_image.dm3", tmp_path), sample("EELS_SI.dm4", tmp_path)
    scope = ReplayMicroscope.from_files(survey_path)
    assert scope.recorded_frame.shape == (68, 68) and scope.recorded_frame.fov_nm == pytest.approx(68 * 0.248538, rel=1e-5)
    assert numpy.array_equal(scope.survey().xdata.data, rsciio_read(survey_path)[0]["data"])
    # the two real files were recorded on different fields (16.9 nm vs 4 nm): the pairing is refused, naming both
    with pytest.raises(ValueError, match=r"EELS_SI\.dm4: the spectrum image does not cover the survey's field \(.*test_STEM_image\.dm3\)"):
        ReplayMicroscope.from_files(survey_path, si_path)
    with pytest.raises(ValueError, match=r"EELS_SI\.dm4: the survey must be a 2D image, got shape \(2, 2, 2048\)"):
        ReplayMicroscope.from_files(si_path)


@pytest.mark.parametrize(("name", "reader"), [("test_STEM_image.dm3", "DigitalMicrograph"), ("EELS_SI.dm4", "DigitalMicrograph"),
                                              ("1532_Camera_Ceta.emd", "EMD"), ("fei_emd_si.emd", "EMD")])
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_a_truncated_real_file_is_named(tmp_path: pathlib.Path, name: str, reader: str, keep: float) -> None:
    whole = sample(name, tmp_path).read_bytes()
    cut = tmp_path / "cut" / name
    cut.parent.mkdir()
    cut.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(ValueError, match=re.escape(f"{cut}: cannot be read as a {reader} file (truncated")):
        files.read_file(cut)


@pytest.mark.parametrize(("name", "renamed", "reader"), [("test_STEM_image.dm3", "image.emd", "EMD"), ("1532_Camera_Ceta.emd", "image.dm4", "DigitalMicrograph"),
                                                         ("EELS_SI.dm4", "si.hspy", "HSPY")])
def test_a_real_file_of_another_kind_is_named(tmp_path: pathlib.Path, name: str, renamed: str, reader: str) -> None:
    path = sample(name, tmp_path).rename(tmp_path / renamed)
    with pytest.raises(ValueError, match=re.escape(f"{path}: cannot be read as a {reader} file")):
        files.read_file(path)
