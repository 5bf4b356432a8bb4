"""Digital-twin samples for the simulated STEM (nionswift-usim).

Pure models (numpy/scipy only): :mod:`~nion_autoem.twin.lattice`,
:mod:`~nion_autoem.twin.mos2`, :mod:`~nion_autoem.twin.damage`,
:mod:`~nion_autoem.twin.plasmonic`, :mod:`~nion_autoem.twin.diffraction`,
:mod:`~nion_autoem.twin.clock`.  Swift glue: :mod:`nion_autoem.swift.usim_twin`
(import it explicitly; it pulls in Nion).
"""

from __future__ import annotations
