"""Weight priors of the variational layers: serializable objects, never lambdas.

A prior is called with a weight shape and dtype and returns a `tfd.Distribution`
whose *event* covers the whole weight (`tfd.Independent` over all axes), so
`log_prob(weights)` and `tfd.kl_divergence(posterior, prior)` are scalars. The
variational layers build their posterior the same way, which keeps the
analytic and Monte Carlo KL estimates consistent.

Example:

>>> prior = get("normal")
>>> dist = prior((3, 2), "float32")
>>> dist.event_shape
TensorShape([3, 2])
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfcraft._validation import check_positive_float, check_probability

tfd = tfp.distributions

__all__ = ["NormalPrior", "ScaleMixturePrior", "get", "serialize"]


@keras.saving.register_keras_serializable(package="tfcraft")
class NormalPrior:
    """Isotropic Normal prior `N(0, scale**2)` on every weight.

    With a Normal posterior the KL divergence is analytic.

    Args:
        scale: Positive float, the prior standard deviation. Defaults to `1.0`.
    """

    def __init__(self, scale: float = 1.0):
        self.scale = check_positive_float("scale", scale)

    def __call__(self, shape, dtype="float32") -> tfd.Distribution:
        """Distribution over a whole weight of `shape` (event shape `shape`)."""
        dtype = tf.as_dtype(dtype)
        zeros = tf.zeros(shape, dtype)
        normal = tfd.Normal(loc=zeros, scale=tf.cast(self.scale, dtype) + zeros)
        return tfd.Independent(normal, reinterpreted_batch_ndims=len(shape))

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"scale": self.scale}

    @classmethod
    def from_config(cls, config: dict) -> NormalPrior:
        """Rebuild from `get_config()`."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"NormalPrior(scale={self.scale})"


@keras.saving.register_keras_serializable(package="tfcraft")
class ScaleMixturePrior:
    """Scale mixture of two zero-mean Normals on every weight (Blundell et al., 2015).

    Density `pi * N(0, sigma1**2) + (1 - pi) * N(0, sigma2**2)`: a wide component
    and a narrow one that pulls many weights to zero. There is no closed-form KL
    against a Normal posterior, so layers estimate it by Monte Carlo.

    Args:
        pi: Weight of the first component, a float in [0, 1]. Defaults to `0.5`.
        sigma1: Positive float, standard deviation of the first component.
            Defaults to `1.0`.
        sigma2: Positive float, standard deviation of the second component.
            Defaults to `0.0025` (about `exp(-6)`).

    References:
        Blundell et al., "Weight Uncertainty in Neural Networks", ICML 2015.
    """

    def __init__(self, pi: float = 0.5, sigma1: float = 1.0, sigma2: float = 0.0025):
        self.pi = check_probability("pi", pi)
        self.sigma1 = check_positive_float("sigma1", sigma1)
        self.sigma2 = check_positive_float("sigma2", sigma2)

    def __call__(self, shape, dtype="float32") -> tfd.Distribution:
        """Distribution over a whole weight of `shape` (event shape `shape`)."""
        dtype = tf.as_dtype(dtype)
        # Components along a trailing axis of size 2, broadcast over the weight.
        scales = tf.constant([self.sigma1, self.sigma2], dtype)
        components = tfd.Normal(loc=tf.zeros((*shape, 2), dtype), scale=scales)
        mixture = tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(
                probs=tf.constant([self.pi, 1.0 - self.pi], dtype)
            ),
            components_distribution=components,
        )
        return tfd.Independent(mixture, reinterpreted_batch_ndims=len(shape))

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"pi": self.pi, "sigma1": self.sigma1, "sigma2": self.sigma2}

    @classmethod
    def from_config(cls, config: dict) -> ScaleMixturePrior:
        """Rebuild from `get_config()`."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"ScaleMixturePrior(pi={self.pi}, sigma1={self.sigma1}, sigma2={self.sigma2})"


_BY_NAME = {"normal": NormalPrior, "scale_mixture": ScaleMixturePrior}
_PRIOR_CLASSES = (NormalPrior, ScaleMixturePrior)


def get(identifier) -> NormalPrior | ScaleMixturePrior:
    """Return a prior from a name, a config dict (from `serialize`) or an instance.

    Names: `"normal"` (`NormalPrior()`) and `"scale_mixture"` (`ScaleMixturePrior()`).

    Example:

    >>> get({"class_name": "NormalPrior", "config": {"scale": 0.5}})
    NormalPrior(scale=0.5)

    Raises:
        ValueError: an unknown name.
        TypeError: anything else that is not a prior.
    """
    if isinstance(identifier, _PRIOR_CLASSES):
        return identifier
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(
                f"Argument `prior` must be one of {list(_BY_NAME)}, a prior config dict "
                f"or a prior instance. Received: prior={identifier!r}"
            )
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict):
        class_name = identifier.get("class_name", "")
        # Short form {"class_name": "NormalPrior", "config": {...}} as well as
        # the full `keras.saving.serialize_keras_object` form.
        by_class = {cls.__name__: cls for cls in _PRIOR_CLASSES}
        short = class_name.split(">")[-1]
        if short in by_class:
            return by_class[short].from_config(identifier.get("config", {}))
        raise ValueError(
            f"Argument `prior` config has an unknown class_name. Expected one of "
            f"{list(by_class)}. Received: prior={identifier!r}"
        )
    raise TypeError(
        "Argument `prior` must be a name, a config dict or a prior instance "
        f"(NormalPrior, ScaleMixturePrior). Received: prior={identifier!r}"
    )


def serialize(prior: NormalPrior | ScaleMixturePrior) -> dict:
    """Config dict of a prior, accepted by `get` and by `keras.saving` in safe mode."""
    return keras.saving.serialize_keras_object(prior)
