"""Distribution families: turn a parameter tensor into a real `tfd.Distribution`.

Keras 3 models can only output tensors, so distribution heads output their
*unconstrained parameters* and a family, named by a registered string, turns
those parameters into a `tfp.distributions.Distribution`. Heads, the
`NegativeLogLikelihood` loss, the uncertainty metrics and `tfcraft.bayes.predict`
all share these functions, so the parameter layout is defined in one place.

Every family returns a distribution whose event covers the last axis of the
targets: `dist.log_prob(y)` has shape `(batch,)` for `y` of shape
`(batch, event_size)` (`(batch,)` class indices for `"categorical"`).

Parameter layouts along the last axis (`d` = event size, `k` = components):

| family             | params | layout                                   |
|--------------------|--------|------------------------------------------|
| `"normal"`         | `2d`   | `loc`, softplus-`scale`                  |
| `"student_t"`      | `3d`   | `loc`, softplus-`scale`, `2 + softplus` df |
| `"bernoulli"`      | `d`    | `logits`                                 |
| `"categorical"`    | `k`    | `logits` over `k` classes                |
| `"mixture_normal"` | `3k`   | mixture `logits`, `loc`, softplus-`scale` (univariate) |

Example:

>>> import numpy as np
>>> dist = distribution_from_params("normal", np.zeros((4, 2), "float32"))
>>> dist.event_shape.as_list(), dist.batch_shape.as_list()
([1], [4])
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

__all__ = [
    "FAMILIES",
    "as_distribution",
    "check_family",
    "distribution_from_params",
    "num_params",
    "reshape_targets",
]

# Keeps the scale away from zero so a collapsing variance cannot produce inf NLL.
MIN_SCALE = 1e-6


def _positive(raw: tf.Tensor) -> tf.Tensor:
    return tf.math.softplus(raw) + tf.cast(MIN_SCALE, raw.dtype)


def _split(params: tf.Tensor, num_splits: int, family: str) -> list[tf.Tensor]:
    size = params.shape[-1]
    if size is None or size % num_splits:
        raise ValueError(
            f"Family {family!r} needs a parameter axis divisible by {num_splits}. "
            f"Received: params.shape={tuple(params.shape)}"
        )
    return tf.split(params, num_splits, axis=-1)


def _normal(params: tf.Tensor) -> tfd.Distribution:
    loc, raw_scale = _split(params, 2, "normal")
    return tfd.Independent(tfd.Normal(loc, _positive(raw_scale)), reinterpreted_batch_ndims=1)


def _student_t(params: tf.Tensor) -> tfd.Distribution:
    loc, raw_scale, raw_df = _split(params, 3, "student_t")
    # df > 2 keeps the variance finite, so `stddev` and intervals are defined.
    df = 2.0 + tf.math.softplus(raw_df)
    return tfd.Independent(
        tfd.StudentT(df=df, loc=loc, scale=_positive(raw_scale)), reinterpreted_batch_ndims=1
    )


def _bernoulli(params: tf.Tensor) -> tfd.Distribution:
    return tfd.Independent(
        tfd.Bernoulli(logits=params, dtype=params.dtype), reinterpreted_batch_ndims=1
    )


def _categorical(params: tf.Tensor) -> tfd.Distribution:
    return tfd.Categorical(logits=params)


def _mixture_normal(params: tf.Tensor) -> tfd.Distribution:
    logits, loc, raw_scale = _split(params, 3, "mixture_normal")
    # Insert an event axis of size 1 so log_prob takes targets of shape (batch, 1).
    mixture = tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=logits[..., None, :]),
        components_distribution=tfd.Normal(loc[..., None, :], _positive(raw_scale)[..., None, :]),
    )
    return tfd.Independent(mixture, reinterpreted_batch_ndims=1)


_BUILDERS = {
    "normal": (_normal, 2),
    "student_t": (_student_t, 3),
    "bernoulli": (_bernoulli, 1),
    "categorical": (_categorical, 1),
    "mixture_normal": (_mixture_normal, 3),
}
FAMILIES: tuple[str, ...] = tuple(_BUILDERS)


def check_family(family: object) -> str:
    """Return `family` if it is one of `FAMILIES`, else raise a `ValueError` naming them.

    The argument is called `distribution` in the losses and metrics that take a family.

    Example:

    >>> check_family("normal")
    'normal'
    """
    if family not in _BUILDERS:
        raise ValueError(
            f"Argument `distribution` must be one of {list(FAMILIES)}. "
            f"Received: distribution={family!r}"
        )
    return family  # type: ignore[return-value]


def num_params(family: str, size: int) -> int:
    """Number of parameters a family needs for `size` (event size, classes or components).

    Example:

    >>> num_params("student_t", 2)
    6
    """
    return _BUILDERS[check_family(family)][1] * size


def distribution_from_params(family: str, params) -> tfd.Distribution:
    """Build the family's distribution from a `(batch, num_params)` parameter tensor."""
    builder = _BUILDERS[check_family(family)][0]
    params = tf.convert_to_tensor(params)
    if not params.dtype.is_floating:
        params = tf.cast(params, tf.float32)
    return builder(params)


def as_distribution(y_pred, family: str | None) -> tfd.Distribution:
    """Return `y_pred` if it already is a distribution, else build it from parameters."""
    if isinstance(y_pred, tfd.Distribution):
        return y_pred
    if family is None:
        raise ValueError(
            "A parameter tensor was given but no distribution family. Pass "
            f"`distribution=` one of {list(FAMILIES)}, or give a `tfd.Distribution`."
        )
    return distribution_from_params(family, y_pred)


def reshape_targets(dist: tfd.Distribution, y_true) -> tf.Tensor:
    """Reshape `y_true` to `batch_shape + event_shape` of `dist` (e.g. `(b, 1)` -> `(b,)`).

    Raises:
        ValueError: the number of target values does not match the distribution.
    """
    y_true = tf.convert_to_tensor(y_true)
    y_true = tf.cast(y_true, dist.dtype) if dist.dtype.is_floating else y_true
    target_shape = tf.concat([dist.batch_shape_tensor(), dist.event_shape_tensor()], axis=0)
    static = dist.batch_shape.concatenate(dist.event_shape)
    known = static.is_fully_defined() and y_true.shape.is_fully_defined()
    if known and static.num_elements() != y_true.shape.num_elements():
        raise ValueError(
            "`y_true` does not match the predicted distribution. "
            f"Received: y_true.shape={tuple(y_true.shape)}, "
            f"distribution batch+event shape={tuple(static.as_list())}"
        )
    if isinstance(dist, tfd.Categorical) and y_true.dtype.is_floating:
        y_true = tf.cast(y_true, tf.int32)
    return tf.reshape(y_true, target_shape)
