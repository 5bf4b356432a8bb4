"""Plans: experiments as generators of microscope actions.

A plan is a generator that yields actions and receives their measurements::

    def survey_then_spectra(points):
        frame = yield Survey(label="survey")            # the engine scans and sends the Measurement back
        for position in brightest(frame, points):
            spectrum = yield Acquire(position, 20.0)
            yield Report({"band": band(spectrum)})       # journaled with the step
            yield Checkpoint()                           # a safe place to pause
        return f"{points} spectra"                       # the run's final status says what was achieved

Sub-plans compose with ``yield from`` and hand back their result, so
"register, then dwell" or "find the atoms in this frame" is written once and
used by every experiment.  Besides actions a plan may yield

- :class:`Checkpoint`: a safe point; a pause waits for the next one;
- :class:`Publish`: a product for the user (a Swift data item, or memory);
- :class:`Report`: a JSON-ready summary of the last step, the plan's own
  progress, the model behind its decisions, a status line.

The engine (:class:`~nion_autoem.runner.ExperimentRunner`) performs the
actions, journals every one, counts the dose, honours pause, stop, budgets and
suspenders, and makes the beam safe however the run ends.  Because a plan is
deterministic given its measurements, a journal can be replayed into a fresh
plan: that is how a run resumes after a crash without delivering any dose
twice.

A :class:`Plan` is anything with a ``name``, JSON-ready ``parameters`` and a
``messages()`` method that returns a fresh generator.  :func:`plan` turns a
generator function into one.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing

from nion_autoem.actions import Action
from nion_autoem.actions import is_action
from nion_autoem.instrument import Measurement
from nion_autoem.products import Product


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A safe point in a plan: nothing half-done, the beam may be blanked here.  A pause waits for the next one."""

    label: str = ""


@dataclasses.dataclass(frozen=True)
class Publish:
    """Show a product to the user; publishing the same key again updates it in place."""

    product: Product


@dataclasses.dataclass(frozen=True)
class Report:
    """What the plan wants journaled and shown.

    Parameters
    ----------
    result : mapping
        JSON-ready summary of the last step (merged into that step's journal record).
    fraction : float or None
        The plan's own idea of progress in [0, 1].
    model_version : str or None
        The model behind the decisions from now on, journaled with every step.
    status : str or None
        A sentence for the panel ("target 3 of 8: dwelling").
    """

    result: typing.Mapping[str, typing.Any] = dataclasses.field(default_factory=dict)
    fraction: float | None = None
    model_version: str | None = None
    status: str | None = None


Message = Action | Checkpoint | Publish | Report
"""Everything a plan may yield."""

PlanGenerator = typing.Generator[Message, typing.Any, typing.Any]
"""A running plan: yields messages, receives a Measurement after each action (None otherwise), returns its outcome."""

SubPlan = typing.Generator[Message, typing.Any, typing.Any]
"""A piece of a plan, used with ``yield from``; returns what it found."""


@dataclasses.dataclass(frozen=True)
class Reward:
    """What a plan optimises: a named score accumulated over the run.

    ``increment(measurement, result)`` returns this step's contribution from
    the measurement and the plan's :class:`Report` for that step; the engine
    journals the running total with every step and shows it as a curve, so
    plans can be compared on the same run.

    Examples
    --------
    >>> transformed = Reward("targets transformed", lambda m, r: float(r.get("outcome") == "transformed"), units="targets")
    >>> transformed.increment(None, {"outcome": "transformed"})
    1.0
    """

    name: str
    increment: typing.Callable[[Measurement | None, typing.Mapping[str, typing.Any]], float]
    units: str = ""


class Plan(typing.Protocol):
    """An experiment the engine can run, replay and resume."""

    @property
    def name(self) -> str:
        ...

    @property
    def parameters(self) -> typing.Mapping[str, typing.Any]:
        """JSON-ready parameters, journaled and attached to every product."""
        ...

    def messages(self) -> PlanGenerator:
        """A fresh generator of the plan's messages (called again to replay a journal)."""
        ...


