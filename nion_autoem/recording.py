"""Turn a recorded session (an operator's, or any run's) into a plan.

:class:`~nion_autoem.swift.recorder.OperatorRecorder` writes what a person
does in Swift into the same journal a plan writes.  This module reads such a
journal back and makes it runnable again:

- :func:`plan_from_journal` gives a :class:`~nion_autoem.plan.Plan` that
  yields the recorded actions in order, for the engine to run on the twin or
  on the instrument;
- :func:`plan_script` writes the Python source of an equivalent ``@plan``
  generator function, the starting point for editing a manual session into an
  experiment.

Pure Python: no Swift imports, so it works offline on a copied run directory.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import typing

from nion_autoem.actions import Action
from nion_autoem.journal import read_journal
from nion_autoem.plan import PlanGenerator


@dataclasses.dataclass(frozen=True)
class RecordedPlan:
    """A plan that yields a fixed sequence of recorded actions, ignoring the measurements it is sent.

    Parameters
    ----------
    name : str
        The plan's name, journaled with every run of it.
    actions : tuple of Action
        What to do, in order.
    source_run_dir : str
        The run the actions were recorded in.
    """

    name: str
    actions: tuple[Action, ...]
    source_run_dir: str

    @property
    def parameters(self) -> dict[str, typing.Any]:
        return {"source_run_dir": self.source_run_dir, "actions": len(self.actions)}

    def messages(self) -> PlanGenerator:
        # Not `yield from self.actions`: the engine send()s measurements, which a tuple iterator cannot take.
        for action in self.actions:  # noqa: UP028
            yield action
        return f"replayed {len(self.actions)} recorded actions from {self.source_run_dir}"


def recorded_actions(run_dir: str | os.PathLike[str]) -> tuple[Action, ...]:
    """The actions journaled in ``run_dir``, in step order."""
    return tuple(step.action for step in read_journal(run_dir).steps)


def _run_id(run_dir: pathlib.Path) -> str:
    header = read_journal(run_dir).header
    return str(header.get("run_id") or run_dir.name)


def plan_from_journal(run_dir: str | os.PathLike[str]) -> RecordedPlan:
    """A plan, named ``replay-of-<run_id>``, that yields the actions recorded in ``run_dir`` in order.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` holds no journal.
    """
    path = pathlib.Path(run_dir)
    return RecordedPlan(f"replay-of-{_run_id(path)}", recorded_actions(path), str(path))


def plan_script(run_dir: str | os.PathLike[str], *, function_name: str = "recorded_session") -> str:
    """Python source of a ``@plan`` generator function that yields the actions recorded in ``run_dir``.

    Each action is written with its dataclass repr, which names every field
    (a :class:`~nion_autoem.geometry.ScanFrame` included) and prints floats
    exactly, so ``exec`` of the source gives a plan equal, action for action,
    to :func:`plan_from_journal`.

    Examples
    --------
    >>> source = plan_script("runs/operator-1")  # doctest: +SKIP
    >>> namespace = {}; exec(source, namespace)  # doctest: +SKIP
    >>> p = namespace["recorded_session"]()  # doctest: +SKIP
    """
    if not function_name.isidentifier():
        raise ValueError(f"function_name must be a Python identifier, got {function_name!r}")
    path = pathlib.Path(run_dir)
    actions = recorded_actions(path)
    run_id = _run_id(path)
    kinds = sorted({type(action).__name__ for action in actions})
    lines = [f'"""The session recorded in {_safe_comment(str(path))}, as a plan."""', "", "from __future__ import annotations", ""]
    lines += [f"from nion_autoem.actions import {name}" for name in kinds]
    lines += ["from nion_autoem.geometry import ScanFrame", "from nion_autoem.plan import PlanGenerator", "from nion_autoem.plan import plan", "", ""]
    lines += [f"@plan({f'replay-of-{run_id}'!r})", f"def {function_name}() -> PlanGenerator:"]
    lines += [f"    yield {action!r}" for action in actions]
    if not actions:
        # An empty generator function still needs a yield to be a generator.
        lines += ["    return", "    yield"]
    return "\n".join(lines) + "\n"


def _safe_comment(text: str) -> str:
    # The path goes into a docstring: keep quotes and backslashes from ending it early.
    return re.sub(r'["\\]', "_", text)
