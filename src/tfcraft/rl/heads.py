"""Action distributions of the policies: the RL families beside `tfcraft.distributions`.

`tfcraft.distributions` is the one registry of families built from a raw
parameter tensor; the discrete policy uses its `"categorical"` family as is.
A Gaussian policy needs two things that registry's `"normal"` family (softplus
scale, always state-dependent) does not give: a log-std parameter (state-
independent or state-dependent, as in SB3/CleanRL) and tanh squashing into the
action box with the exact change-of-variables correction. They are built here
from `tfp.bijectors`, so `log_prob` of a squashed action is

    log N(u; loc, std) - sum log |d tanh(u)/du| - sum log(half_range),
    with u = atanh((a - mid) / half_range).

Example:

>>> import numpy as np
>>> dist = gaussian_distribution(np.zeros((2, 1), "float32"), np.zeros((2, 1), "float32"),
...                              low=[-2.0], high=[2.0], squash=True)
>>> [round(float(v), 4) for v in dist.log_prob(np.zeros((2, 1), "float32"))]
[-1.6121, -1.6121]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfcraft.distributions import distribution_from_params

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = [
    "LOG_STD_RANGE",
    "categorical_distribution",
    "clip_to_support",
    "entropy_of",
    "gaussian_distribution",
    "mode_of",
]

# Keeps a state-dependent log-std in a range where exp() neither underflows to a
# zero scale (inf log-prob) nor explodes; SB3's SAC uses the same bounds.
LOG_STD_RANGE = (-20.0, 2.0)
# Squashed actions at exactly +-1 have an infinite atanh: keep them strictly inside.
_SQUASH_EPSILON = 1e-6


def categorical_distribution(logits) -> tfd.Distribution:
    """The registry's `"categorical"` family over `(batch, num_actions)` logits."""
    return distribution_from_params("categorical", logits)


def gaussian_distribution(
    loc,
    log_std,
    *,
    low: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    squash: bool = False,
) -> tfd.Distribution:
    """Diagonal Normal over actions, optionally tanh-squashed into `[low, high]`.

    Args:
        loc: Means, shape `(batch, action_size)`.
        log_std: Log standard deviations, broadcastable to `loc`.
        low: Lower action bounds (needed when `squash`).
        high: Upper action bounds (needed when `squash`).
        squash: Whether to map the Normal sample through `tanh` into the box.

    Returns:
        A distribution with event shape `(action_size,)`.
    """
    loc = tf.convert_to_tensor(loc, tf.float32)
    log_std = tf.clip_by_value(tf.convert_to_tensor(log_std, tf.float32), *LOG_STD_RANGE)
    scale = tf.exp(log_std) * tf.ones_like(loc)
    base = tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=1)
    if not squash:
        return base
    low = tf.constant(np.asarray(low, np.float32))
    high = tf.constant(np.asarray(high, np.float32))
    bijector = tfb.Chain([tfb.Shift((high + low) / 2), tfb.Scale((high - low) / 2), tfb.Tanh()])
    return tfd.TransformedDistribution(base, bijector)


def clip_to_support(action, low, high) -> tf.Tensor:
    """Keep squashed actions strictly inside `(low, high)`, where `atanh` is finite."""
    low = tf.constant(np.asarray(low, np.float32))
    high = tf.constant(np.asarray(high, np.float32))
    span = (high - low) * _SQUASH_EPSILON
    return tf.clip_by_value(action, low + span, high - span)


def mode_of(dist: tfd.Distribution) -> tf.Tensor:
    """Deterministic action: the mode (tanh of the base mode when squashed)."""
    if isinstance(dist, tfd.TransformedDistribution):
        return dist.bijector.forward(dist.distribution.mode())
    return dist.mode()


def entropy_of(dist: tfd.Distribution, action) -> tf.Tensor:
    """Entropy, or its one-sample estimate `-log_prob(action)` when squashed (SB3)."""
    if isinstance(dist, tfd.TransformedDistribution):
        return -dist.log_prob(action)
    return dist.entropy()
