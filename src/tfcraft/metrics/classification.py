"""Precision, recall and F-beta: per-label confusion counts, their ratios, streaming metrics."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tfcraft._validation import (
    check_choice,
    check_positive_float,
    check_probability,
    check_same_shape,
)
from tfcraft.metrics._common import as_floating

AVERAGES = ("micro", "macro")


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


class _ThresholdedRatio(keras.metrics.Metric):
    """Shared body of Precision/Recall/FBeta: thresholded tp/fp/fn counts and a ratio.

    Subclasses set `_ratio` (a `*_from_counts` function) and may pass it more
    keyword arguments through `_ratio_kwargs`.
    """

    _ratio = staticmethod(precision_from_counts)

    def __init__(self, threshold, average, name, dtype):
        super().__init__(name=name, dtype=dtype)
        self.threshold = check_probability("threshold", threshold)
        self.average = check_choice("average", average, AVERAGES)
        self.counts = _ConfusionCounts(self.threshold, name=f"{name}_counts", dtype=dtype)

    def _ratio_kwargs(self) -> dict:
        return {}

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate the statistics of one batch."""
        self.counts.update_state(y_true, y_pred, sample_weight)

    def result(self):
        """Return the metric over everything seen since the last reset."""
        return _confusion_result(
            self.counts, type(self)._ratio, average=self.average, **self._ratio_kwargs()
        )

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same metric."""
        return {**super().get_config(), "threshold": self.threshold, "average": self.average}


@keras.saving.register_keras_serializable(package="tfcraft")
class Precision(_ThresholdedRatio):
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

    direction = "up"  # higher is better (read by `tfcraft.layers.metric_direction`)
    _ratio = staticmethod(precision_from_counts)

    def __init__(self, threshold=0.5, average="micro", name="precision", dtype=None):
        super().__init__(threshold, average, name, dtype)


@keras.saving.register_keras_serializable(package="tfcraft")
class Recall(_ThresholdedRatio):
    """Streaming recall `tp / (tp + fn)`, binary or multi-label.

    Shapes, threshold, zero division and state as in `Precision`.

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

    direction = "up"
    _ratio = staticmethod(recall_from_counts)

    def __init__(self, threshold=0.5, average="micro", name="recall", dtype=None):
        super().__init__(threshold, average, name, dtype)


@keras.saving.register_keras_serializable(package="tfcraft")
class FBeta(_ThresholdedRatio):
    """Streaming F-beta score, binary or multi-label; `beta > 1` favours recall.

    Shapes, threshold, zero division and state as in `Precision`.

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

    direction = "up"
    _ratio = staticmethod(fbeta_from_counts)

    def __init__(self, beta=1.0, threshold=0.5, average="micro", name="f_beta", dtype=None):
        self.beta = check_positive_float("beta", beta)
        super().__init__(threshold, average, name, dtype)

    def _ratio_kwargs(self) -> dict:
        return {"beta": self.beta}

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same metric."""
        return {**super().get_config(), "beta": self.beta}


# --------------------------------------------------------------------------- private helpers


def _label_matrices(y_true, y_pred) -> tuple[tf.Tensor, tf.Tensor]:
    """`(batch, num_labels)` float labels and scores; rank-1 inputs are one label."""
    y_pred = as_floating(y_pred)
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
