"""A headless Swift session on the simulated microscope.

:class:`UsimSession` starts nionswift-instrumentation, a simulated instrument
(stock nionswift-usim, or any configuration with the same shape, such as the
digital twin), and a TestUI document controller; it shuts all of it down again
and can check that nothing stayed registered.  Tests, the demo and benchmarks
use it; inside the Swift GUI none of this is needed.

The main thread plays the part of Swift's UI thread: call :meth:`pump` (or
:meth:`run_until_done`) so that queued document changes are applied.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import time
import typing

from nion.instrumentation import stem_controller
from nion.swift import Application
from nion.swift.model import Profile
from nion.swift.test import TestContext
from nion.ui import TestUI
from nion.utils import Registry

from nion_autoem.swift.microscope import SwiftMicroscope

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController
    from nion.swift.model import DocumentModel

    from nion_autoem.runner import ExperimentRunner

# Component types that must be gone after a clean shutdown.
LEAK_CHECKED_COMPONENT_TYPES = ("stem_controller", "instrument_controller", "scan_module", "camera_module", "scan_hardware_source",
                                "camera_hardware_source", "hardware_source", "hardware_source_manager", "document_model")


class ConfigurationLike(typing.Protocol):
    """The shape of usim's ``AcquisitionContextConfiguration``."""

    instrument: typing.Any

    def run(self) -> None: ...

    def stop(self) -> None: ...


def stock_usim_configuration() -> ConfigurationLike:
    """The stock nionswift-usim instrument (no atomic samples)."""
    from nion.usim_device import DeviceConfiguration
    return typing.cast(ConfigurationLike, DeviceConfiguration.AcquisitionContextConfiguration(set_configuration_location=False))


def leaked_components() -> dict[str, int]:
    """Registry component types that still have registered components."""
    counts = {t: len(Registry.get_components_by_type(t)) for t in LEAK_CHECKED_COMPONENT_TYPES}
    return {t: n for t, n in counts.items() if n}


class UsimSession:
    """Instrumentation + simulated instrument + a document controller, headless.

    Parameters
    ----------
    configuration : ConfigurationLike or None
        The instrument configuration to register; stock usim if None.
    project_dir : path-like or None
        Save the document as a Swift project ``<project_dir>/<project_name>.nsproj``;
        if None the document lives in memory only.
    project_name : str
        Name of the project file.

    Examples
    --------
    >>> with UsimSession() as session:  # doctest: +SKIP
    ...     scope = session.microscope()
    ...     survey = scope.survey()
    """

    def __init__(self, configuration: ConfigurationLike | None = None, *, project_dir: str | pathlib.Path | None = None, project_name: str = "nion-autoem") -> None:
        from nionswift_plugin import nion_instrumentation_ui

        if Registry.get_component("stem_controller") is not None:
            raise RuntimeError("an instrument is already registered; close the other UsimSession (or Swift's) first")
        self.__config_dir = pathlib.Path(tempfile.mkdtemp(prefix="nion-autoem-instrumentation-"))
        self.__closed = False
        self.__profile_context: TestContext.MemoryProfileContext | None = None
        self.__profile: Profile.Profile | None = None
        nion_instrumentation_ui.configuration_location = self.__config_dir
        nion_instrumentation_ui.run()
        try:
            self.configuration = configuration if configuration is not None else stock_usim_configuration()
            self.configuration.run()
            self.instrument = self.configuration.instrument
            self.project_path: pathlib.Path | None = None
            if project_dir is None:
                self.__profile_context = TestContext.MemoryProfileContext()
                self.document_controller = self.__profile_context.create_document_controller_with_application(auto_close=False)
            else:
                self.document_controller = self.__open_project(pathlib.Path(project_dir), project_name)
            stem_controller.register_event_loop(self.document_controller.event_loop)
        except Exception:
            nion_instrumentation_ui.stop()
            raise

    def __open_project(self, project_dir: pathlib.Path, project_name: str) -> DocumentController.DocumentController:
        (self.__config_dir / "cache").mkdir()
        profile = Profile.Profile(cache_dir_path=self.__config_dir / "cache")
        self.__profile = profile
        profile.read_profile()
        project_path = project_dir / f"{project_name}.nsproj"
        reference = profile.add_project_index(project_path, load=False) if project_path.exists() else profile.create_project(project_dir, project_name)
        assert reference is not None
        profile.read_project(reference)
        self.project_path = project_path
        document_model = reference.document_model
        assert document_model is not None
        self.__app = Application.Application(TestUI.UserInterface(), set_global=False)
        document_controller = self.__app.create_document_controller(document_model, "library")
        return document_controller

    @property
    def document_model(self) -> DocumentModel.DocumentModel:
        return self.document_controller.document_model

    def microscope(self, **kwargs: typing.Any) -> SwiftMicroscope:
        """A :class:`SwiftMicroscope` on this session's instrument."""
        return SwiftMicroscope(**kwargs)

    def pump(self, seconds: float = 0.0) -> None:
        """Let the UI thread apply queued document changes for about ``seconds``."""
        deadline = time.time() + seconds
        while True:
            self.document_controller.periodic()
            if time.time() >= deadline:
                break
            time.sleep(0.01)

    def run_until_done(self, runner: ExperimentRunner, timeout: float = 600.0, on_progress: typing.Callable[[typing.Any], None] | None = None) -> None:
        """Start ``runner`` on its worker thread and act as the UI thread until it ends."""
        runner.start()
        self.pump_until_done(runner, timeout, on_progress)

    def pump_until_done(self, runner: ExperimentRunner, timeout: float = 600.0, on_progress: typing.Callable[[typing.Any], None] | None = None) -> None:
        """Act as the UI thread until an already started ``runner`` ends; stop it after ``timeout`` s."""
        deadline = time.time() + timeout
        last = None
        while not runner.state.is_final:
            self.pump(0.02)
            progress = runner.progress
            if on_progress and (last is None or progress.step != last.step or progress.state != last.state):
                on_progress(progress)
                last = progress
            if time.time() > deadline:
                runner.stop(f"timed out after {timeout} s")
                runner.wait(5.0)
        runner.wait(5.0)
        # the sink applies one product per refresh: act as the UI thread until the last ones have landed
        drained_by = time.time() + 30.0
        while getattr(runner.sink, "pending", 0) and time.time() < drained_by:
            self.pump(0.02)
        self.pump(0.05)

    def close(self) -> None:
        """Shut everything down in reverse order; safe to call twice."""
        from nionswift_plugin import nion_instrumentation_ui

        if self.__closed:
            return
        self.__closed = True
        try:
            self.document_controller.periodic()
            self.document_controller.close()
            if self.__profile is not None:
                self.__profile.close()
        finally:
            stem_controller.unregister_event_loop()
            self.configuration.stop()
            nion_instrumentation_ui.stop()
            if self.__profile_context is not None:
                self.__profile_context.close()
            shutil.rmtree(self.__config_dir, ignore_errors=True)

    def __enter__(self) -> UsimSession:
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        self.close()
