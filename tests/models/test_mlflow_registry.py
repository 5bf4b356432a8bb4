"""The model repository's interface against a real MLflow tracking server and its model registry (started by the ``mlflow_server`` fixture)."""

from __future__ import annotations

import contextlib
import pathlib
import socket
import threading

import numpy
import pytest
import torch

from nion_autoem_elit import ensemble
from nion_autoem_elit import iterative
from nion_autoem_elit import lattices
from nion_autoem_elit import model
from nion_autoem_elit import storage
from nion_autoem_elit import synthetic
from nion_autoem_models import mlflow_registry
from nion_autoem_models import repository
from nion_autoem_models import retraining
from nion_autoem_models.repository import MissingParentError
from nion_autoem_models.repository import ModelHashError
from nion_autoem_models.repository import UnknownModelError
from tests.models.conftest import MlflowServer
from tests.models.conftest import free_port


def tiny_ensemble(seed: int = 0) -> ensemble.Ensemble:
    torch.manual_seed(seed)
    return ensemble.Ensemble(model.EnsembleUNet(2, 3, 4), ("background", "A", "B"), {"lattice": "test"})


def test_the_registry_is_opened_from_its_address_or_the_environment(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = repository.open_repository(mlflow_server.uri)
    assert isinstance(repo, mlflow_registry.MlflowModelRepository) and isinstance(repo, repository.ModelStore)
    assert repo.location == mlflow_server.uri
    monkeypatch.setenv("NION_AUTOEM_MODELS", mlflow_server.uri + "/")
    assert repository.open_repository().location == mlflow_server.uri
    # A folder helper handed a registry address says what to use instead of making a folder called "http:".
    with pytest.raises(ValueError, match="registry address .*open_repository"):
        repository.default_folder()


def test_packaged_models_load_by_alias_from_the_registry(mlflow_server: MlflowServer) -> None:
    repo = repository.open_repository(mlflow_server.uri)
    seeded = repository.seed_from_package(repo)
    assert [v.ref for v in seeded] == ["graphene@1", "mos2@1"]
    mos2 = repo.resolve("mos2@production")
    assert mos2.ref == "mos2@1" and mos2.parent is None and mos2.recipe["steps"] == 4000
    assert mos2.imaging_ranges["pixel_size_A"] == [0.08, 0.16] and {"validation", "calibration_ece"} <= set(mos2.metrics)
    loaded = repo.load_ensemble("mos2@production")
    packaged = storage.load_ensemble("mos2")
    frame = numpy.random.default_rng(0).random((48, 48))
    assert numpy.allclose(loaded.member_probabilities(frame), packaged.member_probabilities(frame), atol=1e-6)
    assert loaded.metadata["uncertainty_calibration"] == packaged.metadata["uncertainty_calibration"]
    assert loaded.metadata["model_ref"] == "mos2@1"
    # Another session (a new repository object, nothing cached) sees the same registry; seeding again adds nothing.
    again = mlflow_registry.MlflowModelRepository(mlflow_server.uri)
    assert [v.ref for v in repository.seed_from_package(again)] == ["graphene@1", "mos2@1"]
    assert again.aliases()["mos2@production"] == "mos2@1" and [v.ref for v in again.list("mos2")] == ["mos2@1"]


def test_provenance_promotion_rollback_and_search_in_the_registry(mlflow_server: MlflowServer, tmp_path: pathlib.Path) -> None:
    repo = mlflow_registry.MlflowModelRepository(mlflow_server.uri)
    frame = tmp_path / "frame.npy"
    numpy.save(frame, numpy.zeros((4, 4)))
    base = repo.register("tiny", tiny_ensemble(0), recipe={"steps": 10}, code_version="test 1")
    repo.promote(base.ref, "production")
    manifest = [repository.manifest_entry(frame, "run-7")]
    adapted = repo.register("tiny", tiny_ensemble(1), recipe={"steps": 3}, code_version="test 2", parent="tiny@production",
                            data_manifest=manifest, metrics={"f1": 0.9}, imaging_ranges={"dose": [1, 2]})
    assert (base.version, adapted.version, adapted.parent) == (1, 2, "tiny@1")
    fresh = mlflow_registry.MlflowModelRepository(mlflow_server.uri)
    record = fresh.resolve("tiny@2")
    assert record == adapted  # every provenance field survives the registry
    assert record.data_manifest[0]["sha256"] == repository.file_sha256(frame) and record.imaging_ranges == {"dose": [1, 2]}
    assert [v.ref for v in fresh.lineage("tiny@2")] == ["tiny@2", "tiny@1"]
    assert [v.ref for v in fresh.search(run_id="run-7")] == ["tiny@2"]
    assert [v.ref for v in fresh.search(parent="tiny@1")] == ["tiny@2"]
    assert [v.ref for v in fresh.search("tiny", kind="elit-ensemble")] == ["tiny@1", "tiny@2"]
    fresh.promote(adapted.ref, "production")
    assert repo.resolve("tiny@production").version == 2  # seen by the other client at once: aliases are never cached
    frame_in = numpy.random.default_rng(1).random((32, 32))
    expected = tiny_ensemble(1).member_probabilities(frame_in)
    assert numpy.allclose(repo.load_ensemble("tiny@production").member_probabilities(frame_in), expected, atol=1e-6)
    assert fresh.rollback("tiny", "production").version == 1
    assert repo.resolve("tiny@production").version == 1 and repo.aliases()["tiny@production"] == "tiny@1"
    # A plain state dict (another model family) round-trips too.
    state = {"encoder.weight": torch.arange(6.0).reshape(2, 3)}
    plain = repo.register("dkl-encoder", state, recipe={}, code_version="test", kind="dkl-encoder")
    loaded, again = fresh.load_weights(plain.ref)
    assert again == plain and torch.equal(loaded["encoder.weight"], state["encoder.weight"])
    with pytest.raises(ValueError, match="must name an ELIT ensemble"):
        fresh.load_ensemble(plain.ref)


def test_altered_weights_in_the_registry_are_refused(mlflow_server: MlflowServer) -> None:
    repo = mlflow_registry.MlflowModelRepository(mlflow_server.uri)
    record = repo.register("tampered", tiny_ensemble(), recipe={}, code_version="test")
    repo.load_ensemble(record.ref)
    stored = [p for p in mlflow_server.artifacts.rglob(repository.WEIGHTS_FILE) if p.read_bytes() and _registered_by(p, "tampered")]
    assert len(stored) == 1, stored
    data = bytearray(stored[0].read_bytes())
    data[-1] ^= 0xFF
    stored[0].write_bytes(bytes(data))
    with pytest.raises(ModelHashError, match=r"weights of tampered@1 in the registry at http://127\.0\.0\.1:\d+ .* must have sha256 .* as registered"):
        repo.load_ensemble("tampered@1")


def _registered_by(weights: pathlib.Path, name: str) -> bool:
    record = weights.with_name(repository.RECORD_FILE)
    return record.exists() and f'"name": "{name}"' in record.read_text()


def test_bad_references_to_the_registry_get_clear_errors(mlflow_server: MlflowServer) -> None:
    repo = mlflow_registry.MlflowModelRepository(mlflow_server.uri)
    with pytest.raises(MissingParentError, match="parent must be a model in the registry at http"):
        repo.register("orphan", tiny_ensemble(), recipe={}, code_version="test", parent="mos2@99")
    assert repo.list("orphan") == []  # nothing half-registered
    repo.register("orphan", tiny_ensemble(), recipe={}, code_version="test")
    with pytest.raises(UnknownModelError, match=r"no alias 'orphan@production' in the registry at .*; aliases of 'orphan': \[\]; promote a version first"):
        repo.resolve("orphan@production")
    with pytest.raises(UnknownModelError, match=r"no model orphan@5 .*versions of 'orphan': \[1\]"):
        repo.resolve("orphan@5")
    with pytest.raises(UnknownModelError, match=r"no model 'nobody' in the registry at .*; models: \[.*'orphan'"):
        repo.resolve("nobody@1")
    repo.promote("orphan@1", "production")
    with pytest.raises(UnknownModelError, match="promoted at least twice to roll back"):
        repo.rollback("orphan", "production")
    with pytest.raises(ValueError, match="ref must be 'name@version'"):
        repo.resolve("orphan")
    with pytest.raises(ValueError, match="alias must be a lower-case word"):
        repo.promote("orphan@1", "2")


def test_an_unreachable_registry_is_a_clear_error_naming_its_address() -> None:
    address = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(mlflow_registry.RegistryUnreachableError, match=f"no MLflow registry answered at '{address}'"):
        repository.open_repository(address)
    with pytest.raises(ValueError, match="uri must be the http"):
        mlflow_registry.MlflowModelRepository("models.lab:5000")


def test_a_retraining_registers_its_result_in_the_registry(mlflow_server: MlflowServer, tmp_path: pathlib.Path) -> None:
    repo = mlflow_registry.MlflowModelRepository(mlflow_server.uri)
    packaged = storage.load_ensemble("mos2")
    base = repo.register("mos2-lab", packaged, recipe={"packaged": True}, code_version="test")
    repo.promote(base.ref, "production")
    path = tmp_path / "run-9" / "frame_000.npy"
    path.parent.mkdir()
    numpy.save(path, synthetic.generate_frame(lattices.mos2_lattice(), (64, 64), seed=3).image)
    tiny = iterative.IterationConfig(steps=2, crop=64, synthetic_frames=2, batch_per_member=1)
    record = retraining.retrain(repo, "mos2-lab@production", [retraining.FrameRecord(str(path), "run-9")], "mos2", config=tiny)
    assert record.ref == "mos2-lab@2" and record.parent == "mos2-lab@1"
    assert [(item["run_id"], item["sha256"]) for item in record.data_manifest] == [("run-9", repository.file_sha256(path))]
    assert repo.resolve("mos2-lab@candidate").ref == "mos2-lab@2" and repo.resolve("mos2-lab@production").ref == "mos2-lab@1"
    assert repo.load_ensemble("mos2-lab@candidate").metadata["model_ref"] == "mos2-lab@2"


def test_a_registry_that_goes_away_is_a_clear_error_naming_its_address(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's client would otherwise retry for minutes first
    # The registry is reached through a TCP relay of its own address, and the relay is then closed: the network
    # path to the registry is gone, as when a lab's server goes down, while the shared test server keeps running.
    with TcpRelay(mlflow_server.uri) as uri:
        repo = mlflow_registry.MlflowModelRepository(uri)
        repo.register("brief", {"w": torch.zeros(2)}, recipe={}, code_version="test", kind="test")
    with pytest.raises(mlflow_registry.RegistryUnreachableError, match=f"the MLflow registry at '{uri}' stopped answering while trying to resolve 'brief@production'"):
        repo.resolve("brief@production")
    with pytest.raises(mlflow_registry.RegistryUnreachableError, match=f"the MLflow registry at '{uri}' stopped answering while trying to download the weights of brief@1"):
        repo.load_weights("brief@1")  # its record is cached here; the weights must come from the server


class TcpRelay:
    """A TCP relay on a free local port to the server at ``target``; closing it closes every connection through it."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("http://").partition(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sockets: list[socket.socket] = [self.listener]
        self.closed = threading.Event()

    def __enter__(self) -> str:
        threading.Thread(target=self.accept, daemon=True).start()
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.closed.set()
        for each in self.sockets:
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)
            each.close()

    def accept(self) -> None:
        while not self.closed.is_set():
            try:
                inbound, _ = self.listener.accept()
            except OSError:
                return
            outbound = socket.create_connection(self.target)
            self.sockets += [inbound, outbound]
            for source, sink in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self.pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_a_record_too_long_for_a_tag_is_read_from_its_artifact(mlflow_server: MlflowServer) -> None:
    repo = mlflow_registry.MlflowModelRepository(mlflow_server.uri)
    manifest = [{"run_id": f"run-{i}", "path": f"frames/{i:06d}.npy", "sha256": f"{i:064x}"} for i in range(1200)]  # about 130,000 characters
    record = repo.register("long-record", {"w": torch.ones(3)}, recipe={}, code_version="test", kind="test", data_manifest=manifest)
    fresh = mlflow_registry.MlflowModelRepository(mlflow_server.uri)
    assert fresh.resolve("long-record@1") == record and len(fresh.resolve("long-record@1").data_manifest) == 1200
    assert [v.ref for v in fresh.search(run_id="run-1199")] == ["long-record@1"]
