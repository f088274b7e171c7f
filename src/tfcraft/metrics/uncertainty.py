"""Scores of distribution predictions: central intervals, their coverage and width, NLL and CRPS."""

from __future__ import annotations

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from tfcraft import distributions
from tfcraft._validation import check_choice, check_float_in_range
from tfcraft.losses import negative_log_likelihood
from tfcraft.metrics._common import as_floating

tfd = tfp.distributions

# Families with a continuous scalar distribution per target value: intervals make sense.
CONTINUOUS_FAMILIES = ("normal", "student_t", "mixture_normal")
_DISCRETE = (tfd.Bernoulli, tfd.Categorical, tfd.OneHotCategorical, tfd.Binomial, tfd.Poisson)
_BISECTION_STEPS = 32


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
    loc = as_floating(loc)
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

    direction = "down"  # lower is better (read by `tfcraft.layers.metric_direction`)

    def __init__(self, distribution=None, name="mean_nll", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if distribution is not None:
            distributions.check_family(distribution)
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
    `central_interval` (quantiles, or cdf bisection for mixtures). Neither a
    higher nor a lower value is better (the target is `level`), so
    `direction = None`: give a monitoring callback an explicit `mode`, or
    monitor `abs(coverage - level)` instead.

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

    direction = None  # no monotone direction: the target is `level`, not 0 or 1

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
    At a given coverage narrower is better, so `direction = "down"`.

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

    direction = "down"

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

    direction = "down"

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
    except NotImplementedError:  # TFP's signal that this family has no closed-form quantile
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
    distributions.check_family(family)
    return check_choice("distribution", family, CONTINUOUS_FAMILIES)


def _check_crps_family(family: object) -> str | None:
    return check_choice("distribution", family, ("normal", None))
