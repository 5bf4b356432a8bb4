"""What a remote client may ask for: an allow-list of plans, each parameter with its type and range.

A client names a plan and gives parameters as plain values; every one is
checked here (type first, then range) before a plan object is built, so a
plan constructor never sees a value a person could not have typed into the
panel.  Only the experiments below exist remotely, and only through these
parameters: no file paths (a model path would let a client load any file),
no callables, no instrument calls.

Examples
--------
>>> spec = PLANS["point-spectroscopy"]
>>> values = spec.validate({"points": 3, "band_eV": [1.0, 2.0]})
>>> values["points"], values["band_eV"], values["exposure_ms"]
(3, (1.0, 2.0), 20.0)
>>> spec.validate({"points": "3"})
Traceback (most recent call last):
...
TypeError: point-spectroscopy: points must be a whole number, got str '3'
"""

from __future__ import annotations

import dataclasses
import math
import typing

from nion_autoem.geometry import ScanFrame
from nion_autoem.plan import Plan
from nion_autoem.runner import Budget

Kind = typing.Literal["int", "float", "bool", "choice", "band", "points"]
#: Most points a client may give (beam targeting); more would be a panel's job, not a command's.
MAX_POINTS = 100
MAX_NAME = 64


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of a remote plan.

    Parameters
    ----------
    name : str
        As the client passes it.
    kind : {'int', 'float', 'bool', 'choice', 'band', 'points'}
        ``band`` is a (low, high) pair with low < high; ``points`` a list of (y, x) pairs.
    low, high : float or None
        Inclusive range of numbers (of both ends of a band, of each coordinate of points).
    default : any
        The value when the client gives none; ``None`` with ``required`` unset means "not set".
    choices : tuple of str
        The allowed values of a ``choice``.
    doc : str
        What it means, with its unit.
    required : bool
        The client must give it.
    """

    name: str
    kind: Kind
    doc: str
    low: float | None = None
    high: float | None = None
    default: typing.Any = None
    choices: tuple[str, ...] = ()
    required: bool = False

    def describe(self) -> dict[str, typing.Any]:
        """The parameter as plain data, for :meth:`PlanSpec.describe`."""
        d: dict[str, typing.Any] = {"type": self.kind, "doc": self.doc, "required": self.required,
                                    "default": list(self.default) if isinstance(self.default, tuple) else self.default}
        if self.low is not None:
            d["min"] = self.low
        if self.high is not None:
            d["max"] = self.high
        if self.choices:
            d["choices"] = list(self.choices)
        return d

    def check(self, value: typing.Any, plan: str) -> typing.Any:
        """The value, normalised (ints stay ints, floats become floats, pairs tuples); ``TypeError``/``ValueError`` naming the parameter otherwise."""
        where = f"{plan}: {self.name}"
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"{where} must be true or false, got {_describe(value)}")
            return value
        if self.kind == "choice":
            if not isinstance(value, str):
                raise TypeError(f"{where} must be one of {list(self.choices)}, got {_describe(value)}")
            if value not in self.choices:
                raise ValueError(f"{where} must be one of {list(self.choices)}, got {value[:40]!r}")
            return value
        if self.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{where} must be a whole number, got {_describe(value)}")
            self.__in_range(value, where)
            return value
        if self.kind == "float":
            return self.__number(value, where)
        if self.kind == "band":
            pair = self.__pair(value, where, "(low, high)")
            if not pair[0] < pair[1]:
                raise ValueError(f"{where} must be (low, high) with low < high, got {list(pair)}: swap the two values")
            return pair
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where} must be a list of (y, x) pairs, got {_describe(value)}")
        if not 1 <= len(value) <= MAX_POINTS:
            raise ValueError(f"{where} must hold 1 to {MAX_POINTS} points, got {len(value)}")
        return tuple(self.__pair(p, f"{where}[{i}]", "(y, x)") for i, p in enumerate(value))

    def __number(self, value: typing.Any, where: str) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"{where} must be a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value}")
        self.__in_range(value, where)
        return float(value)

    def __pair(self, value: typing.Any, where: str, shape: str) -> tuple[float, float]:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise TypeError(f"{where} must be a {shape} pair of numbers, got {_describe(value)}")
        return self.__number(value[0], where), self.__number(value[1], where)

    def __in_range(self, value: float, where: str) -> None:
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError(f"{where} must be in [{self.low:g}, {self.high:g}], got {value:g}")


def _describe(value: typing.Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


@dataclasses.dataclass(frozen=True)
class PlanSpec:
    """A plan a client may run: its name, what it does, its parameters and how the plan object is built from them."""

    name: str
    title: str
    params: tuple[Param, ...]
    build: typing.Callable[[dict[str, typing.Any]], Plan]

    def validate(self, parameters: typing.Any) -> dict[str, typing.Any]:
        """Every parameter checked and normalised, defaults filled in; unknown or missing ones refused by name."""
        if not isinstance(parameters, dict):
            raise TypeError(f"{self.name}: parameters must be a map of names to values, got {_describe(parameters)}")
        known = {p.name: p for p in self.params}
        unknown = [k for k in parameters if k not in known]
        if unknown:
            shown = ", ".join(repr(str(k)[:MAX_NAME]) for k in unknown[:5])
            raise TypeError(f"{self.name} has no parameter {shown}; its parameters are: {', '.join(known)}")
        values: dict[str, typing.Any] = {}
        for param in self.params:
            if param.name in parameters and parameters[param.name] is not None:
                values[param.name] = param.check(parameters[param.name], self.name)
            elif param.required:
                raise TypeError(f"{self.name}: {param.name} is required ({param.doc})")
            else:
                values[param.name] = param.default
        return values

    def describe(self) -> dict[str, typing.Any]:
        """The plan as plain data: title and parameters, for ``list_plans``."""
        return {"title": self.title, "parameters": {p.name: p.describe() for p in self.params}}


def _survey_frame(v: dict[str, typing.Any], plan: str) -> ScanFrame | None:
    if (v["survey_pixels"] is None) != (v["field_nm"] is None):
        raise ValueError(f"{plan}: give survey_pixels and field_nm together (a new survey frame), or neither (keep the current scan)")
    return None if v["field_nm"] is None else ScanFrame((v["survey_pixels"], v["survey_pixels"]), v["field_nm"])


_EXPOSURE = Param("exposure_ms", "float", "exposure per spectrum (ms)", 0.01, 10_000.0, 20.0)
_PIXEL_TIME = Param("pixel_time_us", "float", "survey pixel time (us); none keeps the current one", 0.05, 1000.0)


def _survey(default_pixels: int | None, default_field: float | None, field_low: float, field_high: float) -> tuple[Param, ...]:
    return (Param("survey_pixels", "int", "pixels along each side of the survey", 16, 2048, default_pixels),
            Param("field_nm", "float", "survey field of view (nm)", field_low, field_high, default_field), _PIXEL_TIME)


def _point_spectroscopy(v: dict[str, typing.Any]) -> Plan:
    from nion_autoem.plans.point_spectroscopy import PointSpectroscopy
    return PointSpectroscopy(points=v["points"], refine_points=v["refine_points"], exposure_ms=v["exposure_ms"], band_eV=v["band_eV"],
                             survey_frame=_survey_frame(v, "point-spectroscopy"), pixel_time_us=v["pixel_time_us"], min_distance_px=v["min_distance_px"])


def _dkl_spectroscopy(v: dict[str, typing.Any]) -> Plan:
    # imported when used: torch and GPyTorch are slow to import
    from nion_autoem.plans.dkl_spectroscopy import DKLSettings
    from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
    from nion_autoem.plans.dkl_spectroscopy import band_integral
    from nion_autoem_dkl.agent import AgentConfig
    settings = DKLSettings(patch_size=v["patch_size"], stride=v["stride"] or max(v["patch_size"] // 4, 1), normalization=v["normalization"],
                           detector="eels", exposure_ms=v["exposure_ms"], batch_size=v["batch_size"], max_measurements=v["measurements"],
                           survey_frame=_survey_frame(v, "dkl-spectroscopy"), pixel_time_us=v["pixel_time_us"])
    agent = AgentConfig(acquisition=v["acquisition"], n_initial=v["n_initial"], exclusion_radius=v["exclusion_radius"], seed=v["seed"],
                        refit_every=v["refit_every"], warm_iterations=v["warm_iterations"], full_iterations=v["full_iterations"])
    return DKLSpectroscopy(band_integral(v["band_eV"]), settings, agent)


def _atom_finding(v: dict[str, typing.Any]) -> Plan:
    from nion_autoem.plans.atom_finding import AtomFinding
    return AtomFinding(frames=v["frames"], survey_frame=ScanFrame((v["survey_pixels"], v["survey_pixels"]), v["field_nm"]), pixel_time_us=v["pixel_time_us"],
                       ensemble=v["ensemble"], adapt=v["adapt"], lattice=v["lattice"])


def _beam_targeting(v: dict[str, typing.Any]) -> Plan:
    from nion_autoem.plans.beam_targeting import BeamTargeting
    from nion_autoem.plans.beam_targeting import TargetingSettings
    frame = ScanFrame((v["survey_pixels"], v["survey_pixels"]), v["field_nm"])
    common = {"kind": v["kind"], "max_targets": v["max_targets"], "sample_time_us": v["sample_time_us"], "max_dose_per_target_e": v["max_dose_per_target_e"],
              "pixel_time_us": v["pixel_time_us"]}
    if v["points_nm"] is not None:
        half = v["field_nm"] / 2
        outside = [p for p in v["points_nm"] if max(abs(p[0]), abs(p[1])) > half]
        if outside:
            raise ValueError(f"beam-targeting: points_nm must lie in the field (|y|, |x| <= {half:g} nm from its centre), got {list(outside[0])}")
        return BeamTargeting(TargetingSettings(frame, points_nm=v["points_nm"], **common))
    half = 0.4 * v["field_nm"]  # as the panel's "vacancy line across the field"
    return BeamTargeting(TargetingSettings(frame, line=((0.0, -half), (0.0, half), 0.35), **common))


_ACQUISITIONS = ("thompson", "log_ei", "ucb", "max_uncertainty")

PLANS: dict[str, PlanSpec] = {spec.name: spec for spec in (
    PlanSpec("point-spectroscopy", "Survey, spectra on the brightest features, then a closer look at the best", (
        Param("points", "int", "spectra on survey features", 1, 1000, 8),
        Param("refine_points", "int", "extra spectra around the best feature", 0, 64, 4),
        _EXPOSURE,
        Param("band_eV", "band", "energy band that scores a spectrum (eV)", -1000.0, 10_000.0, (5.0, 40.0)),
        Param("min_distance_px", "int", "least separation of picked features (survey pixels)", 1, 256, 8),
        *_survey(None, None, 0.1, 100_000.0)), _point_spectroscopy),
    PlanSpec("dkl-spectroscopy", "Deep-kernel active EELS: the survey's structure decides where the next spectrum goes", (
        Param("band_eV", "band", "energy band whose intensity is sought (eV)", -1000.0, 10_000.0, (5.0, 40.0)),
        Param("measurements", "int", "spectra to record", 1, 5000, 50),
        _EXPOSURE,
        Param("patch_size", "int", "side of the survey patch around each candidate (pixels)", 3, 128, 16),
        Param("stride", "int", "spacing of the candidate grid (pixels); none: patch_size // 4", 1, 128),
        Param("batch_size", "int", "candidates measured per decision", 1, 64, 1),
        Param("normalization", "choice", "patch normalisation", default="global", choices=("global", "patch", "none")),
        Param("acquisition", "choice", "where to look next", default="thompson", choices=_ACQUISITIONS),
        Param("n_initial", "int", "measurements chosen before the model is trusted", 0, 1000, 10),
        Param("exclusion_radius", "float", "no new probe this close to a measured one (pixels)", 0.0, 1000.0, 0.0),
        Param("refit_every", "int", "hyperparameter update every this many measurements", 1, 1000, 10),
        Param("warm_iterations", "int", "iterations of a warm-started update", 0, 1000, 10),
        Param("full_iterations", "int", "iterations of a full fit", 0, 1000, 80),
        Param("seed", "int", "seed of all randomness", 0, 2**31 - 1, 0),
        *_survey(None, None, 0.1, 100_000.0)), _dkl_spectroscopy),
    PlanSpec("atom-finding", "Survey frames and find and classify the atomic columns in each (ELIT)", (
        Param("frames", "int", "frames to take", 1, 1000, 1),
        Param("ensemble", "choice", "packaged model", default="mos2", choices=("mos2", "graphene")),
        Param("lattice", "choice", "lattice the classes belong to", default="mos2", choices=("mos2", "graphene")),
        Param("adapt", "bool", "adapt the model to the sample as frames come in", default=False),
        *_survey(256, 3.0, 0.5, 20.0)), _atom_finding),
    PlanSpec("beam-targeting", "Atom-by-atom fabrication: dwell on chosen columns until each changes", (
        Param("kind", "choice", "class of column to target", default="S2", choices=("Mo", "S2", "S1")),
        Param("max_targets", "int", "targets at most", 1, 100, 10),
        Param("points_nm", "points", "target the columns nearest these (y, x) positions (nm from the field's centre); none: a line across the field",
              -10.0, 10.0),
        Param("sample_time_us", "float", "ADF sample time while dwelling (us)", 1.0, 10_000.0, 100.0),
        Param("max_dose_per_target_e", "float", "electrons after which a target is given up", 1.0, 1e12, 5e9),
        Param("survey_pixels", "int", "pixels along each side of the survey", 64, 1024, 256),
        Param("field_nm", "float", "survey field of view (nm)", 0.5, 20.0, 3.0),
        Param("pixel_time_us", "float", "survey pixel time (us)", 0.05, 1000.0, 1.0)), _beam_targeting),
)}

BUDGET = PlanSpec("budget", "Limits on a run; whichever is reached first ends it", (
    Param("max_steps", "int", "actions performed", 1, 1_000_000, 500),
    Param("max_dose_e", "float", "electrons delivered", 1.0, 1e15),
    Param("max_time_s", "float", "wall-clock seconds", 0.1, 7 * 86400.0)), lambda v: typing.cast(Plan, None))


def plan_spec(name: typing.Any) -> PlanSpec:
    """The allow-listed plan of that name; ``LookupError`` (naming the allowed ones) for any other."""
    if not isinstance(name, str):
        raise TypeError(f"plan_name must be a string, one of {list(PLANS)}; got {_describe(name)}")
    spec = PLANS.get(name)
    if spec is None:
        raise LookupError(f"plan {name[:MAX_NAME]!r} is not on this server's allow-list; it runs: {', '.join(PLANS)}")
    return spec


def build_plan(name: typing.Any, parameters: typing.Any) -> tuple[Plan, dict[str, typing.Any]]:
    """Check everything, then build the plan; returns it with the normalised parameters.

    The plan's own constructor checks again (e.g. DKL settings); its error is
    passed on as a ``ValueError`` naming the plan.
    """
    spec = plan_spec(name)
    values = spec.validate(parameters)
    try:
        return spec.build(values), values
    except (ValueError, TypeError) as e:
        raise ValueError(f"{spec.name}: {e}") from e


def build_budget(budget: typing.Any) -> Budget:
    """A :class:`~nion_autoem.runner.Budget` from plain values (default: 500 steps, as the console)."""
    values = BUDGET.validate({} if budget is None else budget)
    return Budget(max_steps=values["max_steps"], max_dose_e=values["max_dose_e"], max_time_s=values["max_time_s"])


def describe_plans() -> dict[str, typing.Any]:
    """Every allow-listed plan and the budget, as plain data."""
    return {"plans": {name: spec.describe() for name, spec in PLANS.items()}, "budget": BUDGET.describe()}
