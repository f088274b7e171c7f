"""`tfcraft detect`: fit a `tfcraft.anomaly` detector without labels, evaluate it with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfcraft.config import ConfigError, DetectConfig
from tfcraft.reports import build_report, plots
from tfcraft.runs import RunDirectory

__all__ = ["detect"]


def _detector(spec, seed: int):
    from tfcraft import anomaly

    name, args = (
        (spec, {})
        if isinstance(spec, str)
        else (spec["type"], {k: v for k, v in spec.items() if k != "type"})
    )
    names = [
        n
        for n in anomaly.__all__
        if isinstance(getattr(anomaly, n), type)
        and issubclass(getattr(anomaly, n), anomaly.Detector)
        and n != "Detector"
    ]
    if name not in names:
        raise ConfigError(f"detector: expected one of {', '.join(names)}, got {name!r}")
    try:
        return getattr(anomaly, name)(**{"seed": seed, **args})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"detector: {name}({args}) was refused: {error}") from None


def _data(config: DetectConfig):
    from tfcraft import datasets

    if config.data.dataset is not None:
        return datasets.load_outliers(config.data.dataset)
    try:
        X, y = datasets.load_arrays(config.data.path, target=config.data.target)
    except (ValueError, OSError) as error:
        raise ConfigError(f"data.path: cannot use {config.data.path!r}: {error}") from None
    return X, y.astype(int)


def detect(config: DetectConfig, out: str | Path) -> dict:
    """Fit on the training part (labels unused), score the test part; write plots and report."""
    from sklearn import metrics as skm

    from tfcraft import datasets

    X, y = _data(config)
    detector = _detector(config.detector, config.seed)
    train, test = datasets.train_test_split_indices(len(X), config.data.test_fraction, config.seed)
    mean, std = X[train].mean(axis=0), X[train].std(axis=0) + 1e-12
    if config.data.standardize:
        X = (X - mean) / std
    with RunDirectory.open(out) as run:
        run.write_config(config, config.seed)
        detector.fit(X[train])
        scores = detector.anomaly_score(X[test])
        normal = X[train][y[train] == 0]
        threshold = detector.threshold_for_fpr(normal, config.fpr) if len(normal) else None
        flagged = scores > threshold if threshold is not None else detector.predict(X[test]) < 0
        metrics = {
            "test_roc_auc": float(skm.roc_auc_score(y[test], scores)),
            "test_average_precision": float(skm.average_precision_score(y[test], scores)),
            "test_recall_at_threshold": float(np.mean(flagged[y[test] == 1])),
            "test_fpr_at_threshold": float(np.mean(flagged[y[test] == 0])),
        }
        plots.detector_curves(y[test], scores, run.plots)
        results = {
            "title": f"tfcraft detect: {config.name}",
            "kind": "detect",
            "summary": (
                f"{type(detector).__name__} on {config.data.dataset or config.data.path}: "
                f"fitted on {len(train)} rows without labels, scored {len(test)}; threshold "
                f"set for a {config.fpr:.0%} false-positive rate on the training inliers."
            ),
            "metrics": metrics,
        }
        run.write_json("results.json", results)
        detector.save(run / "detector")
        results["report"] = str(build_report(run.path))
    return results
