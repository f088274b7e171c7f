"""Probabilistic inference: ELBO, predictive uncertainty, ensembles, calibration, risk.

Also selective prediction, conformal classification sets and tail risk.

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
from tfcraft.bayes.conformal import ConformalClassifier, set_coverage, set_size
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
from tfcraft.bayes.risk import (
    expected_shortfall,
    lower_quantile,
    tail_components,
    value_at_risk,
)
from tfcraft.bayes.selective import (
    accuracy_at_coverage,
    aurc,
    risk_coverage_curve,
    top_label,
)
from tfcraft.bayes.uncertainty import (
    class_probability_samples,
    expected_entropy,
    mutual_information,
    predictive_entropy,
)

__all__ = [
    "ConformalClassifier",
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
    "accuracy_at_coverage",
    "aurc",
    "brier_score",
    "class_probability_samples",
    "elbo_loss",
    "expected_calibration_error",
    "expected_entropy",
    "expected_shortfall",
    "lower_quantile",
    "mixture_quantile",
    "mutual_information",
    "predict",
    "predictive_entropy",
    "regression_coverage",
    "reliability_diagram",
    "risk_coverage_curve",
    "scaled_kl",
    "set_coverage",
    "set_size",
    "tail_components",
    "top_label",
    "value_at_risk",
]
