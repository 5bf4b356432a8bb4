"""One-call experiments from the Swift console or a notebook.

>>> from nion_autoem.swift.console import start_experiment          # doctest: +SKIP
>>> from nion_autoem.policies import PointSpectroscopy              # doctest: +SKIP
>>> runner = start_experiment(PointSpectroscopy(points=10), window=api.application.document_windows[0])  # doctest: +SKIP
>>> print(runner.progress)                                          # doctest: +SKIP
>>> runner.stop()                                                   # doctest: +SKIP
"""

from __future__ import annotations

import os
import pathlib
import typing

from nion_autoem.policy import Policy
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner
from nion_autoem.swift.data_items import DataItemSink
from nion_autoem.swift_microscope import SwiftMicroscope

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController


def runs_root() -> pathlib.Path:
    """Where run journals go: ``$NION_AUTOEM_RUNS`` or ``~/nion-autoem/runs``."""
    return pathlib.Path(os.environ.get("NION_AUTOEM_RUNS", pathlib.Path.home() / "nion-autoem" / "runs"))


def start_experiment(policy: Policy, *, window: typing.Any = None, document_controller: DocumentController.DocumentController | None = None,
                     budget: Budget | None = None, run_dir: str | pathlib.Path | None = None, microscope: SwiftMicroscope | None = None) -> ExperimentRunner:
    """Start ``policy`` on the connected microscope (or usim) and return its runner at once.

    Parameters
    ----------
    policy : Policy
        What to do, e.g. :class:`nion_autoem.policies.PointSpectroscopy`.
    window : nion.swift.Facade.DocumentWindow, optional
        The console's window (``api.application.document_windows[0]``); its
        document receives the results.
    document_controller : DocumentController, optional
        Alternatively, the document controller itself.
    budget : Budget, optional
        Limits on steps, dose and time (default: 500 steps).
    run_dir : path-like, optional
        Journal directory (default: ``runs_root() / <run id>``).
    microscope : SwiftMicroscope, optional
        Defaults to the registered instrument.

    Returns
    -------
    ExperimentRunner
        Already running; read ``.progress``, call ``.pause()``, ``.resume()``, ``.stop()``.
    """
    if document_controller is None:
        if window is None:
            raise ValueError("pass window=api.application.document_windows[0] (or document_controller=) so results have a document to go to")
        document_controller = window._document_controller
    assert document_controller is not None
    runner = ExperimentRunner(microscope or SwiftMicroscope(), policy, run_dir=run_dir or runs_root() / "pending", budget=budget or Budget(max_steps=500),
                              sink=DataItemSink(document_controller))
    if run_dir is None:
        runner.run_dir = runs_root() / runner.run_id
    runner.start()
    return runner
