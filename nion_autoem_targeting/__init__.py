"""Pure-algorithm building blocks for beam-targeting policies.

- :mod:`.changepoint`: detect an atom's ejection in the ADF counts under the probe.
- :mod:`.ordering`: a short visiting order through the targets.
- :mod:`.drift`: measure stage drift between frames and predict it.
- :mod:`.selection`: pick targets from an atom table by class, region, line or clicks.
- :mod:`.tracking`: find a column from a small excursion of the probe around it (atom tracking).

Nothing here imports Swift; every piece works on numpy arrays from a notebook.
"""

from __future__ import annotations

from nion_autoem_targeting.changepoint import Detection
from nion_autoem_targeting.changepoint import PoissonCusum
from nion_autoem_targeting.changepoint import detect_drop
from nion_autoem_targeting.changepoint import estimate_rate
from nion_autoem_targeting.changepoint import false_alarm_probability
from nion_autoem_targeting.changepoint import threshold_for_false_alarm
from nion_autoem_targeting.drift import DriftEstimator
from nion_autoem_targeting.drift import measure_shift
from nion_autoem_targeting.ordering import nearest_neighbour_path
from nion_autoem_targeting.ordering import path_length
from nion_autoem_targeting.ordering import shortest_path
from nion_autoem_targeting.selection import in_region
from nion_autoem_targeting.selection import near_line
from nion_autoem_targeting.selection import nearest_to
from nion_autoem_targeting.selection import select_targets
from nion_autoem_targeting.tracking import ColumnFix
from nion_autoem_targeting.tracking import locate_column

__all__ = [
    "ColumnFix",
    "Detection",
    "DriftEstimator",
    "PoissonCusum",
    "detect_drop",
    "estimate_rate",
    "false_alarm_probability",
    "in_region",
    "locate_column",
    "measure_shift",
    "near_line",
    "nearest_neighbour_path",
    "nearest_to",
    "path_length",
    "select_targets",
    "shortest_path",
    "threshold_for_false_alarm",
]
