"""`DeepEnsemble.fit(checkpoint_dir=..., resume=True)`: each member its own folder, exact resume.

The killed-process versions (SIGKILL mid-member, mid-checkpoint-write) live in
tests/reliability/test_sigkill.py; here an interruption is an exception raised
by a callback in the middle of a member's training, in this process.
"""

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcraft import bayes
from tfcraft.training import Callback
from tfcraft.training.resume import TrainingCheckpoints

FIT = {"epochs": 3, "batch_size": 8, "loss": "mse", "jit_compile": False, "checkpoint_every": 2}


def build_model(seed):
    return keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(
                4, activation="tanh", kernel_initializer=keras.initializers.GlorotUniform(seed)
            ),
            keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(seed + 1)),
        ]
    )


def _data(n=20):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).astype("float32")
    return x, (x[:, :1] - x[:, 1:] + 0.1 * rng.normal(size=(n, 1))).astype("float32")


class Interrupt(Exception):
    pass


class InterruptAt(Callback):
    """Raises `Interrupt` at global step `step` of the `member`-th Trainer it sees."""

    def __init__(self, member, step):
        super().__init__()
        self.member, self.step, self.seen = member, step, -1

    def on_train_begin(self, logs=None):
        self.seen += 1

    def on_train_batch_end(self, batch, logs=None):
        if self.seen == self.member and self.trainer.step == self.step:
            raise Interrupt


