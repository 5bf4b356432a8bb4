"""Models where the compute is: a model repository with provenance and ELIT training on Dask.

Pure (no Nion Swift imports): usable from a notebook or a cluster node.

>>> import tempfile
>>> from nion_autoem_models import ModelRepository, seed_from_package
>>> repo = ModelRepository(tempfile.mkdtemp())
>>> [v.ref for v in seed_from_package(repo)]
['graphene@1', 'mos2@1']
>>> repo.load_ensemble("mos2@production").class_names
('background', 'Mo', 'S2', 'S1', 'W')

A lab's MLflow model registry works the same way: ``open_repository("http://models.lab:5000")``.
"""

from __future__ import annotations

from nion_autoem_models.progress import JobProgress
from nion_autoem_models.progress import ProgressSnapshot
from nion_autoem_models.repository import MissingParentError
from nion_autoem_models.repository import ModelHashError
from nion_autoem_models.repository import ModelRepository
from nion_autoem_models.repository import ModelStore
from nion_autoem_models.repository import ModelVersion
from nion_autoem_models.repository import UnknownModelError
from nion_autoem_models.repository import manifest_entry
from nion_autoem_models.repository import open_repository
from nion_autoem_models.repository import seed_from_package

__all__ = [
    "JobProgress",
    "MissingParentError",
    "ModelHashError",
    "ModelRepository",
    "ModelStore",
    "ModelVersion",
    "ProgressSnapshot",
    "UnknownModelError",
    "manifest_entry",
    "open_repository",
    "seed_from_package",
]
