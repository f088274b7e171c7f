"""BNNs at equal training time: tfcraft's `DenseFlipout` vs TFP's, same wall clock.

Issue #4's NLL target compares the two at equal epochs, where they are the same
estimator from the same initialisation (`bnn_vs_tfp.py`: a statistical tie).
tfcraft trains several times faster, so this script asks what a user gets for
the same training time: TFP's model trains `EPOCHS` epochs; tfcraft's trains
`EPOCHS` epochs and, separately, as many epochs as TFP's time buys at the
throughput ratio measured on the first split. Same splits, architecture, prior,
KL / N, batch and Adam learning rate as `bnn_vs_tfp.py` (its code is reused).

Run: `.venv/bin/python benchmarks/bnn_equal_time.py` (writes
`benchmarks/results/bnn_equal_time.md`), `--splits N`, or `--quick`.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
from _common import machine_summary, markdown_table, parse_split_args
from bnn_vs_tfp import (
    BATCH_SIZE,
    EPOCHS,
    Runner,
    evaluate,
    evaluate_model,
    make_split,
    mean_stderr,
    publish,
    tfp_predictive,
)

from tfcraft.datasets import load_regression

DATASETS = ("diabetes", "concrete", "wine_red")


def tfp_nll(runner: Runner, split) -> tuple[float, float]:
    model, seconds = runner.fit_tfp(split.x_fit, split.y_fit, split.seed)
    preds = [tfp_predictive(model, a) for a in (split.x_test, split.x_val)]
    return evaluate(*preds, split.y_test, split.y_val, split.y_scale)["nll"], seconds


def tfcraft_nll(runner: Runner, split) -> tuple[float, float]:
    model, seconds = runner.fit_bnn(split.x_fit, split.y_fit, split.seed)
    return evaluate_model(model, split)["nll"], seconds


def run_dataset(name: str, num_splits: int) -> tuple[list, dict]:
    X, y = load_regression(name)
    epochs = EPOCHS[name]
    splits = [make_split(X, y, s) for s in range(num_splits)]
    num_fit = len(splits[0].x_fit)
    tfp_runner = Runner(X.shape[1], num_fit, epochs)
    same_runner = Runner(X.shape[1], num_fit, epochs)
    # Calibrate on split 0, twice each (the first fit compiles): epochs TFP's time buys.
    for _ in range(2):
        _, tfp_seconds = tfp_nll(tfp_runner, splits[0])
        _, tfcraft_seconds = tfcraft_nll(same_runner, splits[0])
    budget = max(epochs, round(epochs * tfp_seconds / tfcraft_seconds))
    time_runner = Runner(X.shape[1], num_fit, budget)
    nll = {"tfp": [], "same": [], "time": []}
    for split in splits:
        nll["tfp"].append(tfp_nll(tfp_runner, split)[0])
        nll["same"].append(tfcraft_nll(same_runner, split)[0])
        nll["time"].append(tfcraft_nll(time_runner, split)[0])
        print(f"  {name}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in nll.items()), flush=True)
    tfp = np.asarray(nll["tfp"])
    row = [
        name,
        mean_stderr(tfp),
        f"{epochs}: {mean_stderr(nll['same'])}",
        mean_stderr(np.asarray(nll["same"]) - tfp),
        f"{budget}: {mean_stderr(nll['time'])}",
        mean_stderr(np.asarray(nll["time"]) - tfp),
    ]
    return row, {"ratio": tfp_seconds / tfcraft_seconds}


def main(argv=None) -> int:
    quick, num_splits = parse_split_args(__doc__, argv, 20, 2)
    start = time.perf_counter()
    rows, ratios = [], []
    for name in DATASETS:
        row, info = run_dataset(name, num_splits)
        rows.append(row)
        ratios.append(f"{name} {info['ratio']:.2f}x")
    table = markdown_table(
        [
            "data set",
            "TFP NLL",
            "tfcraft, same epochs: NLL",
            "Δ vs TFP",
            "tfcraft, same time: epochs: NLL",
            "Δ vs TFP",
        ],
        rows,
    )
    report = "\n".join(
        [
            "# BNNs at equal training time: tfcraft vs TFP `DenseFlipout`",
            "",
            f"Command: `python benchmarks/bnn_equal_time.py{' --quick' if quick else ''}`",
            "",
            f"Machine: {machine_summary()}. Wall time {(time.perf_counter() - start) / 60:.1f} "
            f"min. {num_splits} random 90/10 splits per set (`bnn_vs_tfp.make_split`), batch "
            f"{BATCH_SIZE}; test NLL mean ± standard error, Δ = paired difference tfcraft - "
            "TFP over the same splits (negative: tfcraft better). Training-time ratio "
            f"TFP / tfcraft measured on split 0: {', '.join(ratios)}.",
            "",
            table,
        ]
    )
    return publish(report, "bnn_equal_time.md", write=not quick)


if __name__ == "__main__":
    sys.exit(main())
