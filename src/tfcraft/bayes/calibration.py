"""Calibration: diagnostics (reliability, ECE, Brier, coverage) and post-hoc recalibration.

Everything works on NumPy arrays. Probabilities `probs` are either `(n,)`, the
probability of the positive class of a binary problem (as in scikit-learn's
`calibration_curve`), or `(n, k)` class probabilities, judged by their top
label (Guo et al. 2017). The recalibrators are fitted on held-out validation
data, never on the training data, and follow scikit-learn: `fit` returns
`self`, fitted state ends in `_`.

Example:

>>> y = np.array([0, 1, 1, 0])
>>> round(brier_score(y, np.array([0.1, 0.8, 0.6, 0.3])), 4)
0.075
>>> SplitConformal(level=0.5).fit(np.zeros(3), np.array([1.0, -2.0, 3.0])).quantile_
2.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, special

from tfcraft import metrics
from tfcraft._validation import check_float_in_range, check_numeric, check_positive_int

__all__ = [
    "SplitConformal",
    "TemperatureScaling",
    "VarianceScaling",
    "brier_score",
    "expected_calibration_error",
    "regression_coverage",
    "reliability_diagram",
]


def _check_probs(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    check_numeric("y_true", y_true)
    check_numeric("probs", probs)
    y_true = np.asarray(y_true).reshape(-1)
    if y_true.size == 0:
        raise ValueError("`y_true` and `probs` are empty; there is nothing to score.")
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 2 and probs.shape[1] == 1:
        probs = probs[:, 0]
    if probs.ndim not in (1, 2) or len(probs) != len(y_true):
        raise ValueError(
            "`probs` must have shape (n,) or (n, num_classes) with n = len(y_true). "
            f"Received: probs.shape={probs.shape}, y_true.shape={y_true.shape}"
        )
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise ValueError(
            "`probs` must lie in [0, 1]; pass probabilities, not logits. "
            f"Received: min={probs.min()!r}, max={probs.max()!r}"
        )
    return y_true, probs


def reliability_diagram(y_true, probs, num_bins: int = 15) -> dict[str, np.ndarray]:
    """Confidence and accuracy per equal-width probability bin.

    Bins are `(edge[i], edge[i+1]]` (the first one also holds 0), exactly as in
    scikit-learn's `calibration_curve(strategy="uniform")`.

    Example:

    >>> diagram = reliability_diagram([0, 1, 1], [0.2, 0.7, 0.9], num_bins=2)
    >>> diagram["counts"].tolist(), diagram["accuracy"].tolist()
    ([1, 2], [0.0, 1.0])

    Args:
        y_true: Labels, `(n,)`: 0/1 for binary `probs`, class indices otherwise.
        probs: `(n,)` positive-class probabilities or `(n, k)` class probabilities.
        num_bins: Positive int. Defaults to `15`.

    Returns:
        A dict with `bin_edges` `(num_bins + 1,)`, and per bin `confidence`
        (mean predicted probability), `accuracy` (observed frequency; NaN for
        empty bins, as is `confidence`) and `counts`.
    """
    num_bins = check_positive_int("num_bins", num_bins)
    y_true, probs = _check_probs(y_true, probs)
    if probs.ndim == 1:
        confidence, correct = probs, (y_true == 1).astype(np.float64)
    else:
        confidence = probs.max(axis=1)
        correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    bin_edges = np.linspace(0.0, 1.0, num_bins + 1)
    bin_ids = np.searchsorted(bin_edges[1:-1], confidence)
    counts = np.bincount(bin_ids, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bin_ids, confidence, num_bins) / counts
        accuracy = np.bincount(bin_ids, correct, num_bins) / counts
    return {
        "bin_edges": bin_edges,
        "confidence": mean_confidence,
        "accuracy": accuracy,
        "counts": counts,
    }


def expected_calibration_error(y_true, probs, num_bins: int = 15) -> float:
    """ECE: the count-weighted mean gap `|accuracy - confidence|` over the bins.

    Confidence is that of the top label, also for binary `(n,)` probabilities
    (read as `[1 - p, p]`). This is the NumPy front of
    `tfcraft.metrics.expected_calibration_error` (computed there, in float64), so
    it equals the streaming `tfcraft.metrics.ExpectedCalibrationError` on the
    same data; bins are right-closed, as in `reliability_diagram`.

    Example:

    >>> round(expected_calibration_error([0, 1, 1], [0.2, 0.7, 0.9], num_bins=2), 4)
    0.2

    Args:
        y_true: Labels, as in `reliability_diagram`.
        probs: Probabilities, as in `reliability_diagram`.
        num_bins: Positive int. Defaults to `15`.

    Returns:
        A float in [0, 1].

    References:
        Naeini, Cooper & Hauskrecht (2015); Guo, Pleiss, Sun & Weinberger (2017).
    """
    y_true, probs = _check_probs(y_true, probs)
    return float(metrics.expected_calibration_error(y_true, probs, num_bins))


def brier_score(y_true, probs) -> float:
    """Brier score: mean squared distance between probabilities and one-hot labels.

    `(n,)` positive-class probabilities give `mean((p - y)**2)` and `(n, k)`
    probabilities `mean(sum_k (p_k - onehot_k)**2)` (Brier 1950), as
    `sklearn.metrics.brier_score_loss`: the mean of the per-example
    `tfcraft.metrics.brier_score`, computed in float64.

    Example:

    >>> brier_score([0, 2], [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    0.25

    Args:
        y_true: Labels, as in `reliability_diagram`.
        probs: Probabilities, as in `reliability_diagram`.

    Returns:
        A float; lower is better.
    """
    y_true, probs = _check_probs(y_true, probs)
    if probs.ndim == 1:
        y_true = (y_true == 1).astype(np.float64)  # the positive class is 1
    return float(np.mean(metrics.brier_score(y_true, probs)))


def regression_coverage(
    y_true, predictive, levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95)
) -> dict[str, np.ndarray]:
    """Observed coverage of central prediction intervals against their nominal level.

    Example:

    >>> import tensorflow_probability as tfp
    >>> normal = tfp.distributions.Normal(np.zeros(4), 1.0)
    >>> regression_coverage([0.1, -0.5, 3.0, 1.0], normal, levels=[0.95])["observed"]
    array([0.75])

    Args:
        y_true: Targets, `(n,)` or `(n, d)`.
        predictive: A `Predictive` (its `interval`), a scalar-event
            `tfd.Distribution` with a `quantile` method (e.g. `tfd.Normal`) and
            batch shape matching `y_true`.
        levels: Nominal levels, each in (0, 1).

    Returns:
        A dict with `nominal` and `observed` arrays of shape `(len(levels),)`;
        `observed[i]` is the fraction of targets inside the `levels[i]` interval.
    """
    nominal = np.array([check_float_in_range("level", level, 0.0, 1.0) for level in levels])
    y_true = np.asarray(y_true, dtype=np.float64)
    observed = []
    for level in nominal:
        lower, upper = _interval(predictive, float(level))
        lower = np.reshape(lower, y_true.shape)
        upper = np.reshape(upper, y_true.shape)
        observed.append(np.mean((y_true >= lower) & (y_true <= upper)))
    return {"nominal": nominal, "observed": np.array(observed)}


def _interval(predictive, level: float) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(predictive, "interval"):
        return predictive.interval(level)
    if hasattr(predictive, "quantile"):
        tails = ((1.0 - level) / 2.0, (1.0 + level) / 2.0)
        lower, upper = (np.asarray(predictive.quantile(q)) for q in tails)
        return lower, upper
    raise TypeError(
        "Argument `predictive` must be a `tfcraft.bayes.Predictive` or a distribution "
        f"with a `quantile` method. Received: predictive={predictive!r}"
    )


def _not_fitted(estimator: object, call: str) -> RuntimeError:
    name = type(estimator).__name__
    return RuntimeError(f"This {name} instance is not fitted yet. Call `{call}` first.")


def _log_likelihood_logits(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-example log-likelihood of labels under logits (binary if 1-D)."""
    if logits.ndim == 1:  # log sigmoid(+-logit), stable for large |logit|
        return -np.logaddexp(0.0, np.where(y == 1, -logits, logits))
    log_probs = logits - special.logsumexp(logits, axis=1, keepdims=True)
    return log_probs[np.arange(len(y)), y.astype(int)]


class TemperatureScaling:
    """Divide logits by one temperature `T > 0` chosen to minimise validation NLL.

    `T > 1` softens over-confident probabilities; the argmax, hence accuracy,
    is unchanged (Guo et al. 2017).

    Example:

    >>> logits = np.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 4.0]])
    >>> scaler = TemperatureScaling().fit(logits, np.array([0, 1, 1, 0]))
    >>> bool(scaler.temperature_ > 10)  # half the confident guesses are wrong
    True

    Attributes:
        temperature_: The fitted temperature.

    References:
        Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural
        Networks", ICML 2017.
    """

    def fit(self, logits_val, y_val) -> TemperatureScaling:
        """Fit `temperature_` on validation logits `(n, k)` (or `(n,)` binary) and labels."""
        logits = np.asarray(logits_val, dtype=np.float64)
        y = np.asarray(y_val).reshape(-1)
        if logits.ndim not in (1, 2) or len(logits) != len(y) or len(y) == 0:
            raise ValueError(
                "`logits_val` must have shape (n,) or (n, num_classes) with n = len(y_val) > 0. "
                f"Received: logits_val.shape={logits.shape}, y_val.shape={y.shape}"
            )

        def nll(log_temperature: float) -> float:
            return -np.mean(_log_likelihood_logits(logits / np.exp(log_temperature), y))

        # Search log T: the optimum is unconstrained there and T stays positive.
        result = optimize.minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded")
        self.temperature_ = float(np.exp(result.x))
        return self

    def transform(self, logits) -> np.ndarray:
        """Recalibrated logits `logits / temperature_`."""
        if not hasattr(self, "temperature_"):
            raise _not_fitted(self, "fit(logits_val, y_val)")
        return np.asarray(logits, dtype=np.float64) / self.temperature_

    def predict_proba(self, logits) -> np.ndarray:
        """Recalibrated probabilities: softmax (sigmoid for 1-D logits) of `transform`."""
        scaled = self.transform(logits)
        if scaled.ndim == 1:
            return special.expit(scaled)
        return special.softmax(scaled, axis=-1)


class VarianceScaling:
    """Multiply predicted Gaussian standard deviations by one factor `s`.

    The Gaussian NLL of validation targets is minimised in closed form by
    `s**2 = mean(z**2)`, `z = (y - mean) / std` (Levi et al. 2022; Kuleshov et
    al. 2018 recalibrate the same quantiles non-parametrically).

    Example:

    >>> scaler = VarianceScaling().fit(np.zeros(2), np.ones(2), np.array([2.0, -2.0]))
    >>> scaler.scale_, scaler.transform(np.array([0.5])).tolist()
    (2.0, [1.0])

    Attributes:
        scale_: The fitted factor `s`.
    """

    def fit(self, mean_val, std_val, y_val) -> VarianceScaling:
        """Fit `scale_` from validation means, standard deviations and targets."""
        mean, std, y = (np.asarray(a, dtype=np.float64) for a in (mean_val, std_val, y_val))
        if not (mean.size == std.size == y.size > 0):
            raise ValueError(
                "`mean_val`, `std_val` and `y_val` must have the same, non-zero size. "
                f"Received: sizes {mean.size}, {std.size}, {y.size}"
            )
        if np.any(std.reshape(-1) <= 0):
            raise ValueError(f"`std_val` must be positive. Received: min={std.min()!r}")
        z = (y.reshape(-1) - mean.reshape(-1)) / std.reshape(-1)
        self.scale_ = float(np.sqrt(np.mean(z**2)))
        return self

    def transform(self, std) -> np.ndarray:
        """Recalibrated standard deviations `std * scale_`."""
        if not hasattr(self, "scale_"):
            raise _not_fitted(self, "fit(mean_val, std_val, y_val)")
        return np.asarray(std, dtype=np.float64) * self.scale_


class SplitConformal:
    """Split conformal prediction intervals with guaranteed marginal coverage.

    On a calibration set of `n` examples not used for training, the scores are
    `|y - pred|` (divided by a predicted `std` when given: normalised conformal
    intervals, adaptive in width). With `q` the `ceil((n + 1) * level)`-th
    smallest score, `pred ± q` (`pred ± q * std`) contains a new exchangeable
    target with probability at least `level`, and at most
    `level + 1 / (n + 1)` when scores have no ties (Lei et al. 2018, Thm 2.2).
    If `ceil((n + 1) * level) > n` the interval is infinite.

    Example:

    >>> conformal = SplitConformal(level=0.8).fit(np.zeros(9), np.arange(1.0, 10.0))
    >>> conformal.quantile_, conformal.predict_interval(np.array([0.0]))
    (8.0, (array([-8.]), array([8.])))

    Args:
        level: Float in (0, 1), the target coverage. Defaults to `0.9`.

    Attributes:
        quantile_: The calibrated score quantile `q`.
        n_calibration_: Size `n` of the calibration set.

    References:
        Lei, G'Sell, Rinaldo, Tibshirani & Wasserman, "Distribution-Free
        Predictive Inference for Regression", JASA 2018.
    """

    def __init__(self, level: float = 0.9) -> None:
        self.level = check_float_in_range("level", level, 0.0, 1.0)

    def fit(self, pred_cal, y_cal, std_cal=None) -> SplitConformal:
        """Calibrate on predictions, targets and (optionally) predicted std."""
        scores = _scores(pred_cal, y_cal, std_cal)
        n = scores.size
        if n == 0:
            raise ValueError("`y_cal` must not be empty. Received: y_cal.size=0")
        rank = math.ceil((n + 1) * self.level)
        self.quantile_ = float(np.sort(scores)[rank - 1]) if rank <= n else math.inf
        self.n_calibration_ = n
        return self

    def predict_interval(self, pred, std=None) -> tuple[np.ndarray, np.ndarray]:
        """Interval `(pred - q * std, pred + q * std)` (`std = 1` if not given)."""
        if not hasattr(self, "quantile_"):
            raise _not_fitted(self, "fit(pred_cal, y_cal)")
        pred = np.asarray(pred, dtype=np.float64)
        width = self.quantile_ * (1.0 if std is None else np.asarray(std, dtype=np.float64))
        return pred - width, pred + width


def _scores(pred, y, std) -> np.ndarray:
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if pred.shape != y.shape:
        raise ValueError(
            "`pred_cal` and `y_cal` must have the same size. "
            f"Received: pred_cal.size={pred.size}, y_cal.size={y.size}"
        )
    scores = np.abs(y - pred)
    if std is None:
        return scores
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    if std.shape != y.shape or np.any(std <= 0):
        raise ValueError(
            "`std_cal` must be positive and of the size of `y_cal`. "
            f"Received: std_cal.size={std.size}, min={std.min() if std.size else None!r}"
        )
    return scores / std
