"""One-call experiments from the Swift console or a notebook.

>>> from nion_autoem.swift.console import start_experiment          # doctest: +SKIP
>>> from nion_autoem.plans import PointSpectroscopy              # doctest: +SKIP
>>> runner = start_experiment(PointSpectroscopy(points=10), window=_window)  # doctest: +SKIP
>>> print(runner.progress)                                          # doctest: +SKIP
>>> runner.stop()                                                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import typing

import numpy

from nion_autoem.instrument import Measurement
from nion_autoem.instrument import Microscope
from nion_autoem.plan import Plan
from nion_autoem.products import ResultSink
from nion_autoem.products import TeeSink
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner
from nion_autoem.suspenders import Suspender
from nion_autoem.swift import quiet_collections
from nion_autoem.swift.data_items import DataItemSink
from nion_autoem.swift.dose_history import publisher_for
from nion_autoem.swift.dose_history import session_dose
from nion_autoem.swift.microscope import SwiftMicroscope

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController


#: The run catalog's file, in the folder of the runs it lists.
CATALOG_NAME = "catalog.sqlite"


def runs_root() -> pathlib.Path:
    """Where run journals go: ``$NION_AUTOEM_RUNS`` or ``~/nion-autoem/runs``."""
    return pathlib.Path(os.environ.get("NION_AUTOEM_RUNS", pathlib.Path.home() / "nion-autoem" / "runs"))


def start_experiment(plan: Plan, *, window: DocumentController.DocumentController | None = None, document_controller: DocumentController.DocumentController | None = None,
                     budget: Budget | None = None, run_dir: str | pathlib.Path | None = None, microscope: Microscope | None = None,
                     suspenders: typing.Sequence[Suspender] = (), sinks: typing.Sequence[ResultSink] = (),
                     on_measurement: typing.Sequence[typing.Callable[[Measurement], None]] = ()) -> ExperimentRunner:
    """Start ``plan`` on the connected microscope (or usim) and return its runner at once.

    Parameters
    ----------
    plan : Plan
        What to do, e.g. :class:`nion_autoem.plans.PointSpectroscopy`.
    window : DocumentController
        The window whose document receives the results: in Swift's console,
        ``_window`` (Swift defines it there).
    document_controller : DocumentController, optional
        The same, by its other name.
    budget : Budget, optional
        Limits on steps, dose and time (default: 500 steps).
    run_dir : path-like, optional
        Journal directory (default: ``runs_root() / <run id>``).
    microscope : Microscope, optional
        Defaults to the registered instrument (a :class:`SwiftMicroscope`).
    suspenders : sequence of Suspender, optional
        Conditions to watch (see :mod:`nion_autoem.suspenders`).
    sinks : sequence of ResultSink, optional
        Further sinks that receive every product too (e.g. the remote server's copy for its clients).
    on_measurement : sequence of callables, optional
        Further calls with every measurement (e.g. a twin that lets a ``Wait`` pass on its clock).

    Returns
    -------
    ExperimentRunner
        Already running; read ``.progress``, call ``.pause()``, ``.resume()``, ``.stop()``.
    """
    target = window if window is not None else document_controller
    if target is None:
        raise ValueError("pass window=_window (Swift's console defines it) so the results have a document to go to")
    scope = microscope or SwiftMicroscope()

    def give_back_scan() -> str | None:
        if isinstance(scope, SwiftMicroscope) and scope.give_back_scan():
            return "your live scan was stopped for the experiment; its settings are back (the beam is blanked: unblank to view)"
        return None

    dose = publisher_for(target)

    def show_dose() -> str | None:
        dose.update(force=True)
        return None

    def register_run() -> None:
        # every run goes into the run catalog of the folder it is in (runs_root()/catalog.sqlite for the panel's runs), once
        # its journal is closed: "all frames of MoS2 from this week" is then one query; a catalog that cannot be written is logged
        from nion_autoem.catalog import RunCatalog

        with contextlib.closing(RunCatalog(pathlib.Path(runner.run_dir).parent / CATALOG_NAME)) as catalog:
            catalog.register(runner.run_dir)

    sink = DataItemSink(target)
    sink.hold_writes()  # Swift writes the run's items to disk when it has ended (the journal is the record meanwhile)

    def release_collections_once_shown() -> None:
        # full garbage collections stay off (quiet_collections) until the run's last products are in the document and on disk
        if sink.pending:
            target.queue_task(release_collections_once_shown)
        else:
            quiet_collections.release()

    # every measurement also goes into the session's dose history, shown as "Dose map (this session)"
    runner = ExperimentRunner(scope, plan, run_dir=run_dir or runs_root() / "pending", budget=budget or Budget(max_steps=500),
                              sink=sink if not sinks else TeeSink((sink, *sinks)), suspenders=suspenders,
                              on_end=[give_back_scan, show_dose],
                              after_journal=[register_run, sink.release_writes, lambda: target.queue_task(release_collections_once_shown)],
                              on_measurement=[session_dose().add, lambda _: dose.update(), *on_measurement])
    if run_dir is None:
        runner.run_dir = runs_root() / runner.run_id
    quiet_collections.hold()
    try:
        runner.start()
    except BaseException:
        quiet_collections.release()
        raise
    return runner


def find_atoms_in_data_item(data_item: typing.Any, *, window: DocumentController.DocumentController | None = None, document_controller: DocumentController.DocumentController | None = None,
                            ensemble: str | None = None, run_dir: str | pathlib.Path | None = None) -> ExperimentRunner:
    """Find and classify the atoms of an image already in Swift; returns the (running) runner.

    The image is served by a :class:`~nion_autoem.replay.ReplayMicroscope`, so
    the work runs off the UI thread, is journaled like any run, and its
    results (the image with labelled columns, a classified-atoms table and an
    uncertainty map) arrive as data items.

    Parameters
    ----------
    data_item : nion.swift.Facade.DataItem or nion.swift.model.DataItem.DataItem
        A 2D image calibrated in nm (or Å). Its calibration sets the sampling:
        a frame outside the model's trained sampling is resampled into it, one
        too coarse for that raises ``ValueError`` naming the sampling needed.
    window, document_controller
        Where the results go, as for :func:`start_experiment`.
    ensemble : str, optional
        ELIT model (``"mos2"`` default, ``"graphene"``, or a saved-model path).
    """
    from nion_autoem.plans.atom_finding import AtomFinding
    from nion_autoem.replay import ReplayMicroscope
    from nion_autoem.xdata import frame_from_xdata

    xdata = data_item.xdata
    if xdata is None:
        raise ValueError("the data item has no data")
    frame = frame_from_xdata(xdata)
    # The sampling comes from the data item's calibration (frame_from_xdata refuses an uncalibrated image); a sampling no
    # resampling can rescue is refused here, before a run starts, with the sampling the model needs.
    from nion_autoem_elit import api
    from nion_autoem_elit import sampling

    sampling.plan_sampling((frame.shape[0], frame.shape[1]), frame.pixel_size_nm, api.resolve_ensemble(ensemble).metadata)
    scope = ReplayMicroscope(numpy.asarray(xdata.data, dtype=float), frame)
    return start_experiment(AtomFinding(frames=1, ensemble=ensemble), window=window, document_controller=document_controller, run_dir=run_dir,
                            microscope=scope, budget=Budget(max_steps=1))


def replay_dkl_on_spectrum_image(data_item: typing.Any, band_eV: tuple[float, float], *, window: DocumentController.DocumentController | None = None,
                                 document_controller: DocumentController.DocumentController | None = None, measurements: int = 50, patch_size: int = 8,
                                 acquisition: str = "thompson", run_dir: str | pathlib.Path | None = None) -> ExperimentRunner:
    """Run DKL on a spectrum image already in Swift, as if the microscope were measuring it (no beam, no microscope).

    The survey is the spectrum image summed over energy; each "measurement" is
    the recorded spectrum at the chosen position.  Results arrive as data items,
    like a live run's, and the run is journaled, so it can be replayed again
    with another scalarizer.

    Parameters
    ----------
    data_item : nion.swift.model.DataItem.DataItem or Facade.DataItem
        A (rows, cols, energy) spectrum image, scan axes in nm, energy in eV.
    band_eV : (low, high)
        The energy band whose intensity DKL looks for.
    """
    from nion_autoem.plans.dkl_spectroscopy import DKLSettings
    from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
    from nion_autoem.plans.dkl_spectroscopy import band_integral
    from nion_autoem.replay import ReplayMicroscope
    from nion_autoem_dkl.agent import AgentConfig

    xdata = data_item.xdata
    if xdata is None:
        raise ValueError("the data item has no data")
    scope = ReplayMicroscope.from_spectrum_image(xdata)
    settings = DKLSettings(patch_size=patch_size, stride=max(patch_size // 4, 1), max_measurements=measurements, exposure_ms=1.0)
    plan = DKLSpectroscopy(band_integral(band_eV), settings, AgentConfig(acquisition=typing.cast(typing.Any, acquisition)))
    return start_experiment(plan, window=window, document_controller=document_controller, run_dir=run_dir, microscope=scope,
                            budget=Budget(max_steps=measurements + 2))


def _scalarizer_choice(scalarizer: str) -> str:
    """``scalarizer`` if it names a diffraction scalarizer; otherwise a ValueError that lists them."""
    from nion_autoem_dkl.scalarizers import DIFFRACTION_SCALARIZERS

    if not isinstance(scalarizer, str) or scalarizer not in DIFFRACTION_SCALARIZERS:
        raise ValueError(f"scalarizer must be a diffraction scalarizer, one of {sorted(DIFFRACTION_SCALARIZERS)} "
                         f"({'; '.join(f'{k}: {v}' for k, v in DIFFRACTION_SCALARIZERS.items())}), got {scalarizer!r}")
    return scalarizer


def start_dkl_4dstem(*, window: DocumentController.DocumentController | None = None, document_controller: DocumentController.DocumentController | None = None,
                     scalarizer: str = "com_magnitude", measurements: int = 100, exposure_ms: float = 2.0, patch_size: int = 8, stride: int | None = None,
                     acquisition: str = "thompson", camera_binning: int | None = 8, camera_centre: tuple[float, float] | None = None,
                     survey_frame: typing.Any | None = None, pixel_time_us: float | None = None, survey: typing.Any | None = None, seed: int = 0,
                     run_dir: str | pathlib.Path | None = None, microscope: Microscope | None = None) -> ExperimentRunner:
    """DKL in 4D-STEM: survey, then diffraction frames (Ronchigram camera) where the centre-of-mass shift says most.

    Parameters
    ----------
    window, document_controller
        Where the results go, as for :func:`start_experiment`.
    scalarizer : {'com_magnitude', 'com_angle'}
        The magnitude or the direction of each frame's centre-of-mass shift
        (the in-plane field or polarization), in camera pixels or radians.
    measurements : int
        How many diffraction frames to take.
    exposure_ms : float
        Exposure of one frame.
    patch_size, stride : int
        Survey patch around each candidate and candidate spacing, in survey
        pixels (stride: a quarter of the patch by default).
    acquisition : {'thompson', 'log_ei', 'ucb', 'max_uncertainty'}
        Where to look next; ``'max_uncertainty'`` learns the whole map fastest,
        the others go after the largest values.
    camera_binning : int or None
        Binning of the Ronchigram camera for the run (its settings are put
        back afterwards): a centre-of-mass needs no full-resolution frame, and
        every frame is journaled.  None keeps the camera's binning.
    camera_centre : (row, column), optional
        Where the undeflected disc sits on the binned frame (e.g. measured in
        vacuum); the frame's geometric centre by default.
    survey_frame : ScanFrame, optional
        Field to survey; the current scan frame by default.
    pixel_time_us : float, optional
        Survey pixel time.
    survey : DataAndMetadata, optional
        An image already taken (e.g. the one selected in the panel) to choose
        positions on, instead of a new survey; the probe must reach its field.
    seed : int
        Seed of the agent's choices.
    run_dir, microscope
        As for :func:`start_experiment`.

    Returns
    -------
    ExperimentRunner
        Already running.
    """
    from nion.utils import Registry

    from nion_autoem.plans.dkl_spectroscopy import DKLSettings
    from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
    from nion_autoem_dkl.agent import AgentConfig

    _scalarizer_choice(scalarizer)
    if camera_binning is not None and (isinstance(camera_binning, bool) or not isinstance(camera_binning, int) or camera_binning < 1):
        raise ValueError(f"camera_binning must be a whole number >= 1 (e.g. 8) or None to keep the camera's, got {camera_binning!r}")
    settings = DKLSettings(patch_size=patch_size, stride=stride if stride is not None else max(patch_size // 4, 1), exposure_ms=exposure_ms,
                           max_measurements=measurements, survey_frame=survey_frame, pixel_time_us=pixel_time_us)
    plan = DKLSpectroscopy.named(scalarizer, settings, AgentConfig(acquisition=typing.cast(typing.Any, acquisition), seed=seed), centre=camera_centre,
                                 survey=survey)
    camera = None
    if microscope is None and camera_binning is not None:
        stem = Registry.get_component("stem_controller")
        camera = getattr(stem, "ronchigram_camera", None) if stem is not None else None
    if camera is None:
        return start_experiment(plan, window=window, document_controller=document_controller, run_dir=run_dir, microscope=microscope,
                                budget=Budget(max_steps=measurements + 2))
    before = camera.get_current_frame_parameters()
    binned = camera.get_current_frame_parameters()
    binned.binning = camera_binning
    camera.set_current_frame_parameters(binned)
    try:
        runner = start_experiment(plan, window=window, document_controller=document_controller, run_dir=run_dir, microscope=microscope,
                                  budget=Budget(max_steps=measurements + 2))
    except Exception:
        camera.set_current_frame_parameters(before)
        raise
    put_back = [before]

    def give_back_binning(progress: typing.Any) -> None:
        # After the runner's own clean-up (which puts back the exposure it changed), so the binning the user had wins.
        if progress.state.is_final and put_back:
            camera.set_current_frame_parameters(put_back.pop())

    runner.progress_changed_event.listen(give_back_binning, owner=runner)
    if runner.state.is_final:
        give_back_binning(runner.progress)
    return runner


def replay_dkl_on_4d(data_item: typing.Any, *, survey_item: typing.Any | None = None, window: DocumentController.DocumentController | None = None,
                     document_controller: DocumentController.DocumentController | None = None, scalarizer: str = "com_magnitude", measurements: int = 50,
                     patch_size: int = 8, stride: int | None = None, acquisition: str = "thompson", camera_centre: tuple[float, float] | None = None,
                     seed: int = 0, run_dir: str | pathlib.Path | None = None) -> ExperimentRunner:
    """Run 4D-STEM DKL on a 4D dataset already in Swift, as if the microscope were measuring it (no beam, no microscope).

    Each "measurement" is the recorded diffraction frame nearest the chosen
    position.  Results arrive as data items, like a live run's, and the run is
    journaled, so :func:`compare_scalarizers` can explore it again with the
    other scalarizer.

    Parameters
    ----------
    data_item : nion.swift.model.DataItem.DataItem or Facade.DataItem
        A (rows, cols, ky, kx) 4D dataset, scan axes in nm.
    survey_item : data item, optional
        The image recorded with it (e.g. HAADF) over the same field, to choose
        positions on; a virtual annular dark-field image of the dataset by default.
    window, document_controller
        Where the results go, as for :func:`start_experiment`.
    scalarizer : {'com_magnitude', 'com_angle'}
        As for :func:`start_dkl_4dstem`.
    measurements, patch_size, stride, acquisition, camera_centre, seed, run_dir
        As for :func:`start_dkl_4dstem` (the centre on the dataset's frames).
    """
    from nion_autoem.plans.dkl_spectroscopy import DKLSettings
    from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
    from nion_autoem.replay import ReplayMicroscope
    from nion_autoem_dkl.agent import AgentConfig

    _scalarizer_choice(scalarizer)
    xdata = data_item.xdata
    if xdata is None:
        raise ValueError("the data item has no data")
    survey = None
    if survey_item is not None:
        survey = survey_item.xdata
        if survey is None:
            raise ValueError("the survey item has no data")
    scope = ReplayMicroscope.from_4d(xdata, survey=survey)
    settings = DKLSettings(patch_size=patch_size, stride=stride if stride is not None else max(patch_size // 4, 1), max_measurements=measurements, exposure_ms=1.0)
    plan = DKLSpectroscopy.named(scalarizer, settings, AgentConfig(acquisition=typing.cast(typing.Any, acquisition), seed=seed), centre=camera_centre)
    return start_experiment(plan, window=window, document_controller=document_controller, run_dir=run_dir, microscope=scope,
                            budget=Budget(max_steps=measurements + 2))


def compare_scalarizers(run_dir: str | pathlib.Path, other_scalarizer: str, *, window: DocumentController.DocumentController | None = None,
                        document_controller: DocumentController.DocumentController | None = None, data_item: typing.Any | None = None,
                        survey_item: typing.Any | None = None, band_eV: tuple[float, float] | None = None, measurements: int | None = None,
                        replay_dir: str | pathlib.Path | None = None) -> ExperimentRunner:
    """Explore a finished DKL run's survey again with another scalarizer (no beam), and show both exploration paths on one survey.

    The result "DKL paths: <first> vs <second>" is the survey with the
    recorded run's path in orange and the replay's in blue (the legend is its
    caption); both paths' positions and values are written as ``comparison.csv``
    next to the replay's journal.  The replay's own maps arrive too.

    Parameters
    ----------
    run_dir : path-like
        The finished DKL run (live or replayed), e.g. ``runner.run_dir``.
    other_scalarizer : str
        The second scalarizer, e.g. ``"com_angle"`` after a ``"com_magnitude"`` run
        (see :data:`nion_autoem.plans.dkl_spectroscopy.SCALARIZERS`).
    window, document_controller
        Where the results go, as for :func:`start_experiment`.
    data_item : data item, optional
        The full dataset the run was replayed on (4D dataset or spectrum
        image): the replay may then go anywhere.  Without it, it chooses
        among the positions the run measured (half of them by default).
    survey_item : data item, optional
        The survey, for a run that was given one instead of recording one.
    band_eV : (low, high), optional
        The energy band of an EELS scalarizer.
    measurements : int, optional
        The replay's budget (see :func:`nion_autoem.plans.dkl_comparison.comparison_from_run`).
    replay_dir : path-like, optional
        The replay's journal directory (default: ``runs_root() / <run id>``).

    Returns
    -------
    ExperimentRunner
        Already running; its plan's ``first`` and ``second_path`` are the two paths.
    """
    from nion_autoem.plans.dkl_comparison import comparison_from_run

    data = None if data_item is None else data_item.xdata
    survey = None if survey_item is None else survey_item.xdata
    plan, scope = comparison_from_run(run_dir, other_scalarizer, data=data, survey=survey, band_eV=band_eV, measurements=measurements)
    return start_experiment(plan, window=window, document_controller=document_controller, run_dir=replay_dir, microscope=scope,
                            budget=Budget(max_steps=plan.second.settings.max_measurements + 2))


def watch_with_forecast(condition: str = "white-line ratio below 2.1 within 8 s", response: str = "fresh_area", *,
                        window: DocumentController.DocumentController | None = None, document_controller: DocumentController.DocumentController | None = None,
                        microscope: Microscope | None = None, exposure_ms: float = 1000.0, max_spectra: int = 150, twin_seed: int = 0,
                        run_dir: str | pathlib.Path | None = None) -> ExperimentRunner:
    """Watch a spectrum series, forecast it, and act before ``condition`` comes true; returns the (running) runner.

    The measured series, the forecast with its 90 % band, the condition and
    the action taken arrive as data items and update as the run goes.

    Parameters
    ----------
    condition : str
        What to act before, e.g. ``"white-line ratio below 2.1 within 8 s"`` or ``"pre-peak gone"``
        (see :func:`nion_autoem_forecast.conditions.parse_condition`).
    response : {'lower_dose_rate', 'blank_and_wait', 'fresh_area', 'capture'}
        What to do when the forecast says it is coming.
    window, document_controller
        Where the results go (in Swift's console: ``window=_window``).
    microscope : Microscope, optional
        The instrument to watch with; by default the in-situ oxide twin
        (:class:`nion_autoem.twin.insitu.InSituMicroscope`, seeded with
        ``twin_seed``), whose Fe L2,3 and O K spectra change under the beam:
        usim's own spectra do not.  On a microscope, pass ``SwiftMicroscope()``.
    exposure_ms, max_spectra : float, int
        Exposure of each spectrum and how many to take at most.
    """
    from nion_autoem.plans.forecast_watch import ForecastWatch
    from nion_autoem.plans.forecast_watch import WatchSettings
    from nion_autoem.twin.insitu import InSituMicroscope
    from nion_autoem.twin.insitu import InSituOxide
    from nion_autoem_forecast.conditions import parse_condition

    settings = WatchSettings(condition=parse_condition(condition), response=typing.cast(typing.Any, response), exposure_ms=exposure_ms,
                             max_spectra=max_spectra)
    scope = microscope if microscope is not None else InSituMicroscope(InSituOxide(seed=twin_seed))
    # the twin lets a plan's Wait pass on its own clock (the sample re-oxidises while the beam is off)
    observe = [scope.observe] if isinstance(scope, InSituMicroscope) else []
    return start_experiment(ForecastWatch(settings), window=window, document_controller=document_controller, run_dir=run_dir, microscope=scope,
                            budget=Budget(max_steps=4 * max_spectra + 20), on_measurement=observe)
