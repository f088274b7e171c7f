"""Losses: pure functions with the math first, thin registered `keras.losses.Loss` classes below.

Every function returns one value per example (shape `(batch,)` for 2-D inputs), and every
class applies the usual Keras `reduction` on top, so `reduction="none"` keeps per-example
losses for `tf.nn.compute_average_loss` under a `tf.distribute` strategy.

Example:

>>> import numpy as np
>>> import tfcraft.losses
>>> y_true = np.array([[0.0, 1.0], [0.0, 0.0]], "float32")
>>> y_pred = np.array([[0.6, 0.4], [0.4, 0.6]], "float32")
>>> np.round(tfcraft.losses.huber(y_true, y_pred).numpy(), 3)
array([0.18, 0.13], dtype=float32)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from numbers import Real

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from tfcraft import distributions
from tfcraft._validation import (
    check_float_in_range,
    check_numeric,
    check_positive_float,
    check_probability,
    check_same_shape,
)

tfd = tfp.distributions

__all__ = [
    "BinaryFocal",
    "CategoricalFocal",
    "Huber",
    "NegativeLogLikelihood",
    "Pinball",
    "binary_focal",
    "categorical_focal",
    "huber",
    "negative_log_likelihood",
    "pinball",
]


# --------------------------------------------------------------------------- pure functions


def huber(y_true, y_pred, delta: float = 1.0) -> tf.Tensor:
    """Huber loss per example, equal to `keras.losses.huber`.

    Formula: `0.5 * e**2` if `|e| <= delta`, else `delta * (|e| - 0.5 * delta)`,
    with `e = y_pred - y_true`, averaged over the last axis.

    Example:

    >>> float(huber([[0.0, 3.0]], [[0.5, 0.0]], delta=1.0)[0])
    1.3125

    Args:
        y_true: Targets, shape `(batch, d)` (or `(batch,)` against `(batch, 1)`).
        y_pred: Predictions, same shape as `y_true`.
        delta: Positive float or scalar tensor where the loss turns linear.
            Defaults to `1.0`.

    Returns:
        Per-example losses, shape `y_pred.shape[:-1]`.

    Raises:
        ValueError: `delta <= 0`, or the shapes of `y_true` and `y_pred` differ.
    """
    y_true, y_pred = _matching_pair(y_true, y_pred)
    delta = _checked_delta(delta, y_pred.dtype)
    error = y_pred - y_true
    abs_error = ops.abs(error)
    half = ops.cast(0.5, y_pred.dtype)
    per_value = ops.where(
        abs_error <= delta, half * ops.square(error), delta * abs_error - half * ops.square(delta)
    )
    return ops.mean(per_value, axis=-1)


def pinball(y_true, y_pred, quantiles: Sequence[float] | float = (0.1, 0.5, 0.9)) -> tf.Tensor:
    """Pinball (quantile) loss per example, averaged over the quantiles.

    For a quantile `q` and error `e = y_true - y_pred[:, j]`, the loss is
    `max(q * e, (q - 1) * e)` (Koenker & Bassett 1978).

    Example:

    >>> float(pinball([[1.0]], [[0.0, 2.0]], quantiles=(0.25, 0.75))[0])
    0.25

    Args:
        y_true: Targets, shape `(batch,)` or `(batch, 1)`, broadcast against the columns
            of `y_pred` (or `(batch, num_quantiles)`, one target per column).
        y_pred: Predicted quantiles, shape `(batch, num_quantiles)`, one column per quantile.
        quantiles: Strictly increasing floats in `(0, 1)`. Defaults to `(0.1, 0.5, 0.9)`.

    Returns:
        Per-example losses, shape `(batch,)`.

    Raises:
        ValueError: bad `quantiles`, or `y_pred` has not one column per quantile.
    """
    quantiles = _check_quantiles(quantiles)
    y_pred = ops.convert_to_tensor(y_pred)
    if not y_pred.dtype.is_floating:
        y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype)
    if len(y_pred.shape) < 2 or y_pred.shape[-1] not in (None, len(quantiles)):
        raise ValueError(
            f"`y_pred` must have one column per quantile ({len(quantiles)}). "
            f"Received: y_pred.shape={tuple(y_pred.shape)}, quantiles={quantiles}"
        )
    if len(y_true.shape) == len(y_pred.shape) - 1:
        y_true = ops.expand_dims(y_true, -1)
    q = ops.cast(quantiles, y_pred.dtype)
    error = y_true - y_pred
    return ops.mean(ops.maximum(q * error, (q - 1.0) * error), axis=-1)


def binary_focal(
    y_true,
    y_pred,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    from_logits: bool = False,
) -> tf.Tensor:
    """Binary focal loss per example (Lin et al. 2017), averaged over the last axis.

    `-alpha_t * (1 - p_t)**gamma * log(p_t)` with `p_t = p` for positives and
    `1 - p` for negatives, `alpha_t = alpha` for positives and `1 - alpha` for
    negatives (no weighting when `alpha is None`). With `gamma=0` and `alpha=None`
    it is binary cross-entropy.

    Example:

    >>> round(float(binary_focal([[1.0]], [[0.5]], gamma=2.0, alpha=None)[0]), 4)
    0.1733

    Args:
        y_true: 0/1 labels (soft labels allowed), shape `(batch, d)`.
        y_pred: Probabilities, or logits when `from_logits=True`; same shape.
        gamma: Non-negative focusing parameter. Defaults to `2.0`.
        alpha: Weight of the positive class in `[0, 1]`, or `None`. Defaults to `0.25`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False`.

    Returns:
        Per-example losses, shape `y_pred.shape[:-1]`.
    """
    gamma = _check_gamma(gamma)
    alpha = None if alpha is None else check_probability("alpha", alpha)
    y_true, y_pred = _matching_pair(y_true, y_pred)
    if from_logits:
        # log-sigmoid of both signs: stable for large |logits|.
        log_p, log_not_p = tf.math.log_sigmoid(y_pred), tf.math.log_sigmoid(-y_pred)
        p = ops.sigmoid(y_pred)
    else:
        # Same clipping as Keras' binary cross-entropy, so gamma=0 matches it.
        eps = keras.backend.epsilon()
        p = ops.clip(y_pred, eps, 1.0 - eps)
        log_p, log_not_p = ops.log(p), ops.log(1.0 - p)
    cross_entropy = -(y_true * log_p + (1.0 - y_true) * log_not_p)
    p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
    loss = ops.power(1.0 - p_t, gamma) * cross_entropy
    if alpha is not None:
        loss = (y_true * alpha + (1.0 - y_true) * (1.0 - alpha)) * loss
    return ops.mean(loss, axis=-1)


def categorical_focal(
    y_true,
    y_pred,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    from_logits: bool = False,
) -> tf.Tensor:
    """Categorical focal loss per example (Lin et al. 2017), summed over classes.

    `-sum_k alpha_k * y_k * (1 - p_k)**gamma * log(p_k)`. With `gamma=0` and
    `alpha=None` it is categorical cross-entropy.

    Example:

    >>> round(float(categorical_focal([[0.0, 1.0]], [[0.5, 0.5]], gamma=0.0)[0]), 4)
    0.6931

    Args:
        y_true: One-hot (or soft) labels, shape `(batch, num_classes)`.
        y_pred: Probabilities, or logits when `from_logits=True`; same shape.
        gamma: Non-negative focusing parameter. Defaults to `2.0`.
        alpha: `None` (no weighting), one non-negative float for every class,
            or one non-negative float per class. Defaults to `None`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False`.

    Returns:
        Per-example losses, shape `y_pred.shape[:-1]`.
    """
    gamma = _check_gamma(gamma)
    alpha = _check_class_weights(alpha)
    y_true, y_pred = _matching_pair(y_true, y_pred)
    if from_logits:
        log_p = tf.nn.log_softmax(y_pred, axis=-1)  # log-space: no log(0) for confident logits
        p = ops.exp(log_p)
    else:
        # Normalise and clip like Keras' categorical cross-entropy, so gamma=0 matches it.
        eps = keras.backend.epsilon()
        p = ops.clip(y_pred / ops.sum(y_pred, axis=-1, keepdims=True), eps, 1.0 - eps)
        log_p = ops.log(p)
    loss = -y_true * ops.power(1.0 - p, gamma) * log_p
    if alpha is not None:
        if isinstance(alpha, tuple) and y_pred.shape[-1] not in (None, len(alpha)):
            raise ValueError(
                f"`alpha` needs one weight per class ({y_pred.shape[-1]}). "
                f"Received: alpha={list(alpha)}"
            )
        loss = ops.cast(alpha, loss.dtype) * loss
    return ops.sum(loss, axis=-1)


def negative_log_likelihood(y_true, y_pred, distribution: str | None = None) -> tf.Tensor:
    """Per-example negative log-likelihood `-dist.log_prob(y_true)`.

    `y_pred` is a `tfd.Distribution`, or a parameter tensor that the family named by
    `distribution` (see `tfcraft.distributions.FAMILIES`) turns into one. Any axes
    of `log_prob` beyond the first are summed, so each example gives one value.

    Example:

    >>> import numpy as np
    >>> params = np.array([[0.0, 0.5413]], "float32")  # loc 0, softplus-scale ~1
    >>> round(float(negative_log_likelihood([[0.0]], params, "normal")[0]), 3)
    0.919

    Args:
        y_true: Targets; any shape holding one value per distribution entry,
            e.g. `(batch,)` or `(batch, 1)`; class indices for `"categorical"`.
        y_pred: A `tfd.Distribution` or a `(batch, num_params)` parameter tensor.
        distribution: Family name, required for a parameter tensor. Defaults to `None`.

    Returns:
        Per-example losses, shape `(batch,)`.

    Raises:
        ValueError: unknown family, a parameter tensor without a family, or
            targets that do not match the distribution.
    """
    if distribution is not None:
        distributions.check_family(distribution)
    dist = distributions.as_distribution(y_pred, distribution)
    log_prob = dist.log_prob(distributions.reshape_targets(dist, y_true))
    if len(log_prob.shape) > 1:
        log_prob = ops.sum(log_prob, axis=tuple(range(1, len(log_prob.shape))))
    return -log_prob


# --------------------------------------------------------------------------- Loss classes


@keras.saving.register_keras_serializable(package="tfcraft")
class Huber(keras.losses.Loss):
    """Huber loss: quadratic for small errors, linear for large ones.

    Same numbers as `keras.losses.Huber`, but `delta` is kept in `get_config`, so it
    survives serialization and `.keras` save/load. See `huber` for the formula.

    Example:

    >>> import tfcraft.losses
    >>> loss = tfcraft.losses.Huber(delta=1.0)
    >>> round(float(loss([[0.0, 1.0], [0.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]])), 3)
    0.155

    Args:
        delta: Positive float (or scalar tensor, checked at run time) where the loss
            turns from quadratic to linear. Defaults to `1.0`.
        reduction: As in `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: Name of the loss instance. Defaults to `"huber"`.
    """

    def __init__(
        self, delta: float = 1.0, reduction: str | None = "sum_over_batch_size", name="huber"
    ):
        super().__init__(name=name, reduction=reduction)
        self.delta = delta if ops.is_tensor(delta) else check_positive_float("delta", delta)

    def call(self, y_true, y_pred):
        """Per-example losses; the base class applies `reduction`."""
        return huber(y_true, y_pred, delta=self.delta)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same loss."""
        # A tensor delta is stored as its current value: configs are plain JSON.
        delta = float(ops.convert_to_numpy(self.delta)) if ops.is_tensor(self.delta) else self.delta
        return {**super().get_config(), "delta": delta}


@keras.saving.register_keras_serializable(package="tfcraft")
class Pinball(keras.losses.Loss):
    """Multi-quantile pinball loss; `y_pred` has one column per quantile.

    See `pinball` for the formula and shapes.

    Example:

    >>> import tfcraft.losses
    >>> loss = tfcraft.losses.Pinball(quantiles=(0.5,))
    >>> float(loss([[1.0], [3.0]], [[0.0], [1.0]]))
    0.75

    Args:
        quantiles: Strictly increasing floats in `(0, 1)`. Defaults to `(0.1, 0.5, 0.9)`.
        reduction: As in `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: Name of the loss instance. Defaults to `"pinball"`.
    """

    def __init__(
        self,
        quantiles: Sequence[float] | float = (0.1, 0.5, 0.9),
        reduction: str | None = "sum_over_batch_size",
        name="pinball",
    ):
        super().__init__(name=name, reduction=reduction)
        self.quantiles = _check_quantiles(quantiles)

    def call(self, y_true, y_pred):
        """Per-example losses; the base class applies `reduction`."""
        return pinball(y_true, y_pred, quantiles=self.quantiles)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same loss."""
        return {**super().get_config(), "quantiles": list(self.quantiles)}


