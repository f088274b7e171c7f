"""Calibration of class probabilities: binned expected calibration error and the Brier score."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tfcraft._validation import check_numeric, check_positive_int
from tfcraft.metrics._common import as_floating


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
    y_pred = as_floating(check_numeric("y_pred", y_pred))
    if len(y_pred.shape) == 0:
        raise ValueError("Argument `y_pred` needs a batch axis. Received: y_pred of shape ()")
    probabilities = _class_probabilities(y_pred)
    labels = _class_labels(check_numeric("y_true", y_true), probabilities.shape[-1])
    batch, num_labels = probabilities.shape[0], labels.shape[0]
    if len(probabilities.shape) != 2 or 0 in (batch, probabilities.shape[-1]):
        raise ValueError(
            "Argument `y_pred` must be probabilities of shape (batch,), (batch, 1) or "
            "(batch, num_classes) with batch > 0. Received: probabilities of shape "
            f"{tuple(probabilities.shape)}"
        )
    if batch is not None and num_labels is not None and batch != num_labels:
        raise ValueError(
            f"`y_true` gives {num_labels} labels for {batch} rows of `y_pred`. "
            f"Received: probabilities of shape {tuple(probabilities.shape)}"
        )
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
    y_pred = as_floating(y_pred)
    if len(y_pred.shape) == 1 or y_pred.shape[-1] == 1:
        p = ops.reshape(y_pred, (-1,))
        y = ops.reshape(ops.cast(y_true, p.dtype), (-1,))
        return ops.square(p - y)
    labels = _class_labels(y_true, y_pred.shape[-1])
    one_hot = ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
    return ops.sum(ops.square(y_pred - one_hot), axis=-1)


# --------------------------------------------------------------------------- metric classes


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

    direction = "down"  # lower is better (read by `tfcraft.layers.metric_direction`)

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

    direction = "down"

    def __init__(self, name="brier_score", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate the statistics of one batch."""
        super().update_state(brier_score(y_true, y_pred), sample_weight=sample_weight)


# --------------------------------------------------------------------------- private helpers


def _example_weight(sample_weight, values) -> tf.Tensor:
    if sample_weight is None:
        return ops.ones_like(values)
    return ops.reshape(ops.cast(sample_weight, values.dtype), (-1,))


def _class_probabilities(y_pred) -> tf.Tensor:
    """`(batch, num_classes)` probabilities; binary `p` becomes `[1 - p, p]`."""
    y_pred = as_floating(y_pred)
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
