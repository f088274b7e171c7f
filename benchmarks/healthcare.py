"""Healthcare recipe vs scikit-learn: AURC, calibration and conformal coverage on 3 sets.

Protocol (issue 12): stratified 70/30 splits with seeds 0..9, features standardised on
the training part only. tfcraft's four models train on 80% of the training part and
stop early on the other 20% (which also calibrates their conformal sets); the
baselines, `LogisticRegression(max_iter=5000)` and
`CalibratedClassifierCV(HistGradientBoostingClassifier(), method="isotonic", cv=5)`,
train on the whole training part (their own defaults). Results are rewritten after
every split, so an interrupted run still leaves its finished splits.

Run: /tmp/bench .venv/bin/python benchmarks/healthcare.py [--splits N]
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from _common import RESULTS_DIR, machine_summary, markdown_table, pass_fail, write_text_atomic

from tfcraft.datasets import CLINICAL_SETS, load_clinical
from tfcraft.recipes import healthcare

COLUMNS = (
    "accuracy",
    "roc_auc",
    "brier",
    "ece",
    "aurc",
    "accuracy_at_90",
    "accuracy_at_80",
    "coverage_90",
    "set_size_90",
    "coverage_95",
    "set_size_95",
)
BASELINES = ("sklearn LR", "sklearn HGB-isotonic")


def baselines(X, y, split_seed):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    train, test = healthcare.split(X, y, split_seed)
    mean, std = X[train].mean(axis=0), X[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x_train, x_test = (X[train] - mean) / std, (X[test] - mean) / std
    out = {}
    for name, model in (
        ("sklearn LR", LogisticRegression(max_iter=5000)),
        (
            "sklearn HGB-isotonic",
            CalibratedClassifierCV(
                HistGradientBoostingClassifier(random_state=split_seed), method="isotonic", cv=5
            ),
        ),
    ):
        model.fit(x_train, y[train])
        out[name] = healthcare.evaluate_probs(y[test], model.predict_proba(x_test))
    return out


def report(results, splits_done, started, argv):
    lines = [
        "# Healthcare benchmark: diagnosis with abstention",
        "",
        f"Command: `/tmp/bench .venv/bin/python benchmarks/healthcare.py {' '.join(argv)}`"
        f" (1 core, 1 thread). {machine_summary()}. {time.perf_counter() - started:.0f} s so far.",
        f"Split seeds done: {splits_done} (means over them; ± is the standard error). "
        "Conformal sets: LAC with smoothed p-values (the recipe's default).",
        "",
    ]
    headers = ["set", "model", *COLUMNS]
    table, best = [], {}
    for name in CLINICAL_SETS:
        for model, rows in results.get(name, {}).items():
            cells = []
            for column in COLUMNS:
                values = [r[column] for r in rows if column in r]
                if not values:
                    cells.append("-")
                    continue
                se = np.std(values, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
                cells.append(
                    f"{np.mean(values):.3f}" + (f" ± {se:.3f}" if column == "aurc" else "")
                )
            table.append([name, model, *cells])
    lines += [markdown_table(headers, table), "", "## Targets", "", "```"]
    wins = 0
    for name in CLINICAL_SETS:
        models = results.get(name, {})
        if not models:
            continue
        mean = {
            m: {
                c: np.mean([r[c] for r in rows if c in r]) if any(c in r for r in rows) else np.nan
                for c in COLUMNS
            }
            for m, rows in models.items()
        }
        ours = [m for m in mean if m not in BASELINES]
        winner = min(ours, key=lambda m: mean[m]["aurc"])
        best[name] = winner
        beat = all(mean[winner]["aurc"] < mean[b]["aurc"] for b in BASELINES)
        wins += beat
        lines.append(
            pass_fail(
                f"{name}: best tfcraft ({winner}) AURC < both baselines",
                beat,
                f"{mean[winner]['aurc']:.4f} vs LR {mean['sklearn LR']['aurc']:.4f}, "
                f"HGB-iso {mean['sklearn HGB-isotonic']['aurc']:.4f}",
            )
        )
        lines.append(
            pass_fail(
                f"{name}: its ECE <= LR's",
                mean[winner]["ece"] <= mean["sklearn LR"]["ece"],
                f"{mean[winner]['ece']:.4f} vs {mean['sklearn LR']['ece']:.4f}",
            )
        )
        for level in (90, 95):
            coverage = mean[winner][f"coverage_{level}"]
            lines.append(
                pass_fail(
                    f"{name}: its conformal coverage within 1.5 points of {level}%",
                    abs(coverage * 100 - level) <= 1.5,
                    f"{coverage:.1%}",
                )
            )
    lines.append(pass_fail("AURC target on >= 2 of 3 sets", wins >= 2, f"{wins} of 3"))
    lines += ["```", ""]
    write_text_atomic(RESULTS_DIR / "healthcare.md", "\n".join(lines))
    return "\n".join(lines)


def main(argv):
    splits = int(argv[argv.index("--splits") + 1]) if "--splits" in argv else 10
    started = time.perf_counter()
    results, pooled = {}, {}
    for split_seed in range(splits):
        for name in CLINICAL_SETS:
            X, y, _ = load_clinical(name)
            per_set = results.setdefault(name, {})
            x_fit, y_fit, x_val, y_val, x_test, y_test = healthcare.prepare_split(X, y, split_seed)
            for kind in healthcare.MODELS:
                probs_val, probs_test = healthcare.fit_predict(
                    kind, x_fit, y_fit, x_val, y_val, x_test, seed=0
                )
                per_set.setdefault(kind, []).append(
                    healthcare.evaluate_probs(y_test, probs_test, y_val, probs_val, seed=split_seed)
                )
                labels, probs = pooled.setdefault((name, kind), ([], []))
                labels.append(y_test)
                probs.append(probs_test)
            for model, row in baselines(X, y, split_seed).items():
                per_set.setdefault(model, []).append(row)
            print(
                f"split {split_seed} {name} done at {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        text = report(results, split_seed + 1, started, argv)
        curves = {k: (np.concatenate(a), np.concatenate(b)) for k, (a, b) in pooled.items()}
        tmp = RESULTS_DIR / "healthcare_plots_tmp"
        healthcare.plot_risk_coverage(curves, CLINICAL_SETS, healthcare.MODELS, tmp)
        healthcare.plot_reliability(curves, CLINICAL_SETS, healthcare.MODELS, tmp)
        for png in (tmp / "plots").glob("*.png"):
            os.replace(png, RESULTS_DIR / png.name)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
