"""`tfcraft train / evaluate / predict / report`: a Trainer run in a locked run directory.

`train` builds everything from the config first (data, model, loss, metrics,
optimizer: any problem is a `ConfigError` before a file is written), then
locks the run directory, trains through `tfcraft.training.Trainer` with
`JSONLLogger`, `TensorBoard` and checkpoints (`--resume` is the Trainer's
`fit(..., resume=True)`), saves `model.keras` atomically, evaluates on the
test split (with `tfcraft.bayes.predict` for probabilistic models) and writes
the plots and `report.html`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import yaml

from tfcraft import builders
from tfcraft.config import ConfigError, TrainConfig, validate
from tfcraft.reports import build_report, plots
from tfcraft.runs import RunDirectory, read_metrics, save_model_atomic, save_npz_atomic
from tfcraft.saving import load_model

__all__ = ["evaluate_run", "predict_run", "report_run", "train"]


def _probabilistic(model) -> bool:
    from tfcraft.layers import find_head, is_stochastic

    return find_head(model) is not None or is_stochastic(model)


def _family(model) -> str | None:
    from tfcraft.layers import find_head

    head = find_head(model)
    return None if head is None else head.family


def _to_probs(outputs: np.ndarray) -> np.ndarray:
    """Class probabilities from outputs (logits are turned into probabilities)."""
    outputs = np.asarray(outputs, np.float64)
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        outputs = outputs[:, 0]
    if outputs.min() < 0 or outputs.max() > 1:
        if outputs.ndim == 1:
            return 1.0 / (1.0 + np.exp(-outputs))
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    return outputs


CURVE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # interval calibration plot


def _predict(model, x, prep: dict, options, seed: int, curve: bool = False) -> dict:
    """Predictions in the data's units: mean/std/lower/upper, or class probabilities.

    With `curve=True` a probabilistic regression also returns the central
    intervals at `CURVE_LEVELS` (`interval_lower`/`interval_upper`, one row per
    level) for the interval-calibration plot.
    """
    from tfcraft import bayes

    if _probabilistic(model):
        predictive = bayes.predict(model, x, num_samples=options["num_samples"], seed=seed)
        if prep["task"] == "classification":
            return {"probs": _to_probs(predictive.mean)}
        mean, std = predictive.mean[:, 0], predictive.stddev[:, 0]
        factor = prep.get("std_scale", 1.0)  # variance scaling fitted on validation data
        shift, scale = prep["target_mean"], prep["target_std"]

        def interval(level):
            lower, upper = (bound[:, 0] for bound in predictive.interval(level))
            lower, upper = mean - (mean - lower) * factor, mean + (upper - mean) * factor
            return lower * scale + shift, upper * scale + shift

        lower, upper = interval(options["level"])
        prediction = {
            "mean": mean * scale + shift,
            "std": std * factor * scale,
            "lower": lower,
            "upper": upper,
        }
        if curve:
            bounds = [interval(level) for level in CURVE_LEVELS]
            prediction["interval_levels"] = np.array(CURVE_LEVELS)
            prediction["interval_lower"] = np.stack([b[0] for b in bounds])
            prediction["interval_upper"] = np.stack([b[1] for b in bounds])
        return prediction
    outputs = model.predict(x, verbose=0, batch_size=256)
    if prep["task"] == "classification":
        return {"probs": _to_probs(outputs)}
    return {"mean": np.ravel(outputs) * prep["target_std"] + prep["target_mean"]}


def _scores(prediction: dict, y: np.ndarray, prep: dict, level: float) -> dict[str, float]:
    from sklearn import metrics as skm

    from tfcraft import bayes

    if prep["task"] == "classification":
        probs = prediction["probs"]
        labels = (probs > 0.5).astype(int) if probs.ndim == 1 else probs.argmax(axis=1)
        scores = {
            "test_accuracy": float(np.mean(labels == y)),
            "test_ece": bayes.expected_calibration_error(y, probs, num_bins=15),
            "test_brier": bayes.brier_score(y, probs),
        }
        if probs.ndim == 1:
            scores["test_roc_auc"] = float(skm.roc_auc_score(y, probs))
        return scores
    mean = prediction["mean"]
    scores = {
        "test_rmse": float(np.sqrt(np.mean((mean - y) ** 2))),
        "test_mae": float(np.mean(np.abs(mean - y))),
        "test_r2": float(skm.r2_score(y, mean)),
    }
    if "std" in prediction:
        std = np.maximum(prediction["std"], 1e-12)
        nll = 0.5 * np.log(2 * np.pi * std**2) + 0.5 * ((y - mean) / std) ** 2
        inside = (y >= prediction["lower"]) & (y <= prediction["upper"])
        scores.update(
            {
                "test_gaussian_nll": float(np.mean(nll)),
                f"test_coverage_{round(level * 100)}": float(np.mean(inside)),
                f"test_interval_width_{round(level * 100)}": float(
                    np.mean(prediction["upper"] - prediction["lower"])
                ),
            }
        )
    return scores


def _plots(run: RunDirectory, prediction: dict, y: np.ndarray, prep: dict, level: float) -> None:
    rows = read_metrics(run / "metrics.jsonl")
    if rows:
        plots.learning_curves(rows, run.plots)
    if prep["task"] == "classification":
        plots.reliability(y, prediction["probs"], run.plots)
    else:
        plots.prediction_bands(
            y,
            prediction["mean"],
            prediction.get("lower"),
            prediction.get("upper"),
            run.plots,
            level,
        )
        if "interval_levels" in prediction:
            inside = (y >= prediction["interval_lower"]) & (y <= prediction["interval_upper"])
            plots.interval_calibration(
                prediction["interval_levels"], inside.mean(axis=1), run.plots
            )


def _fit_std_scale(model, split, prep: dict, options, seed: int) -> float:
    """Variance scaling (`bayes.VarianceScaling`) of the predictive std on validation data."""
    from tfcraft import bayes

    if not (options.calibrate and split.x_val is not None and _probabilistic(model)):
        return 1.0
    if prep["task"] != "regression":
        return 1.0
    raw = {**prep, "std_scale": 1.0}
    val = _predict(model, split.x_val, raw, options.model_dump(), seed)
    return bayes.VarianceScaling().fit(val["mean"], val["std"], split.y_val).scale_


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    verbose: int = 1,
    workers: int = 1,
    strategy=None,
) -> dict:
    """Run `tfcraft train`; returns `results.json`'s content.

    With `workers > 1`, `launch_local` runs it in that many worker processes
    under `MultiWorkerMirroredStrategy`; only the chief writes `out`.
    """
    from tfcraft.training import EarlyStopping, JSONLLogger, NanGuard, TensorBoard, Trainer

    if workers > 1 and strategy is None:
        from tfcraft.training.distribute import launch_local

        job = (config, str(out), resume, overwrite, verbose)
        return launch_local(_train_worker, workers, args=job, timeout=24 * 3600)[0]
    split = builders.load_split(config.data, config.seed)
    keras.utils.set_random_seed(config.seed)
    normalizer = builders.normalizer_for(split.x_train) if config.data.standardize else None
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = builders.build_model(config, split.x_train.shape[1], split.output_size, normalizer)
    loss = builders.build_loss(config.loss, _family(model))
    metrics = builders.build_metrics(config.metrics)
    optimizer = builders.build_optimizer(config.optimizer)
    options = config.trainer
    with RunDirectory.open(out) as run:
        if run.has_run() and not resume and not overwrite:
            raise ConfigError(
                f"{run.path}: holds an earlier run; pass --resume to continue it, "
                "--overwrite to start again, or another --out"
            )
        if overwrite and not resume:
            for name in ("checkpoints", "tensorboard", "plots"):
                shutil.rmtree(run / name, ignore_errors=True)
            (run / "metrics.jsonl").unlink(missing_ok=True)
        run.write_config(config, config.seed)
        callbacks = [
            JSONLLogger(run / "metrics.jsonl"),
            TensorBoard(run / "tensorboard"),
            NanGuard(policy=options.nan_policy),
        ]
        validation = None
        if split.x_val is not None:
            validation = (split.x_val, split.scaled(split.y_val))
            if options.early_stopping_patience:
                callbacks.append(
                    EarlyStopping(
                        patience=options.early_stopping_patience, restore_best_weights=False
                    )
                )
        trainer = Trainer(
            model,
            optimizer,
            loss,
            metrics,
            clip=config.clip,
            accumulate_steps=options.accumulate_steps,
            jit_compile=options.jit_compile,
            seed=config.seed,
            callbacks=callbacks,
            checkpoint_dir=run / "checkpoints",
            checkpoint_every=options.checkpoint_every,
            max_to_keep=options.max_to_keep,
            strategy=strategy,
        )
        trainer.fit(
            (split.x_train, split.scaled(split.y_train)),
            options.epochs,
            batch_size=options.batch_size,
            validation_data=validation,
            resume=resume,
            verbose=verbose,
        )
        save_model_atomic(model, run / "model.keras")
        prep = {
            "task": split.task,
            "num_classes": split.num_classes,
            "target_mean": split.target_mean,
            "target_std": split.target_std,
            "num_features": int(split.x_train.shape[1]),
        }
        prep["std_scale"] = _fit_std_scale(model, split, prep, config.predict, config.seed)
        run.write_json("preprocessing.json", prep)
        test_logs = trainer.evaluate(
            (split.x_test, split.scaled(split.y_test)), batch_size=options.batch_size
        )
        results = _results(run, model, split.x_test, split.y_test, prep, config, test_logs)
        return results


def _train_worker(config, out: str, resume: bool, overwrite: bool, verbose: int):
    """One `tfcraft train --workers N` process; the others train in a temporary copy of `out`."""
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TF op
    if strategy.extended.should_checkpoint:
        return train(
            config, out, resume=resume, overwrite=overwrite, verbose=verbose, strategy=strategy
        )
    local = tempfile.mkdtemp(prefix="tfcraft-worker-run-")
    try:
        if Path(out).is_dir():  # the chief's state, to resume from
            shutil.copytree(out, local, dirs_exist_ok=True)
        train(config, local, resume=resume, overwrite=True, verbose=0, strategy=strategy)
    finally:
        shutil.rmtree(local, ignore_errors=True)
    return None


def _results(run, model, x, y, prep, config, test_logs) -> dict:
    options = config.predict
    prediction = _predict(model, x, prep, options.model_dump(), config.seed, curve=True)
    metrics = {f"test_{k}": float(v) for k, v in test_logs.items() if k != "nonfinite_steps"}
    metrics.update(_scores(prediction, y, prep, options.level))
    rows = read_metrics(run / "metrics.jsonl")
    if rows:
        metrics.update({f"final_{k}": v for k, v in rows[-1].items() if k != "epoch"})
    probabilistic = _probabilistic(model)
    results = {
        "title": f"tfcraft train: {config.name}",
        "kind": "train",
        "summary": (
            f"{prep['task']} on {config.data.dataset or config.data.path}, "
            f"{len(rows)} epochs, {'probabilistic' if probabilistic else 'deterministic'} model"
            + (
                f"; predictive std scaled by {prep['std_scale']:.3g} on validation data"
                if prep.get("std_scale", 1.0) != 1.0
                else ""
            )
        ),
        "metrics": metrics,
        "probabilistic": probabilistic,
        "task": prep["task"],
    }
    run.write_json("results.json", results)
    save_npz_atomic(run / "evaluation.npz", y=y, **prediction)
    _plots(run, prediction, y, prep, options.level)
    results["report"] = str(build_report(run.path))
    return results


def _load_run(run_path: Path):
    if not (run_path / "model.keras").is_file():
        raise ConfigError(f"{run_path}: not a finished run directory (no model.keras)")
    data = yaml.safe_load((run_path / "config.yaml").read_text(encoding="utf-8"))
    config = validate(data, "train")
    prep = yaml.safe_load((run_path / "preprocessing.json").read_text(encoding="utf-8"))
    model = load_model(run_path / "model.keras")  # safe mode, no code, clear errors
    return config, prep, model


def evaluate_run(run_path: str | Path, data_path: str | None = None) -> dict:
    """Evaluate a finished run on its test split, or on `data_path` (a file with the target)."""
    from tfcraft.training import Trainer

    run_path = Path(run_path)
    config, prep, model = _load_run(run_path)
    if data_path is not None:
        config.data = config.data.model_copy(
            update={
                "dataset": None,
                "path": data_path,
                "test_fraction": 0.99,
                "validation_fraction": 0.0,
            }
        )
        if not Path(data_path).is_file():
            raise ConfigError(f"--data: no file at {data_path!r}")
    split = builders.load_split(config.data, config.seed)
    if data_path is not None:
        x, y = (
            np.concatenate([split.x_train, split.x_test]),
            np.concatenate([split.y_train, split.y_test]),
        )
    else:
        x, y = split.x_test, split.y_test
    split.target_mean, split.target_std = prep["target_mean"], prep["target_std"]
    trainer = Trainer(
        model,
        "adam",
        builders.build_loss(config.loss, _family(model)),
        builders.build_metrics(config.metrics),
        seed=config.seed,
    )
    logs = trainer.evaluate((x, split.scaled(y)))
    prediction = _predict(model, x, prep, config.predict.model_dump(), config.seed)
    scores = {f"test_{k}": float(v) for k, v in logs.items() if k != "nonfinite_steps"}
    scores.update(_scores(prediction, y, prep, config.predict.level))
    with RunDirectory.open(run_path) as run:
        run.write_json("evaluation.json", {"data": data_path or "test split", **scores})
    return scores


def predict_run(run_path: str | Path, input_path: str, output_path: str) -> Path:
    """Write predictions for feature rows (no target column) to a CSV file, atomically."""
    import pandas as pd

    from tfcraft._io import write_text_atomic

    run_path = Path(run_path)
    config, prep, model = _load_run(run_path)
    x = builders.load_features(input_path)
    if x.shape[1] != prep["num_features"]:
        raise ConfigError(
            f"--input: expected {prep['num_features']} feature columns (as in training), "
            f"got {x.shape[1]}"
        )
    prediction = _predict(model, x, prep, config.predict.model_dump(), config.seed)
    level = round(config.predict.level * 100)
    if "probs" in prediction:
        probs = prediction["probs"]
        if probs.ndim == 1:
            table = pd.DataFrame({"label": (probs > 0.5).astype(int), "prob_1": probs})
        else:
            table = pd.DataFrame({"label": probs.argmax(axis=1)})
            for k in range(probs.shape[1]):
                table[f"prob_{k}"] = probs[:, k]
    else:
        columns = {"mean": prediction["mean"]}
        if "std" in prediction:
            columns.update(
                {
                    "std": prediction["std"],
                    f"lower_{level}": prediction["lower"],
                    f"upper_{level}": prediction["upper"],
                }
            )
        table = pd.DataFrame(columns)
    write_text_atomic(output_path, table.to_csv(index=False))
    return Path(output_path)


def report_run(run_path: str | Path) -> Path:
    """Rebuild `report.html` of a run directory from its files."""
    run_path = Path(run_path)
    if not (run_path / "results.json").is_file():
        raise ConfigError(f"{run_path}: not a run directory (no results.json)")
    with RunDirectory.open(run_path) as run:
        rows = read_metrics(run / "metrics.jsonl")
        if rows:
            plots.learning_curves(rows, run.plots)
        return build_report(run.path)
