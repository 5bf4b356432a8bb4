"""Fixtures of this folder: one real 2-worker LocalCluster, and one real MLflow tracking server with its model registry.

Both are started once per session and stopped at the end.
"""

from __future__ import annotations

import dataclasses
import pathlib
import socket
import typing

import distributed
import pytest

from nion_autoem_models import distributed as elit_dask
from nion_autoem_models import mlflow_registry


@pytest.fixture(scope="session")
def client() -> typing.Iterator[distributed.Client]:
    with elit_dask.local_cluster(workers=2, torch_threads=1) as c:
        yield c


@dataclasses.dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server``: its address and the folder where it stores the artifacts it serves."""

    uri: str
    artifacts: pathlib.Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[MlflowServer]:
    """``mlflow server`` on 127.0.0.1 (a free port), with a SQLite backend store and a temporary artifact folder it serves."""
    folder = tmp_path_factory.mktemp("mlflow")
    with mlflow_registry.local_server(folder) as uri:
        yield MlflowServer(uri, folder / "artifacts")
