"""One real 2-worker LocalCluster (processes, 1 thread each) shared by the tests of this folder, closed at the end."""

from __future__ import annotations

import typing

import distributed
import pytest

from nion_autoem_models import distributed as elit_dask


@pytest.fixture(scope="session")
def client() -> typing.Iterator[distributed.Client]:
    with elit_dask.local_cluster(workers=2, torch_threads=1) as c:
        yield c
