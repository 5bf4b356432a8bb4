"""ELIT atom finding: ensembles of tiny U-Nets trained on simulated lattices.

Pure algorithms (numpy, scipy, scikit-image, torch); no Nion Swift imports, so
everything here works from a notebook:

>>> from nion_autoem_elit import find_atoms, generate_frame, mos2_lattice
>>> frame = generate_frame(mos2_lattice(), (128, 128), seed=0)
>>> result = find_atoms(frame.image)
>>> sorted(result.counts())
['Mo', 'S1', 'S2', 'W']
"""

from __future__ import annotations

from nion_autoem_elit.api import find_atoms
from nion_autoem_elit.api import resolve_ensemble
from nion_autoem_elit.atoms import AtomFindingResult
from nion_autoem_elit.atoms import extract_atoms
from nion_autoem_elit.ensemble import Ensemble
from nion_autoem_elit.lattices import LatticeSpec
from nion_autoem_elit.lattices import graphene_lattice
from nion_autoem_elit.lattices import mos2_lattice
from nion_autoem_elit.lattices import square_lattice
from nion_autoem_elit.storage import ModelIntegrityError
from nion_autoem_elit.storage import load_ensemble
from nion_autoem_elit.storage import save_ensemble
from nion_autoem_elit.synthetic import ImagingConditions
from nion_autoem_elit.synthetic import ImagingRanges
from nion_autoem_elit.synthetic import SyntheticFrame
from nion_autoem_elit.synthetic import generate_frame

__all__ = [
    "AtomFindingResult",
    "Ensemble",
    "ImagingConditions",
    "ImagingRanges",
    "LatticeSpec",
    "ModelIntegrityError",
    "SyntheticFrame",
    "extract_atoms",
    "find_atoms",
    "generate_frame",
    "graphene_lattice",
    "load_ensemble",
    "mos2_lattice",
    "resolve_ensemble",
    "save_ensemble",
    "square_lattice",
]