def rewards_of(plan: Plan) -> tuple[Reward, ...]:
    """The rewards a plan declares (``plan.rewards``), if any."""
    return tuple(getattr(plan, "rewards", ()) or ())


@dataclasses.dataclass(frozen=True)
class GeneratorPlan:
    """A plan made from a generator function and its arguments (see :func:`plan`)."""

    name: str
    function: typing.Callable[..., PlanGenerator]
    args: tuple[typing.Any, ...] = ()
    kwargs: typing.Mapping[str, typing.Any] = dataclasses.field(default_factory=dict)
    rewards: tuple[Reward, ...] = ()

    @property
    def parameters(self) -> dict[str, typing.Any]:
        bound = inspect.signature(self.function).bind(*self.args, **self.kwargs)
        bound.apply_defaults()
        return {key: _json_ready(value) for key, value in bound.arguments.items()}

    def messages(self) -> PlanGenerator:
        generator = self.function(*self.args, **self.kwargs)
        if not inspect.isgenerator(generator):
            raise TypeError(f"plan {self.name!r}: {getattr(self.function, '__name__', self.function)} must be a generator function "
                            f"(it must `yield` actions), but it returned {type(generator).__name__}")
        return typing.cast(PlanGenerator, generator)


def plan(name: str, *, rewards: typing.Sequence[Reward] = ()) -> typing.Callable[[typing.Callable[..., PlanGenerator]], typing.Callable[..., GeneratorPlan]]:
    """Turn a generator function into a plan factory: calling it with arguments gives a :class:`Plan`.

    Examples
    --------
    >>> from nion_autoem.actions import Survey
    >>> @plan("two-surveys")
    ... def two_surveys(pixel_time_us=2.0):
    ...     yield Survey(pixel_time_us=pixel_time_us)
    ...     yield Survey(pixel_time_us=pixel_time_us)
    >>> p = two_surveys(pixel_time_us=4.0)
    >>> p.name, p.parameters
    ('two-surveys', {'pixel_time_us': 4.0})
    >>> [m.pixel_time_us for m in p.messages()]
    [4.0, 4.0]
    """

    def decorate(function: typing.Callable[..., PlanGenerator]) -> typing.Callable[..., GeneratorPlan]:
        @functools.wraps(function)
        def make(*args: typing.Any, **kwargs: typing.Any) -> GeneratorPlan:
            return GeneratorPlan(name, function, args, kwargs, tuple(rewards))

        return make

    return decorate


def _json_ready(value: typing.Any) -> typing.Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return repr(value)


# --- wrappers: plans around plans ---------------------------------------------------


def every_n_actions(inner: PlanGenerator, n: int, insert: typing.Callable[[], SubPlan], *, dose_only: bool = True) -> PlanGenerator:
    """Run ``inner``, inserting the sub-plan ``insert()`` after every ``n`` of its actions (e.g. refocus or re-register).

    With ``dose_only`` only actions that deliver dose are counted.  The
    inserted steps are part of the plan's own stream, so replay and resume
    see them exactly as they ran.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1 action, got {n}")
    count = 0
    reply: typing.Any = None
    while True:
        try:
            message = inner.send(reply)
        except StopIteration as stop:
            return stop.value
        reply = yield message
        if is_action(message) and (not dose_only or typing.cast(typing.Any, message).delivers_dose):
            count += 1
            if count % n == 0:
                yield from insert()


def with_cleanup(inner: PlanGenerator, cleanup: typing.Callable[[], SubPlan]) -> PlanGenerator:
    """Run ``inner``, then ``cleanup()`` whether ``inner`` finished or raised.

    On a stop the engine makes the beam safe itself (blanked, probe unparked)
    before anything else; the cleanup sub-plan is for what a plan wants put
    back (defocus, field) when it ends normally or with an error.
    """
    try:
        result = yield from inner
    except Exception:
        yield from cleanup()
        raise
    yield from cleanup()
    return result
