"""The model repository: versions, aliases, provenance and the errors a damaged or unknown model gets."""

from __future__ import annotations

import concurrent.futures
import json
import pathlib

import numpy
import pytest
import torch

from nion_autoem_elit import ensemble
from nion_autoem_elit import model
from nion_autoem_elit import storage
from nion_autoem_models import repository
from nion_autoem_models.repository import MissingParentError
from nion_autoem_models.repository import ModelHashError
from nion_autoem_models.repository import ModelRepository
from nion_autoem_models.repository import UnknownModelError


def tiny_ensemble(seed: int = 0) -> ensemble.Ensemble:
    torch.manual_seed(seed)
    return ensemble.Ensemble(model.EnsembleUNet(2, 3, 4), ("background", "A", "B"), {"lattice": "test"})


def test_packaged_models_are_the_first_entries_and_load_by_alias(tmp_path: pathlib.Path) -> None:
    repo = ModelRepository(tmp_path)
    seeded = repository.seed_from_package(repo)
    assert [v.ref for v in seeded] == ["graphene@1", "mos2@1"]
    mos2 = repo.resolve("mos2@production")
    assert mos2.ref == "mos2@1" and mos2.parent is None and mos2.recipe["steps"] == 4000
    assert mos2.imaging_ranges["pixel_size_A"] == [0.08, 0.16]
    assert {"validation", "calibration_ece"} <= set(mos2.metrics)
    loaded = repo.load_ensemble("mos2@production")
    packaged = storage.load_ensemble("mos2")
    frame = numpy.random.default_rng(0).random((48, 48))
    assert numpy.allclose(loaded.member_probabilities(frame), packaged.member_probabilities(frame), atol=1e-6)
    # What atom finding needs besides the weights comes along.
    assert loaded.metadata["uncertainty_calibration"] == packaged.metadata["uncertainty_calibration"]
    assert loaded.metadata["model_ref"] == "mos2@1"
    assert [v.ref for v in repository.seed_from_package(repo)] == ["graphene@1", "mos2@1"]  # idempotent


def test_provenance_promotion_rollback_and_search(tmp_path: pathlib.Path) -> None:
    repo = ModelRepository(tmp_path)
    frame = tmp_path / "frame.npy"
    numpy.save(frame, numpy.zeros((4, 4)))
    base = repo.register("tiny", tiny_ensemble(0), recipe={"steps": 10}, code_version="test 1")
    repo.promote(base.ref, "production")
    manifest = [repository.manifest_entry(frame, "run-7")]
    adapted = repo.register("tiny", tiny_ensemble(1), recipe={"steps": 3}, code_version="test 2", parent="tiny@production",
                            data_manifest=manifest, metrics={"f1": 0.9})
    assert adapted.version == 2 and adapted.parent == "tiny@1"
    assert adapted.data_manifest[0]["sha256"] == repository.file_sha256(frame)
    assert [v.ref for v in repo.lineage(adapted.ref)] == ["tiny@2", "tiny@1"]
    assert [v.ref for v in repo.search(run_id="run-7")] == ["tiny@2"]
    assert [v.ref for v in repo.search(parent="tiny@1")] == ["tiny@2"]
    repo.promote(adapted.ref, "production")
    assert repo.resolve("tiny@production").version == 2
    assert repo.rollback("tiny", "production").version == 1
    assert repo.resolve("tiny@production").version == 1
    # A record survives a fresh repository object on the same folder (a later session).
    assert ModelRepository(tmp_path).resolve("tiny@2").metrics == {"f1": 0.9}


def test_a_plain_state_dict_round_trips(tmp_path: pathlib.Path) -> None:
    repo = ModelRepository(tmp_path)
    state = {"encoder.weight": torch.arange(6.0).reshape(2, 3)}
    record = repo.register("dkl-encoder", state, recipe={}, code_version="test", kind="dkl-encoder")
    loaded, again = repo.load_weights(record.ref)
    assert again == record and torch.equal(loaded["encoder.weight"], state["encoder.weight"])
    with pytest.raises(ValueError, match="must name an ELIT ensemble"):
        repo.load_ensemble(record.ref)


