"""Two scalarizers side by side: a finished DKL run explored again with another scalarizer, both paths on one survey.

What a DKL experiment explores depends on what it is told to look for: the
magnitude of a diffraction centre-of-mass shift leads it along the domain
walls, its direction across the domains.  :class:`ScalarizerComparison` runs
a second DKL experiment on the first run's survey, with another scalarizer and
the same settings, without the beam:

* on the full recorded dataset (a :class:`~nion_autoem.replay.ReplayMicroscope`
  over the 4D dataset or spectrum image the first run was replayed on), the
  second run may go anywhere;
* on the first run's own measurements alone (a
  :class:`~nion_autoem.replay.RecordedPointsMicroscope` over its journal), it
  may choose only among the positions the first run measured, so its path is
  an order of, and by default half of, those.

It publishes both exploration paths on the survey as one colour image, with
the legend in the caption and both paths' positions as a table (a CSV next to
the journal), besides the second run's own maps.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import typing

import numpy
import numpy.typing
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem import views
from nion_autoem import xdata as xdata_builders
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Microscope
from nion_autoem.journal import read_journal
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import Publish
from nion_autoem.plans.dkl_spectroscopy import SCALARIZERS
from nion_autoem.plans.dkl_spectroscopy import DKLSettings
from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
from nion_autoem.products import Product
from nion_autoem.replay import RecordedPointsMicroscope
from nion_autoem.replay import ReplayMicroscope
from nion_autoem.views import Table
from nion_autoem.xdata import frame_from_xdata
from nion_autoem_dkl.agent import AgentConfig
from nion_autoem_dkl.scalarizers import DIFFRACTION_SCALARIZERS

_NDArray = numpy.typing.NDArray[typing.Any]

#: Colours of the first (recorded) and the second (replayed) path: orange and blue, told apart also by most colour-blind readers.
PATH_COLOURS: tuple[tuple[int, int, int], tuple[int, int, int]] = ((255, 140, 0), (64, 140, 255))
#: Positions both paths measured are ringed in this colour.
SHARED_COLOUR = (255, 255, 255)
# The overlay is drawn on the survey enlarged to at least this many pixels a side, so discs and lines stay visible on a small survey.
_OVERLAY_MIN_SIDE = 384


@dataclasses.dataclass(frozen=True)
class ExplorationPath:
    """Where a DKL run measured, in order, and what its scalarizer said there.

    Attributes
    ----------
    scalarizer : str
        The scalarizer's name (see :data:`~nion_autoem.plans.dkl_spectroscopy.SCALARIZERS`), or ``"recorded"`` if the run did not say.
    positions_nm : (n, 2) ndarray
        Scan positions (y, x) in nm, in the order measured.
    values : (n,) ndarray
        The scalarized value at each.
    run_id : str
        The run it came from.
    """

    scalarizer: str
    positions_nm: _NDArray
    values: _NDArray
    run_id: str = ""

    @property
    def title(self) -> str:
        """What a microscopist calls the scalarizer."""
        return SCALARIZERS.get(self.scalarizer, f"{self.scalarizer} scalarizer")


def recorded_path(run_dir: str | pathlib.Path) -> ExplorationPath:
    """The exploration path of a journaled DKL run.

    Parameters
    ----------
    run_dir : path-like
        A run directory written by a :class:`DKLSpectroscopy` run.

    Raises
    ------
    ValueError
        If the journal is not a DKL run's or holds no measurement.
    """
    record = read_journal(run_dir)
    if record.header.get("plan") != DKLSpectroscopy.name:
        raise ValueError(f"run_dir must hold a DKL run's journal (plan {DKLSpectroscopy.name!r}), {run_dir} holds plan {record.header.get('plan')!r}")
    steps = [step for step in record.steps if step.entry.get("measurement_kind") in ("spectrum", "camera") and step.entry.get("position_nm")]
    if not steps:
        raise ValueError(f"the DKL run in {run_dir} measured nothing, so it has no exploration path to compare")
    parameters = dict(record.header.get("parameters") or {})
    name = str(dict(parameters.get("scalarizer") or {}).get("name") or "recorded")
    values = [float(step.entry.get("result", {}).get("value", math.nan)) for step in steps]
    return ExplorationPath(name, numpy.asarray([step.entry["position_nm"] for step in steps], dtype=float), numpy.asarray(values),
                           str(record.header.get("run_id") or ""))


def _known_fields(cls: type[typing.Any], values: typing.Mapping[str, typing.Any]) -> dict[str, typing.Any]:
    """The entries of ``values`` that ``cls`` (a dataclass) still has: a journal from an older version may hold others.

    None is left out, so the default applies: JSON has no infinity, and the
    journal writes an unlimited budget (``inf``) as null.
    """
    names = {field.name for field in dataclasses.fields(cls)}
    return {key: value for key, value in values.items() if key in names and value is not None}


def recorded_settings(run_dir: str | pathlib.Path) -> tuple[DKLSettings, AgentConfig]:
    """The settings and agent configuration a journaled DKL run was started with."""
    parameters = dict(read_journal(run_dir).header.get("parameters") or {})
    settings = _known_fields(DKLSettings, dict(parameters.get("settings") or {}))
    if settings.get("survey_frame"):
        settings["survey_frame"] = ScanFrame.from_dict(settings["survey_frame"])
    return DKLSettings(**settings), AgentConfig(**_known_fields(AgentConfig, dict(parameters.get("agent") or {})))


def recorded_survey(run_dir: str | pathlib.Path) -> DataAndMetadata.DataAndMetadata | None:
    """The survey a journaled run recorded, or None if it was given one."""
    for step in read_journal(run_dir).steps:
        if step.entry.get("measurement_kind") == "survey":
            return step.load_measurement().xdata
    return None


def paths_overlay(image: _NDArray, paths_px: typing.Sequence[_NDArray], *, colours: typing.Sequence[tuple[int, int, int]] = PATH_COLOURS,
                  radius_px: float = 2.0) -> _NDArray:
    """The survey in grey with each exploration path drawn in its colour: a disc per position, a faint line in the order measured.

    Positions that more than one path measured get a white ring.

    Parameters
    ----------
    image : (rows, cols) ndarray
        The survey.
    paths_px : sequence of (n, 2) ndarrays
        Each path's positions in the image's pixels (row, col), in order.
    colours : sequence of (r, g, b)
        One colour per path.
    radius_px : float
        Disc radius in pixels.

    Returns
    -------
    (rows, cols, 3) uint8 ndarray
        Red, green, blue.

    Examples
    --------
    >>> rgb = paths_overlay(numpy.zeros((20, 20)), [numpy.array([[5.0, 5.0], [5.0, 15.0]]), numpy.array([[15.0, 15.0]])], radius_px=1)
    >>> rgb[5, 5].tolist(), rgb[15, 15].tolist(), rgb[5, 10].tolist() != [0, 0, 0], rgb[0, 0].tolist()
    ([255, 140, 0], [64, 140, 255], True, [0, 0, 0])
    """
    if len(colours) < len(paths_px):
        raise ValueError(f"colours must give one colour per path, got {len(colours)} colours for {len(paths_px)} paths")
    rgb = views.class_overlay(image, numpy.zeros((0, 2)), numpy.zeros(0, dtype=int), [])
    for path, colour in zip(paths_px, colours):
        points = numpy.asarray(path, dtype=float).reshape(-1, 2)
        faint = numpy.asarray(colour, dtype=float) * 0.55
        for start, end in zip(points[:-1], points[1:]):
            steps = int(math.ceil(float(numpy.abs(end - start).max()))) + 1
            line = numpy.round(start + numpy.linspace(0.0, 1.0, steps)[:, numpy.newaxis] * (end - start)).astype(int)
            inside = (line[:, 0] >= 0) & (line[:, 0] < rgb.shape[0]) & (line[:, 1] >= 0) & (line[:, 1] < rgb.shape[1])
            rgb[line[inside, 0], line[inside, 1]] = numpy.maximum(rgb[line[inside, 0], line[inside, 1]], faint.astype(numpy.uint8))
    rounded = [{(int(round(y)), int(round(x))) for y, x in numpy.asarray(path, dtype=float).reshape(-1, 2)} for path in paths_px]
    shared = [p for p in set().union(*rounded) if sum(p in r for r in rounded) > 1] if rounded else []
    if shared:
        ring = views.class_overlay(numpy.zeros(rgb.shape[:2]), numpy.asarray(shared, dtype=float), numpy.zeros(len(shared), dtype=int), ["shared"],
                                   radius_px=radius_px, ringed=range(len(shared)))
        white = numpy.all(ring == 255, axis=2)
        rgb[white] = SHARED_COLOUR
    for path, colour in zip(paths_px, colours):
        points = numpy.asarray(path, dtype=float).reshape(-1, 2)
        if len(points):
            discs = views.class_overlay(numpy.zeros(rgb.shape[:2]), points, numpy.zeros(len(points), dtype=int), ["path"], radius_px=radius_px)
            painted = numpy.any(discs > 0, axis=2)
            rgb[painted] = colour
    return rgb


def comparison_product(survey: DataAndMetadata.DataAndMetadata, frame: ScanFrame, first: ExplorationPath, second: ExplorationPath) -> Product:
    """Both exploration paths on the survey as one colour image, its legend in the caption and both paths as a table.

    Parameters
    ----------
    survey : DataAndMetadata
        The survey both runs chose their positions on.
    frame : ScanFrame
        Its scan geometry.
    first, second : ExplorationPath
        The recorded run's path (orange) and the replay's (blue).

    Returns
    -------
    Product
        Key ``"comparison"``: an RGB image calibrated in nm, and a table
        (path, scalarizer, order, y_nm, x_nm, value) written as CSV by the sink.
    """
    image = numpy.asarray(survey.data, dtype=float)
    factor = max(1, int(math.ceil(_OVERLAY_MIN_SIDE / max(image.shape))))
    enlarged = numpy.kron(image, numpy.ones((factor, factor)))
    big = ScanFrame((image.shape[0] * factor, image.shape[1] * factor), frame.fov_nm, frame.center_nm, frame.rotation_rad)
    paths_px = [big.nm_to_pixel(path.positions_nm).reshape(-1, 2) for path in (first, second)]
    rgb = paths_overlay(enlarged, paths_px, radius_px=max(1.5, factor * 0.75))
    first_set = {tuple(numpy.round(p, 6)) for p in first.positions_nm}
    both = sum(tuple(numpy.round(p, 6)) in first_set for p in second.positions_nm)
    legend = (f"orange: {first.title} ({len(first.positions_nm)} positions, the recorded run {first.run_id}); "
              f"blue: {second.title} ({len(second.positions_nm)} positions, this replay); white rings: measured by both ({both}); "
              f"faint lines join positions in the order measured")
    rows = tuple((label, path.scalarizer, order + 1, float(y), float(x), float(v))
                 for label, path in (("recorded", first), ("replay", second))
                 for order, ((y, x), v) in enumerate(zip(path.positions_nm, path.values)))
    table = Table(("path", "scalarizer", "order", "y_nm", "x_nm", "value"), rows)
    metadata = {"nion_autoem": {"legend": legend, "colours": {"recorded": list(PATH_COLOURS[0]), "replay": list(PATH_COLOURS[1])},
                                "paths": {"recorded": {"scalarizer": first.scalarizer, "positions_nm": first.positions_nm.tolist()},
                                          "replay": {"scalarizer": second.scalarizer, "positions_nm": second.positions_nm.tolist()}}}}
    # niondata keeps a colour image as B, G, R (the bytes of a little-endian BGRA pixel): swapped, Swift shows the legend's colours.
    xdata = DataAndMetadata.new_data_and_metadata(numpy.ascontiguousarray(rgb[..., ::-1]), intensity_calibration=Calibration.Calibration(),
                                                  dimensional_calibrations=list(xdata_builders.frame_calibrations(big)), metadata=metadata,
                                                  data_descriptor=DataAndMetadata.DataDescriptor(False, 0, 2))
    return Product("comparison", f"DKL paths: {first.scalarizer} vs {second.scalarizer}", xdata, caption=legend, table=table)


class ScalarizerComparison:
    """A DKL run on a finished run's survey with another scalarizer, then both exploration paths on one survey.

    Build it with :func:`comparison_from_run`, which also gives the replay
    microscope to run it on.

    Parameters
    ----------
    first : ExplorationPath
        The recorded run's path.
    second : DKLSpectroscopy
        The replay with the other scalarizer (given the recorded survey).
    """

    name = "dkl-scalarizer-comparison"

    def __init__(self, first: ExplorationPath, second: DKLSpectroscopy) -> None:
        self.first = first
        self.second = second

    @property
    def parameters(self) -> dict[str, typing.Any]:
        return {"recorded_run": self.first.run_id, "recorded_scalarizer": self.first.scalarizer, "replay": dict(self.second.parameters)}

    @property
    def model_version(self) -> str:
        return self.second.model_version

    def fraction_done(self) -> float | None:
        return self.second.fraction_done()

    @property
    def second_path(self) -> ExplorationPath:
        """The replay's path so far."""
        return ExplorationPath(self.second.scalarizer_name or "replay", self.second.measured_positions_nm, numpy.asarray(self.second.values, dtype=float))

    def messages(self) -> PlanGenerator:
        outcome = yield from self.second.messages()
        survey, frame = self.second.survey, self.second.frame
        assert survey is not None and frame is not None
        yield Publish(comparison_product(survey, frame, self.first, self.second_path))
        return f"{self.second_path.title}: {outcome}; both paths are in 'DKL paths'"


