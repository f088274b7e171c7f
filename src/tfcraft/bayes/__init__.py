"""Probabilistic inference: ELBO, predictive uncertainty, ensembles and calibration.

Example:

>>> from tfcraft import bayes
>>> bayes.LinearWarmup(100)(50)
0.5
"""

from tfcraft.bayes.calibration import (
    SplitConformal,
    TemperatureScaling,
    VarianceScaling,
    brier_score,
    expected_calibration_error,
    regression_coverage,
    reliability_diagram,
)
from tfcraft.bayes.elbo import (
    ConstantKLWeight,
    CyclicalKLWeight,
    KLWeightSchedule,
    KLWeightScheduler,
    LinearWarmup,
    elbo_loss,
    scaled_kl,
)
from tfcraft.bayes.ensemble import DeepEnsemble
from tfcraft.bayes.predictive import Predictive, mixture_quantile, predict

__all__ = [
    "ConstantKLWeight",
    "CyclicalKLWeight",
    "DeepEnsemble",
    "KLWeightSchedule",
    "KLWeightScheduler",
    "LinearWarmup",
    "Predictive",
    "SplitConformal",
    "TemperatureScaling",
    "VarianceScaling",
    "brier_score",
    "elbo_loss",
    "expected_calibration_error",
    "mixture_quantile",
    "predict",
    "regression_coverage",
    "reliability_diagram",
    "scaled_kl",
]