@keras.saving.register_keras_serializable(package="tfcraft")
class BinaryFocal(keras.losses.Loss):
    """Binary focal loss (Lin et al. 2017): cross-entropy that down-weights easy examples.

    See `binary_focal` for the formula. Equal to `keras.losses.BinaryFocalCrossentropy(
    apply_class_balancing=True, alpha=alpha, gamma=gamma)` for a float `alpha`.

    Example:

    >>> import tfcraft.losses
    >>> loss = tfcraft.losses.BinaryFocal(gamma=0.0, alpha=None)
    >>> round(float(loss([[1.0], [0.0]], [[0.5], [0.5]])), 4)
    0.6931

    Args:
        gamma: Non-negative focusing parameter. Defaults to `2.0`.
        alpha: Weight of the positive class in `[0, 1]`, or `None`. Defaults to `0.25`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False`.
        reduction: As in `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: Name of the loss instance. Defaults to `"binary_focal"`.

    References:
        Lin, Goyal, Girshick, He, Dollár. Focal Loss for Dense Object Detection. ICCV 2017.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | None = 0.25,
        from_logits: bool = False,
        reduction: str | None = "sum_over_batch_size",
        name="binary_focal",
    ):
        super().__init__(name=name, reduction=reduction)
        self.gamma = _check_gamma(gamma)
        self.alpha = None if alpha is None else check_probability("alpha", alpha)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        """Per-example losses; the base class applies `reduction`."""
        return binary_focal(y_true, y_pred, self.gamma, self.alpha, self.from_logits)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same loss."""
        return {
            **super().get_config(),
            "gamma": self.gamma,
            "alpha": self.alpha,
            "from_logits": self.from_logits,
        }


