import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tfcraft import demo
from tfcraft.datasets import load_classification, train_test_split_indices


def test_demo_learns_digits_reloads_identically_and_f1_matches_sklearn(tmp_path):
    import keras

    results = demo.run_demo(epochs=6, seed=1, out=tmp_path)
    assert results["accuracy"] > 0.85
    assert results["reload_max_abs_diff"] == 0.0
    model = keras.saving.load_model(tmp_path / "chapter_model.keras")
    x, y = load_classification("digits")
    _, test = train_test_split_indices(len(x), 0.25, seed=1)
    predicted = np.argmax(model.predict(x[test], verbose=0), axis=-1)
    expected = f1_score(y[test], predicted, average="macro", zero_division=0)
    np.testing.assert_allclose(results["macro_f1"], expected, rtol=1e-5)


@pytest.mark.timeout(600)
def test_demo_command_line_prints_json_summary(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "tfcraft.demo", "--epochs", "1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and summary["reload_max_abs_diff"] == 0.0
    # The printed scores are those of the saved model on the seed-0 test split.
    import keras

    model = keras.saving.load_model(tmp_path / "chapter_model.keras")
    x, y = load_classification("digits")
    _, test = train_test_split_indices(len(x), 0.25, seed=0)
    predicted = np.argmax(model.predict(x[test], verbose=0), axis=-1)
    np.testing.assert_allclose(summary["accuracy"], np.mean(predicted == y[test]), rtol=1e-6)
    expected_f1 = f1_score(y[test], predicted, average="macro", zero_division=0)
    np.testing.assert_allclose(summary["macro_f1"], expected_f1, rtol=1e-5)
    rejected = subprocess.run(
        [sys.executable, "-m", "tfcraft.demo", "--epochs", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rejected.returncode != 0 and "Received: --epochs=0" in rejected.stderr
