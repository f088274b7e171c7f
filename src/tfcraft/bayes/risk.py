"""Tail risk of a predictive distribution: lower quantiles, Value-at-Risk, expected shortfall.

For a return `X` and a tail probability `level` (e.g. 0.01), the lower
quantile is `q = F^{-1}(level)`, the one-day Value-at-Risk `VaR = -q` and the
expected shortfall `ES = -E[X | X <= q]` (both reported as positive losses,
the Basel convention). For a mixture `sum_i w_i F_i` the quantile is found by
bisection and
`E[X; X <= q] = sum_i w_i E_i[X; X <= q]`, with closed-form partial
expectations for Normal and Student-t components:

- Normal: `loc * Phi(z) - scale * phi(z)`, `z = (q - loc) / scale`;
- Student-t with `df > 1`: `loc * T(z) - scale * (df + z**2) / (df - 1) * t(z)`.

Example:

>>> import tensorflow_probability as tfp
>>> normal = tfp.distributions.Normal(0.0, 1.0)
>>> round(float(value_at_risk(normal, 0.05)), 4), round(float(expected_shortfall(normal, 0.05)), 4)
(1.6449, 2.0627)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import stats

from tfcraft._validation import check_float_in_range
from tfcraft.bayes.predictive import Predictive

tfd = tfp.distributions

__all__ = ["expected_shortfall", "lower_quantile", "tail_components", "value_at_risk"]

_BISECTION_STEPS = 64


def _check_level(level: object) -> float | np.ndarray:
    """A tail probability in (0, 1), or an array of them (one per forecast)."""
    if np.ndim(level) == 0:
        return check_float_in_range("level", level, 0.0, 1.0)
    levels = np.asarray(level, dtype=np.float64)
    outside = ~((levels > 0.0) & (levels < 1.0))
    if np.any(outside):
        raise ValueError(
            f"Argument `level` must be in (0, 1). Received: level={float(levels[outside][0])!r}"
        )
    return levels


def _finite(name: str, array: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)].reshape(-1)[0]
        raise ValueError(
            f"The predictive distribution has non-finite parameters: `{name}` holds "
            f"{int(np.sum(~np.isfinite(array)))} non-finite values. Received: {name}={float(bad)!r}"
        )
    return array


def tail_components(distribution) -> dict[str, np.ndarray]:
    """The mixture behind `distribution` as float64 arrays, mixture axis first.

    Accepts a scalar `tfd.Normal` or `tfd.StudentT` (one component), a
    `tfd.MixtureSameFamily` of them (possibly wrapped in `tfd.Independent` with
    a one-element event), or a `tfcraft.bayes.Predictive` of a `"normal"` or
    `"student_t"` head with one target.

    Example:

    >>> parts = tail_components(tfd.Normal([0.0, 1.0], 2.0))
    >>> parts["family"], parts["loc"].shape, parts["weights"].tolist()
    ('normal', (1, 2), [[1.0, 1.0]])

    Returns:
        A dict with `family` (`"normal"` or `"student_t"`), `loc`, `scale`,
        `df` (Student-t only) and `weights`, each of shape `(M, ...)`.
    """
    if isinstance(distribution, Predictive):
        if distribution.family not in ("normal", "student_t"):
            raise ValueError(
                "Tail risk needs a Normal or Student-t predictive distribution. "
                f"Received: family={distribution.family!r}"
            )
        distribution = distribution.distribution
    weights = None
    if isinstance(distribution, tfd.MixtureSameFamily):
        weights = np.moveaxis(distribution.mixture_distribution.probs_parameter().numpy(), -1, 0)
        components = distribution.components_distribution
        squeeze = isinstance(components, tfd.Independent)
        if squeeze:
            if components.event_shape.num_elements() != 1:
                raise ValueError(
                    "Tail risk is defined for one target. Received: event_shape="
                    f"{components.event_shape.as_list()}"
                )
            components = components.distribution

        def axis_first(tensor):
            array = np.asarray(tf.convert_to_tensor(tensor), dtype=np.float64)
            shape = (*components.batch_shape.as_list(), *components.event_shape.as_list())
            array = np.broadcast_to(array, shape)
            if squeeze:
                array = array[..., 0]
            return np.moveaxis(array, -1, 0)
    else:
        components = distribution

        def axis_first(tensor):
            array = np.asarray(tf.convert_to_tensor(tensor), dtype=np.float64)
            return np.broadcast_to(array, tuple(components.batch_shape.as_list()))[None]

    if isinstance(components, tfd.StudentT):
        parts = {"family": "student_t", "df": axis_first(components.df)}
    elif isinstance(components, tfd.Normal):
        parts = {"family": "normal"}
    else:
        raise TypeError(
            "Argument `distribution` must be a Normal or Student-t distribution, a "
            "MixtureSameFamily of them, or a Predictive of such a head. "
            f"Received: distribution={distribution!r}"
        )
    parts["loc"] = axis_first(components.loc)
    parts["scale"] = axis_first(components.scale)
    parts["weights"] = np.ones_like(parts["loc"]) if weights is None else weights
    for name in ("loc", "scale", "df"):
        if name in parts:
            _finite(name, parts[name])
    if np.any(parts["scale"] <= 0):
        raise ValueError(
            "The predictive distribution has non-positive scales. "
            f"Received: min scale={float(parts['scale'].min())!r}"
        )
    return parts


def _cdf(parts: dict, x: np.ndarray) -> np.ndarray:
    z = (x - parts["loc"]) / parts["scale"]
    if parts["family"] == "normal":
        return stats.norm.cdf(z)
    return stats.t.cdf(z, parts["df"])


def _component_quantile(parts: dict, level: float) -> np.ndarray:
    normal = parts["family"] == "normal"
    z = stats.norm.ppf(level) if normal else stats.t.ppf(level, parts["df"])
    return parts["loc"] + parts["scale"] * z


def lower_quantile(distribution, level: float) -> np.ndarray:
    """The `level` quantile of each marginal predictive (mixture) distribution.

    A mixture's quantile lies between its components' smallest and largest
    quantile; bisection on that bracket (as `tfcraft.bayes.mixture_quantile`
    does, here in SciPy: 64 halvings, float64 resolution) finds it.

    Args:
        distribution: As in `tail_components`.
        level: Tail probability in (0, 1), or an array of them that broadcasts
            to the batch shape (one level per forecast).

    Returns:
        NumPy float64 quantiles with the distribution's batch shape.
    """
    level = _check_level(level)
    return _quantile(tail_components(distribution), level)


def _quantile(parts: dict, level: float) -> np.ndarray:
    quantiles = _component_quantile(parts, level)
    if quantiles.shape[0] == 1:
        return quantiles[0]
    lower, upper = quantiles.min(axis=0), quantiles.max(axis=0)
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (lower + upper)
        below = np.sum(parts["weights"] * _cdf(parts, middle[None]), axis=0) < level
        lower = np.where(below, middle, lower)
        upper = np.where(below, upper, middle)
    return 0.5 * (lower + upper)


def _partial_expectation(parts: dict, q: np.ndarray) -> np.ndarray:
    """`E_i[X; X <= q]` of every component, `(M, ...)`."""
    loc, scale = parts["loc"], parts["scale"]
    z = (q[None] - loc) / scale
    if parts["family"] == "normal":
        return loc * stats.norm.cdf(z) - scale * stats.norm.pdf(z)
    df = parts["df"]
    if np.any(df <= 1.0):
        raise ValueError(
            "Expected shortfall of a Student-t needs df > 1 (a finite mean). "
            f"Received: min df={float(df.min())!r}"
        )
    return loc * stats.t.cdf(z, df) - scale * (df + z**2) / (df - 1.0) * stats.t.pdf(z, df)


def value_at_risk(distribution, level: float) -> np.ndarray:
    """One-day Value-at-Risk at tail probability `level`: `-lower_quantile`, a positive loss."""
    return -lower_quantile(distribution, level)


def expected_shortfall(distribution, level: float) -> np.ndarray:
    """Expected shortfall `-E[X | X <= q_level]` (a positive loss), in closed form.

    Example:

    >>> t = tfd.StudentT(df=5.0, loc=0.0, scale=1.0)
    >>> round(float(expected_shortfall(t, 0.01)), 4)
    4.4524

    Args:
        distribution: As in `tail_components`.
        level: Tail probability in (0, 1), or an array (as in `lower_quantile`).

    Returns:
        NumPy float64 values with the distribution's batch shape.
    """
    level = _check_level(level)
    parts = tail_components(distribution)
    q = _quantile(parts, level)
    weights = parts["weights"]
    tail_mass = np.sum(weights * _cdf(parts, q[None]), axis=0)
    tail_sum = np.sum(weights * _partial_expectation(parts, q), axis=0)
    return -tail_sum / tail_mass
