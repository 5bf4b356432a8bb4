"""Run a slow walk on the replay microscope until the parent kills us (see test_journal)."""

from __future__ import annotations

import sys

from nion_autoem.runner import ExperimentRunner
from tests.core.plans import WalkPlan
from tests.core.plans import replay_scope

if __name__ == "__main__":
    ExperimentRunner(replay_scope(), WalkPlan(points=400, delay_s=0.02), run_dir=sys.argv[1]).run()
