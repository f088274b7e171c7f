"""tfcraft's density detectors against PyOD on eight real labelled outlier sets.

Protocol (issue 10): for each set of `tfcraft.datasets.OUTLIER_SETS`, 5
stratified 60/40 splits; standardise on the training part; fit WITHOUT labels
(the training part holds the outliers too); report test ROC-AUC, average
precision and fit+score seconds. Every detector runs with its defaults (no
per-set tuning); PyOD's run with theirs, in the same process, on the same
splits: IForest, ECOD, COPOD, HBOS, LOF, KNN (largest), KNN (mean), MCD.

Calibration of the outlier probabilities on the test INLIERS (they come from
the training distribution, so a calibrated P(outlier) is uniform there):
the KS distance of P(outlier) from Uniform(0, 1) and the share of inliers
with P(outlier) > 0.9 (0.10 when calibrated), for tfcraft's `predict_proba`
and PyOD's `predict_proba(method="unify")` and `predict_confidence`
(ExCeeD's confidence that the prediction is right).

Run: `/tmp/bench .venv/bin/python benchmarks/anomaly_vs_pyod.py [--quick] [--splits N]
[--sets a,b] [--methods pattern,...]`; writes benchmarks/results/anomaly_vs_pyod.md.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import warnings

import numpy as np
from _common import (
    RESULTS_DIR,
    fit_and_score_outliers,
    machine_summary,
    markdown_table,
    standardised_splits,
    write_text_atomic,
)
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from tfcraft.datasets import OUTLIER_SETS, load_outliers


def tfcraft_methods() -> dict:
    from tfcraft.anomaly import (
        EnsembleDetector,
        FlowDetector,
        GaussianMixtureDetector,
        VAEDetector,
    )

    return {
        "tfcraft GaussianMixture": lambda s: GaussianMixtureDetector(seed=s),
        "tfcraft Ensemble": lambda s: EnsembleDetector(seed=s),
        "tfcraft Flow": lambda s: FlowDetector(seed=s),
        "tfcraft VAE": lambda s: VAEDetector(seed=s),
    }


def pyod_methods() -> dict:
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD
    from pyod.models.hbos import HBOS
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF
    from pyod.models.mcd import MCD

    return {
        "PyOD MCD": lambda s: MCD(random_state=s),
        "PyOD IForest": lambda s: IForest(random_state=s),
        "PyOD KNN": lambda s: KNN(),
        "PyOD KNN-mean": lambda s: KNN(method="mean"),
        "PyOD HBOS": lambda s: HBOS(),
        "PyOD COPOD": lambda s: COPOD(),
        "PyOD ECOD": lambda s: ECOD(),
        "PyOD LOF": lambda s: LOF(),
    }


def outlier_probability(model, X: np.ndarray) -> dict[str, np.ndarray]:
    """Each probability a library offers that a row is an outlier."""
    if hasattr(model, "calibration_scores_"):  # tfcraft
        return {"predict_proba": model.predict_proba(X)[:, 1]}
    out = {"predict_proba(unify)": model.predict_proba(X, method="unify")[:, 1]}
    # ExCeeD: confidence in the predicted label; as P(outlier): conf if flagged, 1-conf if not.
    label = model.predict(X)
    confidence = model.predict_confidence(X)
    out["predict_confidence"] = np.where(label == 1, confidence, 1.0 - confidence)
    return out


def calibration_numbers(p_inlier_rows: np.ndarray) -> tuple[float, float]:
    """(KS distance from Uniform(0,1), share > 0.9) of P(outlier) on inliers."""
    ks = float(stats.kstest(p_inlier_rows, "uniform").statistic)
    return ks, float(np.mean(p_inlier_rows > 0.9))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 split per set, prints only")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--sets", default=",".join(OUTLIER_SETS))
    parser.add_argument("--methods", default="*", help="comma-separated fnmatch patterns")
    parser.add_argument(
        "--tag", default="", help="results file suffix for a run on a subset of the methods"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.splits = 1
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    sets = args.sets.split(",")
    patterns = args.methods.split(",")
    makers = {
        name: make
        for name, make in {**tfcraft_methods(), **pyod_methods()}.items()
        if any(fnmatch.fnmatch(name, p) for p in patterns)
    }
    auc = {m: {} for m in makers}
    ap = {m: {} for m in makers}
    seconds = {m: {} for m in makers}
    calibration: dict[str, list[tuple[float, float]]] = {}
    auto_rates: dict[str, list[tuple[float, float]]] = {}
    for name in sets:
        X, y = load_outliers(name)
        for split, X_train, X_test, y_test in standardised_splits(X, y, args.splits):
            inliers = y_test == 0
            for method, make in makers.items():
                model, score, took = fit_and_score_outliers(make, split, X_train, X_test)
                seconds[method].setdefault(name, []).append(took)
                auc[method].setdefault(name, []).append(roc_auc_score(y_test, score))
                ap[method].setdefault(name, []).append(average_precision_score(y_test, score))
                if hasattr(model, "calibration_scores_"):  # contamination="auto" on inliers
                    flagged = model.predict(X_test) == -1
                    auto_rates.setdefault(method, []).append(
                        (flagged[inliers].mean(), flagged[~inliers].mean())
                    )
                for kind, p in outlier_probability(model, X_test[inliers]).items():
                    key = f"{method} {kind}"
                    calibration.setdefault(key, []).append(calibration_numbers(p))
        print(
            name,
            {m: round(float(np.mean(v[name])), 3) for m, v in auc.items()},
            flush=True,
        )
    text = report(args, sets, makers, auc, ap, seconds, calibration, auto_rates)
    print(text)
    if not args.quick and args.sets == ",".join(OUTLIER_SETS):
        suffix = f"_{args.tag}" if args.tag else ""
        write_text_atomic(RESULTS_DIR / f"anomaly_vs_pyod{suffix}.md", text)


def report(args, sets, makers, auc, ap, seconds, calibration, auto_rates) -> str:
    def mean_over_sets(table, method):
        return float(np.mean([np.mean(table[method][s]) for s in sets]))

    order = sorted(makers, key=lambda m: -mean_over_sets(auc, m))
    rows = [
        [
            m,
            *[float(np.mean(auc[m][s])) for s in sets],
            mean_over_sets(auc, m),
            mean_over_sets(ap, m),
            max(float(np.mean(seconds[m][s])) for s in sets),
        ]
        for m in order
    ]
    auc_table = markdown_table(["method", *sets, "mean ROC-AUC", "mean AP", "slowest set s"], rows)
    ap_rows = [[m, *[float(np.mean(ap[m][s])) for s in sets]] for m in order]
    ap_table = markdown_table(["method", *sets], ap_rows)
    time_rows = [[m, *[float(np.mean(seconds[m][s])) for s in sets]] for m in order]
    time_table = markdown_table(["method (fit+score s)", *sets], time_rows)
    cal_rows = [
        [key, float(np.mean([c[0] for c in vals])), float(np.mean([c[1] for c in vals]))]
        for key, vals in sorted(calibration.items(), key=lambda kv: np.mean([c[0] for c in kv[1]]))
    ]
    cal_table = markdown_table(
        ["probability", "KS distance on inliers (0 = calibrated)", "inliers with P > 0.9 (0.10)"],
        cal_rows,
    )
    auto_table = markdown_table(
        ["detector", "inliers flagged (false-positive rate)", "outliers flagged (recall)"],
        [
            [m, float(np.mean([r[0] for r in v])), float(np.mean([r[1] for r in v]))]
            for m, v in auto_rates.items()
        ],
    )
    verdict = ""
    ours = [m for m in makers if m.startswith("tfcraft")]
    theirs = [m for m in makers if m.startswith("PyOD")]
    if ours and theirs:
        best_ours = max(ours, key=lambda m: mean_over_sets(auc, m))
        best_theirs = max(theirs, key=lambda m: mean_over_sets(auc, m))
        wins = sum(
            np.mean(auc[best_ours][s]) > max(np.mean(auc[m][s]) for m in theirs) for s in sets
        )
        a, b = mean_over_sets(auc, best_ours), mean_over_sets(auc, best_theirs)
        verdict = (
            f"\nBest tfcraft: **{best_ours}** mean ROC-AUC {a:.3f}; best PyOD: "
            f"**{best_theirs}** {b:.3f} -> {'PASS' if a > b else 'FAIL'} (target: above). "
            f"{best_ours} beats every PyOD detector on {wins}/{len(sets)} sets "
            f"-> {'PASS' if 2 * wins >= len(sets) else 'FAIL'} (target: at least half).\n"
        )
    return (
        "# tfcraft anomaly detectors vs PyOD\n\n"
        f"Command: `/tmp/bench .venv/bin/python benchmarks/anomaly_vs_pyod.py"
        f"{' --quick' if args.quick else ''} --splits {args.splits} --methods '{args.methods}'`; "
        f"{args.splits} stratified 60/40 split(s) per set, "
        "standardised on the training part, fitted without labels, defaults everywhere; "
        f"{machine_summary()}.\n\n## Test ROC-AUC\n\n{auc_table}\n{verdict}\n"
        f"## Test average precision\n\n{ap_table}\n\n## Fit + score seconds\n\n{time_table}\n\n"
        f"## Calibration of P(outlier) on the test inliers\n\n{cal_table}\n"
        '\n## `predict` with `contamination="auto"` (no outlier share given; '
        "the threshold is the model's own 2.5% tail)\n\n"
        f"{auto_table}\n"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
