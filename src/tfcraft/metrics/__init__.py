"""Streaming metrics: registered `keras.metrics.Metric`s whose math lives in pure functions.

Classification: `Precision`, `Recall`, `FBeta` (binary and multi-label, micro/macro),
`ExpectedCalibrationError` and `BrierScore`. Uncertainty of distribution predictions:
`IntervalCoverage`, `MeanIntervalWidth`, `MeanNLL` and `CRPS`. Those take `y_pred` as a
`tfd.Distribution` (custom loops) or as a parameter tensor plus `distribution=` a family
name from `tfcraft.distributions.FAMILIES` (in `model.compile`), like
`tfcraft.losses.NegativeLogLikelihood`.

Every metric works in `model.compile(metrics=[...])` and in a hand-written loop
(`update_state` / `result` / `reset_state`), and accepts `sample_weight`. Each
declares a class attribute `direction`: `"up"` (higher is better), `"down"`, or
None (`IntervalCoverage`, whose target is its `level`); callbacks read it through
`tfcraft.layers.metric_direction`.

The code lives in `classification` (precision, recall, F-beta), `calibration` (ECE,
Brier score) and `uncertainty` (intervals, NLL, CRPS); import it from `tfcraft.metrics`.

Example:

>>> import numpy as np
>>> import tfcraft.metrics
>>> metric = tfcraft.metrics.Precision()
>>> metric.update_state(np.array([1, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.7]))
>>> round(float(metric.result()), 4)
0.6667
"""

from tfcraft.metrics.calibration import (
    BrierScore,
    ExpectedCalibrationError,
    brier_score,
    calibration_bins,
    ece_from_bins,
    expected_calibration_error,
)
from tfcraft.metrics.classification import AVERAGES as AVERAGES
from tfcraft.metrics.classification import (
    FBeta,
    Precision,
    Recall,
    confusion_counts,
    fbeta_from_counts,
    precision_from_counts,
    recall_from_counts,
)
from tfcraft.metrics.uncertainty import CONTINUOUS_FAMILIES as CONTINUOUS_FAMILIES
from tfcraft.metrics.uncertainty import (
    CRPS,
    IntervalCoverage,
    MeanIntervalWidth,
    MeanNLL,
    central_interval,
    crps,
    crps_normal,
    interval_coverage,
    interval_width,
)

# `AVERAGES` and `CONTINUOUS_FAMILIES` are re-exported (`X as X`) but, as before, not in
# `__all__`.
__all__ = [
    "CRPS",
    "BrierScore",
    "ExpectedCalibrationError",
    "FBeta",
    "IntervalCoverage",
    "MeanIntervalWidth",
    "MeanNLL",
    "Precision",
    "Recall",
    "brier_score",
    "calibration_bins",
    "central_interval",
    "confusion_counts",
    "crps",
    "crps_normal",
    "ece_from_bins",
    "expected_calibration_error",
    "fbeta_from_counts",
    "interval_coverage",
    "interval_width",
    "precision_from_counts",
    "recall_from_counts",
]

# Public objects keep reporting `tfcraft.metrics` as their module, as before the split:
# Keras writes `__module__` into saved configs, and reprs and pickles show the public path.
for _public in __all__:
    globals()[_public].__module__ = __name__
del _public
