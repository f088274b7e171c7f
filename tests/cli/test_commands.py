import fcntl
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tfcraft(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "tfcraft", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=ROOT,
    )


def errors(completed):
    return [line for line in completed.stderr.splitlines() if line.startswith("tfcraft:")]


@pytest.fixture(scope="module")
def bnn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bnn"
    completed = tfcraft(
        "train", "configs/bnn_regression.yaml", "--set", "trainer.epochs=2", "--out", out, "--quiet"
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return out


@pytest.mark.timeout(600)
def test_train_writes_the_run_directory_with_finite_numbers(bnn_run):
    for name in ("config.yaml", "metrics.jsonl", "model.keras", "report.html", "results.json"):
        assert (bnn_run / name).is_file(), name
    assert any((bnn_run / "checkpoints").iterdir()) and any((bnn_run / "tensorboard").rglob("*"))
    rows = [json.loads(line) for line in (bnn_run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(math.isfinite(row["loss"]) and row["kl"] > 0 for row in rows)
    results = json.loads((bnn_run / "results.json").read_text())
    assert results["probabilistic"] and 0.5 <= results["metrics"]["test_coverage_90"] <= 1.0
    assert math.isfinite(results["metrics"]["test_rmse"])
    html = (bnn_run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "http" not in html
    assert "test_coverage_90" in html
    config = (bnn_run / "config.yaml").read_text()
    assert "tensorflow:" in config and "seed: 0" in config


@pytest.mark.timeout(600)
def test_predict_evaluate_report_and_resume(bnn_run, tmp_path):
    from sklearn.datasets import load_diabetes

    x = load_diabetes(return_X_y=True)[0][:7]
    pd.DataFrame(x).to_csv(tmp_path / "rows.csv", index=False)
    np.save(tmp_path / "rows.npy", x)
    out = tmp_path / "preds.csv"
    assert (
        tfcraft("predict", bnn_run, "--input", tmp_path / "rows.csv", "--output", out).returncode
        == 0
    )
    preds = pd.read_csv(out)
    assert list(preds.columns) == ["mean", "std", "lower_90", "upper_90"] and len(preds) == 7
    assert (preds["lower_90"] < preds["mean"]).all() and (preds["std"] > 0).all()
    bad = tfcraft("predict", bnn_run, "--input", tmp_path / "missing.csv", "--output", out)
    assert bad.returncode == 2 and len(errors(bad)) == 1 and "Traceback" not in bad.stderr
    assert tfcraft("evaluate", bnn_run).returncode == 0
    assert "test_rmse" in json.loads((bnn_run / "evaluation.json").read_text())
    (bnn_run / "report.html").unlink()
    assert tfcraft("report", bnn_run).returncode == 0 and (bnn_run / "report.html").is_file()
    resumed = tfcraft(
        "train",
        "configs/bnn_regression.yaml",
        "--set",
        "trainer.epochs=3",
        "--out",
        bnn_run,
        "--resume",
        "--quiet",
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = (bnn_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [0, 1, 2]


@pytest.mark.timeout(300)
def test_bad_config_and_locked_run_dir_exit_2_with_one_line(tmp_path):
    bad = tfcraft(
        "train",
        "configs/bnn_regression.yaml",
        "--set",
        "trainer.epochs=-3",
        "--out",
        tmp_path / "x",
    )
    assert bad.returncode == 2
    assert errors(bad) == [
        "tfcraft: error: configs/bnn_regression.yaml: "
        "trainer.epochs: expected an integer >= 1, got -3"
    ]
    assert not (tmp_path / "x").exists()  # rejected before any work
    locked = tmp_path / "locked"
    locked.mkdir()
    with open(locked / ".lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = tfcraft(
            "train",
            "configs/custom_classification.yaml",
            "--set",
            "trainer.epochs=1",
            "--out",
            locked,
        )
    assert refused.returncode == 2 and "in use by another tfcraft process" in refused.stderr
    assert not (locked / "config.yaml").exists()


@pytest.mark.timeout(300)
def test_classification_config_with_custom_layer_loss_metric(tmp_path):
    completed = tfcraft(
        "train",
        "configs/custom_classification.yaml",
        "--set",
        "trainer.epochs=1",
        "--out",
        tmp_path / "c",
        "--quiet",
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    metrics = json.loads((tmp_path / "c" / "results.json").read_text())["metrics"]
    assert 0.0 <= metrics["test_precision"] <= 1.0 and 0.0 <= metrics["test_ece"] <= 1.0
    assert (tmp_path / "c" / "plots" / "reliability.png").is_file()


@pytest.mark.timeout(300)
def test_detect_config_writes_roc_pr_report(tmp_path):
    completed = tfcraft("detect", "configs/detect_breastw.yaml", "--out", tmp_path / "d")
    assert completed.returncode == 0, completed.stderr[-2000:]
    metrics = json.loads((tmp_path / "d" / "results.json").read_text())["metrics"]
    assert 0.5 < metrics["test_roc_auc"] <= 1.0 and 0.0 <= metrics["test_fpr_at_threshold"] <= 1
    assert (tmp_path / "d" / "plots" / "detector_curves.png").is_file()
    assert "data:image/png;base64," in (tmp_path / "d" / "report.html").read_text()
    bad = tfcraft("detect", "configs/detect_breastw.yaml", "--set", "detector=Nope")
    assert bad.returncode == 2 and "detector: expected one of" in bad.stderr


@pytest.mark.timeout(300)
def test_rl_config_with_custom_reward_writes_return_curve(tmp_path):
    completed = tfcraft(
        "rl",
        "configs/rl_cartpole.yaml",
        "--set",
        "total_timesteps=512",
        "--set",
        "eval_episodes=2",
        "--set",
        "agent.n_steps=64",
        "--out",
        tmp_path / "r",
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    metrics = json.loads((tmp_path / "r" / "results.json").read_text())["metrics"]
    assert metrics["timesteps"] == 512 and metrics["eval_mean_return"] >= 1.0
    rows = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert rows and all(math.isfinite(json.loads(r)["episode_return"] or 0) for r in rows)
    assert (tmp_path / "r" / "plots" / "learning_curves.png").is_file()


@pytest.mark.timeout(600)
def test_demo_quick_runs_every_part(tmp_path):
    completed = tfcraft("demo", "--quick", "--out", tmp_path / "demo", timeout=550)
    assert completed.returncode == 0, completed.stderr[-2000:]
    for part in ("custom_classification", "bnn_regression", "detect_breastw", "rl_cartpole"):
        assert f"[{part}]" in completed.stdout
        assert (tmp_path / "demo" / part / "report.html").is_file()
