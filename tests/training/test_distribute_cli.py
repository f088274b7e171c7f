"""`tfcraft train --workers 2` through the console script: two local workers, one run directory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfcraft.cli import main

SCRIPT = Path(sys.executable).with_name("tfcraft")  # the console script of this venv
# A deterministic model (no random draws), so one process and two workers agree.
OVERRIDES = ["--set", "trainer.epochs=3", "--set", "trainer.batch_size=64"]


@pytest.mark.timeout(900)
def test_train_with_two_workers_equals_one_process_and_only_the_chief_writes(tmp_path, capsys):
    two, one, scratch = tmp_path / "two", tmp_path / "one", tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(scratch)}
    command = [str(SCRIPT), "train", "custom_classification", *OVERRIDES]
    completed = subprocess.run(
        [*command, "--workers", "2", "--out", str(two), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=800,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "report:" in completed.stdout  # the chief's results were printed

    assert main(["train", "custom_classification", *OVERRIDES, "--out", str(one), "--quiet"]) == 0
    capsys.readouterr()

    distributed = keras.saving.load_model(two / "model.keras")
    single = keras.saving.load_model(one / "model.keras")
    moved = False
    for a, b in zip(distributed.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        moved = moved or not np.allclose(a, 0)
    assert moved
    results = {
        name: json.loads((run / "results.json").read_text())["metrics"]
        for name, run in ((2, two), (1, one))
    }
    for key, value in results[1].items():
        np.testing.assert_allclose(results[2][key], value, rtol=1e-4, atol=1e-6, err_msg=key)

    # One writer: one line per epoch, one TensorBoard event file, and the other
    # worker's temporary run directory is gone.
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 3
    assert len(list((two / "tensorboard").rglob("events.out.tfevents.*"))) == len(
        list((one / "tensorboard").rglob("events.out.tfevents.*"))
    )
    assert not list(scratch.glob("tfcraft-worker-run-*"))
    assert not [p for p in tmp_path.iterdir() if p.name not in ("one", "two", "tmp")]
    logs = sorted(p.name for p in scratch.glob("tfcraft-launch-*/worker-*.log"))
    assert logs == ["worker-0.log", "worker-1.log"]