def test_a_tampered_weights_file_is_refused(tmp_path: pathlib.Path) -> None:
    repo = ModelRepository(tmp_path)
    record = repo.register("tiny", tiny_ensemble(), recipe={}, code_version="test")
    path = tmp_path / "tiny" / "1" / repository.WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelHashError, match="must have sha256 .* as registered"):
        repo.load_ensemble(record.ref)
    assert issubclass(ModelHashError, storage.ModelIntegrityError)


def test_bad_references_get_clear_errors(tmp_path: pathlib.Path) -> None:
    repo = ModelRepository(tmp_path)
    with pytest.raises(MissingParentError, match="parent must be a model in the repository"):
        repo.register("tiny", tiny_ensemble(), recipe={}, code_version="test", parent="mos2@3")
    assert repo.list() == []  # nothing half-registered
    repo.register("tiny", tiny_ensemble(), recipe={}, code_version="test")
    with pytest.raises(UnknownModelError, match="no alias 'tiny@production'"):
        repo.resolve("tiny@production")
    with pytest.raises(UnknownModelError, match=r"versions of 'tiny': \[1\]"):
        repo.resolve("tiny@5")
    with pytest.raises(ValueError, match="ref must be 'name@version'"):
        repo.resolve("tiny")
    with pytest.raises(UnknownModelError, match="promoted at least twice"):
        repo.rollback("tiny", "production")
    with pytest.raises(ValueError, match="name must be lower-case"):
        repo.register("MoS2 v2", tiny_ensemble(), recipe={}, code_version="test")
    with pytest.raises(ValueError, match="data_manifest items must be mappings with run_id, path and sha256"):
        repo.register("tiny", tiny_ensemble(), recipe={}, code_version="test", data_manifest=[{"path": "x"}])
    with pytest.raises(TypeError, match="weights must be an Ensemble or a state dict"):
        repo.register("tiny", [1, 2], recipe={}, code_version="test")  # type: ignore[arg-type]


def test_promotions_from_many_threads_are_all_kept(tmp_path: pathlib.Path) -> None:
    repo = ModelRepository(tmp_path)
    versions = [repo.register("tiny", {"w": torch.full((1,), float(i))}, recipe={}, code_version="test", kind="test").ref for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda ref: ModelRepository(tmp_path).promote(ref, "production"), versions))
    history = json.loads((tmp_path / repository.ALIASES_FILE).read_text())["tiny@production"]
    assert sorted(history) == list(range(1, 9)) and not (tmp_path / repository.ALIASES_LOCK).exists()


def test_an_atom_finding_run_uses_the_version_its_alias_named_when_it_started(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nion_autoem.geometry import ScanFrame
    from nion_autoem.plans.atom_finding import AtomFinding
    from nion_autoem.products import MemorySink
    from nion_autoem.replay import ReplayMicroscope
    from nion_autoem.runner import ExperimentRunner
    from nion_autoem.runner import RunState
    from nion_autoem_elit import generate_frame
    from nion_autoem_elit import mos2_lattice
    from nion_autoem_models.repository import ModelRepository
    from nion_autoem_models.repository import seed_from_package

    monkeypatch.setenv("NION_AUTOEM_MODELS", str(tmp_path / "models"))
    repo = ModelRepository(tmp_path / "models")
    seed_from_package(repo)
    plan = AtomFinding(frames=1, ensemble="mos2@production")
    assert plan.model_ref == "mos2@1" and plan.model_version == "elit/mos2@1"
    with pytest.raises(Exception, match="mos2@nonexistent|nonexistent"):
        AtomFinding(ensemble="mos2@nonexistent")
    frame = generate_frame(mos2_lattice(), (128, 128), seed=5)
    scope = ReplayMicroscope(numpy.asarray(frame.image, dtype=float), ScanFrame((128, 128), fov_nm=128 * frame.conditions.pixel_size_A / 10))
    runner = ExperimentRunner(scope, plan, run_dir=tmp_path / "run", sink=MemorySink())
    runner.run()
    assert runner.state is RunState.FINISHED, runner.progress.message
    assert len(plan.results[-1]) > 20
    header = (tmp_path / "run" / "journal.jsonl").read_text().splitlines()[0]
    assert "mos2@1" in header
