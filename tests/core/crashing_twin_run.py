"""Dwell on the MoS2 twin until the parent kills us mid-dwell (see test_plans_on_twin)."""

from __future__ import annotations

import sys

from nion_autoem.runner import ExperimentRunner
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.usim_twin import create_configuration
from tests.core.plans import dwell_series

if __name__ == "__main__":
    with UsimSession(create_configuration("mos2", seed=3)) as session:
        runner = ExperimentRunner(session.microscope(), dwell_series(dwells=400, samples=2000, sample_time_us=10.0), run_dir=sys.argv[1])
        session.run_until_done(runner, timeout=600)
