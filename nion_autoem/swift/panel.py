"""The "Autonomous Experiment" panel: choose an experiment, start, pause, stop, watch.

The panel only gathers parameters and shows progress.  The experiment runs on
the runner's worker thread; progress comes back through the document
controller's queue, so the UI thread does no more than update two widgets.
"""

from __future__ import annotations

import dataclasses
import gettext
import pathlib
import threading
import typing

import numpy
import numpy.typing
from nion.data import DataAndMetadata
from nion.swift import Panel
from nion.swift import Workspace
from nion.swift.model import Graphics
from nion.ui import Declarative
from nion.utils import Model
from nion.utils import Registry

from nion_autoem import dose_map
from nion_autoem.dry_run import DryRunReport
from nion_autoem.dry_run import dry_run
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import InstrumentError
from nion_autoem.plan import Plan
from nion_autoem.plans import PointSpectroscopy
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import Progress
from nion_autoem.swift import quiet_collections
from nion_autoem.swift.console import find_atoms_in_data_item
from nion_autoem.swift.console import replay_dkl_on_spectrum_image
from nion_autoem.swift.console import start_experiment
from nion_autoem.swift.dose_history import LiveScanDose
from nion_autoem.swift.dose_history import publisher_for
from nion_autoem.swift.dose_history import session_dose
from nion_autoem.swift.live_atoms import LiveAtomFinder
from nion_autoem.swift.microscope import SwiftMicroscope
from nion_autoem.xdata import frame_from_xdata
from nion_autoem_dkl.agent import ACQUISITIONS as AGENT_ACQUISITIONS

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController

_ = gettext.gettext

PANEL_ID = "nion-autoem-experiment-panel"
#: The dry run warns when a plan would take an area of the sample past this mean dose (about where S starts to sputter from MoS2 at 60 kV).
DEFAULT_DOSE_LIMIT_E_PER_NM2 = 1e8
#: Port of the remote plan queue when switched on from the panel (None: the server's default, 47211).
REMOTE_PORT: int | None = None


def planned_exposures(report: DryRunReport) -> list[dose_map.Exposure]:
    """What a dry run says the plan would deliver, as exposures for the dose map."""
    return ([dose_map.Exposure(d, frame=f, label="planned survey") for f, d in zip(report.surveyed_frames, report.survey_dose_e, strict=True) if d > 0]
            + [dose_map.Exposure(d, position_nm=p, label="planned dwell") for p, d in zip(report.probe_path_nm, report.point_dose_e, strict=True) if d > 0])


@dataclasses.dataclass(frozen=True)
class PanelParameters:
    """What the panel's fields say; each experiment takes what it needs."""

    points: int
    exposure_ms: float
    band_eV: tuple[float, float]
    acquisition: str
    patch_size: int
    field_nm: float = 3.0
    drawn_points_nm: tuple[tuple[float, float], ...] = ()
    drawn_frame: ScanFrame | None = None
    survey: DataAndMetadata.DataAndMetadata | None = None
    #: The spectrometer's energy axis (first, last channel in eV), where an instrument says it.
    energy_range_eV: tuple[float, float] | None = None
    #: What a 4D-STEM DKL run learns: a name from DIFFRACTION_SCALARIZERS.
    scalarizer: str = "com_magnitude"
    #: What a forecast watch acts before, and how.
    condition: str = "white-line ratio below 2.1 within 8 s"
    response: str = "fresh_area"
    #: A search: the region (centre, size) in stage nm, the saved examples (a support-set folder), the class to find, and the edge that verifies it (0: none).
    region_nm: tuple[tuple[float, float], tuple[float, float]] | None = None
    examples: str = ""
    target_class: str = ""
    verify_edge_eV: float = 0.0
    #: What each verified target is handed to: a name of nion_autoem.plans.search.HAND_OFFS.
    then: str = "nothing"


@dataclasses.dataclass(frozen=True)
class ExperimentChoice:
    """An experiment the panel offers: a title, how to build its plan, the fields it uses and what it counts."""

    title: str
    make_plan: typing.Callable[[PanelParameters], Plan]
    fields: frozenset[str] = frozenset()
    count: str = "Points"
    #: How to start it when starting is more than running the plan (e.g. binning the camera first); the plan's own start by default.
    start: typing.Callable[[PanelParameters, DocumentController.DocumentController, Budget], ExperimentRunner] | None = None


def _point_spectroscopy(p: PanelParameters) -> Plan:
    return PointSpectroscopy(points=p.points, exposure_ms=p.exposure_ms, band_eV=p.band_eV)