@keras.saving.register_keras_serializable(package="tfcraft")
class CategoricalFocal(keras.losses.Loss):
    """Categorical focal loss (Lin et al. 2017) over one-hot labels.

    See `categorical_focal` for the formula. Equal to
    `keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=gamma)` for a float `alpha`.

    Example:

    >>> import tfcraft.losses
    >>> loss = tfcraft.losses.CategoricalFocal(gamma=0.0)
    >>> round(float(loss([[0.0, 1.0]], [[0.5, 0.5]])), 4)
    0.6931

    Args:
        gamma: Non-negative focusing parameter. Defaults to `2.0`.
        alpha: `None`, one non-negative float, or one non-negative float per class.
            Defaults to `None`.
        from_logits: Whether `y_pred` holds logits. Defaults to `False`.
        reduction: As in `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: Name of the loss instance. Defaults to `"categorical_focal"`.

    References:
        Lin, Goyal, Girshick, He, Dollár. Focal Loss for Dense Object Detection. ICCV 2017.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        from_logits: bool = False,
        reduction: str | None = "sum_over_batch_size",
        name="categorical_focal",
    ):
        super().__init__(name=name, reduction=reduction)
        self.gamma = _check_gamma(gamma)
        self.alpha = _check_class_weights(alpha)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        """Per-example losses; the base class applies `reduction`."""
        return categorical_focal(y_true, y_pred, self.gamma, self.alpha, self.from_logits)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same loss."""
        alpha = list(self.alpha) if isinstance(self.alpha, tuple) else self.alpha
        return {
            **super().get_config(),
            "gamma": self.gamma,
            "alpha": alpha,
            "from_logits": self.from_logits,
        }


