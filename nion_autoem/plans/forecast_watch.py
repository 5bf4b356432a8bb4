"""Forecast watch: record a series at a parked probe, forecast it, act before the change.

Every step records a spectrum (``Acquire`` at the parked probe, or a small
spectrum image summed to one spectrum), and an
:class:`~nion_autoem_forecast.online.OnlineForecaster` forecasts the next 8
spectra and the watched quantity with a 90 % band.  When the forecast says
the user's :class:`~nion_autoem_forecast.conditions.Condition` will be met
within its time ("white-line ratio below 2.1 within 8 s") with at least the
condition's confidence, the plan acts *before* it happens, with one of the
responses an operator would choose:

- ``"lower_dose_rate"``: from now on each spectrum gets ``dose_factor`` of the
  exposure, and the beam is blanked for the rest of the period
  (``Acquire``, ``Blank``, ``Wait``, ``Unblank``): the same cadence at a lower
  dose rate;
- ``"blank_and_wait"``: ``Blank``, ``Wait(wait_s)``, ``Unblank``, then watch on;
- ``"fresh_area"``: ``MoveStage.by(x=fresh_step_nm)`` and start a new series there;
- ``"capture"``: record a high-quality spectrum image (``capture_grid``²
  spectra of ``capture_exposure_ms``) on the area while it changes.

Each step's :class:`~nion_autoem.plan.Report` journals the measured and
forecast quantity, the crossing probability, the band's running coverage and
the update's time; a response journals its reward (``dose_saved_e``: the
electrons the area is spared until the forecast crossing;
``transition_captured``: whether the quantity measured before and after a capture
straddles the threshold).  Products: the measured series (time x energy), the
forecast spectra, and the quantity with its forecast and band, the condition
and the action taken in the caption.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem.actions import Acquire
from nion_autoem.actions import Blank
from nion_autoem.actions import MoveStage
from nion_autoem.actions import ParkProbe
from nion_autoem.actions import Unblank
from nion_autoem.actions import Wait
from nion_autoem.instrument import ELEMENTARY_CHARGE_C
from nion_autoem.instrument import Measurement
from nion_autoem.instrument import Position
from nion_autoem.instrument import acquisition_time_s
from nion_autoem.instrument import electrons
from nion_autoem.plan import Checkpoint
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import Publish
from nion_autoem.plan import Report
from nion_autoem.plan import Reward
from nion_autoem.plan import SubPlan
from nion_autoem.products import Display
from nion_autoem.products import Product
from nion_autoem_forecast.conditions import Condition
from nion_autoem_forecast.online import Forecast
from nion_autoem_forecast.online import OnlineForecaster
from nion_autoem_forecast.preprocess import Preprocessor

_NDArray = numpy.typing.NDArray[typing.Any]

Response = typing.Literal["lower_dose_rate", "blank_and_wait", "fresh_area", "capture"]
RESPONSES: tuple[Response, ...] = ("lower_dose_rate", "blank_and_wait", "fresh_area", "capture")


@dataclasses.dataclass(frozen=True)
class WatchSettings:
    """What the watch records, what it watches for, and what it does.

    Parameters
    ----------
    condition : Condition
        What to act before.
    response : {'lower_dose_rate', 'blank_and_wait', 'fresh_area', 'capture'}
        What to do when the forecast says the condition is coming.
    position_nm : (y, x)
        Where the probe is parked (scan-field nm).
    exposure_ms : float
        Exposure per spectrum.
    max_spectra : int
        Spectra recorded in all (the run's length).
    max_responses : int
        The run ends after this many responses.
    min_spectra_before_acting : int
        Spectra of a series (at an area) before the plan may act on its
        forecast.  The forecaster's reference is the mean of a series' first
        8 spectra, so its directions of change rest on the spectra after
        those: 12 leaves at least 4 (with fewer, one noisy spectrum made a
        direction and a steep forecast on a twin run not used elsewhere).
    confirmations : int
        Consecutive forecasts that must each reach the condition's confidence
        before the plan acts (one noisy spectrum is not enough).
    spectrum_image : int
        0: spectra at the parked probe; n: every step is an n x n spectrum
        image of ``spectrum_image_step_nm`` pitch around the position, summed.
    spectrum_image_step_nm : float
        Pitch of that spectrum image.
    dose_factor : float
        ``lower_dose_rate``: fraction of the exposure kept.
    wait_s : float
        ``blank_and_wait``: how long the beam stays blanked.
    fresh_step_nm : float
        ``fresh_area``: how far the stage moves (x).
    capture_grid : int
        ``capture``: side of the spectrum image recorded.
    capture_exposure_ms : float
        ``capture``: exposure per pixel.
    window_eV, align_window_eV, background_fit_eV : tuple or None
        The preprocessing (see :class:`~nion_autoem_forecast.preprocess.Preprocessor`).
    publish_every : int
        Refresh the products every so many spectra (and at a response and the end).
    fine_tune_ms : float
        The forecaster fine-tunes one step per update unless the update has
        already taken this long (see :class:`~nion_autoem_forecast.online.OnlineForecaster`).
    """

    condition: Condition = Condition("white-line ratio", "below", 2.1, within_s=8.0)
    response: Response = "fresh_area"
    position_nm: Position = (0.0, 0.0)
    exposure_ms: float = 1000.0
    max_spectra: int = 150
    max_responses: int = 3
    min_spectra_before_acting: int = 12
    confirmations: int = 1
    spectrum_image: int = 0
    spectrum_image_step_nm: float = 0.25
    dose_factor: float = 0.25
    wait_s: float = 10.0
    fresh_step_nm: float = 50.0
    capture_grid: int = 3
    capture_exposure_ms: float = 2000.0
    window_eV: tuple[float, float] = (520.0, 740.0)
    align_window_eV: tuple[float, float] | None = (534.0, 560.0)
    background_fit_eV: tuple[float, float] | None = (482.0, 527.0)
    publish_every: int = 10
    fine_tune_ms: float = 20.0

    def __post_init__(self) -> None:
        if self.response not in RESPONSES:
            raise ValueError(f"response must be one of {RESPONSES}, got {self.response!r}")
        if not isinstance(self.condition, Condition):
            raise ValueError(f"condition must be a Condition (see nion_autoem_forecast.conditions.parse_condition), got {self.condition!r}")
        for name in ("exposure_ms", "capture_exposure_ms", "spectrum_image_step_nm", "fresh_step_nm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not 0.0 < self.dose_factor < 1.0:
            raise ValueError(f"dose_factor must be between 0 and 1 (the fraction of the exposure kept), got {self.dose_factor!r}")
        if not (math.isfinite(self.wait_s) and self.wait_s >= 0):
            raise ValueError(f"wait_s must be a time >= 0 s, got {self.wait_s!r}")
        for name, least in (("max_spectra", 2), ("max_responses", 1), ("min_spectra_before_acting", 4), ("confirmations", 1), ("publish_every", 1), ("capture_grid", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")
        if isinstance(self.spectrum_image, bool) or not isinstance(self.spectrum_image, int) or self.spectrum_image < 0:
            raise ValueError(f"spectrum_image must be 0 (parked probe) or the side n of an n x n spectrum image, got {self.spectrum_image!r}")

    def preprocessor(self) -> Preprocessor:
        return Preprocessor(window_eV=self.window_eV, align="edge" if self.align_window_eV else "none", align_window_eV=self.align_window_eV,
                            background_fit_eV=self.background_fit_eV)

    def to_dict(self) -> dict[str, typing.Any]:
        d = dataclasses.asdict(self)
        d["condition"] = self.condition.to_dict()
        return d


def _grid(center: Position, n: int, step_nm: float) -> list[Position]:
    offsets = (numpy.arange(n) - (n - 1) / 2) * step_nm
    return [(center[0] + float(dy), center[1] + float(dx)) for dy in offsets for dx in offsets]


class ForecastWatch:
    """Watch a series, forecast it, and act before the user's condition is met.

    Parameters
    ----------
    settings : WatchSettings
    forecaster : OnlineForecaster, optional
        Default: one with the shipped weights, the settings' preprocessing and the condition's quantity.

    Examples
    --------
    >>> from nion_autoem.runner import ExperimentRunner  # doctest: +SKIP
    >>> scope = InSituMicroscope(InSituOxide(seed=3))  # doctest: +SKIP
    >>> ExperimentRunner(scope, ForecastWatch(), run_dir="runs/watch", on_measurement=[scope.observe]).run()  # doctest: +SKIP
    """

    name = "forecast-watch"

    rewards = (Reward("dose saved", lambda m, r: float(r.get("reward", {}).get("dose_saved_e", 0.0)), units="e"),
               Reward("transitions captured", lambda m, r: float(bool(r.get("reward", {}).get("transition_captured", False))), units="transitions"))

    def __init__(self, settings: WatchSettings | None = None, forecaster: OnlineForecaster | None = None) -> None:
        self.settings = settings or WatchSettings()
        self.__given_forecaster = forecaster
        self.forecaster: OnlineForecaster | None = None
        self.responses: list[dict[str, typing.Any]] = []
        self.update_ms: list[float] = []
        self.__series: list[_NDArray] = []
        self.__times: list[float] = []
        self.__quantity: list[float] = []
        self.__area = 0
        self.__duty = 1.0
        self.__current_A = 0.0

    @property
    def parameters(self) -> dict[str, typing.Any]:
        return {"settings": self.settings.to_dict()}

    @property
    def model_version(self) -> str:
        return "forecast/weights_v1"

    # -- the plan ----------------------------------------------------------------

    def messages(self) -> PlanGenerator:
        s = self.settings
        self.forecaster = self.__given_forecaster or OnlineForecaster(s.condition.measure(), preprocessor=s.preprocessor(), fine_tune_ms=s.fine_tune_ms)
        self.forecaster.reset()
        self.responses, self.update_ms, self.__series, self.__times, self.__quantity = [], [], [], [], []
        self.__area, self.__duty = 0, 1.0
        exposure = s.exposure_ms
        yield ParkProbe(s.position_nm, label="park probe on the area watched")
        since_reset = confirmed = 0
        for index in range(s.max_spectra):
            yield Checkpoint()
            measurement = yield from self.__record(exposure, index)
            if self.__duty < 1.0:
                # the rest of the period blanked: the same cadence at a lower dose rate
                yield Blank(label="blank (lower dose rate)")
                yield Wait(s.exposure_ms * (1.0 - self.__duty) * 1e-3, label="wait (lower dose rate)")
                yield Unblank(label="unblank")
            since_reset += 1
            forecast, result = self.__observe(measurement)
            probability = forecast.crossing_probability(s.condition) if forecast is not None else 0.0
            result["crossing_probability"] = probability
            yield Report(result, fraction=(index + 1) / s.max_spectra, model_version=self.model_version,
                         status=f"spectrum {index + 1}: {s.condition.quantity} {result['measured']:.3g}, P(cross within {s.condition.within_s:g} s) {probability:.2f}")
            if (index + 1) % s.publish_every == 0:
                yield from self.__publish(forecast, "")
            confirmed = confirmed + 1 if forecast is not None and probability >= s.condition.confidence else 0
            if since_reset < s.min_spectra_before_acting or confirmed < s.confirmations:
                continue
            assert forecast is not None
            if self.__duty < 1.0 and s.response == "lower_dose_rate":
                continue  # already acted; the lower dose rate stays
            yield from self.__respond(forecast, probability, acquisition_time_s(measurement))
            if len(self.responses) >= s.max_responses:
                break
            confirmed = 0
            if s.response in ("fresh_area", "blank_and_wait"):
                since_reset = 0
            if s.response == "lower_dose_rate":
                exposure = s.exposure_ms * self.__duty
        yield from self.__publish(self.forecaster.last, self.__action_sentence())
        if not self.responses:
            return f"{len(self.__quantity)} spectra; the forecast never said {s.condition}"
        return f"{len(self.__quantity)} spectra; acted {len(self.responses)} time(s) ({s.response.replace('_', ' ')}) before {s.condition}"

    def __record(self, exposure_ms: float, index: int) -> SubPlan:
        s = self.settings
        if s.spectrum_image == 0:
            return (yield Acquire(s.position_nm, exposure_ms, label=f"spectrum {index + 1}"))
        total: Measurement | None = None
        summed: _NDArray | None = None
        for k, position in enumerate(_grid(s.position_nm, s.spectrum_image, s.spectrum_image_step_nm)):
            m = yield Acquire(position, exposure_ms / s.spectrum_image ** 2, label=f"spectrum image {index + 1}, pixel {k + 1}")
            data = numpy.asarray(m.xdata.data, dtype=float)
            summed = data if summed is None else summed + data
            total = m
        assert total is not None and summed is not None
        xdata = DataAndMetadata.new_data_and_metadata(summed, intensity_calibration=total.xdata.intensity_calibration,
                                                      dimensional_calibrations=list(total.xdata.dimensional_calibrations), metadata=dict(total.xdata.metadata))
        return dataclasses.replace(total, data={"eels": xdata})

    def __observe(self, measurement: Measurement) -> tuple[Forecast | None, dict[str, typing.Any]]:
        assert self.forecaster is not None
        xdata = measurement.xdata
        energy = xdata.dimensional_calibrations[-1]
        energies = energy.offset + energy.scale * numpy.arange(xdata.data_shape[-1])
        time_s = acquisition_time_s(measurement)
        notes_before = len(self.forecaster.notes)
        forecast = self.forecaster.update(numpy.asarray(xdata.data, dtype=float), energies, time_s)
        self.__series.append(self.forecaster.values[-1])
        self.__times.append(time_s)
        self.__quantity.append(self.forecaster.measured[-1])
        if measurement.dwell_s > 0 and measurement.dose_e > 0:
            self.__current_A = measurement.dose_e / measurement.dwell_s * ELEMENTARY_CHARGE_C  # the beam current, for the dose a response saves
        result: dict[str, typing.Any] = {"area": self.__area, "time_s": time_s, "measured": self.forecaster.measured[-1],
                                         "energy_shift_eV": self.forecaster.shifts_eV[-1]}
        if len(self.forecaster.notes) > notes_before:
            result["notes"] = self.forecaster.notes[notes_before:]
        if forecast is not None:
            self.update_ms.append(forecast.elapsed_ms)
            result.update({"denoised": forecast.denoised, "forecast": [round(float(v), 5) for v in forecast.quantity],
                           "band90": [[round(float(a), 5), round(float(b), 5)] for a, b in zip(forecast.low, forecast.high)],
                           "coverage90": self.forecaster.calibration.coverage(), "update_ms": round(forecast.elapsed_ms, 2)})
        return forecast, result

    def __respond(self, forecast: Forecast, probability: float, now_s: float) -> SubPlan:
        s = self.settings
        crossing = forecast.crossing_time_s(s.condition)
        until = (crossing if crossing is not None else now_s + s.condition.within_s) - now_s
        current = self.__current_A
        response: dict[str, typing.Any] = {"response": s.response, "time_s": now_s, "area": self.__area, "crossing_probability": probability,
                                           "forecast_crossing_s": crossing, "measured": forecast.measured, "denoised": forecast.denoised}
        sentence = ""
        if s.response == "lower_dose_rate":
            self.__duty = s.dose_factor
            saved = electrons(current, max(until, 0.0)) * (1.0 - s.dose_factor)
            response["reward"] = {"dose_saved_e": saved, "transition_captured": False}
            sentence = f"lowered the dose rate to {s.dose_factor:.0%} at {now_s:.1f} s"
        elif s.response == "blank_and_wait":
            yield Blank(label="blank before the change")
            yield Wait(s.wait_s, label=f"wait {s.wait_s:g} s")
            yield Unblank(label="unblank")
            response["reward"] = {"dose_saved_e": electrons(current, max(until, 0.0)), "transition_captured": False}
            sentence = f"blanked for {s.wait_s:g} s at {now_s:.1f} s"
        elif s.response == "fresh_area":
            yield MoveStage.by(x=s.fresh_step_nm, label="move to a fresh area")
            assert self.forecaster is not None
            self.forecaster.reset()
            self.__area += 1
            response["reward"] = {"dose_saved_e": electrons(current, max(until, 0.0)), "transition_captured": False}
            sentence = f"moved {s.fresh_step_nm:g} nm to a fresh area at {now_s:.1f} s"
        else:
            before = forecast.measured
            spectra = []
            for k, position in enumerate(_grid(s.position_nm, s.capture_grid, s.spectrum_image_step_nm)):
                m = yield Acquire(position, s.capture_exposure_ms, label=f"capture pixel {k + 1} of {s.capture_grid ** 2}")
                spectra.append(numpy.asarray(m.xdata.data, dtype=float))
            calibration = m.xdata.dimensional_calibrations[-1]
            energies = calibration.offset + calibration.scale * numpy.arange(len(spectra[-1]))
            assert self.forecaster is not None
            probe = Preprocessor(window_eV=s.window_eV, align="none", background_fit_eV=s.background_fit_eV).prepare(spectra[-1], energies)
            after = float(self.forecaster.quantity(probe.values, probe.axis_eV))
            captured = bool(s.condition.met(after)) and not bool(s.condition.met(before))
            response["reward"] = {"dose_saved_e": 0.0, "transition_captured": captured, "quantity_before": before, "quantity_after": after}
            cube = numpy.stack(spectra).reshape(s.capture_grid, s.capture_grid, -1)
            step = s.spectrum_image_step_nm
            xd = DataAndMetadata.new_data_and_metadata(cube, intensity_calibration=Calibration.Calibration(units="counts"),
                                                       dimensional_calibrations=[Calibration.Calibration(0.0, step, "nm"), Calibration.Calibration(0.0, step, "nm"), calibration],
                                                       data_descriptor=DataAndMetadata.DataDescriptor(False, 2, 1))
            yield Publish(Product(f"capture-{len(self.responses) + 1}", "Forecast watch: captured transition", xd,
                                  caption=f"{s.capture_grid}x{s.capture_grid} spectrum image at {s.capture_exposure_ms:g} ms per pixel, recorded because "
                                          f"the forecast said {s.condition}; {s.condition.quantity} {before:.3g} -> {after:.3g}"))
            sentence = f"recorded a {s.capture_grid}x{s.capture_grid} spectrum image at {now_s:.1f} s"
        response["action"] = sentence
        self.responses.append(response)
        yield Report(response, status=f"acted: {sentence} (P = {probability:.2f} that {s.condition})")
        yield from self.__publish(forecast, sentence)

    def __action_sentence(self) -> str:
        if not self.responses:
            return "no action taken"
        return "; ".join(str(r["action"]) for r in self.responses)

    # -- products ----------------------------------------------------------------

    def __publish(self, forecast: Forecast | None, action: str) -> SubPlan:
        s = self.settings
        if not self.__series:
            return
        series = numpy.stack(self.__series)
        axis = s.preprocessor().axis_eV
        times = numpy.asarray(self.__times)
        period = float(numpy.median(numpy.diff(times))) if len(times) > 1 else s.exposure_ms * 1e-3
        energy = Calibration.Calibration(float(axis[0]), float(axis[1] - axis[0]), "eV")
        caption_condition = f"watching for: {s.condition} (acting at P >= {s.condition.confidence:g}); response: {s.response.replace('_', ' ')}"
        action_text = action or self.__action_sentence()
        yield Publish(Product("series", "Forecast watch: measured series", DataAndMetadata.new_data_and_metadata(
            series, intensity_calibration=Calibration.Calibration(units="fraction of window"),
            dimensional_calibrations=[Calibration.Calibration(float(times[0]), period, "s"), energy]),
            caption=f"{len(times)} prepared spectra (aligned, background removed, unit area), time down, energy across. {caption_condition}. {action_text}",
            display=Display(color_map="viridis")))
        if forecast is None:
            return
        yield Publish(Product("forecast", "Forecast watch: forecast spectra", DataAndMetadata.new_data_and_metadata(
            forecast.spectra, intensity_calibration=Calibration.Calibration(units="fraction of window"),
            dimensional_calibrations=[Calibration.Calibration(float(forecast.times_s[0]), period, "s"), energy]),
            caption=f"the next {len(forecast.times_s)} spectra as forecast at {times[-1]:.1f} s (median). {caption_condition}. {action_text}",
            display=Display(color_map="viridis")))
        # The quantity: measured, then forecast median and band, on one time axis (rows: measured, forecast, band low, band high).
        n, h = len(self.__quantity), len(forecast.quantity)
        rows = numpy.full((4, n + h), numpy.nan)
        rows[0, :n] = self.__quantity
        rows[1, n - 1] = rows[2, n - 1] = rows[3, n - 1] = forecast.denoised
        rows[1, n:], rows[2, n:], rows[3, n:] = forecast.quantity, forecast.low, forecast.high
        coverage = self.forecaster.calibration.coverage() if self.forecaster is not None else float("nan")
        metadata = {"nion_autoem": {"rows": ["measured", "forecast median", "band 5%", "band 95%"], "condition": s.condition.to_dict(),
                                    "threshold": s.condition.threshold, "action": action_text, "coverage90": coverage}}
        yield Publish(Product("quantity", f"Forecast watch: {s.condition.quantity}", DataAndMetadata.new_data_and_metadata(
            rows, intensity_calibration=Calibration.Calibration(units=""),
            dimensional_calibrations=[Calibration.Calibration(), Calibration.Calibration(float(times[0]), period, "s")], metadata=metadata,
            data_descriptor=DataAndMetadata.DataDescriptor(False, 1, 1)),
            caption=f"{s.condition.quantity}: measured (row 1), forecast median (2) and 90 % band (3-4); threshold {s.condition.threshold:g}. "
                    f"{caption_condition}. Action: {action_text}. Band coverage so far {coverage:.2f}."))
