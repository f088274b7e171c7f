"""The Trainer on tf.distribute: MirroredStrategy (2 logical CPUs, in a subprocess),
MultiWorkerMirroredStrategy with real local workers (launch_local), and the launcher."""

import json
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


# The cases of distribute_mirrored_script.py, in two processes run side by side
# (the suite runs tests one at a time on 2 cores; each process is one core's work).
MIRRORED_CASES = (
    ("default", "one_replica", "loss_fn", "accumulate_clip"),
    ("dataset", "custom_step", "custom_step_dataset", "nan_skip", "one_replica_dataset"),
)


@pytest.mark.timeout(1000)
def test_mirrored_two_replicas_match_one_device():
    # Default step with a metric and validation, a loss_fn, accumulation with global-norm
    # clipping, tf.data input (distributed) with tf.data validation and evaluation, a
    # custom train_step on arrays and on tf.data, NanGuard, and a one-replica strategy.
    script = HERE / "distribute_mirrored_script.py"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), *cases],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for cases in MIRRORED_CASES
    ]
    try:
        outputs = [process.communicate(timeout=900) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, cases, (stdout, stderr) in zip(processes, MIRRORED_CASES, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
        for case in cases:
            assert f"ok {case}" in stdout, (case, stdout)


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(3)
    assert len(set(ports)) == 3
    import socket

    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory):
    """Two workers train on arrays (checkpoints, a JSONL log); worker 1 SIGKILLs itself at
    epoch 2, which fails the launch. Restarted with `resume=True`, they finish the 4
    epochs, then also train on a tf.data pipeline. (One pair of launches serves the
    launcher, chief-only, resume and tf.data tests: each launch costs two TF start-ups.)"""
    folder = tmp_path_factory.mktemp("multi_worker")
    checkpoints, jsonl = folder / "checkpoints", str(folder / "metrics.jsonl")
    start = time.monotonic()
    with pytest.raises(WorkerFailed, match="Worker 1") as info:
        launch_local(
            distribute_workers.train,
            2,
            args=(str(checkpoints), 4, False, 2, jsonl),
            log_dir=folder / "first",
            timeout=900,
        )
    killed = {
        "error": info.value,
        "seconds": time.monotonic() - start,
        "checkpoints": sorted(p.name for p in checkpoints.glob("ckpt-*.json")),
        "leftover": Path(f"{checkpoints}-worker1-tmp").is_dir(),
    }
    results = launch_local(
        distribute_workers.train,
        2,
        args=(str(checkpoints), 4, True, None, jsonl, True),
        log_dir=folder / "second",
        timeout=900,
    )
    return folder, killed, results


def test_launch_local_gives_each_worker_the_cluster_and_its_index(killed_then_resumed):
    folder, _, results = killed_then_resumed
    configs = [r["tf_config"] for r in results]
    assert [c["task"] for c in configs] == [
        {"type": "worker", "index": 0},
        {"type": "worker", "index": 1},
    ]
    addresses = configs[0]["cluster"]["worker"]
    assert configs[1]["cluster"]["worker"] == addresses
    assert len(set(addresses)) == 2 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert results[0]["pid"] != results[1]["pid"] != os.getpid()
    logs = sorted(p.name for p in (folder / "second").glob("*.log"))
    assert logs == ["worker-0.log", "worker-1.log"]


def test_a_dying_worker_fails_the_launch_with_its_log_and_stops_the_others(killed_then_resumed):
    _, killed, _ = killed_then_resumed
    error = killed["error"]
    assert error.worker == 1 and error.exitcode == -9
    assert "Worker 1 exited with code -9" in str(error)
    assert "worker 1 kills itself at epoch 2" in error.log
    # Worker 0, blocked in a collective with the dead worker, was stopped at once.
    assert killed["seconds"] < 400
    with pytest.raises(ValueError, match="Received: num_workers=0"):
        launch_local(distribute_workers.die_or_wait, 0)


def test_multi_worker_matches_one_process_and_only_the_chief_checkpoints(killed_then_resumed):
    folder, _, (chief, other) = killed_then_resumed
    checkpoints, jsonl = folder / "checkpoints", folder / "metrics.jsonl"
    assert (chief["chief"], other["chief"]) == (True, False)
    assert chief["replicas"] == 2
    _assert_same_weights(other["weights"], chief["weights"])
    weights, history = _single_process_run()
    _assert_same_weights(chief["weights"], weights)
    np.testing.assert_allclose(chief["history"]["loss"], history["loss"], rtol=1e-5)
    assert chief["checkpoint_dir"] == str(checkpoints)
    # Only the chief runs the file loggers (and the resumed run continued its file).
    assert "JSONLLogger" in chief["active_callbacks"]
    assert "JSONLLogger" not in other["active_callbacks"]
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1, 2, 3]
    assert sorted(p.name for p in checkpoints.glob("ckpt-*.json"))
    # The other worker saved into a temporary copy, removed when it exited.
    assert other["checkpoint_dir"] != str(checkpoints)
    assert not Path(other["checkpoint_dir"]).exists()


def test_multi_worker_resume_after_a_killed_worker(killed_then_resumed):
    _, killed, (chief, other) = killed_then_resumed
    assert killed["checkpoints"]  # epochs 1-2 were checkpointed before the kill
    assert killed["leftover"]  # the killed worker could not remove its copy
    weights, _ = _single_process_run()
    _assert_same_weights(chief["weights"], weights)
    _assert_same_weights(other["weights"], weights)
    assert len(chief["history"]["loss"]) == 4
    assert not Path(other["checkpoint_dir"]).exists()  # replaced, then removed


def test_multi_worker_tf_data_trains_on_every_row_once_per_epoch(killed_then_resumed):
    _, _, (chief, other) = killed_then_resumed
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