def _dkl_spectroscopy(p: PanelParameters) -> Plan:
    # imported here so the panel loads even if torch is slow to import
    from nion_autoem.plans.dkl_spectroscopy import DKLSettings
    from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
    from nion_autoem.plans.dkl_spectroscopy import band_integral
    from nion_autoem_dkl.agent import AgentConfig
    return DKLSpectroscopy(band_integral(p.band_eV), DKLSettings(patch_size=p.patch_size, stride=max(p.patch_size // 4, 1), exposure_ms=p.exposure_ms,
                                                                 max_measurements=p.points), AgentConfig(acquisition=typing.cast(typing.Any, p.acquisition)),
                           survey=p.survey)


def _dkl_4dstem_settings(p: PanelParameters) -> typing.Any:
    from nion_autoem.plans.dkl_spectroscopy import DKLSettings
    return DKLSettings(patch_size=p.patch_size, stride=max(p.patch_size // 4, 1), exposure_ms=p.exposure_ms, max_measurements=p.points)


def _dkl_4dstem(p: PanelParameters) -> Plan:
    from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
    from nion_autoem_dkl.agent import AgentConfig
    return DKLSpectroscopy.named(p.scalarizer, _dkl_4dstem_settings(p), AgentConfig(acquisition=typing.cast(typing.Any, p.acquisition)), survey=p.survey)


def _start_dkl_4dstem(p: PanelParameters, document_controller: DocumentController.DocumentController, budget: Budget) -> ExperimentRunner:
    # the console's call bins the Ronchigram camera for the run and puts the user's binning back afterwards
    from nion_autoem.swift.console import start_dkl_4dstem
    return start_dkl_4dstem(document_controller=document_controller, scalarizer=p.scalarizer, measurements=p.points, exposure_ms=p.exposure_ms,
                            patch_size=p.patch_size, acquisition=p.acquisition, survey=p.survey)


def _forecast_watch(p: PanelParameters) -> Plan:
    from nion_autoem.plans.forecast_watch import ForecastWatch
    from nion_autoem.plans.forecast_watch import WatchSettings
    from nion_autoem_forecast.conditions import parse_condition
    return ForecastWatch(WatchSettings(condition=parse_condition(p.condition), response=typing.cast(typing.Any, p.response), exposure_ms=p.exposure_ms,
                                       max_spectra=p.points))


def _start_forecast_watch(p: PanelParameters, document_controller: DocumentController.DocumentController, budget: Budget) -> ExperimentRunner:
    # on the in-situ oxide twin: usim's own spectra do not change under the beam (the console's call takes any microscope)
    from nion_autoem.swift.console import watch_with_forecast
    return watch_with_forecast(p.condition, p.response, document_controller=document_controller, exposure_ms=p.exposure_ms, max_spectra=p.points)


def _atom_finding(p: PanelParameters) -> Plan:
    from nion_autoem.plans.atom_finding import AtomFinding
    from nion_autoem.swift.models_panel import production_ensemble
    # a field the model can resolve: 256 pixels over a few nm (the model says so if the field is too coarse);
    # the repository's mos2@production when there is one (the Models panel), the packaged model otherwise
    return AtomFinding(frames=p.points, survey_frame=ScanFrame((256, 256), p.field_nm), ensemble=production_ensemble("mos2"))


def _vacancy_line(p: PanelParameters) -> Plan:
    from nion_autoem.plans.beam_targeting import BeamTargeting
    from nion_autoem.plans.beam_targeting import TargetingSettings
    half = 0.4 * p.field_nm
    return BeamTargeting(TargetingSettings(ScanFrame((256, 256), p.field_nm), line=((0.0, -half), (0.0, half), 0.35), max_targets=p.points))


def _drawn_targets(p: PanelParameters) -> Plan:
    from nion_autoem.plans.beam_targeting import BeamTargeting
    from nion_autoem.plans.beam_targeting import TargetingSettings
    if p.drawn_frame is None or not p.drawn_points_nm:
        raise ValueError("select a survey image with point graphics on the S columns to target (draw them with the point tool)")
    return BeamTargeting(TargetingSettings(p.drawn_frame, points_nm=p.drawn_points_nm, max_targets=max(p.points, len(p.drawn_points_nm))))


def _is_map_rule(text: str) -> bool:
    """'lattice_strength >= 20' (a rule on the sample map) rather than a class name."""
    return any(op in text for op in ("<", ">", "="))


def _search(p: PanelParameters) -> Plan:
    from nion_autoem.plans.sample_map import Rule
    from nion_autoem.plans.sample_map import signpost_plan
    from nion_autoem.plans.search import HAND_OFFS
    from nion_autoem.plans.search import search_plan
    from nion_autoem.plans.tile_classification import resolve_support

    if p.region_nm is None:
        raise ValueError("draw a rectangle (not labelled) over the region to search on the selected overview or montage first")
    then = HAND_OFFS[p.then]
    if _is_map_rule(p.target_class):
        # a signpost on the map: montage, map, then the tiles whose value passes the rule (no examples needed)
        rule = Rule.parse(p.target_class)
        centre, size = p.region_nm
        fov = min(8000.0, min(size))
        return signpost_plan(centre, size, rule, wanted=p.points, tile_fov_nm=fov, tile_px=256, then=then)
    support = resolve_support(p.examples)
    if p.target_class not in support.class_names:
        raise ValueError(f"{p.target_class!r} has no examples in {p.examples}; its classes are {list(support.class_names)}")
    if support.tile_nm is None or support.tile_px is None:
        raise ValueError(f"the examples in {p.examples} carry no tile size in nm, so the montage's sampling is unknown: label them on a calibrated image")
    # the montage is taken at the examples' sampling, so the classifier sees what it was shown
    pixel_nm = support.tile_nm / support.tile_px
    centre, size = p.region_nm
    # overview tiles of up to 256 px (larger tiles register better: fewer, larger overlaps) at the examples' pixel size,
    # never larger than the region (a region smaller than a 64 px tile is too small to montage)
    tile_px = int(min(256, min(size) / pixel_nm))
    if tile_px < 64:
        raise ValueError(f"the region ({size[0]:.0f} × {size[1]:.0f} nm) is smaller than a 64 px tile at the examples' {pixel_nm:.3g} nm per pixel: "
                         "draw a larger rectangle")
    return search_plan(centre, size, support, p.target_class, wanted=p.points, max_visits=max(3 * p.points, p.points + 5), tile_fov_nm=tile_px * pixel_nm,
                       tile_px=tile_px, verify_edge_eV=p.verify_edge_eV or None, then=then)


ACQUISITIONS = list(AGENT_ACQUISITIONS)
#: What a search hands each verified target to (names of nion_autoem.plans.search.HAND_OFFS), in the panel's words.
HAND_OFF_TITLES = {"nothing": _("nothing more"), "closer look": _("a closer look (300 nm)"), "spectra across it": _("5 spectra across it")}
#: What a 4D-STEM DKL run can learn, in the panel's words.
SCALARIZER_TITLES = {"com_magnitude": _("centre-of-mass shift (magnitude)"), "com_angle": _("centre-of-mass shift (direction)")}

EXPERIMENTS: list[ExperimentChoice] = [
    ExperimentChoice(_("Point spectroscopy (survey → features → EELS)"), _point_spectroscopy, frozenset({"exposure", "band"}), _("Spectra")),
    ExperimentChoice(_("DKL active spectroscopy (structure → spectrum)"), _dkl_spectroscopy, frozenset({"exposure", "band", "acquisition", "patch", "survey"}),
                     _("Spectra")),
    ExperimentChoice(_("ELIT atom finding (live frames)"), _atom_finding, frozenset({"field"}), _("Frames")),
    ExperimentChoice(_("Beam targeting: vacancy line across the field"), _vacancy_line, frozenset({"field"}), _("Targets")),
    ExperimentChoice(_("Beam targeting: S columns at points drawn on the selected image"), _drawn_targets, frozenset(), _("Targets at most")),
    ExperimentChoice(_("DKL 4D-STEM (structure → diffraction centre of mass)"), _dkl_4dstem, frozenset({"exposure", "acquisition", "patch", "survey", "scalarizer"}),
                     _("Frames"), _start_dkl_4dstem),
    ExperimentChoice(_("Forecast watch on the in-situ oxide twin (act before the change)"), _forecast_watch, frozenset({"exposure", "forecast"}),
                     _("Spectra"), _start_forecast_watch),
    ExperimentChoice(_("Search the sample: montage → few-shot classes → go to targets and verify"), _search, frozenset({"search"}), _("Targets")),
]
#: How a forecast watch can act, in the panel's words.
RESPONSES = {"fresh_area": _("move to a fresh area"), "lower_dose_rate": _("lower the dose rate"), "blank_and_wait": _("blank and wait"),
             "capture": _("record a spectrum image")}


def check_parameters(choice: ExperimentChoice, p: PanelParameters) -> None:
    """Refuse, before Start, what the chosen experiment cannot use; the message says what would work."""
    if p.points < 1:
        raise ValueError(f"{choice.count} must be at least 1, got {p.points}")
    if "exposure" in choice.fields and not 0 < p.exposure_ms <= 10_000:
        raise ValueError(f"the exposure must be in (0, 10000] ms, got {p.exposure_ms:g} ms")
    if "band" in choice.fields and not p.band_eV[0] < p.band_eV[1]:
        raise ValueError(f"the band must be (low, high) with low < high, got {p.band_eV[0]:g}–{p.band_eV[1]:g} eV: swap the two values")
    if "band" in choice.fields and p.energy_range_eV is not None:
        first, last = p.energy_range_eV
        if p.band_eV[0] < first or p.band_eV[1] > last:
            raise ValueError(f"the band {p.band_eV[0]:g}–{p.band_eV[1]:g} eV is outside the spectrometer's axis ({first:g} to {last:g} eV): "
                             "choose a band inside it, or change the energy offset / dispersion first")
    if "patch" in choice.fields and not 3 <= p.patch_size <= 128:
        raise ValueError(f"the patch must be 3 to 128 survey pixels, got {p.patch_size}")
    if "search" in choice.fields and _is_map_rule(p.target_class):
        from nion_autoem.plans.sample_map import Rule

        Rule.parse(p.target_class)  # says what a rule must look like
    elif "search" in choice.fields:
        if not p.examples or not (pathlib.Path(p.examples).is_dir() or pathlib.Path(p.examples).name == "support.json") or not pathlib.Path(p.examples).exists():
            raise ValueError(f"the examples must be a saved support set: its folder or its support.json (the Tile Classes panel saves one with each run), "
                             f"got {p.examples!r}")
        if not p.target_class:
            raise ValueError("say what to look for: one of the examples' class names, or a rule on the sample map such as 'orientation_change_deg > 10'")
        if not 0 <= p.verify_edge_eV <= 3000:
            raise ValueError(f"the verifying edge must be 0 (no spectrum) or an edge onset up to 3000 eV, got {p.verify_edge_eV:g} eV")
    if "field" in choice.fields and not 0.5 <= p.field_nm <= 20:
        raise ValueError(f"the field of view must be 0.5 to 20 nm (atomic columns must be resolved), got {p.field_nm:g} nm")


def _stage_nm(xdata: DataAndMetadata.DataAndMetadata, position_nm: numpy.typing.ArrayLike) -> tuple[float, float] | None:
    """The stage position (the sample point at the field's centre) of a point of an image, in nm; None if the image does not say.

    A montage is calibrated in stage coordinates already; a survey that
    nion-autoem took records the stage it was taken at (``stage_nm``), to
    which the point's scan-field position adds.
    """
    y, x = (float(v) for v in numpy.asarray(position_nm, dtype=float).reshape(2))
    record = dict(xdata.metadata.get("nion_autoem", {}))
    if "montage" in record:
        return y, x
    stage = record.get("stage_nm")
    if stage is None:
        return None
    return float(stage[0]) + y, float(stage[1]) + x


class ExperimentPanelController(Declarative.Handler):
    """Declarative handler behind the panel; also usable headless in tests."""

    def __init__(self, document_controller: DocumentController.DocumentController) -> None:
        super().__init__()
        self.__document_controller = document_controller
        self.runner: ExperimentRunner | None = None
        self.__listener: typing.Any = None
        self.experiment_index = Model.PropertyModel(0)
        self.points = Model.PropertyModel(8)
        self.exposure_ms = Model.PropertyModel(20.0)
        self.max_steps = Model.PropertyModel(500)
        self.band_low_eV = Model.PropertyModel(5.0)
        self.band_high_eV = Model.PropertyModel(40.0)
        self.acquisition_index = Model.PropertyModel(ACQUISITIONS.index("thompson"))  # the agent's default
        self.patch_size = Model.PropertyModel(16)
        self.field_nm = Model.PropertyModel(3.0)
        #: Mean dose per area (e/nm², over the session map's cells) that the dry run warns about; 0: no limit.
        self.dose_limit = Model.PropertyModel(DEFAULT_DOSE_LIMIT_E_PER_NM2)
        self.use_selected_survey = Model.PropertyModel(False)
        self.live_elit = Model.PropertyModel(False)
        self.live_elit.on_value_changed = self.__live_elit_changed
        self.live_finder: LiveAtomFinder | None = None
        # the remote plan queue (off by default): clients with the token submit allow-listed plans, the runner owns the hardware
        self.remote = Model.PropertyModel(False)
        self.remote.on_value_changed = self.__remote_changed
        self.remote_server: typing.Any = None
        self.count_label = Model.PropertyModel(EXPERIMENTS[0].count)
        self.scalarizer_index = Model.PropertyModel(0)
        self.show_exposure, self.show_band, self.show_dkl, self.show_field = (Model.PropertyModel(False) for _ in range(4))
        self.show_scalarizer, self.show_replay, self.show_forecast = Model.PropertyModel(False), Model.PropertyModel(False), Model.PropertyModel(False)
        self.show_search = Model.PropertyModel(False)
        self.examples = Model.PropertyModel("")
        self.target_class = Model.PropertyModel("")
        self.verify_edge_eV = Model.PropertyModel(0.0)
        self.then_index = Model.PropertyModel(0)
        self.condition = Model.PropertyModel(PanelParameters.condition)
        self.response_index = Model.PropertyModel(0)
        self.running = Model.PropertyModel(False)
        self.idle = Model.PropertyModel(True)
        self.experiment_index.on_value_changed = self.__experiment_changed
        self.__experiment_changed(0)
        self.status = Model.PropertyModel(_("Idle. Choose an experiment and press Start."))
        # the sample's dose history: every experiment and the user's own live scan, in one line here and in "Dose map (this session)"
        self.dose_summary = Model.PropertyModel(_("Dose so far: none recorded in this session."))
        self.__dose = publisher_for(document_controller)
        self.__dose.on_summary = lambda text: setattr(self.dose_summary, "value", text[:1].upper() + text[1:])
        self.__live_dose = self.__follow_live_scan_dose()
        self.plan_summary = Model.PropertyModel(_("Dry run: press Dry run to see the steps, beam-on time and dose before Start."))
        self.percent = Model.PropertyModel(0)
        self.pause_text = Model.PropertyModel(_("Pause"))
        u = Declarative.DeclarativeUI()
        self.ui_view = u.create_column(
            u.create_row(u.create_label(text=_("Experiment")), u.create_combo_box(items=[e.title for e in EXPERIMENTS], current_index="@binding(experiment_index.value)"), u.create_stretch(), spacing=8),
            # only the fields the chosen experiment uses, each with its unit
            u.create_row(u.create_label(text="@binding(count_label.value)"), u.create_line_edit(text="@binding(points.value, converter=int_converter)", width=60),
                         u.create_label(text=_("Max steps")), u.create_line_edit(text="@binding(max_steps.value, converter=int_converter)", width=60), u.create_stretch(), spacing=8),
            u.create_row(u.create_label(text=_("Warn above (e/nm²)")), u.create_line_edit(text="@binding(dose_limit.value, converter=float_converter)", width=120),
                         u.create_stretch(), spacing=8),
            u.create_row(u.create_label(text=_("Exposure (ms)")), u.create_line_edit(text="@binding(exposure_ms.value, converter=float_converter)", width=60),
                         u.create_stretch(), spacing=8, visible="@binding(show_exposure.value)"),
            # rows stay short: the panel must fit beside the usim panels on a 1600 px screen
            u.create_row(u.create_label(text=_("Band (eV)")), u.create_line_edit(text="@binding(band_low_eV.value, converter=float_converter)", width=60),
                         u.create_label(text="–"), u.create_line_edit(text="@binding(band_high_eV.value, converter=float_converter)", width=60),
                         u.create_stretch(), spacing=8, visible="@binding(show_band.value)"),
            u.create_row(u.create_push_button(text=_("Band from interval on selected spectrum"), on_clicked="band_from_selected_spectrum"),
                         u.create_stretch(), spacing=8, visible="@binding(show_band.value)"),
            u.create_row(u.create_label(text=_("Acquisition")), u.create_combo_box(items=ACQUISITIONS, current_index="@binding(acquisition_index.value)"),
                         u.create_label(text=_("Patch (px)")), u.create_line_edit(text="@binding(patch_size.value, converter=int_converter)", width=50),
                         u.create_stretch(), spacing=8, visible="@binding(show_dkl.value)"),
            u.create_row(u.create_check_box(text=_("selected image is the survey"), checked="@binding(use_selected_survey.value)"),
                         u.create_stretch(), spacing=8, visible="@binding(show_dkl.value)"),
            u.create_row(u.create_label(text=_("Learn")), u.create_combo_box(items=list(SCALARIZER_TITLES.values()), current_index="@binding(scalarizer_index.value)"),
                         u.create_stretch(), spacing=8, visible="@binding(show_scalarizer.value)"),
            u.create_row(u.create_label(text=_("Act before")), u.create_line_edit(text="@binding(condition.value)", width=220),
                         u.create_stretch(), spacing=8, visible="@binding(show_forecast.value)"),
            u.create_row(u.create_label(text=_("by")), u.create_combo_box(items=list(RESPONSES.values()), current_index="@binding(response_index.value)"),
                         u.create_stretch(), spacing=8, visible="@binding(show_forecast.value)"),
            # the region is a rectangle drawn on the selected overview or montage (the status says so when there is none)
            u.create_row(u.create_label(text=_("Examples")), u.create_line_edit(text="@binding(examples.value)", placeholder_text=_("saved support-set folder"), width=220),
                         u.create_stretch(), spacing=8, visible="@binding(show_search.value)"),
            u.create_row(u.create_label(text=_("Find")), u.create_line_edit(text="@binding(target_class.value)", placeholder_text=_("class name"), width=120),
                         u.create_label(text=_("verify at (eV)")), u.create_line_edit(text="@binding(verify_edge_eV.value, converter=float_converter)", width=60),
                         u.create_stretch(), spacing=8, visible="@binding(show_search.value)"),
            u.create_row(u.create_label(text=_("Then at each target")), u.create_combo_box(items=list(HAND_OFF_TITLES.values()), current_index="@binding(then_index.value)"),
                         u.create_stretch(), spacing=8, visible="@binding(show_search.value)"),
            u.create_row(u.create_push_button(text=_("Go to selected target or point"), on_clicked="go_to_selected", enabled="@binding(idle.value)"),
                         u.create_stretch(), spacing=8, visible="@binding(show_search.value)"),
            u.create_row(u.create_push_button(text=_("Replay on selected spectrum image"), on_clicked="replay_on_selected_spectrum_image", enabled="@binding(idle.value)"),
                         u.create_stretch(), spacing=8, visible="@binding(show_replay.value)"),
            u.create_row(u.create_label(text=_("Field (nm)")), u.create_line_edit(text="@binding(field_nm.value, converter=float_converter)", width=50),
                         u.create_stretch(), spacing=8, visible="@binding(show_field.value)"),
            u.create_row(u.create_push_button(text=_("Dry run"), on_clicked="dry_run", enabled="@binding(idle.value)"),
                         u.create_push_button(text=_("Start"), on_clicked="start", enabled="@binding(idle.value)"),
                         u.create_push_button(text="@binding(pause_text.value)", on_clicked="toggle_pause", enabled="@binding(running.value)"),
                         u.create_push_button(text=_("Stop"), on_clicked="stop", enabled="@binding(running.value)"), u.create_stretch(), spacing=8),
            u.create_row(u.create_push_button(text=_("Find atoms in selected image"), on_clicked="find_atoms_in_selection", enabled="@binding(idle.value)"),
                         u.create_check_box(text=_("ELIT on every new scan frame"), checked="@binding(live_elit.value)"), u.create_stretch(), spacing=8),
            u.create_row(u.create_check_box(text=_("Remote steering (token required)"), checked="@binding(remote.value)"), u.create_stretch(), spacing=8),
            u.create_label(text="@binding(plan_summary.value)", word_wrap=True),
            u.create_progress_bar(value="@binding(percent.value)", minimum=0, maximum=100),
            u.create_label(text="@binding(status.value)", word_wrap=True, name="status_label"),
            u.create_label(text="@binding(dose_summary.value)", word_wrap=True),
            u.create_stretch(), spacing=4, margin=8)  # hidden rows keep their spacing: keep it small

    def __experiment_changed(self, index: int | None) -> None:
        choice = EXPERIMENTS[index or 0]
        self.count_label.value = choice.count
        self.show_exposure.value = "exposure" in choice.fields
        self.show_band.value = "band" in choice.fields
        self.show_dkl.value = "patch" in choice.fields
        self.show_scalarizer.value = "scalarizer" in choice.fields
        self.show_replay.value = "patch" in choice.fields and "band" in choice.fields
        self.show_forecast.value = "forecast" in choice.fields
        self.show_field.value = "field" in choice.fields
        self.show_search.value = "search" in choice.fields

    def __set_running(self, running: bool) -> None:
        self.running.value = running
        self.idle.value = not running

    @property
    def int_converter(self) -> typing.Any:
        from nion.utils import Converter
        return Converter.IntegerToStringConverter()

    @property
    def float_converter(self) -> typing.Any:
        from nion.utils import Converter
        return Converter.FloatToStringConverter(format="{:.1f}")

    def __follow_live_scan_dose(self) -> LiveScanDose | None:
        """Count the user's own live scan frames in the session's dose map (None without a scan device)."""
        try:
            scope = SwiftMicroscope()
        except InstrumentError:
            return None
        stem = Registry.get_component("stem_controller")
        scan = stem.scan_controller if stem is not None else None
        if scan is None:
            return None
        return LiveScanDose(scan, lambda: scope.beam_current_A, lambda: scope.is_blanked, after_frame=self.__dose.update)

    def close(self) -> None:
        if self.__live_dose is not None:
            self.__live_dose.close()
            self.__live_dose = None
        self.__dose.on_summary = None
        if self.runner is not None:
            self.runner.stop("panel closed")
        if self.live_finder is not None:
            self.live_finder.stop()
            self.live_finder = None
        if self.remote_server is not None:
            self.remote_server.close()  # stops what it started, the beam made safe
            self.remote_server = None
        self.__listener = None
        super().close()

    def __make_plan(self) -> tuple[Plan, Budget]:
        """The chosen experiment as a plan, from the panel's fields (ValueError with the reason if they do not make one)."""
        drawn_frame, drawn_points = self.__drawn_points()
        survey = None
        if self.use_selected_survey.value:
            selected = self.__document_controller.selected_display_item
            survey = selected.data_item.xdata if selected and selected.data_item else None
            if survey is None or len(survey.data_shape) != 2:
                raise ValueError("'selected image is the survey' is ticked, but no image is selected")
        parameters = PanelParameters(int(self.points.value or 0), float(self.exposure_ms.value or 0),
                                     (float(self.band_low_eV.value or 0), float(self.band_high_eV.value or 0)),
                                     ACQUISITIONS[self.acquisition_index.value or 0], int(self.patch_size.value or 0),
                                     float(self.field_nm.value or 0), drawn_points, drawn_frame, survey,
                                     scalarizer=list(SCALARIZER_TITLES)[self.scalarizer_index.value or 0], condition=str(self.condition.value or ""),
                                     response=list(RESPONSES)[self.response_index.value or 0])
        choice = EXPERIMENTS[self.experiment_index.value or 0]
        if "search" in choice.fields:
            parameters = dataclasses.replace(parameters, region_nm=self.__drawn_region_nm(), examples=str(self.examples.value or "").strip(),
                                             target_class=str(self.target_class.value or "").strip(), verify_edge_eV=float(self.verify_edge_eV.value or 0),
                                             then=list(HAND_OFF_TITLES)[self.then_index.value or 0])
        if "band" in choice.fields:
            parameters = dataclasses.replace(parameters, energy_range_eV=self.__energy_range_eV())
        check_parameters(choice, parameters)
        self.__parameters = parameters
        return choice.make_plan(parameters), Budget(max_steps=int(self.max_steps.value or 0))

    @staticmethod
    def __energy_range_eV() -> tuple[float, float] | None:
        try:
            return SwiftMicroscope().energy_range_eV
        except InstrumentError:  # no instrument: the plan says so when it is started
            return None

    def dry_run(self, widget: typing.Any = None) -> None:
        """Show what the chosen experiment would do (steps, beam-on time, dose, probe path) before anything is done."""
        try:
            plan, budget = self.__make_plan()
        except Exception as e:
            self.plan_summary.value = f"{_('Cannot plan')}: {e}"
            return
        self.plan_summary.value = _("Planning…")
        limit = float(self.dose_limit.value or 0)

        def plan_off_the_ui_thread() -> None:
            try:
                with quiet_collections.quiet_collections():
                    report = dry_run(plan, SwiftMicroscope(), budget=budget)
                summary = f"{_('Dry run')}: {report.summary()}"
                if limit > 0 and (warning := dose_map.limit_warning(session_dose().exposures, planned_exposures(report), limit)):
                    summary += f" — {_('WARNING')}: {warning}"
            except Exception as e:  # no instrument, or a plan that cannot run: say why
                summary = f"{_('Cannot plan')}: {e}"
            self.__document_controller.queue_task(lambda: setattr(self.plan_summary, "value", summary))

        threading.Thread(target=plan_off_the_ui_thread, name="nion-autoem dry run", daemon=True).start()

    def start(self, widget: typing.Any = None) -> None:
        def start_plan() -> ExperimentRunner:
            plan, budget = self.__make_plan()
            choice = EXPERIMENTS[self.experiment_index.value or 0]
            if choice.start is not None:
                return choice.start(self.__parameters, self.__document_controller, budget)
            return start_experiment(plan, document_controller=self.__document_controller, budget=budget)

        self.__launch(start_plan, _("Cannot start"), lambda runner: f"{_('Started run')} {runner.run_id}; {_('journal in')} {runner.run_dir}")

    def __launch(self, start: typing.Callable[[], ExperimentRunner], refused: str, started: typing.Callable[[ExperimentRunner], str]) -> None:
        """Start a run unless one is running; say why not, or follow its progress."""
        if self.runner is not None and not self.runner.state.is_final:
            self.status.value = _("An experiment is already running; stop it first.")
            return
        if self.__remote_runner() is not None:
            self.status.value = _("A remote client's experiment is running; Stop ends it, or wait for it to finish.")
            return
        try:
            runner = start()
        except Exception as e:  # bad parameters, no instrument, the wrong kind of item: say so in the panel
            self.status.value = f"{refused}: {e}"
            return
        self.runner = runner
        self.__listener = runner.progress_changed_event.listen(self.__progress_changed)
        self.pause_text.value = _("Pause")
        self.__set_running(True)
        self.status.value = started(runner)

    def __selected_data_item(self) -> typing.Any:
        display_item = self.__document_controller.selected_display_item
        return display_item.data_item if display_item else None

    def band_from_selected_spectrum(self, widget: typing.Any = None) -> None:
        """Take the energy band from an interval graphic on the selected spectrum."""
        display_item = self.__document_controller.selected_display_item
        xdata = display_item.data_item.xdata if display_item and display_item.data_item else None
        intervals = [g for g in display_item.graphics if isinstance(g, Graphics.IntervalGraphic)] if display_item else []
        if xdata is None or len(xdata.data_shape) != 1 or not intervals:
            self.status.value = _("Select a spectrum with an interval (drag one out with the interval tool) first.")
            return
        energy = xdata.dimensional_calibrations[-1]
        n = xdata.data_shape[-1]
        lo, hi = sorted(energy.convert_to_calibrated_value(f * n) for f in (intervals[0].start, intervals[0].end))
        self.band_low_eV.value, self.band_high_eV.value = round(lo, 3), round(hi, 3)
        self.status.value = f"{_('Band')}: {lo:.2f}-{hi:.2f} {energy.units}"

    def __drawn_points(self) -> tuple[ScanFrame | None, tuple[tuple[float, float], ...]]:
        """Point graphics on the selected image, in scan-field nm, with that image's frame."""
        display_item = self.__document_controller.selected_display_item
        data_item = display_item.data_item if display_item else None
        if display_item is None or data_item is None or data_item.xdata is None or len(data_item.xdata.data_shape) != 2:
            return None, ()
        try:
            frame = frame_from_xdata(data_item.xdata)
        except ValueError:
            return None, ()
        fractions = [(g.position.y, g.position.x) for g in display_item.graphics if isinstance(g, Graphics.PointGraphic)]
        return frame, tuple((float(y), float(x)) for y, x in (frame.fraction_to_nm(f) for f in fractions))

    def __drawn_region_nm(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """The first unlabelled rectangle on the selected image, as (centre, size) in stage nm (None without one).

        A montage is calibrated in stage coordinates, so its rectangle is the
        region itself; on a survey the stage position it was taken at is added.
        Labelled rectangles are the tile examples of the Tile Classes panel.
        """
        display_item = self.__document_controller.selected_display_item
        data_item = display_item.data_item if display_item else None
        xdata = data_item.xdata if data_item is not None else None
        if display_item is None or xdata is None or len(xdata.data_shape) != 2:
            return None
        rectangles = [g for g in display_item.graphics if isinstance(g, Graphics.RectangleGraphic) and not (g.label or "").strip()]
        if not rectangles:
            return None
        try:
            frame = frame_from_xdata(xdata)
        except ValueError as e:
            raise ValueError(f"the selected image has no length calibration, so its rectangle is not a region of the sample ({e})") from e
        rect = rectangles[0]
        rows, cols = xdata.data_shape
        size = (float(rect.size.height) * rows * frame.pixel_size_nm, float(rect.size.width) * cols * frame.pixel_size_nm)
        centre = _stage_nm(xdata, frame.fraction_to_nm((rect.center.y, rect.center.x)))
        if centre is None:
            raise ValueError("the selected image does not say where the stage was (not a montage, nor a survey taken by nion-autoem): draw the region on one that does")
        return centre, size

    def go_to_selected(self, widget: typing.Any = None) -> None:
        """Move the stage so the selected image's point (or its centre) is at the field's centre: revisit a target or a place on a montage.

        The beam stays as it is (blanked after a run); the move runs on a worker thread.
        """
        display_item = self.__document_controller.selected_display_item
        data_item = display_item.data_item if display_item else None
        xdata = data_item.xdata if data_item is not None else None
        if display_item is None or xdata is None or len(xdata.data_shape) != 2:
            self.status.value = _("Select a target, a survey or a montage (an image) first.")
            return
        try:
            frame = frame_from_xdata(xdata)
        except ValueError as e:
            self.status.value = f"{_('Cannot go there')}: {e}"
            return
        points = [g for g in display_item.graphics if isinstance(g, Graphics.PointGraphic)]
        chosen = [g for g in points if display_item.graphic_selection.contains(display_item.graphics.index(g))] or points[:1]
        where = frame.fraction_to_nm((chosen[0].position.y, chosen[0].position.x)) if chosen else frame.center_nm
        target = _stage_nm(xdata, where)
        if target is None:
            self.status.value = _("The selected image does not say where the stage was (not a montage, nor a survey taken by nion-autoem).")
            return
        title = data_item.title if data_item is not None else ""

        def move() -> None:
            try:
                SwiftMicroscope().move_stage(target)
                text = f"{_('Stage at')} ({target[0] / 1000:.3f}, {target[1] / 1000:.3f}) µm: {title!r} {_('is at the centre of the field; the beam is as it was.')}"
            except Exception as e:  # limits, no stage control: say so
                text = f"{_('Cannot go there')}: {e}"
            self.__document_controller.queue_task(lambda: setattr(self.status, "value", text))

        self.status.value = _("Moving the stage…")
        threading.Thread(target=move, name="nion-autoem go to", daemon=True).start()

    def find_atoms_in_selection(self, widget: typing.Any = None) -> None:
        """ELIT on the image selected in the document (a loaded or earlier image)."""
        data_item = self.__selected_data_item()
        if data_item is None:
            self.status.value = _("Select an image (a data item) first.")
            return
        self.__launch(lambda: find_atoms_in_data_item(data_item, document_controller=self.__document_controller), _("Cannot find atoms"),
                      lambda runner: f"{_('Finding atoms in')} {data_item.title!r}")

    def replay_on_selected_spectrum_image(self, widget: typing.Any = None) -> None:
        """DKL on a spectrum image already in the document: the recorded spectra stand in for the microscope."""
        data_item = self.__selected_data_item()
        if data_item is None:
            self.status.value = _("Select a spectrum image (rows × columns × energy) first.")
            return

        def replay() -> ExperimentRunner:
            band = (float(self.band_low_eV.value or 0), float(self.band_high_eV.value or 0))
            check_parameters(EXPERIMENTS[1], PanelParameters(int(self.points.value or 0), 1.0, band, "", int(self.patch_size.value or 0)))
            return replay_dkl_on_spectrum_image(data_item, band, document_controller=self.__document_controller, measurements=int(self.points.value or 0),
                                                patch_size=int(self.patch_size.value or 0), acquisition=ACQUISITIONS[self.acquisition_index.value or 0])

        self.__launch(replay, _("Cannot replay"), lambda runner: f"{_('Replaying DKL on')} {data_item.title!r}")

    def __live_elit_changed(self, on: bool | None) -> None:
        if not on:
            if self.live_finder is not None:
                self.live_finder.stop()
                self.status.value = _("Live ELIT off after {} frame(s).").format(self.live_finder.frames_analysed)
                self.live_finder = None
            return
        try:
            stem = Registry.get_component("stem_controller")
            scan = stem.scan_controller if stem else None
            if scan is None:
                raise ValueError(_("no scan device is connected"))
            self.live_finder = LiveAtomFinder(self.__document_controller, scan.hardware_source_id)
            self.live_finder.start()
            self.status.value = _("Live ELIT on: atoms are found in every new scan frame.")
        except Exception as e:
            self.status.value = f"{_('Cannot start live ELIT')}: {e}"

    def __remote_runner(self) -> ExperimentRunner | None:
        runner = self.remote_server.active_runner if self.remote_server is not None else None
        return runner if runner is not None and not runner.state.is_final else None

    def __remote_changed(self, on: bool | None) -> None:
        from nion_autoem.remote import serve_in_swift

        if not on:
            if self.remote_server is not None:
                self.remote_server.close()
                self.remote_server = None
                self.status.value = _("Remote steering off; a remote experiment still running was stopped with the beam blanked.")
            return
        def panel_busy() -> str | None:  # a remote run waits in the queue while the panel's own runs
            return _("the panel's experiment") if self.runner is not None and not self.runner.state.is_final else None

        try:
            port = {"port": REMOTE_PORT} if REMOTE_PORT is not None else {}
            self.remote_server = serve_in_swift(self.__document_controller, busy=panel_busy, **port)
        except Exception as e:  # port taken, certificate unreadable, token file readable by others: say so
            self.status.value = f"{_('Cannot switch remote steering on')}: {e}"
            self.remote.value = False
            return
        # shown once: the token lets its holder run allow-listed plans on this microscope
        self.status.value = (f"{_('Remote steering on at')} {self.remote_server.uri} — {_('token (copy it now, it is not shown again)')}: "
                             f"{self.remote_server.token}")

    def toggle_pause(self, widget: typing.Any = None) -> None:
        if self.runner is None or self.runner.state.is_final:
            return
        if self.pause_text.value == _("Pause"):
            self.runner.pause()
            self.pause_text.value = _("Resume")
        else:
            self.runner.resume()
            self.pause_text.value = _("Pause")

    def stop(self, widget: typing.Any = None) -> None:
        remote = self.__remote_runner()
        if remote is not None:
            remote.stop("stopped from the panel")
            self.status.value = _("The remote client's experiment is stopping; beam blanked.")
            return
        runner = self.runner
        if runner is None or runner.state.is_final:
            self.status.value = _("Nothing is running.")
            return
        self.status.value = _("Stopping…")

        def stop_off_the_ui_thread() -> None:
            # the beam is blanked within milliseconds either way; off the UI thread the click returns at once while the
            # instrument's aborts and Swift's probe-graphic updates run (about 100 ms in the real window)
            runner.stop()
            text = _("Stopping; beam blanked.") if runner.progress.beam_safe is not False else _("BEAM NOT SAFE: blank it by hand.")

            def said() -> None:
                if not runner.state.is_final:  # the final status, once there, says more
                    self.status.value = text
            self.__document_controller.queue_task(said)

        threading.Thread(target=stop_off_the_ui_thread, name="nion-autoem stop", daemon=True).start()

    def __progress_changed(self, progress: Progress) -> None:
        # Called on the worker thread: hand the widget update to the UI thread.
        def update() -> None:
            self.percent.value = int(round(100 * progress.fraction))
            if not progress.state.is_final:
                self.status.value = str(progress)
                return
            self.__set_running(False)
            self.pause_text.value = _("Pause")
            beam = _("beam blanked, probe unparked") if progress.beam_safe is not False else _("THE BEAM IS NOT BLANKED: blank it by hand")
            self.status.value = f"{progress.state.value}: {progress.message} — {beam}."
        self.__document_controller.queue_task(update)


class ExperimentPanel(Panel.Panel):
    def __init__(self, document_controller: DocumentController.DocumentController, panel_id: str, properties: typing.Mapping[str, typing.Any]) -> None:
        super().__init__(document_controller, panel_id, _("Autonomous Experiment"))
        self.controller = ExperimentPanelController(document_controller)
        self.widget = Declarative.DeclarativeWidget(document_controller.ui, document_controller.event_loop, self.controller)


def register_panel() -> None:
    Workspace.WorkspaceManager().register_panel(ExperimentPanel, PANEL_ID, _("Autonomous Experiment"), ["left", "right"], "right", {})


def unregister_panel() -> None:
    Workspace.WorkspaceManager().unregister_panel(PANEL_ID)