def comparison_from_run(run_dir: str | pathlib.Path, other_scalarizer: str, *, data: DataAndMetadata.DataAndMetadata | None = None,
                        survey: DataAndMetadata.DataAndMetadata | None = None, band_eV: tuple[float, float] | None = None,
                        measurements: int | None = None) -> tuple[ScalarizerComparison, Microscope]:
    """The comparison of a finished DKL run with another scalarizer, and the replay microscope to run it on (no beam).

    Parameters
    ----------
    run_dir : path-like
        The finished DKL run's directory.
    other_scalarizer : str
        The second scalarizer's name (see :data:`~nion_autoem.plans.dkl_spectroscopy.SCALARIZERS`);
        it must measure with the same detector as the first.  A diffraction
        scalarizer takes the camera centre the run recorded.
    data : DataAndMetadata, optional
        The full recorded dataset the first run was replayed on: a 4D
        dataset (rows, cols, ky, kx) or a spectrum image (rows, cols, energy).
        Without it the replay chooses among the first run's own measurements.
    survey : DataAndMetadata, optional
        The survey, for a first run that was given one instead of recording one.
    band_eV : (low, high), optional
        The energy band of an EELS scalarizer.
    measurements : int, optional
        The replay's budget: by default as many as the first run took on the
        full dataset, half of them on the first run's measurements alone.

    Returns
    -------
    (ScalarizerComparison, Microscope)
        Run the plan on the microscope with the runner (see
        :func:`nion_autoem.swift.console.compare_scalarizers`).

    Raises
    ------
    ValueError
        If the run is not a DKL run, holds no survey and none is given, the
        scalarizers need different detectors, or the budget is not positive.
    """
    first = recorded_path(run_dir)
    settings, agent_config = recorded_settings(run_dir)
    survey = survey if survey is not None else recorded_survey(run_dir)
    if survey is None:
        raise ValueError(f"the run in {run_dir} was given its survey instead of recording one: pass survey= with that image")
    # A diffraction scalarizer measures from the same undeflected-disc position the run used.
    recorded = dict(dict(read_journal(run_dir).header.get("parameters") or {}).get("scalarizer") or {})
    centre = recorded.get("centre") if other_scalarizer in DIFFRACTION_SCALARIZERS else None
    centre = None if centre is None else (float(centre[0]), float(centre[1]))
    replay_plan = DKLSpectroscopy.named(other_scalarizer, settings, agent_config, band_eV=band_eV, centre=centre)
    if replay_plan.settings.detector != settings.detector:
        same = sorted(DIFFRACTION_SCALARIZERS) if settings.detector == "ronchigram" else sorted(set(SCALARIZERS) - set(DIFFRACTION_SCALARIZERS))
        raise ValueError(f"other_scalarizer {other_scalarizer!r} measures with the {replay_plan.settings.detector} detector, but the run in {run_dir} "
                         f"recorded {settings.detector} signals; choose one of {same}")
    scope: Microscope
    if data is not None:
        budget = len(first.positions_nm) if measurements is None else measurements
        restrict = None
        scope = _full_data_microscope(data, survey)
    else:
        budget = max(1, len(first.positions_nm) // 2) if measurements is None else measurements
        restrict = first.positions_nm
        scope = RecordedPointsMicroscope.from_journal(run_dir, survey=survey)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"measurements must be a whole number >= 1 (the replay's budget), got {measurements!r}")
    # The survey is given, so the replay takes no survey of its own and its candidates are the first run's.
    settings = dataclasses.replace(replay_plan.settings, max_measurements=budget, survey_frame=None)
    second = DKLSpectroscopy.named(other_scalarizer, settings, agent_config, band_eV=band_eV, centre=centre, survey=survey, restrict_to_nm=restrict)
    return ScalarizerComparison(first, second), scope


def _full_data_microscope(data: DataAndMetadata.DataAndMetadata, survey: DataAndMetadata.DataAndMetadata) -> ReplayMicroscope:
    """A replay of the full dataset whose scan frame is the survey's (the candidates' positions refer to it)."""
    ndim = len(tuple(data.data_shape))
    if ndim == 4:
        return ReplayMicroscope.from_4d(data, survey=survey)
    if ndim == 3:
        ReplayMicroscope.from_spectrum_image(data)  # refuses a spectrum image without scan axes in nm and an energy axis in eV
        energy = data.dimensional_calibrations[-1]
        return ReplayMicroscope(numpy.asarray(survey.data, dtype=float), frame_from_xdata(survey), spectrum_image=numpy.asarray(data.data, dtype=float),
                                energy_axis=(float(energy.offset), float(energy.scale)))
    raise ValueError(f"data must be the recorded 4D dataset (rows, cols, ky, kx) or spectrum image (rows, cols, energy), got shape {tuple(data.data_shape)}")
