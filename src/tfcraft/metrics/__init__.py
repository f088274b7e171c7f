"""Streaming metrics: registered `keras.metrics.Metric`s whose math lives in pure functions.

Classification: `Precision`, `Recall`, `FBeta` (binary and multi-label, micro/macro),
`ExpectedCalibrationError` and `BrierScore`. Uncertainty of distribution predictions:
`IntervalCoverage`, `MeanIntervalWidth`, `MeanNLL` and `CRPS`. Those take `y_pred` as a
`tfd.Distribution` (custom loops) or as a parameter tensor plus `distribution=` a family
name from `tfcraft.distributions.FAMILIES` (in `model.compile`), like
`tfcraft.losses.NegativeLogLikelihood`.

Every metric works in `model.compile(metrics=[...])` and in a hand-written loop
(`update_state` / `result` / `reset_state`), and accepts `sample_weight`.

Example:

>>> import numpy as np
>>> import tfcraft.metrics
>>> metric = tfcraft.metrics.Precision()
>>> metric.update_state(np.array([1, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.7]))
>>> round(float(metric.result()), 4)
0.6667
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from tfcraft import distributions
from tfcraft._validation import (
    check_choice,
    check_float_in_range,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_same_shape,
)
from tfcraft.losses import negative_log_likelihood

tfd = tfp.distributions

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

AVERAGES = ("micro", "macro")
# Families with a continuous scalar distribution per target value: intervals make sense.
CONTINUOUS_FAMILIES = ("normal", "student_t", "mixture_normal")
_DISCRETE = (tfd.Bernoulli, tfd.Categorical, tfd.OneHotCategorical, tfd.Binomial, tfd.Poisson)
_BISECTION_STEPS = 32

# --------------------------------------------------------------------------- precision & co


def confusion_counts(y_true, y_pred, threshold: float = 0.5, sample_weight=None):
    """Weighted true positives, false positives and false negatives per label.

    A prediction counts as positive when `y_pred > threshold`, as in Keras. Binary
    targets have shape `(batch,)` or `(batch, 1)`, multi-label targets
    `(batch, num_labels)`. The `*_from_counts` functions turn the totals into ratios,
    with 0 for undefined ratios like sklearn's `zero_division=0`.

    Example:

    >>> tp, fp, fn = confusion_counts([[1, 0], [1, 1]], [[0.9, 0.7], [0.2, 0.6]])
    >>> tp.numpy().tolist(), fp.numpy().tolist(), fn.numpy().tolist()
    ([1.0, 1.0], [0.0, 1.0], [1.0, 0.0])

    Args:
        y_true: 0/1 labels, shape `(batch,)` (binary) or `(batch, num_labels)`.
        y_pred: Scores or probabilities, same shape (`(batch, 1)` is fine for binary).
        threshold: Float in `[0, 1]`. Defaults to `0.5`.
        sample_weight: Optional weights, shape `(batch,)` or broadcastable to `y_pred`.

    Returns:
        Three tensors `(tp, fp, fn)`, each of shape `(num_labels,)`.
    """
    y_true, y_pred = _label_matrices(y_true, y_pred)
    predicted = ops.cast(y_pred > threshold, y_pred.dtype)
    weight = _broadcast_weight(sample_weight, y_pred)
    true_positives = ops.sum(weight * predicted * y_true, axis=0)
    false_positives = ops.sum(weight * predicted * (1.0 - y_true), axis=0)
    false_negatives = ops.sum(weight * (1.0 - predicted) * y_true, axis=0)
    return true_positives, false_positives, false_negatives


def precision_from_counts(true_positives, false_positives, false_negatives, average="micro"):
    """Precision `tp / (tp + fp)`, 0 when undefined (sklearn's `zero_division=0`).

    Example:

    >>> float(precision_from_counts([3.0, 0.0], [1.0, 0.0], [0.0, 2.0], average="macro"))
    0.375
    """
    del false_negatives  # same signature as the other `*_from_counts`
    return fbeta_from_counts(true_positives, false_positives, 0.0, beta=0.0, average=average)


def recall_from_counts(true_positives, false_positives, false_negatives, average="micro"):
    """Recall `tp / (tp + fn)`, 0 when undefined (sklearn's `zero_division=0`).

    Example:

    >>> float(recall_from_counts([3.0, 0.0], [1.0, 0.0], [1.0, 2.0], average="micro"))
    0.5
    """
    del false_positives
    true_positives = ops.convert_to_tensor(true_positives)
    return _averaged(true_positives, true_positives + false_negatives, average)


def fbeta_from_counts(true_positives, false_positives, false_negatives, beta=1.0, average="micro"):
    """F-beta `(1 + b²) tp / ((1 + b²) tp + b² fn + fp)`, 0 when undefined.

    This is sklearn's formula with `zero_division=0`; `beta=0` gives precision.

    Example:

    >>> round(float(fbeta_from_counts([2.0], [1.0], [1.0], beta=1.0)), 4)
    0.6667
    """
    true_positives = ops.convert_to_tensor(true_positives)
    beta2 = ops.cast(beta**2, true_positives.dtype)
    numerator = (1.0 + beta2) * true_positives
    denominator = numerator + beta2 * false_negatives + false_positives
    return _averaged(numerator, denominator, average)


def _averaged(numerator, denominator, average):
    """Micro: pool the counts over labels first; macro: average per-label ratios."""
    if average == "micro":
        return ops.divide_no_nan(ops.sum(numerator), ops.sum(denominator))
    return ops.mean(ops.divide_no_nan(numerator, denominator))


# --------------------------------------------------------------------------- calibration


def calibration_bins(y_true, y_pred, num_bins: int = 15, sample_weight=None):
    """Per-bin weighted count, sum of top-label confidence and sum of correctness.

    The top label is `argmax(y_pred)` (ties go to the lower class index) and its
    confidence the largest probability. Binary `y_pred` of shape `(batch,)` or
    `(batch, 1)` is the probability of class 1, read as `[1 - p, p]`: the confidence
    is `max(p, 1 - p)` and the top label is 1 when `p > 0.5`. Bins are right-closed,
    `((m - 1) / num_bins, m / num_bins]` (Guo et al. 2017).

    Example:

    >>> counts, _, accuracy = calibration_bins([1, 0], [0.9, 0.8], num_bins=2)
    >>> counts.numpy().tolist(), accuracy.numpy().tolist()
    ([0.0, 2.0], [0.0, 1.0])

    Args:
        y_true: Integer labels `(batch,)`/`(batch, 1)`, or one-hot `(batch, num_classes)`.
        y_pred: Probabilities `(batch, num_classes)`, or `(batch,)`/`(batch, 1)` (binary).
        num_bins: Positive integer. Defaults to `15`.
        sample_weight: Optional weights, shape `(batch,)`.

    Returns:
        Three tensors `(counts, confidence_sums, accuracy_sums)` of shape `(num_bins,)`.
    """
    probabilities = _class_probabilities(y_pred)
    labels = _class_labels(y_true, probabilities.shape[-1])
    confidence = ops.max(probabilities, axis=-1)
    correct = ops.cast(ops.argmax(probabilities, axis=-1) == labels, confidence.dtype)
    weight = _example_weight(sample_weight, confidence)
    index = ops.clip(ops.cast(ops.ceil(confidence * num_bins), "int32") - 1, 0, num_bins - 1)
    counts = tf.math.unsorted_segment_sum(weight, index, num_bins)
    confidence_sums = tf.math.unsorted_segment_sum(weight * confidence, index, num_bins)
    accuracy_sums = tf.math.unsorted_segment_sum(weight * correct, index, num_bins)
    return counts, confidence_sums, accuracy_sums


def ece_from_bins(counts, confidence_sums, accuracy_sums):
    """ECE `sum_m |acc_m - conf_m| * n_m / n` from `calibration_bins` totals (0 if empty).

    Example:

    >>> round(float(ece_from_bins([0.0, 2.0], [0.0, 1.7], [0.0, 1.0])), 4)
    0.35
    """
    gap = ops.sum(ops.abs(ops.convert_to_tensor(accuracy_sums) - confidence_sums))
    return ops.divide_no_nan(gap, ops.sum(counts))


def expected_calibration_error(y_true, y_pred, num_bins: int = 15, sample_weight=None):
    """Expected calibration error of top-label confidence; see `calibration_bins`.

    Example:

    >>> round(float(expected_calibration_error([1, 0], [0.9, 0.8], num_bins=2)), 4)
    0.35
    """
    num_bins = check_positive_int("num_bins", num_bins)
    return ece_from_bins(*calibration_bins(y_true, y_pred, num_bins, sample_weight))


def brier_score(y_true, y_pred) -> tf.Tensor:
    """Brier score per example.

    Binary (`y_pred` of shape `(batch,)` or `(batch, 1)`, the probability of class 1):
    `(p - y)**2`, as `sklearn.metrics.brier_score_loss`. Multi-class (`(batch, K)`):
    `sum_k (p_k - onehot_k)**2` (Brier 1950), as sklearn's multi-class Brier score.

    Example:

    >>> brier_score([1, 0], [0.75, 0.5]).numpy().tolist()
    [0.0625, 0.25]

    Args:
        y_true: 0/1 labels for binary; integer labels or one-hot for multi-class.
        y_pred: Probabilities.

    Returns:
        Per-example scores, shape `(batch,)`.
    """
    y_pred = _floating(y_pred)
    if len(y_pred.shape) == 1 or y_pred.shape[-1] == 1:
        p = ops.reshape(y_pred, (-1,))
        y = ops.reshape(ops.cast(y_true, p.dtype), (-1,))
        return ops.square(p - y)
    labels = _class_labels(y_true, y_pred.shape[-1])
    one_hot = ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
    return ops.sum(ops.square(y_pred - one_hot), axis=-1)


# --------------------------------------------------------------------------- uncertainty


def central_interval(dist: tfd.Distribution, level: float = 0.95):
    """Lower and upper ends of the central `level` interval of each scalar distribution.

    `tfd.Independent` wrappers are removed, so the result has the shape of
    `batch_shape + event_shape` of `dist`. Uses `dist.quantile` where TFP has it
    (Normal, StudentT); otherwise (e.g. mixtures) it bisects the cdf between
    Cantelli bounds `mean ∓ stddev * sqrt((1 - p) / p)`, which always bracket the
    `p` quantile of a distribution with finite variance.

    Example:

    >>> import tensorflow_probability as tfp
    >>> lower, upper = central_interval(tfp.distributions.Normal(0.0, 1.0), 0.95)
    >>> round(float(lower), 3), round(float(upper), 3)
    (-1.96, 1.96)

    Raises:
        ValueError: `level` not in `(0, 1)`, or a discrete distribution.
    """
    level = check_float_in_range("level", level, 0.0, 1.0)
    scalar = _scalar_distribution(dist)
    tail = (1.0 - level) / 2.0
    return _quantile(scalar, tail), _quantile(scalar, 1.0 - tail)


def interval_coverage(y_true, y_pred, level: float = 0.95, distribution: str | None = None):
    """Per-example fraction of target values inside the central `level` interval.

    Example:

    >>> import tensorflow_probability as tfp
    >>> dist = tfp.distributions.Normal([0.0, 0.0], 1.0)
    >>> interval_coverage([0.5, 3.0], dist).numpy().tolist()
    [1.0, 0.0]

    Args:
        y_true: Targets, one value per scalar distribution (`(batch,)` or `(batch, d)`).
        y_pred: A `tfd.Distribution` or a parameter tensor of a continuous family.
        level: Float in `(0, 1)`. Defaults to `0.95`.
        distribution: Family name, required for a parameter tensor. Defaults to `None`.

    Returns:
        Per-example coverage in `[0, 1]`, shape `(batch,)` (averaged over event values).
    """
    dist = _continuous_distribution(y_pred, distribution)
    y = distributions.reshape_targets(dist, y_true)
    lower, upper = central_interval(dist, level)
    inside = ops.cast(ops.logical_and(y >= lower, y <= upper), lower.dtype)
    return _mean_per_example(inside)


def interval_width(y_pred, level: float = 0.95, distribution: str | None = None):
    """Per-example width of the central `level` interval (averaged over event values).

    Example:

    >>> import tensorflow_probability as tfp
    >>> round(float(interval_width(tfp.distributions.Normal([0.0], 1.0))[0]), 3)
    3.92
    """
    dist = _continuous_distribution(y_pred, distribution)
    lower, upper = central_interval(dist, level)
    return _mean_per_example(upper - lower)


def crps_normal(y_true, loc, scale) -> tf.Tensor:
    """Continuous ranked probability score of `Normal(loc, scale)`, elementwise.

    Closed form of Gneiting & Raftery (2007), eq. 21:
    `scale * (z * (2 * Phi(z) - 1) + 2 * phi(z) - 1 / sqrt(pi))`, `z = (y - loc) / scale`.

    Example:

    >>> round(float(crps_normal(0.0, 0.0, 1.0)), 4)
    0.2337
    """
    loc = _floating(loc)
    y = ops.cast(y_true, loc.dtype)
    scale = ops.cast(scale, loc.dtype)
    z = (y - loc) / scale
    standard = tfd.Normal(ops.cast(0.0, loc.dtype), ops.cast(1.0, loc.dtype))
    return scale * (
        z * (2.0 * standard.cdf(z) - 1.0) + 2.0 * standard.prob(z) - 1 / math.sqrt(math.pi)
    )


def crps(y_true, y_pred, distribution: str | None = "normal") -> tf.Tensor:
    """Per-example CRPS of Normal predictions (averaged over event values).

    Example:

    >>> import numpy as np
    >>> params = np.array([[0.0, 0.5413]], "float32")  # loc 0, softplus-scale ~1
    >>> round(float(crps([[0.0]], params, "normal")[0]), 4)
    0.2337

    Args:
        y_true: Targets, one value per scalar Normal.
        y_pred: A `tfd.Normal` (optionally `tfd.Independent`-wrapped) or `"normal"` parameters.
        distribution: `"normal"` (needed for a parameter tensor) or `None`.

    Raises:
        ValueError: the prediction is not Normal: only that closed form is implemented.
    """
    dist = distributions.as_distribution(y_pred, _check_crps_family(distribution))
    scalar = _scalar_distribution(dist)
    if not isinstance(scalar, tfd.Normal):
        raise ValueError(
            "CRPS has a closed form only for Normal predictions. "
            f"Received: distribution of type {type(scalar).__name__}"
        )
    y = distributions.reshape_targets(dist, y_true)
    return _mean_per_example(crps_normal(y, scalar.mean(), scalar.stddev()))


# --------------------------------------------------------------------------- metric classes


class _ConfusionCounts(keras.metrics.Metric):
    """Streaming tp/fp/fn per label; weights of shape `(num_labels,)` built on first update."""

    def __init__(self, threshold: float, name: str, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = threshold
        self.true_positives = self.false_positives = self.false_negatives = None

    def _build(self, num_labels: int) -> None:
        def zeros(name):
            return self.add_weight(shape=(num_labels,), initializer="zeros", name=name)

        self.true_positives = zeros("true_positives")
        self.false_positives = zeros("false_positives")
        self.false_negatives = zeros("false_negatives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate the statistics of one batch."""
        counts = confusion_counts(y_true, y_pred, self.threshold, sample_weight)
        num_labels = counts[0].shape[-1]
        if self.true_positives is None:
            self._build(num_labels)
        elif num_labels != self.true_positives.shape[0]:
            raise ValueError(
                f"Metric {self.name!r} was built for {self.true_positives.shape[0]} labels. "
                f"Received: y_pred.shape={tuple(ops.shape(y_pred))}"
            )
        for variable, count in zip(self.variables, counts, strict=True):
            variable.assign_add(ops.cast(count, variable.dtype))

    def result(self):
        """Return the metric over everything seen since the last reset."""
        if self.true_positives is None:
            return None
        return self.true_positives, self.false_positives, self.false_negatives


def _confusion_result(counts: _ConfusionCounts, ratio_fn, **kwargs):
    totals = counts.result()
    if totals is None:  # nothing seen yet
        return ops.zeros((), dtype=counts.dtype)
    return ratio_fn(*totals, **kwargs)


@keras.saving.register_keras_serializable(package="tfcraft")
class Precision(keras.metrics.Metric):
    """Streaming precision `tp / (tp + fp)`, binary or multi-label.

    Shapes, threshold and zero division as in `confusion_counts`. The tp/fp/fn counts
    per label are weights of shape `(num_labels,)`, created on the first update from
    the static last dimension (also inside `model.compile` and `tf.function`).

    Example:

    >>> import tfcraft.metrics
    >>> metric = tfcraft.metrics.Precision(threshold=0.5)
    >>> metric.update_state([1, 0, 1], [0.8, 0.6, 0.1])
    >>> float(metric.result())
    0.5

    Args:
        threshold: Float in `[0, 1]`. Defaults to `0.5`.
        average: `"micro"` (pool counts over labels) or `"macro"` (mean of per-label
            values). Defaults to `"micro"`.
        name: Name of the metric. Defaults to `"precision"`.
        dtype: Dtype of the metric's state. Defaults to `None` (floatx).
    """

    def __init__(self, threshold=0.5, average="micro", name="precision", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = check_probability("threshold", threshold)
        self.average = check_choice("average", average, AVERAGES)
        self.counts = _ConfusionCounts(self.threshold, name=f"{name}_counts", dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate the statistics of one batch."""
        self.counts.update_state(y_true, y_pred, sample_weight)

    def result(self):
        """Return the metric over everything seen since the last reset."""
        return _confusion_result(self.counts, precision_from_counts, average=self.average)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same metric."""
        return {**super().get_config(), "threshold": self.threshold, "average": self.average}


@keras.saving.register_keras_serializable(package="tfcraft")
class Recall(keras.metrics.Metric):
    """Streaming recall `tp / (tp + fn)`, binary or multi-label.

    Shapes, threshold and zero division as in `confusion_counts`. The tp/fp/fn counts
    per label are weights of shape `(num_labels,)`, created on the first update from
    the static last dimension (also inside `model.compile` and `tf.function`).

    Example:

    >>> import tfcraft.metrics
    >>> metric = tfcraft.metrics.Recall(threshold=0.5)
    >>> metric.update_state([1, 0, 1], [0.8, 0.6, 0.1])
    >>> float(metric.result())
    0.5

    Args:
        threshold: Float in `[0, 1]`. Defaults to `0.5`.
        average: `"micro"` or `"macro"`. Defaults to `"micro"`.
        name: Name of the metric. Defaults to `"recall"`.
        dtype: Dtype of the metric's state. Defaults to `None` (floatx).
    """

    def __init__(self, threshold=0.5, average="micro", name="recall", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = check_probability("threshold", threshold)
        self.average = check_choice("average", average, AVERAGES)
        self.counts = _ConfusionCounts(self.threshold, name=f"{name}_counts", dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate the statistics of one batch."""
        self.counts.update_state(y_true, y_pred, sample_weight)

    def result(self):
        """Return the metric over everything seen since the last reset."""
        return _confusion_result(self.counts, recall_from_counts, average=self.average)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same metric."""
        return {**super().get_config(), "threshold": self.threshold, "average": self.average}


@keras.saving.register_keras_serializable(package="tfcraft")
class FBeta(keras.metrics.Metric):
    """Streaming F-beta score, binary or multi-label; `beta > 1` favours recall.

    Shapes, threshold and zero division as in `confusion_counts`. The tp/fp/fn counts
    per label are weights of shape `(num_labels,)`, created on the first update from
    the static last dimension (also inside `model.compile` and `tf.function`).

    Example:

    >>> import tfcraft.metrics
    >>> metric = tfcraft.metrics.FBeta(beta=1.0)
    >>> metric.update_state([1, 0, 1], [0.8, 0.6, 0.1])
    >>> float(metric.result())
    0.5

    Args:
        beta: Positive float. Defaults to `1.0`.
        threshold: Float in `[0, 1]`. Defaults to `0.5`.
        average: `"micro"` or `"macro"`. Defaults to `"micro"`.
        name: Name of the metric. Defaults to `"f_beta"`.
        dtype: Dtype of the metric's state. Defaults to `None` (floatx).
    """

    def __init__(self, beta=1.0, threshold=0.5, average="micro", name="f_beta", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.beta = check_positive_float("beta", beta)
        self.threshold = check_probability("threshold", threshold)
        self.average = check_choice("average", average, AVERAGES)
        self.counts = _ConfusionCounts(self.threshold, name=f"{name}_counts", dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate the statistics of one batch."""
        self.counts.update_state(y_true, y_pred, sample_weight)

    def result(self):
        """Return the metric over everything seen since the last reset."""
        return _confusion_result(
            self.counts, fbeta_from_counts, beta=self.beta, average=self.average
        )

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same metric."""
        return {
            **super().get_config(),
            "beta": self.beta,
            "threshold": self.threshold,
            "average": self.average,
        }


@keras.saving.register_keras_serializable(package="tfcraft")
class ExpectedCalibrationError(keras.metrics.Metric):
    """Streaming expected calibration error of top-label confidence (Guo et al. 2017).

    Per-bin weighted counts, confidence sums and accuracy sums are kept as weights
    of shape `(num_bins,)`, so batches add up exactly. Binary probabilities
    (`(batch,)` or `(batch, 1)`) are read as `[1 - p, p]`: the confidence is
    `max(p, 1 - p)`. See `calibration_bins` for the binning.

    Example:

    >>> import tfcraft.metrics
    >>> metric = tfcraft.metrics.ExpectedCalibrationError(num_bins=2)
    >>> metric.update_state([1, 0], [0.9, 0.8])
    >>> round(float(metric.result()), 4)
    0.35

    Args:
        num_bins: Positive integer, number of equal-width confidence bins. Defaults to `15`.
        name: Name of the metric. Defaults to `"expected_calibration_error"`.
        dtype: Dtype of the metric's state. Defaults to `None` (floatx).

    References:
        Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017.
    """

    def __init__(self, num_bins=15, name="expected_calibration_error", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_bins = check_positive_int("num_bins", num_bins)
        shape = (self.num_bins,)
        self.counts = self.add_weight(shape=shape, initializer="zeros", name="counts")
        self.confidence_sums = self.add_weight(shape, "zeros", name="confidence_sums")
        self.accuracy_sums = self.add_weight(shape, "zeros", name="accuracy_sums")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate the statistics of one batch."""
        totals = calibration_bins(y_true, y_pred, self.num_bins, sample_weight)
        for variable, total in zip(self.variables, totals, strict=True):
            variable.assign_add(ops.cast(total, variable.dtype))

    def result(self):
        """Return the metric over everything seen since the last reset."""
        return ece_from_bins(self.counts, self.confidence_sums, self.accuracy_sums)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same metric."""
        return {**super().get_config(), "num_bins": self.num_bins}


@keras.saving.register_keras_serializable(package="tfcraft")
class BrierScore(keras.metrics.Mean):
    """Streaming weighted mean of the Brier score; see `brier_score`.

    Example:

    >>> import tfcraft.metrics
    >>> metric = tfcraft.metrics.BrierScore()
    >>> metric.update_state([1, 0], [0.75, 0.5])
    >>> float(metric.result())
    0.15625

    Args:
        name: Name of the metric. Defaults to `"brier_score"`.
        dtype: Dtype of the metric's state. Defaults to `None` (floatx).
    """

    def __init__(self, name="brier_score", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate the statistics of one batch."""
        super().update_state(brier_score(y_true, y_pred), sample_weight=sample_weight)


@keras.saving.register_keras_serializable(package="tfcraft")
class MeanNLL(keras.metrics.Mean):
    """Streaming weighted mean negative log-likelihood of distribution predictions.

    `y_pred` is a `tfd.Distribution`, or (in `model.compile`) a parameter tensor
    with `distribution` naming its family. See `tfcraft.losses.negative_log_likelihood`.

    Example:

    >>> import tensorflow_probability as tfp
    >>> import tfcraft.metrics
    >>> metric = tfcraft.metrics.MeanNLL()
    >>> metric.update_state([0.0], tfp.distributions.Normal([0.0], 1.0))
    >>> round(float(metric.result()), 3)
    0.919

    Args:
        distribution: Family name from `tfcraft.distributions.FAMILIES`, needed for
            parameter tensors. Defaults to `None`.
        name: Name of the metric. Defaults to `"mean_nll"`.
        dtype: Dtype of the metric's state. Defaults to `None` (floatx).
    """

    def __init__(self, distribution=None, name="mean_nll", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if distribution is not None:
            distributions._check_family(distribution)
        self.distribution = distribution

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate the statistics of one batch."""
        values = negative_log_likelihood(y_true, y_pred, self.distribution)
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same metric."""
        return {**super().get_config(), "distribution": self.distribution}


@keras.saving.register_keras_serializable(package="tfcraft")
class IntervalCoverage(keras.metrics.Mean):
    """Streaming fraction of targets inside the central `level` predictive interval.

    A calibrated model scores close to `level`. See `interval_coverage` and
    `central_interval` (quantiles, or cdf bisection for mixtures).

    Example:

    >>> import tensorflow_probability as tfp
    >>> import tfcraft.metrics
    >>> metric = tfcraft.metrics.IntervalCoverage(level=0.9)
    >>> metric.update_state([0.5, 3.0], tfp.distributions.Normal([0.0, 0.0], 1.0))
    >>> float(metric.result())
    0.5

    Args:
        level: Float in `(0, 1)`. Defaults to `0.95`.
        distribution: A continuous family (`"normal"`, `"student_t"`,
            `"mixture_normal"`), needed for parameter tensors. Defaults to `None`.
        name: Name of the metric. Defaults to `"interval_coverage"`.
        dtype: Dtype of the metric's state. Defaults to `None` (floatx).
    """

    def __init__(self, level=0.95, distribution=None, name="interval_coverage", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.level = check_float_in_range("level", level, 0.0, 1.0)
        self.distribution = _check_continuous_family(distribution)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate the statistics of one batch."""
        values = interval_coverage(y_true, y_pred, self.level, self.distribution)
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same metric."""
        return {**super().get_config(), "level": self.level, "distribution": self.distribution}


@keras.saving.register_keras_serializable(package="tfcraft")
class MeanIntervalWidth(keras.metrics.Mean):
    """Streaming mean width of the central `level` predictive interval (`y_true` unused).

    Reported next to `IntervalCoverage`: good coverage with narrow intervals is the goal.

    Example:

    >>> import tensorflow_probability as tfp
    >>> import tfcraft.metrics
    >>> metric = tfcraft.metrics.MeanIntervalWidth(level=0.95)
    >>> metric.update_state([0.0], tfp.distributions.Normal([0.0], 2.0))
    >>> round(float(metric.result()), 3)
    7.84

    Args:
        level: Float in `(0, 1)`. Defaults to `0.95`.
        distribution: A continuous family, needed for parameter tensors. Defaults to `None`.
        name: Name of the metric. Defaults to `"mean_interval_width"`.
        dtype: Dtype of the metric's state. Defaults to `None` (floatx).
    """

    def __init__(self, level=0.95, distribution=None, name="mean_interval_width", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.level = check_float_in_range("level", level, 0.0, 1.0)
        self.distribution = _check_continuous_family(distribution)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate the statistics of one batch."""
        del y_true
        values = interval_width(y_pred, self.level, self.distribution)
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same metric."""
        return {**super().get_config(), "level": self.level, "distribution": self.distribution}


@keras.saving.register_keras_serializable(package="tfcraft")
class CRPS(keras.metrics.Mean):
    """Streaming mean continuous ranked probability score of Normal predictions.

    Lower is better; for a point forecast CRPS reduces to the absolute error. See
    `crps_normal` for the closed form (Gneiting & Raftery 2007).

    Example:

    >>> import tensorflow_probability as tfp
    >>> import tfcraft.metrics
    >>> metric = tfcraft.metrics.CRPS()
    >>> metric.update_state([0.0], tfp.distributions.Normal([0.0], 1.0))
    >>> round(float(metric.result()), 4)
    0.2337

    Args:
        distribution: `"normal"` (parameter tensors of the `"normal"` family or Normal
            distributions) or `None` (distributions only). Defaults to `"normal"`.
        name: Name of the metric. Defaults to `"crps"`.
        dtype: Dtype of the metric's state. Defaults to `None` (floatx).

    References:
        Gneiting, Raftery. Strictly Proper Scoring Rules, Prediction, and Estimation.
        JASA 2007.
    """

    def __init__(self, distribution="normal", name="crps", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.distribution = _check_crps_family(distribution)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate the statistics of one batch."""
        values = crps(y_true, y_pred, self.distribution)
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same metric."""
        return {**super().get_config(), "distribution": self.distribution}


# --------------------------------------------------------------------------- private helpers


def _floating(x) -> tf.Tensor:
    x = ops.convert_to_tensor(x)
    return x if x.dtype.is_floating else ops.cast(x, "float32")


def _label_matrices(y_true, y_pred) -> tuple[tf.Tensor, tf.Tensor]:
    """`(batch, num_labels)` float labels and scores; rank-1 inputs are one label."""
    y_pred = _floating(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    if len(y_pred.shape) == 1:
        y_pred = ops.expand_dims(y_pred, -1)
    if len(y_true.shape) == 1:
        y_true = ops.expand_dims(y_true, -1)
    check_same_shape(y_true.shape, y_pred.shape)
    if len(y_pred.shape) != 2:
        raise ValueError(
            "Expected `y_true` and `y_pred` of shape (batch,) or (batch, num_labels). "
            f"Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    return y_true, y_pred


def _broadcast_weight(sample_weight, values) -> tf.Tensor:
    if sample_weight is None:
        return ops.ones_like(values)
    weight = ops.cast(sample_weight, values.dtype)
    if len(weight.shape) == 1:
        weight = ops.expand_dims(weight, -1)  # one weight per example, for every label
    return ops.broadcast_to(weight, ops.shape(values))


def _example_weight(sample_weight, values) -> tf.Tensor:
    if sample_weight is None:
        return ops.ones_like(values)
    return ops.reshape(ops.cast(sample_weight, values.dtype), (-1,))


def _class_probabilities(y_pred) -> tf.Tensor:
    """`(batch, num_classes)` probabilities; binary `p` becomes `[1 - p, p]`."""
    y_pred = _floating(y_pred)
    if len(y_pred.shape) == 1:
        y_pred = ops.expand_dims(y_pred, -1)
    if y_pred.shape[-1] == 1:
        y_pred = ops.concatenate([1.0 - y_pred, y_pred], axis=-1)
    return y_pred


def _class_labels(y_true, num_classes: int) -> tf.Tensor:
    """Integer labels `(batch,)` from labels `(batch,)`/`(batch, 1)` or one-hot rows."""
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == 2 and y_true.shape[-1] == num_classes:
        return ops.cast(ops.argmax(y_true, axis=-1), "int32")
    return ops.cast(ops.reshape(y_true, (-1,)), "int32")


def _mean_per_example(values) -> tf.Tensor:
    if len(values.shape) <= 1:
        return values
    return ops.mean(values, axis=tuple(range(1, len(values.shape))))


def _scalar_distribution(dist: tfd.Distribution) -> tfd.Distribution:
    """Strip `tfd.Independent` wrappers: their quantiles and cdfs are per scalar value."""
    while isinstance(dist, tfd.Independent):
        dist = dist.distribution
    return dist


def _continuous_distribution(y_pred, family) -> tfd.Distribution:
    dist = distributions.as_distribution(y_pred, _check_continuous_family(family))
    scalar = _scalar_distribution(dist)
    if isinstance(scalar, _DISCRETE) or not scalar.dtype.is_floating:
        raise ValueError(
            "Predictive intervals need a continuous distribution. "
            f"Received: distribution of type {type(scalar).__name__}"
        )
    return dist


def _quantile(dist: tfd.Distribution, p: float) -> tf.Tensor:
    try:
        return dist.quantile(ops.cast(p, dist.dtype))
    except NotImplementedError:
        return _bisect_quantile(dist, p)


@tf.function(reduce_retracing=True)
def _bisect_quantile(dist: tfd.Distribution, p: float) -> tf.Tensor:
    # Cantelli's inequality P(X - mean >= k * sd) <= 1 / (1 + k**2) gives a bracket
    # [lower, upper] with cdf(lower) <= p <= cdf(upper) whenever the variance is finite.
    # A compiled while-loop: eager bisection of a mixture cdf takes seconds.
    mean, stddev = dist.mean(), dist.stddev()
    lower = mean - stddev * math.sqrt((1.0 - p) / p)
    upper = mean + stddev * math.sqrt(p / (1.0 - p))

    def halve(lower, upper):
        middle = 0.5 * (lower + upper)
        below = dist.cdf(middle) < p
        return ops.where(below, middle, lower), ops.where(below, upper, middle)

    # bracket / 2**32 is below float32 resolution
    lower, upper = tf.while_loop(
        lambda *_: True, halve, (lower, upper), maximum_iterations=_BISECTION_STEPS
    )
    return 0.5 * (lower + upper)


def _check_continuous_family(family: object) -> str | None:
    if family is None:
        return None
    distributions._check_family(family)
    return check_choice("distribution", family, CONTINUOUS_FAMILIES)


def _check_crps_family(family: object) -> str | None:
    return check_choice("distribution", family, ("normal", None))
