import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcraft.training import Trainer
from tfcraft.training.checkpoint import CheckpointStore, write_json_atomic


def _model(units=8, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(units, activation="tanh"), keras.layers.Dense(1)]
    )


def _data(n=24):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, x[:, :1] * 2.0


def _trainer(directory, units=8, **kwargs):
    return Trainer(
        _model(units),
        keras.optimizers.Adam(0.01),
        loss="mse",
        seed=0,
        checkpoint_dir=directory,
        jit_compile=False,
        **kwargs,
    )


def _snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A directory holding the checkpoints of one short run (copied per test)."""
    directory = tmp_path_factory.mktemp("run") / "ckpt"
    trainer = _trainer(directory, checkpoint_every=2)
    trainer.fit(_data(), epochs=2, batch_size=8, verbose=0)
    np.savez(directory.parent / "final.npz", *trainer.get_weights())
    return directory


def _copy(run_dir, tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    for path in run_dir.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_keeps_last_n_checkpoints_each_with_a_sidecar(run_dir):
    names = sorted(p.name for p in run_dir.iterdir())
    # 6 steps; saved at steps 2, 3 (epoch end), 4, 6 (epoch end); last 3 kept.
    assert [n for n in names if n.endswith(".index")] == [
        "ckpt-3.index",
        "ckpt-4.index",
        "ckpt-6.index",
    ]
    assert [n for n in names if n.endswith(".json")] == [
        "ckpt-3.json",
        "ckpt-4.json",
        "ckpt-6.json",
    ]
    metadata = json.loads((run_dir / "ckpt-4.json").read_text())
    assert (metadata["epoch"], metadata["position"], metadata["step"]) == (1, 1, 4)
    assert metadata["seed"] == 0
    # Mid-epoch 1, History holds exactly the finished epoch 0: the first record of
    # the run's last checkpoint (written at the end of epoch 1).
    history = metadata["callbacks"]["History"]
    final = json.loads((run_dir / "ckpt-6.json").read_text())["callbacks"]["History"]
    assert history["epoch"] == [0] and final["epoch"] == [0, 1]
    assert set(history["history"]) == set(final["history"]) >= {"loss", "grad_norm"}
    assert {k: v[:1] for k, v in final["history"].items()} == history["history"]


def test_store_prefers_newest_checkpoint_with_a_sidecar(tmp_path):
    store = CheckpointStore(tmp_path, {"v": tf.Variable(1.0)})
    first = store.save(1, {"n": 1})
    second = store.save(2, {"n": 2})
    assert store.latest() == second
    os.remove(store.sidecar(second))  # as if the crash came between the files
    with pytest.warns(UserWarning, match=r"has no metadata file"):
        assert store.latest() == first


def test_write_json_atomic_leaves_no_temp_file(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    write_json_atomic(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_resume_without_checkpoint_warns_and_starts_fresh(tmp_path):
    trainer = _trainer(tmp_path / "empty")
    with pytest.warns(UserWarning, match=r"has no checkpoint; starting fresh"):
        trainer.fit(_data(), batch_size=8, resume=True, verbose=0)
    assert trainer.step == 3


def test_resume_restores_counters_and_weights(run_dir, tmp_path):
    directory = _copy(run_dir, tmp_path)
    trainer = _trainer(directory)
    trainer.fit(_data(), epochs=2, batch_size=8, resume=True, verbose=0)  # already complete
    assert trainer.step == 6
    final = np.load(run_dir.parent / "final.npz")
    for index, weight in enumerate(trainer.get_weights()):
        np.testing.assert_array_equal(weight, final[f"arr_{index}"])
    assert int(trainer.optimizer.iterations) == 6


def test_incompatible_architecture_names_the_path_and_overwrites_nothing(run_dir, tmp_path):
    directory = _copy(run_dir, tmp_path)
    before = _snapshot(directory)
    with pytest.raises(ValueError, match=r"ckpt-6 is incompatible with this model: variable"):
        _trainer(directory, units=5).fit(_data(), epochs=3, batch_size=8, resume=True, verbose=0)
    assert _snapshot(directory) == before


def test_truncated_checkpoint_names_the_path_and_overwrites_nothing(run_dir, tmp_path):
    directory = _copy(run_dir, tmp_path)
    data_file = directory / "ckpt-6.data-00000-of-00001"
    data_file.write_bytes(data_file.read_bytes()[:20])
    before = _snapshot(directory)
    with pytest.raises(ValueError, match=r"ckpt-6 could not be restored; it is corrupt"):
        _trainer(directory).fit(_data(), epochs=3, batch_size=8, resume=True, verbose=0)
    assert _snapshot(directory) == before


def test_garbage_index_names_the_path(run_dir, tmp_path):
    directory = _copy(run_dir, tmp_path)
    (directory / "checkpoint").write_text("\x00garbage{{{")
    before = _snapshot(directory)
    with pytest.raises(ValueError, match=r"checkpoint index .*checkpoint is corrupt"):
        _trainer(directory).fit(_data(), epochs=3, batch_size=8, resume=True, verbose=0)
    assert _snapshot(directory) == before


def test_garbage_sidecar_names_the_path(run_dir, tmp_path):
    directory = _copy(run_dir, tmp_path)
    (directory / "ckpt-6.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"ckpt-6.json is missing or corrupt"):
        _trainer(directory).fit(_data(), epochs=3, batch_size=8, resume=True, verbose=0)


def test_fit_without_resume_warns_about_existing_checkpoints(run_dir, tmp_path):
    directory = _copy(run_dir, tmp_path)
    with pytest.warns(UserWarning, match=r"already holds checkpoints"):
        _trainer(directory).fit(_data(), batch_size=8, verbose=0)


def test_crash_between_sidecar_and_index_keeps_previous_checkpoint(tmp_path, monkeypatch):
    variable = tf.Variable(1.0)
    store = CheckpointStore(tmp_path, {"v": variable})
    first = store.save(1, {"n": 1})
    variable.assign(2.0)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(store.manager, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save(2, {"n": 2})
    reopened = CheckpointStore(tmp_path, {"v": variable})
    assert reopened.latest() == first
    assert reopened.restore(first) == {"n": 1}
    assert float(variable) == 1.0
