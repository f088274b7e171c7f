"""Two processes on one checkpoint folder or run directory: the second is refused.

The first process (`kill_child.py hold`) trains, or holds a run directory,
and waits; the second (this test process) is refused with an error naming the
folder and the holder's pid; afterwards the first one's files are intact.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfcraft._locks import FolderLockedError
from tfcraft.training import Trainer
from tfcraft.training.resume import TrainingCheckpoints

CHILD = Path(__file__).with_name("kill_child.py")


def weights(path):
    with np.load(path) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


def start_holder(directory, release, spec):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, str(CHILD), "hold", str(directory), str(release), spec],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = process.stdout.readline()
    if line.strip() != "READY":
        process.kill()
        pytest.fail(f"holder said {line!r}: {process.stderr.read()[-2000:]}")
    return process


@pytest.mark.timeout(300)
@pytest.mark.fault("concurrent")
def test_second_trainer_on_a_checkpoint_folder_is_refused(tmp_path):
    directory = tmp_path / "ckpt"
    holder = start_holder(directory, tmp_path / "release", "trainer")
    try:
        before = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        trainer = Trainer(model, "sgd", loss="mse", seed=0, checkpoint_dir=directory)
        x = np.ones((8, 4), "float32")
        message = rf"{directory}.* another process \(pid {holder.pid}\)"
        for resume in (False, True):
            with pytest.raises(FolderLockedError, match=message):
                trainer.fit((x, x[:, :1]), resume=resume, verbose=0)
        after = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
        assert after == before  # the refused process wrote nothing
    finally:
        (tmp_path / "release").touch()
        out, err = holder.communicate(timeout=240)
    assert holder.returncode == 0, err[-2000:]
    assert out.split()[-1] == "14"  # both epochs of 7 steps
    metadata = TrainingCheckpoints(directory).latest_metadata()
    assert metadata["step"] == 14 and metadata["epoch"] == 2
    assert len(weights(directory / "final.npz")) == 8


@pytest.mark.timeout(300)
@pytest.mark.fault("concurrent", cases=2)
def test_second_process_on_a_run_directory_is_refused(tmp_path, capsys):
    from tfcraft.cli import main
    from tfcraft.runs import RunDirectory, RunLockedError

    run = tmp_path / "run"
    holder = start_holder(run, tmp_path / "release", "run")
    try:
        with pytest.raises(RunLockedError, match=rf"{run}.* in use .*pid {holder.pid}"):
            RunDirectory.open(run)
        # The command line refuses too, before writing anything, with exit status 1.
        assert main(["train", "custom_classification", "--out", str(run), "--quiet"]) != 0
        assert f"pid {holder.pid}" in capsys.readouterr().err
        assert sorted(p.name for p in run.iterdir()) == [".lock", "results.json"]
    finally:
        (tmp_path / "release").touch()
        holder.communicate(timeout=60)
    assert holder.returncode == 0
    assert (run / "results.json").read_text().strip().startswith("{")
