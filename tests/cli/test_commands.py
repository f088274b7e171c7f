"""The `tfcraft` command through its real entry point (`python -m tfcraft`, the console script).

Each subprocess pays ~9 s of TensorFlow import, so one `tfcraft demo --quick` run
(module fixture) provides the train/detect/rl run directories that the other
tests read, predict from, evaluate, resume against and rebuild reports of. Error
paths and option variants call `tfcraft.cli.main(argv)` in this process: the
same function the console script calls, without another import.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from tfcraft import __version__
from tfcraft.cli import main
from tfcraft.cli.demo import QUICK_EPOCHS

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("tfcraft")  # the console script of this venv


def tfcraft_cmd(*args):
    return [sys.executable, "-m", "tfcraft", *map(str, args)]


def tfcraft(*args, timeout=400):
    return subprocess.run(
        tfcraft_cmd(*args), capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT
    )


def errors(stderr):
    return [line for line in stderr.splitlines() if line.startswith("tfcraft:")]


def rows_of(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    completed = tfcraft("demo", "--quick", "--out", out, timeout=550)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out, completed.stdout


@pytest.mark.timeout(600)
def test_demo_quick_runs_every_part_and_leaves_no_temporary_files(demo):
    out, stdout = demo
    for part in ("custom_classification", "bnn_regression", "detect_breastw", "rl_cartpole"):
        assert f"[{part}]" in stdout and f"report: {out / part / 'report.html'}" in stdout
        page = (out / part / "report.html").read_text()
        assert "data:image/png;base64," in page and "http" not in page
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]
    assert leftovers == []  # every write went through temp + rename


def test_train_run_directory_of_the_bnn(demo):
    run = demo[0] / "bnn_regression"
    for name in ("config.yaml", "metrics.jsonl", "model.keras", "results.json", "report.html"):
        assert (run / name).is_file(), name
    assert list((run / "checkpoints").glob("ckpt-*.index"))
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    rows = rows_of(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(QUICK_EPOCHS))
    assert all(math.isfinite(r["loss"]) and r["kl"] > 0 and r["grad_norm"] > 0 for r in rows)
    results = json.loads((run / "results.json").read_text())
    metrics = results["metrics"]
    assert results["probabilistic"] and 0.5 <= metrics["test_coverage_90"] <= 1.0
    assert math.isfinite(metrics["test_rmse"]) and metrics["test_interval_width_90"] > 0
    config = (run / "config.yaml").read_text()
    assert f"tensorflow: {tfcraft_tf_version()}" in config and "seed: 0" in config
    assert "epochs: 10" in config and "learning_rate: 0.01" in config  # resolved values
    page = (run / "report.html").read_text()
    for alt in ("learning curves", "prediction vs truth", "interval calibration"):
        assert f'alt="{alt}"' in page, alt
    assert "test_coverage_90" in page
    model = keras.saving.load_model(run / "model.keras")  # safe mode, no custom_objects
    assert model.count_params() > 0


def tfcraft_tf_version():
    import tensorflow as tf

    return tf.__version__


def test_train_classifier_with_custom_layer_loss_metric(demo):
    run = demo[0] / "custom_classification"
    metrics = json.loads((run / "results.json").read_text())["metrics"]
    assert metrics["test_accuracy"] > 0.85 and 0.0 <= metrics["test_ece"] <= 1.0
    assert 0.0 < metrics["test_precision"] <= 1.0 and 0.0 < metrics["test_recall"] <= 1.0
    assert 0.5 < metrics["test_roc_auc"] <= 1.0
    assert (run / "plots" / "reliability.png").is_file()
    layers = [type(layer).__name__ for layer in keras.saving.load_model(run / "model.keras").layers]
    assert "Linear" in layers  # the custom layer, saved and loaded back


def test_detect_and_rl_parts_wrote_their_plots(demo):
    detect = demo[0] / "detect_breastw"
    metrics = json.loads((detect / "results.json").read_text())["metrics"]
    assert 0.8 < metrics["test_roc_auc"] <= 1.0 and 0.0 <= metrics["test_fpr_at_threshold"] <= 0.2
    assert (detect / "plots" / "detector_curves.png").is_file() and (detect / "detector").is_dir()
    rl = demo[0] / "rl_cartpole"
    metrics = json.loads((rl / "results.json").read_text())["metrics"]
    assert metrics["timesteps"] == 1024 and metrics["eval_mean_return"] >= 8.0
    assert rows_of(rl / "metrics.jsonl") and (rl / "plots" / "learning_curves.png").is_file()
    assert "StepPenalty" in json.loads((rl / "results.json").read_text())["summary"]


@pytest.mark.timeout(300)
def test_predict_writes_uncertainty_columns_for_csv_npy_npz(demo, tmp_path, capsys):
    from sklearn.datasets import load_diabetes

    run = demo[0] / "bnn_regression"
    x = load_diabetes(return_X_y=True)[0][:7]
    pd.DataFrame(x, columns=[f"f{i}" for i in range(10)]).to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "preds.csv"
    completed = tfcraft("predict", run, "--input", tmp_path / "rows.csv", "--output", out)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert f"predictions: {out}" in completed.stdout
    preds = pd.read_csv(out)
    assert list(preds.columns) == ["mean", "std", "lower_90", "upper_90"] and len(preds) == 7
    assert (preds["lower_90"] < preds["mean"]).all() and (preds["mean"] < preds["upper_90"]).all()
    assert (preds["std"] > 0).all() and preds["mean"].between(0, 400).all()  # diabetes units
    np.save(tmp_path / "rows.npy", x)
    np.savez(tmp_path / "rows.npz", x=x)
    for name in ("rows.npy", "rows.npz"):
        assert (
            main(
                [
                    "predict",
                    str(run),
                    "--input",
                    str(tmp_path / name),
                    "--output",
                    str(tmp_path / f"{name}.csv"),
                ]
            )
            == 0
        )
        again = pd.read_csv(tmp_path / f"{name}.csv")
        assert list(again.columns) == list(preds.columns) and len(again) == 7
        # Same seed, same rows: the same predictive numbers from every input format.
        np.testing.assert_allclose(again.to_numpy(), preds.to_numpy(), rtol=1e-4)
    classifier = demo[0] / "custom_classification"
    from sklearn.datasets import load_breast_cancer

    np.save(tmp_path / "cancer.npy", load_breast_cancer(return_X_y=True)[0][:5])
    assert (
        main(
            [
                "predict",
                str(classifier),
                "--input",
                str(tmp_path / "cancer.npy"),
                "--output",
                str(tmp_path / "labels.csv"),
            ]
        )
        == 0
    )
    labels = pd.read_csv(tmp_path / "labels.csv")
    assert list(labels.columns) == ["label", "prob_1"] and labels["prob_1"].between(0, 1).all()
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                str(run),
                "--input",
                str(tmp_path / "cancer.npy"),
                "--output",
                str(tmp_path / "x.csv"),
            ]
        )
        == 2
    )
    assert errors(capsys.readouterr().err) == [
        "tfcraft: error: --input: expected 10 feature columns (as in training), got 30"
    ]


@pytest.mark.timeout(300)
def test_evaluate_and_report_rebuild(demo, tmp_path, capsys):
    run = demo[0] / "bnn_regression"
    completed = tfcraft("evaluate", run)
    assert completed.returncode == 0, completed.stderr[-2000:]
    evaluation = json.loads((run / "evaluation.json").read_text())
    results = json.loads((run / "results.json").read_text())["metrics"]
    assert evaluation["data"] == "test split"
    # Same model, same test split, same seed: the numbers `train` reported.
    assert evaluation["test_rmse"] == pytest.approx(results["test_rmse"], rel=1e-5)
    assert "test_rmse" in completed.stdout
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    table = pd.DataFrame(x[:60], columns=[f"f{i}" for i in range(10)]).assign(target=y[:60])
    table.to_csv(tmp_path / "labelled.csv", index=False)
    assert main(["evaluate", str(run), "--data", str(tmp_path / "labelled.csv")]) == 0
    on_file = json.loads((run / "evaluation.json").read_text())
    assert on_file["data"] == str(tmp_path / "labelled.csv") and on_file["test_rmse"] > 0
    assert main(["evaluate", str(run), "--data", str(tmp_path / "none.csv")]) == 2
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0 and (run / "report.html").is_file()
    assert 'alt="interval calibration"' in (run / "report.html").read_text()
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 2
    assert errors(capsys.readouterr().err) == [
        f"tfcraft: error: {tmp_path}: not a run directory (no results.json)"
    ]


def _latest_step(checkpoints):
    steps = [int(p.stem.split("-")[1]) for p in Path(checkpoints).glob("ckpt-*.json")]
    return max(steps, default=0)


@pytest.mark.timeout(600)
def test_sigkill_mid_run_then_resume_matches_the_uninterrupted_run_bit_for_bit(
    demo, tmp_path, capsys
):
    """The demo's `custom_classification` (QUICK_EPOCHS epochs) is the uninterrupted run."""
    from tfcraft.runs import RunDirectory, RunLockedError

    reference = demo[0] / "custom_classification"
    run = tmp_path / "victim"
    args = [
        "train",
        "configs/custom_classification.yaml",
        "--set",
        f"trainer.epochs={QUICK_EPOCHS}",
        "--set",
        "trainer.checkpoint_every=1",  # a checkpoint per step: a long window to kill in
        "--out",
        run,
        "--quiet",
    ]
    victim = subprocess.Popen(
        tfcraft_cmd(*args), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 400
        while _latest_step(run / "checkpoints") == 0:
            assert victim.poll() is None, victim.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        os.kill(victim.pid, signal.SIGSTOP)  # freeze it, then look
        killed_at = _latest_step(run / "checkpoints")
        assert 0 < killed_at < _latest_step(reference / "checkpoints"), "killed too late"
        assert not (run / "model.keras").exists()
        # While it lives, the run directory is refused to everyone else, naming its pid.
        holder = rf"in use by another tfcraft process \(pid {victim.pid}\)"
        with pytest.raises(RunLockedError, match=holder):
            RunDirectory.open(run)
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.stderr.close()
    RunDirectory.open(run).close()  # the OS released the dead holder's lock

    assert main(list(map(str, args))) == 2  # refuses to start over an earlier run
    assert "holds an earlier run; pass --resume" in capsys.readouterr().err
    resumed = tfcraft(*[a for a in args if a != "--quiet"], "--resume")  # with progress output
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # Not a terminal: plain progress lines (no `\r` redraws), one per epoch, with the loss.
    last = [
        line for line in resumed.stdout.splitlines() if line.startswith(f"Epoch {QUICK_EPOCHS}/")
    ]
    assert "\r" not in resumed.stdout and last and "loss" in last[-1] and "steps/s" in last[-1]
    expected = keras.saving.load_model(reference / "model.keras").get_weights()
    actual = keras.saving.load_model(run / "model.keras").get_weights()
    assert len(expected) == len(actual) > 0
    for a, b in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(a, b)
    assert rows_of(run / "metrics.jsonl") == rows_of(reference / "metrics.jsonl")
    assert (
        json.loads((run / "results.json").read_text())["metrics"]
        == json.loads((reference / "results.json").read_text())["metrics"]
    )


@pytest.mark.timeout(300)
def test_recipe_healthcare_with_a_tiny_budget(tmp_path):
    out = tmp_path / "health"
    completed = tfcraft("recipe", "healthcare", "--set", "models=[deterministic]", "--out", out)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "On cleveland, the deterministic model" in completed.stdout
    results = json.loads((out / "results.json").read_text())
    (row,) = results["tables"]["metrics"]
    assert row["dataset"] == "cleveland" and row["model"] == "deterministic"
    assert 0.6 < row["accuracy"] <= 1.0 and 0.8 <= row["coverage_90"] <= 1.0
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [
        "healthcare_reliability.png",
        "healthcare_risk_coverage.png",
    ]
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "<td>deterministic</td>" in page
    assert "models:\n  - deterministic" in (out / "config.yaml").read_text()


@pytest.mark.timeout(300)
def test_recipe_finance_with_a_tiny_budget(tmp_path):
    out = tmp_path / "finance"
    completed = tfcraft(
        "recipe",
        "finance",
        "--set",
        "models=[student_t]",
        "--set",
        "start=2018-09-01",
        "--out",
        out,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    backtest = results["tables"]["backtest"]
    assert {r["model"] for r in backtest} == {"student_t", "historical_simulation"}
    for row in backtest:
        assert row["days"] == 67 and 0 <= row["violations"] <= row["days"]
        assert row["rate"] == pytest.approx(row["violations"] / row["days"])
    assert len(results["tables"]["forecasts"]) == 10
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [
        "finance_var_1.png",
        "finance_var_5.png",
    ]
    assert "Kupiec" in (out / "report.html").read_text()


def test_recipe_options_are_checked_before_any_work(tmp_path, capsys):
    assert main(["recipe", "finance", "--set", "window=5", "--out", str(tmp_path / "r")]) == 2
    assert (
        "recipe finance: --set window: unknown option (expected one of: dataset, models, "
        "start, stop" in capsys.readouterr().err
    )
    assert main(["recipe", "healthcare", "--set", "models=[nope]", "--out", str(tmp_path)]) == 2
    assert errors(capsys.readouterr().err) == [
        "tfcraft: error: recipe healthcare: models: expected a non-empty list of "
        "deterministic, mc_dropout, flipout, ensemble, got ('nope',)"
    ]
    assert not (tmp_path / "r").exists()


@pytest.mark.timeout(300)
def test_console_script_refuses_a_bad_config_with_exit_2_and_one_line(tmp_path, capsys):
    bad = subprocess.run(
        [str(SCRIPT), "train", "configs/bnn_regression.yaml", "--set", "trainer.epochs=-3",
         "--out", str(tmp_path / "x")],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert errors(bad.stderr) == [
        "tfcraft: error: configs/bnn_regression.yaml: "
        "trainer.epochs: expected an integer >= 1, got -3"
    ]
    assert not (tmp_path / "x").exists()  # rejected before any work
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"tfcraft {__version__}\n"


@pytest.mark.timeout(300)
def test_detect_and_rl_commands_write_their_run_directories(tmp_path, capsys):
    assert main(["detect", "detect_breastw", "--out", str(tmp_path / "d")]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "d" / "results.json").read_text())["metrics"]
    assert f"test_roc_auc                     {metrics['test_roc_auc']:.4g}" in printed
    assert f"report: {tmp_path / 'd' / 'report.html'}" in printed
    assert "detector_curves.png" in _files(tmp_path / "d" / "plots")
    assert "data:image/png;base64," in (tmp_path / "d" / "report.html").read_text()
    args = ["rl", "rl_cartpole", "--set", "total_timesteps=256", "--set", "agent.n_steps=64",
            "--set", "eval_episodes=1", "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((tmp_path / "r" / "results.json").read_text())["metrics"]
    assert metrics["timesteps"] == 256 and metrics["eval_mean_return"] >= 8.0
    assert "eval_mean_return" in capsys.readouterr().out
    assert "learning_curves.png" in _files(tmp_path / "r" / "plots")
    assert "total_timesteps: 256" in (tmp_path / "r" / "config.yaml").read_text()


def _files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2 and "required: COMMAND" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["recipe", "cooking"])
    assert info.value.code == 2 and "invalid choice: 'cooking'" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: config file not found (bundled configs" in capsys.readouterr().err
    assert main(["detect", "detect_breastw", "--set", "detector=Nope"]) == 2  # by bundled name
    assert errors(capsys.readouterr().err) == [
        "tfcraft: error: detector: expected one of EnsembleDetector, FlowDetector, "
        "GaussianMixtureDetector, VAEDetector, got 'Nope'"
    ]
    assert main(["rl", "rl_cartpole", "--set", "env=NoSuchEnv-v0"]) == 2
    assert "env: expected a registered Gymnasium id, got 'NoSuchEnv-v0'" in capsys.readouterr().err


def test_failure_during_a_run_exits_1_with_one_line_and_debug_shows_the_traceback(
    demo, tmp_path, capsys
):
    run = tmp_path / "broken"
    shutil.copytree(demo[0] / "detect_breastw", run)
    (run / "results.json").write_text("{not json")
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err
    assert errors(err) == [
        "tfcraft: error: JSONDecodeError: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
        "tfcraft: (run again with --debug for the traceback)",
    ]
    assert "Traceback" not in err
    assert main(["--debug", "report", str(run)]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_a_held_lock_refuses_train_with_exit_2_and_is_released_when_the_holder_dies(
    tmp_path, capsys
):
    locked = tmp_path / "locked"
    locked.mkdir()
    holder = subprocess.Popen(  # another process holding the run directory's flock
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); "
            "fcntl.flock(f, fcntl.LOCK_EX); f.write(str(os.getpid())); f.flush(); "
            "print('held', flush=True); time.sleep(120)",
            str(locked / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code = main(
            ["train", "custom_classification", "--set", "trainer.epochs=1", "--out", str(locked)]
        )
        assert code == 2
        assert errors(capsys.readouterr().err) == [
            f"tfcraft: error: run directory {str(locked)!r} is in use by another tfcraft "
            f"process (pid {holder.pid}); wait for it to finish or choose another --out"
        ]
        assert not (locked / "config.yaml").exists()  # nothing written
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    from tfcraft.runs import RunDirectory

    with RunDirectory.open(locked) as run:  # released by the OS on the holder's death
        assert (run / ".lock").read_text() == str(os.getpid())


@pytest.mark.parametrize(
    "command", ["demo", "train", "evaluate", "predict", "detect", "rl", "recipe", "report"]
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    text = capsys.readouterr().out
    assert info.value.code == 0 and text.startswith(f"usage: tfcraft {command}")
    # Every option and positional says what it is for.
    for line in text.split("options:")[1].splitlines()[1:]:
        if line.strip().startswith("-") and "  " not in line.strip():
            pytest.fail(f"option without help: {line!r}")


def test_top_level_help_lists_every_command_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("demo", "train", "evaluate", "predict", "detect", "rl", "recipe", "report"):
        assert f"    {command} " in text
    assert "exit codes: 0 success, 1 failure during a run, 2 usage or config error" in text