@keras.saving.register_keras_serializable(package="tfcraft")
class NegativeLogLikelihood(keras.losses.Loss):
    """Negative log-likelihood of the targets under a predicted distribution.

    In `model.compile`, the model outputs raw parameters (e.g. a final `Dense(2)`)
    and `distribution` names the family that turns them into a `tfd.Distribution`.
    In a custom loop, `y_pred` may be the distribution itself. See
    `negative_log_likelihood`.

    Example:

    >>> import tensorflow_probability as tfp
    >>> import tfcraft.losses
    >>> loss = tfcraft.losses.NegativeLogLikelihood()
    >>> round(float(loss([0.0, 0.0], tfp.distributions.Normal([0.0, 0.0], 1.0))), 3)
    0.919

    Args:
        distribution: Family name from `tfcraft.distributions.FAMILIES`, needed when
            `y_pred` is a parameter tensor. Defaults to `None`.
        reduction: As in `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: Name of the loss instance. Defaults to `"negative_log_likelihood"`.
    """

    def __init__(
        self,
        distribution: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        name="negative_log_likelihood",
    ):
        super().__init__(name=name, reduction=reduction)
        if distribution is not None:
            distributions.check_family(distribution)
        self.distribution = distribution

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Reduced loss; `y_pred` may be a `tfd.Distribution` or a parameter tensor."""
        if not isinstance(y_pred, tfd.Distribution):
            return super().__call__(y_true, y_pred, sample_weight=sample_weight)
        # `Loss.__call__` converts `y_pred` to a tensor, which a distribution is not:
        # compute per-example values here, then reuse Keras' own reduction on them.
        with tf.name_scope(self.name):
            per_example = negative_log_likelihood(y_true, y_pred, self.distribution)
            reducer = _PrecomputedLoss(reduction=self.reduction, name=self.name)
            return reducer(per_example, per_example, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        """Per-example losses; the base class applies `reduction`."""
        return negative_log_likelihood(y_true, y_pred, self.distribution)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same loss."""
        return {**super().get_config(), "distribution": self.distribution}


