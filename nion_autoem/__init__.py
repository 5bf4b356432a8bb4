"""nion-autoem: autonomous STEM experiments inside Nion Swift.

The instrument facade (:mod:`nion_autoem.instrument`), the action language
(:mod:`nion_autoem.actions`), policies (:mod:`nion_autoem.products`), the runner
(:mod:`nion_autoem.runner`) and the journal (:mod:`nion_autoem.journal`) are
plain Python.  Swift glue lives in :mod:`nion_autoem.swift`.
"""

__version__ = "0.1.0"
