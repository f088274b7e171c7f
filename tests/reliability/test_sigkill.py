"""SIGKILL at many points of a run; the resumed run equals the uninterrupted one, bit for bit.

Every kill is a real `SIGKILL` of a child process (`kill_child.py`), sent by the
child to itself at a deterministic point: the end of a graph call before its
checkpoint, between epochs, inside the validation pass, and at each stage of a
checkpoint write (sidecar half-renamed, TF files without index, index without
sweep, before the stale-sidecar cleanup), and in a `DeepEnsemble.fit` (joint:
TF files written but not renamed into place; one member after the other: in
the middle of member 1, and a kill by the kernel in the middle of member 2's
checkpoint data file). After each kill the checkpoint folder holds a loadable
checkpoint with finite values, and a fresh process resuming it ends with the
uninterrupted run's weights, bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfcraft.training.resume import TrainingCheckpoints

CHILD = Path(__file__).with_name("kill_child.py")
TRAINER_POINTS = [
    "batch:3",  # before the first checkpoint exists: resume starts afresh
    "batch:6",  # early, mid-epoch 0
    "batch:12",  # mid-epoch 1
    "epoch_end:1",  # between epochs, before the epoch's checkpoint
    "epoch_begin:2",  # between epochs, after it
    "val:2",  # inside the validation pass of epoch 2
    "sidecar:9",  # checkpoint write: sidecar in its temp file
    "data:15",  # checkpoint write: TF files written, index not updated
    "sweep:18",  # checkpoint write: indexed, old checkpoints not deleted
    "cleanup:21",  # checkpoint write: done but stale sidecars left
    "batch:27",  # late in the last epoch
    "train_end:0",  # after the final checkpoint
]


def run_child(kind, directory, out, spec, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    return subprocess.run(
        [sys.executable, str(CHILD), kind, str(directory), str(out), spec],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def weights(path):
    with np.load(path) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


def assert_loadable(directory):
    """The latest trusted checkpoint's sidecar parses and every tensor reads, finite."""
    metadata = TrainingCheckpoints(directory).latest_metadata()
    assert metadata is not None, f"no trusted checkpoint in {directory}"
    reader = tf.train.load_checkpoint(str(Path(directory) / f"ckpt-{metadata['step']}"))
    values = [np.asarray(reader.get_tensor(n)) for n in reader.get_variable_to_shape_map()]
    assert values
    assert all(np.all(np.isfinite(v)) for v in values if np.issubdtype(v.dtype, np.floating))
    return metadata


@pytest.fixture(scope="module")
def trainer_runs(tmp_path_factory):
    """The reference run, every killed run, then one process resuming them all."""
    root = tmp_path_factory.mktemp("sigkill")

    def kill(point):
        directory = root / point.replace(":", "-")
        return point, run_child("trainer", directory, root / "never.npz", point)

    with ThreadPoolExecutor(2) as pool:
        full = pool.submit(run_child, "trainer", root / "full", root / "full.npz", "full")
        killed = dict(pool.map(kill, TRAINER_POINTS))
        full = full.result()
    assert full.returncode == 0, full.stderr[-2000:]
    states = {}
    for point, result in killed.items():
        directory = root / point.replace(":", "-")
        states[point] = (result, None if point == "batch:3" else assert_loadable(directory))
    dirs = [str(root / p.replace(":", "-")) for p in TRAINER_POINTS]
    outs = [str(root / f"{p.replace(':', '-')}.npz") for p in TRAINER_POINTS]
    resumed = run_child("trainer", ",".join(dirs), ",".join(outs), "resume", timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.split().count("DONE") == len(TRAINER_POINTS)
    return weights(root / "full.npz"), states, dict(zip(TRAINER_POINTS, outs, strict=True))


@pytest.mark.timeout(900)
@pytest.mark.fault("sigkill")
@pytest.mark.parametrize("point", TRAINER_POINTS)
def test_trainer_killed_then_resumed_equals_uninterrupted(trainer_runs, point):
    expected, states, outs = trainer_runs
    result, metadata = states[point]
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr[-2000:])
    assert "DONE" not in result.stdout
    if metadata is not None:  # the checkpoint that survived is the one before the kill
        assert 0 < metadata["step"] <= 28
    actual = weights(outs[point])
    assert len(actual) == len(expected) == 8  # two Dense, BatchNorm with moving stats
    for a, b in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.timeout(600)
