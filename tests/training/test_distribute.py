"""The Trainer on tf.distribute: MirroredStrategy (2 logical CPUs, in a subprocess),
MultiWorkerMirroredStrategy with real local workers (launch_local), and the launcher."""

import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcraft.training import Trainer
from tfcraft.training.distribute import (
    Distribution,
    WorkerFailed,
    get_strategy,
    global_batch_size,
    launch_local,
)
from tfcraft.training.distributed_data import per_worker_dataset
from tfcraft.training.launch import free_ports

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # the workers' module must be importable in spawned processes
import distribute_workers  # noqa: E402


def _single_process_run(epochs=4):
    trainer = distribute_workers.make_trainer(None)
    history = trainer.fit(distribute_workers.data(), epochs=epochs, batch_size=8, verbose=0)
    return trainer.get_weights(), history.history


def _assert_same_weights(actual, expected):
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_get_strategy_names_and_errors():
    assert get_strategy(None) is None
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    assert get_strategy(strategy) is strategy
    with pytest.raises(ValueError, match=r"Received: strategy='tpu'"):
        get_strategy("tpu")
    with pytest.raises(ValueError, match=r"Received: mixed_precision='float16'"):
        Distribution(None, "float16")


def test_model_built_outside_the_scope_is_refused():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"strategy\.scope"):
        Trainer(model, loss="mse", strategy=strategy)


def test_float16_custom_train_step_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="Received: train_step with mixed_precision='mixed_f"):
        Trainer(
            distribute_workers.build, train_step=lambda m, b: {}, mixed_precision="mixed_float16"
        )


def test_global_batch_size_outside_a_trainer_step_is_an_error():
    with pytest.raises(RuntimeError, match="only defined inside a custom `train_step`"):
        global_batch_size()


def test_per_worker_datasets_split_every_batch_between_the_workers_exactly_once():
    batches = tf.data.Dataset.range(21).batch(8)  # 8, 8, 5 rows
    parts = {}
    for worker in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=4
        )
        assert context.get_per_replica_batch_size(8) == 2
        parts[worker] = [p.numpy().tolist() for p in per_worker_dataset(batches, context)]
    # Two replicas per worker; worker 0 holds replicas 0-1, worker 1 replicas 2-3.
    assert parts[0] == [[0, 1], [2, 3], [8, 9], [10, 11], [16], [17]]
    assert parts[1] == [[4, 5], [6, 7], [12, 13], [14, 15], [18], [19, 20]]
    rows = sorted(r for worker in parts.values() for part in worker for r in part)
    assert rows == list(range(21))


@pytest.mark.timeout(1000)
def test_mirrored_two_replicas_match_one_device():
    # Default step with a metric and validation, a loss_fn, accumulation with
    # global-norm clipping, tf.data input, and a one-replica MirroredStrategy.
    script = HERE / "distribute_mirrored_script.py"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    cases = ["default", "loss_fn", "accumulate_clip", "dataset", "custom_step"]
    for case in [*cases, "custom_step_dataset", "nan_skip", "one_replica"]:
        assert f"ok {case}" in result.stdout


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(3)
    assert len(set(ports)) == 3
    import socket

    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


@pytest.fixture(scope="module")
def multi_worker_run(tmp_path_factory):
    """Two workers train on arrays (checkpoints, a JSONL log), then on a tf.data pipeline."""
    folder = tmp_path_factory.mktemp("multi_worker")
    results = launch_local(
        distribute_workers.train,
        2,
        args=(str(folder / "checkpoints"), 4, False, None, str(folder / "metrics.jsonl"), True),
        log_dir=folder,
        timeout=900,
    )
    return folder, results


def test_launch_local_gives_each_worker_the_cluster_and_its_index(multi_worker_run):
    folder, results = multi_worker_run
    configs = [r["tf_config"] for r in results]
    assert [c["task"] for c in configs] == [
        {"type": "worker", "index": 0},
        {"type": "worker", "index": 1},
    ]
    addresses = configs[0]["cluster"]["worker"]
    assert configs[1]["cluster"]["worker"] == addresses
    assert len(set(addresses)) == 2 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert results[0]["pid"] != results[1]["pid"] != os.getpid()
    assert sorted(p.name for p in folder.glob("*.log")) == ["worker-0.log", "worker-1.log"]


