"""When to stop measuring: the acquisition has gone flat, or the dose is spent."""

from __future__ import annotations

import dataclasses

import nion_autoem_checks as _checks


@dataclasses.dataclass
class StoppingRule:
    """Stop after ``patience`` consecutive steps whose best score is below ``threshold``.

    Parameters
    ----------
    threshold : float or None
        Score below which a step counts as "nothing worth measuring" (in the
        acquisition's own units, e.g. log-EI). ``None`` disables this test.
    patience : int
        Number of consecutive low-score steps before stopping.

    Examples
    --------
    >>> rule = StoppingRule(threshold=-5.0, patience=2)
    >>> [rule.update(s) for s in (-6.0, -4.0, -6.0, -7.0)]
    [False, False, False, True]
    """

    threshold: float | None = None
    patience: int = 3
    _low_steps: int = dataclasses.field(default=0, init=False)
    stopped: bool = dataclasses.field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.threshold is not None:
            _checks.number(self.threshold, "threshold", "None or a finite score")
        _checks.whole(self.patience, "patience", 1)

    def update(self, best_score: float, budget_exhausted: bool = False) -> bool:
        """Record the best score of a step; return whether to stop now."""
        if budget_exhausted:
            self.stopped = True
            return True
        if self.threshold is None:
            return self.stopped
        self._low_steps = self._low_steps + 1 if best_score < self.threshold else 0
        if self._low_steps >= self.patience:
            self.stopped = True
        return self.stopped