class _PrecomputedLoss(keras.losses.Loss):
    """Applies the Keras reduction (sample weights, masks) to precomputed values."""

    def call(self, y_true, y_pred):
        """Per-example losses; the base class applies `reduction`."""
        return y_pred


# --------------------------------------------------------------------------- private helpers


def _matching_pair(y_true, y_pred) -> tuple[tf.Tensor, tf.Tensor]:
    """Convert, align a trailing size-1 axis like Keras does, then require equal shapes."""
    check_numeric("y_true", y_true)
    check_numeric("y_pred", y_pred)
    y_pred = ops.convert_to_tensor(y_pred)
    if len(y_pred.shape) == 0:
        raise ValueError(
            "Argument `y_pred` needs a batch axis; a loss is averaged over the last axis. "
            f"Received: y_pred of shape {tuple(y_pred.shape)}"
        )
    if not y_pred.dtype.is_floating:
        y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype)
    true_rank, pred_rank = len(y_true.shape), len(y_pred.shape)
    # `(batch,)` against `(batch, 1)`: expand the rank-1 side (Keras'
    # `squeeze_or_expand_to_same_rank`), so a `Dense(1)` model fits `(batch,)` targets.
    if pred_rank == true_rank + 1 and y_pred.shape[-1] == 1:
        y_true = ops.expand_dims(y_true, -1) if true_rank == 1 else y_true
        y_pred = y_pred if true_rank == 1 else ops.squeeze(y_pred, -1)
    elif true_rank == pred_rank + 1 and y_true.shape[-1] == 1:
        y_pred = ops.expand_dims(y_pred, -1) if pred_rank == 1 else y_pred
        y_true = y_true if pred_rank == 1 else ops.squeeze(y_true, -1)
    check_same_shape(y_true.shape, y_pred.shape)
    return y_true, y_pred


def _checked_delta(delta, dtype) -> tf.Tensor:
    if not ops.is_tensor(delta):
        return ops.cast(check_positive_float("delta", delta), dtype)
    delta = ops.cast(delta, dtype)
    if tf.executing_eagerly():
        if float(delta) <= 0:
            raise ValueError(
                f"Argument `delta` must be a positive finite float. Received: delta={float(delta)}"
            )
        return delta
    check = tf.debugging.assert_positive(delta, message="Argument `delta` must be positive.")
    with tf.control_dependencies([check]):
        return tf.identity(delta)


def _check_gamma(gamma: object) -> float:
    return check_positive_float("gamma", gamma, allow_zero=True)


def _check_quantiles(quantiles: object) -> tuple[float, ...]:
    if isinstance(quantiles, Real) and not isinstance(quantiles, bool):
        quantiles = (quantiles,)
    if isinstance(quantiles, np.ndarray):
        quantiles = quantiles.tolist()
    if isinstance(quantiles, str | bytes) or not isinstance(quantiles, Sequence):
        raise TypeError(
            "Argument `quantiles` must be a sequence of floats in (0, 1). "
            f"Received: quantiles={quantiles!r}"
        )
    if not quantiles:
        raise ValueError(
            "Argument `quantiles` must hold at least one float in (0, 1). "
            f"Received: quantiles={quantiles!r}"
        )
    values = tuple(check_float_in_range("quantiles", q, 0.0, 1.0) for q in quantiles)
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(
            "Argument `quantiles` must be strictly increasing. "
            f"Received: quantiles={list(quantiles)!r}"
        )
    return values


def _check_class_weights(alpha: object) -> float | tuple[float, ...] | None:
    if alpha is None:
        return None
    if isinstance(alpha, Sequence) and not isinstance(alpha, str | bytes):
        if not alpha:
            raise ValueError(
                f"Argument `alpha` must not be an empty sequence. Received: alpha={alpha!r}"
            )
        return tuple(check_positive_float("alpha", a, allow_zero=True) for a in alpha)
    return check_positive_float("alpha", alpha, allow_zero=True)