def test_a_dying_worker_fails_the_launch_with_its_log_and_stops_the_others(tmp_path):
    start = time.monotonic()
    with pytest.raises(WorkerFailed, match="Worker 1 exited with code 3") as info:
        launch_local(distribute_workers.die_or_wait, 2, log_dir=tmp_path, timeout=600)
    assert "failing on purpose" in info.value.log
    assert time.monotonic() - start < 400  # worker 0 (sleeping 900 s) was stopped
    with pytest.raises(ValueError, match="Received: num_workers=0"):
        launch_local(distribute_workers.die_or_wait, 0)


def test_multi_worker_matches_one_process_and_only_the_chief_checkpoints(multi_worker_run):
    folder, (chief, other) = multi_worker_run
    checkpoints, jsonl = folder / "checkpoints", folder / "metrics.jsonl"
    assert (chief["chief"], other["chief"]) == (True, False)
    assert chief["replicas"] == 2
    _assert_same_weights(other["weights"], chief["weights"])
    weights, history = _single_process_run()
    _assert_same_weights(chief["weights"], weights)
    np.testing.assert_allclose(chief["history"]["loss"], history["loss"], rtol=1e-5)
    assert chief["checkpoint_dir"] == str(checkpoints)
    # Only the chief runs the file loggers.
    assert "JSONLLogger" in chief["active_callbacks"]
    assert "JSONLLogger" not in other["active_callbacks"]
    assert len(jsonl.read_text().splitlines()) == 4
    assert sorted(p.name for p in checkpoints.glob("ckpt-*.json"))
    # The other worker saved into a temporary copy, removed when it exited.
    assert other["checkpoint_dir"] != str(checkpoints)
    assert not Path(other["checkpoint_dir"]).exists()


def test_multi_worker_tf_data_trains_on_every_row_once_per_epoch(multi_worker_run):
    _, (chief, other) = multi_worker_run
    chief, other = chief["dataset"], other["dataset"]
    single = distribute_workers.train_dataset(None)
    _assert_same_weights(chief["weights"], single["weights"])
    _assert_same_weights(other["weights"], single["weights"])
    for key in ("loss", "mean_absolute_error"):
        np.testing.assert_allclose(chief["history"][key], single["history"][key], rtol=1e-5)
    for key, value in single["evaluate"].items():
        np.testing.assert_allclose(chief["evaluate"][key], value, rtol=1e-5)
        np.testing.assert_allclose(other["evaluate"][key], value, rtol=1e-5)
    # 3 epochs of batches of 8, 8, 4 rows: each worker saw its half of every batch.
    assert len(single["seen"]) == len(chief["seen"]) == len(other["seen"]) == 9
    for step, (whole, mine, theirs) in enumerate(
        zip(single["seen"], chief["seen"], other["seen"], strict=True)
    ):
        assert len(mine) == len(theirs) == len(whole) // 2, step
        assert sorted(mine + theirs) == whole, step  # the one-process batch, split
    for epoch in range(3):
        batches = [b for run in (chief, other) for b in run["seen"][3 * epoch : 3 * epoch + 3]]
        rows = [r for b in batches for r in b]
        assert sorted(rows) == list(range(20)), epoch  # every row exactly once


@pytest.mark.timeout(2000)
def test_multi_worker_resume_after_a_killed_worker(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(WorkerFailed, match="Worker 1") as info:
        launch_local(
            distribute_workers.train,
            2,
            args=(str(checkpoints), 4, False, 2),  # worker 1 SIGKILLs itself at epoch 2
            log_dir=tmp_path / "first",
            timeout=900,
        )
    assert info.value.exitcode == -9
    assert list(checkpoints.glob("ckpt-*.json"))  # epochs 1-2 were checkpointed
    leftover = Path(f"{checkpoints}-worker1-tmp")
    assert leftover.is_dir()  # the killed worker could not remove its copy
    chief, other = launch_local(
        distribute_workers.train,
        2,
        args=(str(checkpoints), 4, True),
        log_dir=tmp_path / "second",
        timeout=900,
    )
    weights, _ = _single_process_run()
    _assert_same_weights(chief["weights"], weights)
    _assert_same_weights(other["weights"], weights)
    assert len(chief["history"]["loss"]) == 4
    assert not leftover.exists()  # the restarted worker replaced it, then removed it