@pytest.mark.fault("sigkill")
def test_ppo_learn_killed_then_resumed_equals_uninterrupted(tmp_path):
    full = run_child("rl", tmp_path / "full", tmp_path / "full.npz", "full")
    assert full.returncode == 0, full.stderr[-2000:]
    killed = run_child("rl", tmp_path / "cut", tmp_path / "never.npz", "update:3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    reader_dir = tmp_path / "cut"
    assert sorted(p.name for p in reader_dir.glob("ckpt-*.json")) == ["ckpt-2.json"]
    resumed = run_child("rl", tmp_path / "cut", tmp_path / "resumed.npz", "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.split()[-1] == full.stdout.split()[-1] == "192"
    for a, b in zip(weights(tmp_path / "full.npz"), weights(tmp_path / "resumed.npz"), strict=True):
        np.testing.assert_array_equal(a, b)


# Ensemble kill points (see kill_child.py) -> step of the interrupted folder's
# checkpoint that must survive. Each run: 3 members x 21 steps, ckpt every 4 steps.
ENSEMBLE_POINTS = {
    "joint-merge:8": 7,  # joint fit, ckpt-8's files in ckpt-8_temp/, not renamed into place
    "seq-batch:12@1": 8,  # member 1 mid-epoch 1, before its ckpt-12; member 0 finished
    "seq-fsize:16@2": 14,  # the kernel kills mid-write of member 2's ckpt-16 data file
}


def interrupted_folder(point):
    member = point.partition("@")[2]
    return "joint" if point.startswith("joint") else f"member_{int(member):02d}"


def snapshot(directory):
    """`{relative path: size}` of every file under `directory`."""
    return {
        str(p.relative_to(directory)): p.stat().st_size for p in directory.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def ensemble_runs(tmp_path_factory):
    """Killed ensemble fits and a killed save; one process then resumes them and runs the
    uninterrupted fits (joint and one member after the other)."""
    root = tmp_path_factory.mktemp("ensemble")

    def kill(point):
        kind_dir = root / point.replace(":", "-")
        return point, run_child("ensemble", kind_dir, root / "never.npz", point.partition("-")[2])

    with ThreadPoolExecutor(2) as pool:
        save = pool.submit(run_child, "ensemble", root / "save", root / "first.npz", "member:2")
        killed = dict(pool.map(kill, ENSEMBLE_POINTS))
        save = save.result()
    states = {}
    for point, result in killed.items():
        directory = root / point.replace(":", "-")
        manifest = json.loads((directory / "manifest.json").read_text())
        metadata = assert_loadable(directory / interrupted_folder(point))
        states[point] = (result, manifest, metadata, snapshot(directory))
    names = [p.replace(":", "-") for p in ENSEMBLE_POINTS] + ["full"]
    dirs, outs = [str(root / n) for n in names], [str(root / f"{n}.npz") for n in names]
    resumed = run_child("ensemble", ",".join(dirs), ",".join(outs), "resume", timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.split().count("DONE") == len(names)
    return root, states, save


@pytest.mark.timeout(900)
@pytest.mark.fault("sigkill")
@pytest.mark.parametrize("point", ENSEMBLE_POINTS)
def test_ensemble_killed_in_fit_then_resumed_equals_uninterrupted(ensemble_runs, point):
    root, states, _ = ensemble_runs
    result, manifest, metadata, before = states[point]
    directory = root / point.replace(":", "-")
    folder = interrupted_folder(point)
    if "fsize" in point:  # a real kill by the kernel in TF's write of the data file
        assert result.returncode == -signal.SIGXFSZ, (result.returncode, result.stderr[-2000:])
        limit = int(result.stdout.split("LIMIT")[1].split()[0])
        partial = [n for n in before if n.startswith(f"{folder}/ckpt-16_temp/") and ".data-" in n]
        full_size = before[f"{folder}/ckpt-14.data-00000-of-00001"]
        assert len(partial) == 1 and before[partial[0]] == limit == full_size // 2
    else:
        assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr[-2000:])
    assert "DONE" not in result.stdout
    if "merge" in point:  # the TF files were complete in ckpt-8_temp/, never renamed
        assert {n.rsplit("/", 1)[-1] for n in before if "ckpt-8_temp/" in n} == {
            "part-00000-of-00001.index",
            "part-00000-of-00001.data-00000-of-00001",
        }
    assert metadata["step"] == ENSEMBLE_POINTS[point]  # the checkpoint before the kill
    member = int(point.partition("@")[2] or 0)
    finished = [f"member_{i:02d}" for i in range(member)] if folder != "joint" else []
    assert [k for k, v in manifest["finished"].items() if v] == finished
    # After the resume: every weight equals the uninterrupted fit's, bit for bit.
    reference = root / ("full-joint.npz" if folder == "joint" else "full-seq.npz")
    expected, actual = weights(reference), weights(root / f"{directory.name}.npz")
    assert len(actual) == len(expected) == 12  # 3 members x 2 Dense
    for a, b in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(a, b)
    after = snapshot(directory)
    for name in finished:  # finished members were loaded, not trained or written again
        assert {k: v for k, v in after.items() if k.startswith(name + "/ckpt")} == {
            k: v for k, v in before.items() if k.startswith(name + "/ckpt")
        }
    assert not [n for n in after if "_temp" in n or n.endswith(".tmp")]  # leftovers swept
    assert all(json.loads((directory / "manifest.json").read_text())["finished"].values())


@pytest.mark.timeout(900)
@pytest.mark.fault("sigkill")
def test_ensemble_killed_in_save_keeps_the_old_ensemble(ensemble_runs):
    from tfcraft.bayes import DeepEnsemble

    root, _, in_save = ensemble_runs
    # Killed while saving over a saved ensemble (second member file): the old one loads.
    assert in_save.returncode == -signal.SIGKILL, in_save.stderr[-2000:]
    assert "SAVED" in in_save.stdout and "DONE" not in in_save.stdout
    loaded = DeepEnsemble.load(root / "save" / "saved")
    actual = [w for member in loaded.members for w in member.get_weights()]
    expected = weights(root / "first.npz")
    assert len(actual) == len(expected) == 12
    for a, b in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(a, b)