class Recorder(Callback):
    """Records, per Trainer it sees, the global step after every graph call."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_begin(self, logs=None):
        self.steps.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1].append(self.trainer.step)


def weights(ensemble):
    return [w for member in ensemble.members for w in member.get_weights()]


def assert_equal_weights(expected, actual):
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(a, b)


def checkpoint_kernel(folder):
    """The first Dense kernel in the latest checkpoint of a Trainer folder."""
    step = TrainingCheckpoints(folder).latest_metadata()["step"]
    reader = tf.train.load_checkpoint(str(folder / f"ckpt-{step}"))
    return reader.get_tensor("model_variables/0/.ATTRIBUTES/VARIABLE_VALUE")


@pytest.fixture(scope="module")
def uninterrupted():
    x, y = _data()
    ensemble = bayes.DeepEnsemble(build_model, num_members=3, seed=0)
    histories = ensemble.fit(x, y, vectorize=False, callbacks=[Recorder()], **FIT)
    return weights(ensemble), [h.history["loss"] for h in histories]


def test_each_member_checkpoints_into_its_own_folder(tmp_path):
    # The bug this guards against: with one folder for all, member 1's ckpt-N
    # overwrote member 0's, and a resume gave member 0 member 1's weights.
    x, y = _data()
    ensemble = bayes.DeepEnsemble(build_model, num_members=3, seed=0)
    ensemble.fit(x, y, vectorize=False, checkpoint_dir=tmp_path, **FIT)
    folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert folders == ["member_00", "member_01", "member_02"]
    for index, member in enumerate(ensemble.members):
        np.testing.assert_array_equal(
            checkpoint_kernel(tmp_path / folders[index]), member.get_weights()[0]
        )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["finished"] == dict.fromkeys(folders, True)
    assert manifest["seeds"] == ensemble.seeds and manifest["training"] == "one after the other"
    assert not list(tmp_path.glob("*.tmp"))


def test_sequential_resume_mid_member_equals_uninterrupted(tmp_path, uninterrupted):
    expected_weights, expected_losses = uninterrupted
    x, y = _data()
    killed = bayes.DeepEnsemble(build_model, num_members=3, seed=0)
    with pytest.raises(Interrupt):  # member 1, step 6 of 9: its last checkpoint is step 4
        killed.fit(
            x, y, vectorize=False, callbacks=[InterruptAt(1, 6)], checkpoint_dir=tmp_path, **FIT
        )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["finished"] == {"member_00": True, "member_01": False, "member_02": False}
    assert TrainingCheckpoints(tmp_path / "member_01").latest_metadata()["step"] == 4
    assert not (tmp_path / "member_02").exists()

    resumed = bayes.DeepEnsemble(build_model, num_members=3, seed=0)
    recorder = Recorder()
    histories = resumed.fit(
        x, y, vectorize=False, callbacks=[recorder], checkpoint_dir=tmp_path, resume=True, **FIT
    )
    # Member 0 is loaded (no step runs), member 1 continues after step 4, member 2 runs all.
    assert recorder.steps[0] == [] and recorder.steps[1][0] > 4 and recorder.steps[2][-1] == 9
    assert_equal_weights(expected_weights, weights(resumed))
    assert [h.history["loss"] for h in histories] == expected_losses


def test_joint_resume_equals_uninterrupted(tmp_path):
    x, y = _data()
    reference = bayes.DeepEnsemble(build_model, num_members=2, seed=0)
    reference.fit(x, y, **{**FIT, "epochs": 2})
    assert len(reference.trainers) == 1  # "auto" trained them as one model
    first = bayes.DeepEnsemble(build_model, num_members=2, seed=0)
    first.fit(x, y, checkpoint_dir=tmp_path, **{**FIT, "epochs": 1})
    assert json.loads((tmp_path / "manifest.json").read_text())["training"] == "joint"
    assert (tmp_path / "joint" / "checkpoint").exists()
    resumed = bayes.DeepEnsemble(build_model, num_members=2, seed=0)
    histories = resumed.fit(x, y, checkpoint_dir=tmp_path, resume=True, **{**FIT, "epochs": 2})
    assert resumed.trainers[0].step == 6
    assert [len(h.history["loss"]) for h in histories] == [2, 2]
    assert_equal_weights(weights(reference), weights(resumed))


def test_resume_of_a_finished_fit_loads_without_training(tmp_path, uninterrupted):
    x, y = _data()
    bayes.DeepEnsemble(build_model, num_members=3, seed=0).fit(
        x, y, vectorize=False, checkpoint_dir=tmp_path, **FIT
    )
    again = bayes.DeepEnsemble(build_model, num_members=3, seed=0)
    recorder = Recorder()
    again.fit(
        x, y, vectorize=False, callbacks=[recorder], checkpoint_dir=tmp_path, resume=True, **FIT
    )
    assert recorder.steps == [[], [], []]
    assert_equal_weights(uninterrupted[0], weights(again))


def test_resume_refuses_checkpoints_of_another_fit(tmp_path):
    x, y = _data()
    bayes.DeepEnsemble(build_model, num_members=2, seed=0).fit(
        x, y, vectorize=False, checkpoint_dir=tmp_path, **{**FIT, "epochs": 1}
    )
    manifest = (tmp_path / "manifest.json").read_text()
    other_seed = bayes.DeepEnsemble(build_model, num_members=2, seed=1)
    with pytest.raises(ValueError, match=r"another ensemble fit: .*manifest.json has seed=0"):
        other_seed.fit(x, y, vectorize=False, checkpoint_dir=tmp_path, resume=True, **FIT)
    same = bayes.DeepEnsemble(build_model, num_members=2, seed=0)
    with pytest.raises(ValueError, match=r"training='one after the other'.*`vectorize`"):
        same.fit(x, y, vectorize=True, checkpoint_dir=tmp_path, resume=True, **FIT)
    assert (tmp_path / "manifest.json").read_text() == manifest  # nothing was changed
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest .*manifest.json is corrupt"):
        same.fit(x, y, vectorize=False, checkpoint_dir=tmp_path, resume=True, **FIT)
    (tmp_path / "manifest.json").write_text(manifest)
    for path in (tmp_path / "member_01").iterdir():
        path.unlink()
    with pytest.raises(ValueError, match=r"'member_01' finished training, but .* no checkpoint"):
        same.fit(x, y, vectorize=False, checkpoint_dir=tmp_path, resume=True, **FIT)


def test_resume_argument_errors_and_a_fresh_start(tmp_path):
    x, y = _data()
    ensemble = bayes.DeepEnsemble(build_model, num_members=2, seed=0)
    with pytest.raises(ValueError, match=r"needs `checkpoint_dir`. Received: checkpoint_dir=None"):
        ensemble.fit(x, y, resume=True, **FIT)
    with pytest.raises(TypeError, match=r"Received: checkpoint_dir=3"):
        ensemble.fit(x, y, checkpoint_dir=3, **FIT)
    with pytest.raises(TypeError, match=r"Received: resume='yes'"):
        ensemble.fit(x, y, checkpoint_dir=tmp_path, resume="yes", **FIT)
    with pytest.warns(UserWarning, match="has no ensemble checkpoint; starting fresh"):
        ensemble.fit(x, y, vectorize=False, checkpoint_dir=tmp_path / "new", resume=True, **FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no per-member "no checkpoint" warnings on top
        again = bayes.DeepEnsemble(build_model, num_members=2, seed=0)
        again.fit(x, y, vectorize=False, checkpoint_dir=tmp_path / "new", resume=True, **FIT)
    assert_equal_weights(weights(ensemble), weights(again))
