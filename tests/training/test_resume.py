import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfcraft.training import Trainer

SCRIPT = Path(__file__).with_name("resume_script.py")


def _start(directory, out, mode):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(directory), str(out), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def _weights(path):
    with np.load(path) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


@pytest.mark.timeout(600)
def test_sigkill_mid_epoch_then_resume_is_bit_for_bit(tmp_path):
    full = _start(tmp_path / "full", tmp_path / "full.npz", "full")
    victim = _start(tmp_path / "killed", tmp_path / "killed.npz", "kill")
    try:
        line = victim.stdout.readline()
        assert line.strip() == "READY", f"victim said {line!r}"
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
    assert not (tmp_path / "killed.npz").exists()  # it did not finish

    resumed = _start(tmp_path / "killed", tmp_path / "resumed.npz", "resume")
    assert resumed.wait(timeout=240) == 0
    assert full.wait(timeout=240) == 0
    assert resumed.stdout.read().split()[-1] == "52"  # 4 epochs x 13 steps
    expected, actual = _weights(tmp_path / "full.npz"), _weights(tmp_path / "resumed.npz")
    assert len(expected) == len(actual) == 4
    for a, b in zip(expected, actual, strict=True):
        assert np.array_equal(a, b)


def _trainer(directory, callbacks=()):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dropout(0.5, seed=3),
            keras.layers.Dense(1),
        ]
    )
    return Trainer(
        model,
        keras.optimizers.Adam(0.01),
        loss="mse",
        metrics=["mae"],
        seed=5,
        callbacks=list(callbacks),
        checkpoint_dir=directory,
        checkpoint_every=3,
        jit_compile=False,
    )


def test_stop_mid_epoch_and_resume_in_process_matches_uninterrupted(tmp_path, stop_after_calls):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(44, 3)).astype("float32")
    y = x[:, :1] - x[:, 1:2]
    reference = _trainer(tmp_path / "reference")
    expected = reference.fit((x, y), epochs=3, batch_size=8, verbose=0)

    interrupted = _trainer(tmp_path / "run", [stop_after_calls(3)])
    interrupted.fit((x, y), epochs=3, batch_size=8, verbose=0)
    assert interrupted.step == 9  # calls end at steps 3, 6 (epoch end), 9: stopped mid-epoch 2
    resumed = _trainer(tmp_path / "run")
    history = resumed.fit((x, y), epochs=3, batch_size=8, verbose=0, resume=True)
    assert resumed.step == reference.step == 18
    for a, b in zip(reference.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The resumed epoch's running loss and the history of finished epochs carry over.
    np.testing.assert_allclose(history.history["loss"][-1], expected.history["loss"][-1], rtol=1e-6)
    assert len(history.history["loss"]) == 3
