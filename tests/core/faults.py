"""Fault injection: a real microscope (recorded data) with faults put in its way."""

from __future__ import annotations

import threading
import typing

from nion_autoem.instrument import Measurement
from nion_autoem.replay import ReplayMicroscope
from tests.core.plans import replay_data

Fault = typing.Literal["raise", "wedge", "blanker", "none"]


class FaultyMicroscope(ReplayMicroscope):
    """Recorded data, with one fault on the ``nth`` acquisition (counting from 1).

    - ``"raise"``: the acquisition raises OSError (a cable pulled);
    - ``"wedge"``: the acquisition hangs for ``wedge_s`` and ignores aborts (a driver that does not listen);
    - ``"blanker"``: blanking does nothing from then on (a blanker that failed).
    """

    def __init__(self, fault: Fault, nth: int = 3, *, wedge_s: float = 30.0) -> None:
        survey, frame, spectrum_image = replay_data()
        super().__init__(survey, frame, spectrum_image=spectrum_image, energy_axis=(-5.0, 0.5))
        self.fault, self.nth, self.wedge_s = fault, nth, wedge_s
        self.acquisitions = 0
        self.released = threading.Event()
        self.__blanker_broken = False

    def __acquisition(self) -> None:
        self.acquisitions += 1
        if self.acquisitions != self.nth:
            return
        if self.fault == "raise":
            raise OSError("camera cable unplugged")
        if self.fault == "wedge":
            self.released.wait(self.wedge_s)
        if self.fault == "blanker":
            self.__blanker_broken = True

    def survey(self, *args: typing.Any, **kwargs: typing.Any) -> Measurement:
        self.__acquisition()
        return super().survey(*args, **kwargs)

    def acquire_spectrum(self, exposure_ms: float) -> Measurement:
        self.__acquisition()
        return super().acquire_spectrum(exposure_ms)

    def adf_trace(self, samples: int, sample_time_us: float, *, channel: str = "HAADF") -> Measurement:
        self.__acquisition()
        return super().adf_trace(samples, sample_time_us, channel=channel)

    def blank(self) -> None:
        if not self.__blanker_broken:
            super().blank()

    def make_safe(self) -> None:
        if self.__blanker_broken:
            self.unpark_only()
            return
        super().make_safe()

    def unpark_only(self) -> None:
        """What a make_safe with a dead blanker still manages: the probe unparked."""
        super().make_safe()
        super().unblank()
