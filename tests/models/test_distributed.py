"""ELIT members trained as Dask tasks on a real 2-worker LocalCluster, including a worker killed mid-training."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import pathlib
import signal
import socket
import time
import typing

import dask.config
import distributed
import numpy
import pytest
import safetensors
import torch

from nion_autoem_elit import lattices
from nion_autoem_elit import model
from nion_autoem_elit import training
from nion_autoem_fewshot import pretrain
from nion_autoem_models import distributed as elit_dask

TINY = training.TrainingConfig(members=2, base_channels=4, crop=32, frames=4, steps=6, batch_per_member=1)


def test_workers_do_not_get_the_nannys_malloc_trimming(client: distributed.Client) -> None:
    def environment() -> tuple[str | None, str | None]:
        return os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")

    assert set(client.run(environment).values()) == {(None, "1")}


def test_members_on_the_cluster_equal_members_trained_here(client: distributed.Client) -> None:
    here, _ = elit_dask.train_ensemble("mos2", TINY)
    there, parts = elit_dask.train_ensemble("mos2", TINY, client=client)
    assert len({p.worker_pid for p in parts} - {os.getpid()}) >= 1
    for name, tensor in here.network.state_dict().items():
        assert torch.allclose(tensor, there.network.state_dict()[name], atol=1e-6), name
    # Packing is member-major: member m of the packed network is the network task m trained.
    single = there.network.member(1).state_dict()
    assert all(numpy.allclose(single[name].numpy(), parts[1].state[name]) for name in single)
    assert there.metadata["lattice"] == "MoS2" and there.metadata["training"]["members"] == 2


def test_a_worker_killed_mid_training_resumes_from_its_checkpoint(client: distributed.Client, tmp_path: pathlib.Path) -> None:
    config = training.TrainingConfig(members=2, base_channels=4, crop=32, frames=4, steps=400, batch_per_member=2, seed=3)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(elit_dask.train_ensemble, lattices.mos2_lattice(), config, client=client, checkpoint_dir=tmp_path, checkpoint_every=10)
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob("*member0.safetensors")):
            assert time.monotonic() < deadline and not running.done(), "member 0 never wrote a checkpoint"
            time.sleep(0.05)
        processing = client.processing()  # type: ignore[no-untyped-call]
        victims = [address for address, keys in processing.items() if any(str(key).endswith("-0") for key in keys)]
        assert victims, processing
        # SIGKILL, as the out-of-memory killer would: no clean-up runs in the worker.
        for pid in client.run(os.getpid, workers=victims).values():
            os.kill(pid, signal.SIGKILL)
        ens, parts = running.result(timeout=60)
    assert ens.members == 2
    assert parts[0].resumed_from_step >= 10 and parts[0].resumed_from_step % 10 == 0
    assert [p.steps for p in parts] == [400, 400]  # the resumed member ran the rest of its steps, not all of them again
    assert not list(tmp_path.glob("*.safetensors"))  # finished members clean up their checkpoints


def test_the_same_training_runs_on_a_scheduler_given_its_address(client: distributed.Client) -> None:
    remote = elit_dask.connect(client.scheduler_info()["address"], timeout_s=5.0)
    try:
        assert elit_dask.workers_trimming_malloc(remote) == []
        ens, parts = elit_dask.train_ensemble("mos2", TINY, client=remote)
    finally:
        remote.close()  # type: ignore[no-untyped-call]
    assert ens.members == 2 and all(p.worker_pid != os.getpid() for p in parts)


def test_workers_with_the_default_nanny_environment_are_reported(tmp_path: pathlib.Path) -> None:
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:  # type: ignore[no-untyped-call]
        with pytest.warns(UserWarning, match="MALLOC_TRIM_THRESHOLD_ set"):
            remote = elit_dask.connect(cluster.scheduler_address)
        remote.close()  # type: ignore[no-untyped-call]


def test_an_unreachable_scheduler_is_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(elit_dask.SchedulerUnreachableError, match=f"no Dask scheduler answered at 'tcp://127.0.0.1:{port}'"):
        elit_dask.connect(f"tcp://127.0.0.1:{port}", timeout_s=1.0)
    with pytest.raises(ValueError, match="address must be a Dask scheduler address"):
        elit_dask.connect("localhost")


def test_a_member_whose_worker_keeps_dying_fails_with_a_clear_error(tmp_path: pathlib.Path) -> None:
    config = training.TrainingConfig(members=1, base_channels=4, crop=32, frames=4, steps=400, batch_per_member=2)
    # No second chance: the first death counts as the worker running out of memory on this member.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), elit_dask.local_cluster(workers=1) as client:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(elit_dask.train_ensemble, "mos2", config, client=client, checkpoint_dir=tmp_path, checkpoint_every=10)
            deadline = time.monotonic() + 30
            while not list(tmp_path.glob("*member0.safetensors")):
                assert time.monotonic() < deadline and not running.done(), "member 0 never wrote a checkpoint"
                time.sleep(0.05)
            for pid in client.run(os.getpid).values():
                os.kill(pid, signal.SIGKILL)
            with pytest.raises(RuntimeError, match="a worker died on this member more than distributed.scheduler.allowed-failures times"):
                running.result(timeout=60)


def test_a_damaged_checkpoint_means_starting_again(tmp_path: pathlib.Path) -> None:
    checkpoint = tmp_path / "member.safetensors"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="cannot be read"):
        result = elit_dask.train_member("mos2", TINY.as_dict(), 0, checkpoint=str(checkpoint))
    assert result.resumed_from_step == 0 and result.steps == TINY.steps and not checkpoint.exists()


def test_a_killed_and_resubmitted_training_resumes_from_its_checkpoint_to_the_same_weights(tmp_path: pathlib.Path) -> None:
    config = training.TrainingConfig(members=1, base_channels=4, crop=32, frames=4, steps=300, batch_per_member=1, seed=7).as_dict()
    checkpoint = tmp_path / "member0.safetensors"
    # The first submission runs in a process of its own, SIGKILLed (no clean-up) once it has checkpointed.
    first = multiprocessing.get_context("spawn").Process(target=elit_dask.train_member, args=("mos2", config, 0),
                                                         kwargs={"checkpoint": str(checkpoint), "checkpoint_every": 10})
    first.start()
    deadline = time.monotonic() + 60
    while not checkpoint.exists():
        assert time.monotonic() < deadline and first.is_alive(), "the first submission never wrote a checkpoint"
        time.sleep(0.01)
    os.kill(typing.cast(int, first.pid), signal.SIGKILL)
    first.join()
    assert first.exitcode == -signal.SIGKILL and checkpoint.exists()
    # What is in the checkpoint: tensors, and a JSON header of the rest. No pickle.
    with safetensors.safe_open(str(checkpoint), framework="pt") as stored:
        header = json.loads(stored.metadata()[elit_dask.CHECKPOINT_HEADER])
        assert {"network", "optimiser", "torch_rng"} <= {key.split(".")[0] for key in stored.keys()}
    assert header["step"] % 10 == 0 and 10 <= header["step"] < 300
    # The same task, submitted again, carries on from the checkpoint and ends where an uninterrupted training ends.
    resumed = elit_dask.train_member("mos2", config, 0, checkpoint=str(checkpoint), checkpoint_every=10)
    assert resumed.resumed_from_step >= header["step"] and resumed.steps == 300 and resumed.steps_run == 300 - resumed.resumed_from_step
    assert not checkpoint.exists()
    uninterrupted = elit_dask.train_member("mos2", config, 0)
    assert uninterrupted.resumed_from_step == 0 and uninterrupted.steps_run == 300
    for name, array in uninterrupted.state.items():
        numpy.testing.assert_allclose(resumed.state[name], array, atol=1e-5, err_msg=name)


def test_a_checkpoint_of_another_member_is_not_resumed(tmp_path: pathlib.Path) -> None:
    config = training.TrainingConfig(members=2, base_channels=4, crop=32, frames=4, steps=20, batch_per_member=1)
    checkpoint = tmp_path / "member.safetensors"
    network = model.EnsembleUNet(1, 5, 4)
    optimiser = torch.optim.Adam(network.parameters())
    elit_dask._save_checkpoint(checkpoint, 0, 20, network, optimiser, {}, 0, 5, numpy.random.default_rng(0))
    with pytest.warns(UserWarning, match="is of member 0 of a 20-step training, not of member 1"):
        result = elit_dask.train_member("mos2", config.as_dict(), 1, checkpoint=str(checkpoint), checkpoint_every=5)
    assert result.resumed_from_step == 0 and result.steps == 20


def test_fewshot_pretraining_and_forecaster_training_run_as_tasks_on_the_cluster(client: distributed.Client) -> None:
    recipe = dict(pretrain.RECIPE, steps=3, batch=8, patches=8, patch_px=64)
    rng = numpy.random.default_rng(0)
    series = [rng.standard_normal((60, 1)) for _ in range(3)]
    with distributed.get_task_stream(client) as stream:
        backbone_there = elit_dask.pretrain_backbone(recipe, client=client)
        forecaster_there = elit_dask.train_weight_forecaster(series, client=client, steps=5, batch=16)
    ran = {str(task["key"]).split("-")[0] for task in stream.data}
    assert {"pretrain_task", "forecaster_task"} <= ran, ran
    # The same seeded trainings here give the same weights: the cluster runs the same code, not an approximation of it.
    backbone_here = elit_dask.pretrain_backbone(recipe)
    forecaster_here = elit_dask.train_weight_forecaster(series, steps=5, batch=16)
    for there, here in ((backbone_there, backbone_here), (forecaster_there, forecaster_here)):
        for name, tensor in here.state_dict().items():
            assert torch.allclose(tensor, there.state_dict()[name], atol=1e-4), name
    assert not backbone_there.training and backbone_there(torch.zeros(2, 1, 32, 32)).shape == (2, 128)
    with pytest.raises(ValueError, match=r"series must be one or more arrays of shape \(steps, k\)"):
        elit_dask.train_weight_forecaster([numpy.zeros(10)], client=client)


def _square_of_seed(seed: int, *, offset: float) -> float:
    return float(numpy.random.default_rng(seed).standard_normal()) ** 2 + offset


def test_a_sweep_runs_one_task_per_item_on_the_cluster_in_order(client: distributed.Client) -> None:
    seeds = [5, 1, 4, 2, 3]
    with distributed.get_task_stream(client) as stream:
        there = elit_dask.sweep(_square_of_seed, seeds, client=client, offset=0.5)
    assert len([task for task in stream.data if str(task["key"]).startswith("_square_of_seed")]) == len(seeds)
    assert there == elit_dask.sweep(_square_of_seed, seeds, offset=0.5)  # the same numbers, in the seeds' order
