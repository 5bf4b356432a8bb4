"""One-call experiments from the Swift console or a notebook.

>>> from nion_autoem.swift.console import start_experiment          # doctest: +SKIP
>>> from nion_autoem.plans import PointSpectroscopy              # doctest: +SKIP
>>> runner = start_experiment(PointSpectroscopy(points=10), window=_window)  # doctest: +SKIP
>>> print(runner.progress)                                          # doctest: +SKIP
>>> runner.stop()                                                   # doctest: +SKIP
"""

from __future__ import annotations

import os
import pathlib
import typing

import numpy

from nion_autoem.instrument import Microscope
from nion_autoem.plan import Plan
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner
from nion_autoem.suspenders import Suspender
from nion_autoem.swift.data_items import DataItemSink
from nion_autoem.swift.dose_history import publisher_for
from nion_autoem.swift.dose_history import session_dose
from nion_autoem.swift.microscope import SwiftMicroscope

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController


def runs_root() -> pathlib.Path:
    """Where run journals go: ``$NION_AUTOEM_RUNS`` or ``~/nion-autoem/runs``."""
    return pathlib.Path(os.environ.get("NION_AUTOEM_RUNS", pathlib.Path.home() / "nion-autoem" / "runs"))


def start_experiment(plan: Plan, *, window: DocumentController.DocumentController | None = None, document_controller: DocumentController.DocumentController | None = None,
                     budget: Budget | None = None, run_dir: str | pathlib.Path | None = None, microscope: Microscope | None = None,
                     suspenders: typing.Sequence[Suspender] = ()) -> ExperimentRunner:
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

    # every measurement also goes into the session's dose history, shown as "Dose map (this session)"
    runner = ExperimentRunner(scope, plan, run_dir=run_dir or runs_root() / "pending", budget=budget or Budget(max_steps=500),
                              sink=DataItemSink(target), suspenders=suspenders, on_end=[give_back_scan, show_dose],
                              on_measurement=[session_dose().add, lambda _: dose.update()])
    if run_dir is None:
        runner.run_dir = runs_root() / runner.run_id
    runner.start()
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
