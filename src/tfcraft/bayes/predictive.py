"""`predict`: the predictive distribution of any tfcraft model, in one call.

The predictive distribution is a uniform mixture over forward *passes*:

- a model with stochastic layers (variational layers, `MCDropout`) gets
  `num_samples` passes, each with fresh weight/dropout noise;
- an ensemble (`DeepEnsemble` or a list of models) gets one pass per member
  (`num_samples` per member when the members are stochastic);
- a deterministic model ending in a distribution head gets one pass.

With a head, every pass gives a distribution (its mean and variance); without
one, a pass gives a point prediction (variance zero). By the law of total
variance the predictive variance splits into an *aleatoric* part, the mean of
the per-pass variances, and an *epistemic* part, the variance of the per-pass
means (Kendall & Gal 2017; Depeweg et al. 2018).

Example:

>>> import keras, numpy as np
>>> from tfcraft.layers.heads import NormalHead
>>> model = keras.Sequential([keras.Input((3,)), NormalHead(seed=0)])
>>> predictive = predict(model, np.zeros((4, 3), "float32"))
>>> predictive.samples.shape, predictive.mean.shape
((1, 4, 1), (4, 1))
>>> float(predictive.epistemic_stddev.max())
0.0
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import weakref
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfcraft._validation import check_float_in_range, check_numeric, check_positive_int
from tfcraft.distributions import distribution_from_params
from tfcraft.layers import find_head, is_stochastic, seed_generators

tfd = tfp.distributions

__all__ = ["Predictive", "predict"]

_REAL_VALUED = (None, "normal", "student_t", "mixture_normal")
_BISECTION_STEPS = 64  # halves the bracket to float64 resolution for |quantiles| < 1e3


@dataclasses.dataclass(frozen=True, eq=False)  # array fields: compare explicitly
class Predictive:
    """Predictive distribution: a uniform mixture over forward passes.

    Build it with `tfcraft.bayes.predict`. Arrays are NumPy; `batch` is the
    number of inputs and `...` the event shape (`(d,)` for `d` targets, `(k,)`
    class probabilities for a categorical head).

    Example:

    >>> p = Predictive(samples=np.array([[[0.0]], [[2.0]]]), variances=np.ones((2, 1, 1)))
    >>> float(p.mean[0, 0]), round(float(p.stddev[0, 0] ** 2), 6)  # 1 aleatoric + 1 epistemic
    (1.0, 2.0)

    Attributes:
        samples: Per-pass predictions, `(num_samples, batch, ...)`: the mean of
            each pass' distribution (probabilities for Bernoulli/categorical
            heads), or the raw output of a model without a head.
        variances: Per-pass variances, same shape (zeros without a head).
        family: The distribution family of the head, or None without a head.
        params: Per-pass raw head parameters `(num_samples, batch, num_params)`,
            or None without a head.
    """

    samples: np.ndarray
    variances: np.ndarray
    family: str | None = None
    params: np.ndarray | None = None

    @property
    def num_samples(self) -> int:
        """Number of forward passes in the mixture."""
        return int(self.samples.shape[0])

    @property
    def mean(self) -> np.ndarray:
        """Predictive mean, `(batch, ...)`."""
        return self.samples.mean(axis=0)

    @property
    def aleatoric_stddev(self) -> np.ndarray:
        """Square root of the mean per-pass variance (noise in the data)."""
        return np.sqrt(self.variances.mean(axis=0))

    @property
    def epistemic_stddev(self) -> np.ndarray:
        """Standard deviation of the per-pass means (uncertainty about the model)."""
        return self.samples.std(axis=0)  # ddof=0: the law of total variance holds exactly

    @property
    def stddev(self) -> np.ndarray:
        """Predictive standard deviation: `sqrt(aleatoric**2 + epistemic**2)`."""
        return np.sqrt(self.variances.mean(axis=0) + self.samples.var(axis=0))

    @functools.cached_property
    def distribution(self) -> tfd.Distribution:
        """The predictive `tfd.Distribution` with batch shape `(batch,)`.

        A `tfd.MixtureSameFamily` over passes with uniform weights; for a
        categorical head, the `tfd.Categorical` of the mean probabilities (the
        same distribution, simpler); without a head, a mixture of point masses.
        """
        if self.family == "categorical":
            return tfd.Categorical(probs=tf.constant(self.mean))
        if self.family is None:
            loc = tf.constant(np.moveaxis(self.samples, 0, 1))  # (batch, passes, ...)
            components = tfd.Independent(
                tfd.Deterministic(loc), reinterpreted_batch_ndims=loc.shape.rank - 2
            )
        else:
            components = distribution_from_params(
                self.family, tf.constant(np.moveaxis(self.params, 0, 1))
            )
        weights = tfd.Categorical(logits=tf.zeros(components.batch_shape, components.dtype))
        return tfd.MixtureSameFamily(weights, components)

    def interval(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Central interval of the predictive mixture holding probability `level`.

        The bounds are the `(1 - level) / 2` and `(1 + level) / 2` quantiles of
        each target's marginal mixture, found by bisection on the mixture cdf
        (exact for a single Normal). Without a head they are empirical
        quantiles of `samples`.

        Example:

        >>> p = Predictive(samples=np.zeros((1, 1, 1)), variances=np.ones((1, 1, 1)),
        ...                family="normal", params=np.array([[[0.0, 0.5413]]]))
        >>> [round(float(bound[0, 0]), 2) for bound in p.interval(0.95)]
        [-1.96, 1.96]

        Args:
            level: Float in (0, 1), the probability inside the interval.

        Returns:
            `(lower, upper)`, each of shape `(batch, ...)`.
        """
        level = check_float_in_range("level", level, 0.0, 1.0)
        if self.family not in _REAL_VALUED:
            raise ValueError(
                "Prediction intervals need real-valued targets; this predictive "
                f"distribution has family={self.family!r}. Use the probabilities in `mean`."
            )
        tails = ((1.0 - level) / 2.0, (1.0 + level) / 2.0)
        if self.family is None:
            lower, upper = np.quantile(self.samples, tails, axis=0)
            return lower, upper
        components, weights = _marginal_components(self.family, self.params)
        lower, upper = (mixture_quantile(components, weights, q) for q in tails)
        return lower, upper


def mixture_quantile(components: tfd.Distribution, weights, q: float) -> np.ndarray:
    """Quantile `q` of elementwise mixtures, by bisection on the mixture cdf.

    The mixture quantile lies between the smallest and the largest component
    quantile (each component cdf is below `q` at the first and above it at the
    second), so bisection on that bracket cannot miss it; with one component the
    bracket is already the exact answer.

    Example:

    >>> components = tfd.Normal(np.array([[-1.0], [1.0]]), 1.0)
    >>> abs(float(mixture_quantile(components, np.full((2, 1), 0.5), 0.5)[0])) < 1e-9
    True

    Args:
        components: Scalar-event distribution with batch shape `(M, ...)`, one
            entry per mixture component (float64 recommended).
        weights: Mixture weights of the same shape, summing to 1 over axis 0.
        q: Probability in (0, 1).

    Returns:
        The quantiles, shape `(...)`.
    """
    weights = tf.convert_to_tensor(weights, components.dtype)
    component_quantiles = components.quantile(tf.constant(q, components.dtype))
    lower = tf.reduce_min(component_quantiles, axis=0)
    upper = tf.reduce_max(component_quantiles, axis=0)
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (lower + upper)
        below = tf.reduce_sum(weights * components.cdf(middle[None]), axis=0) < q
        lower = tf.where(below, middle, lower)
        upper = tf.where(below, upper, middle)
    return (0.5 * (lower + upper)).numpy()


def _marginal_components(family: str, params: np.ndarray):
    """Elementwise float64 components `(M, batch, d)` and weights of the mixture."""
    num_passes = params.shape[0]
    dist = distribution_from_params(family, tf.constant(params, tf.float64))
    base = dist.distribution  # unwrap `Independent`: one scalar mixture per target
    if family != "mixture_normal":
        return base, tf.fill(base.batch_shape, tf.constant(1.0 / num_passes, tf.float64))
    # Flatten passes x components into one mixture axis: (S, B, 1, k) -> (S * k, B, 1).
    normal = base.components_distribution
    probs = base.mixture_distribution.probs_parameter()

    def flatten(tensor):
        tensor = tf.transpose(tensor, (0, 3, 1, 2))
        return tf.reshape(tensor, (-1, *tensor.shape[2:]))

    components = tfd.Normal(flatten(normal.loc), flatten(normal.scale))
    return components, flatten(probs) / num_passes


def _per_pass_moments(family: str | None, outputs: np.ndarray):
    """Mean and variance of each pass' prediction."""
    if family is None:
        return outputs, np.zeros_like(outputs)
    dist = distribution_from_params(family, outputs)
    if family == "categorical":
        mean = dist.probs_parameter()
        return mean.numpy(), (mean * (1.0 - mean)).numpy()  # of the one-hot indicator
    return dist.mean().numpy(), dist.variance().numpy()


# -- running the passes --------------------------------------------------------

_SAMPLERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _sample(model: keras.Model, x, num_passes):
    """`(num_passes, batch, ...)` outputs of `num_passes` forward passes, in one graph."""
    first = model(x, training=False)
    outputs = tf.TensorArray(first.dtype, size=num_passes, element_shape=first.shape)
    outputs = outputs.write(0, first)

    def body(index, outputs):
        return index + 1, outputs.write(index, model(x, training=False))

    # One pass at a time: each pass advances the layers' seed generators.
    _, outputs = tf.while_loop(
        lambda index, _: index < num_passes, body, (1, outputs), parallel_iterations=1
    )
    return outputs.stack()


def _sampler(model: keras.Model):
    """The compiled `_sample` for `model`, cached while the model lives."""
    if model not in _SAMPLERS:
        # A `partial`, not a closure: TensorFlow counts retracing per function code,
        # and one compiled sampler per ensemble member is not retracing.
        _SAMPLERS[model] = tf.function(functools.partial(_sample, model), reduce_retracing=True)
    return _SAMPLERS[model]


def _num_rows(x) -> int:
    return int(tf.nest.flatten(x)[0].shape[0])


def _run_passes(model: keras.Model, x, num_passes: int, batch_size: int | None) -> np.ndarray:
    sample = _sampler(model)
    num_rows = _num_rows(x)
    step = batch_size or num_rows
    chunks = [
        sample(
            tf.nest.map_structure(lambda array, s=start: array[s : s + step], x),
            tf.constant(num_passes),
        ).numpy()
        for start in range(0, num_rows, step)
    ]
    return np.concatenate(chunks, axis=1)


@contextlib.contextmanager
def _seeded(models: Sequence[keras.Model], seed: int | None):
    """Temporarily reseed every `keras.random.SeedGenerator` in `models`."""
    if seed is None:
        yield
        return
    generators = list({id(g): g for model in models for g in seed_generators(model)}.values())
    saved = [generator.state.numpy() for generator in generators]
    fresh = np.random.default_rng(seed).integers(1, 2**31 - 1, size=(len(generators), 2))
    try:
        for generator, state in zip(generators, fresh, strict=True):
            generator.state.assign(state.astype(generator.state.dtype))
        yield
    finally:  # leave the models' own random streams as they were
        for generator, state in zip(generators, saved, strict=True):
            generator.state.assign(state)


# -- the public entry point ----------------------------------------------------


def _members(model_or_ensemble) -> tuple[list, bool]:
    """The models to run and whether they form an ensemble."""
    if isinstance(model_or_ensemble, keras.Model):
        return [model_or_ensemble], False
    members = getattr(model_or_ensemble, "members", model_or_ensemble)
    if (
        isinstance(members, Sequence)
        and members
        and all(isinstance(member, keras.Model) for member in members)
    ):
        return list(members), True
    raise TypeError(
        "Argument `model_or_ensemble` must be a `keras.Model`, a `DeepEnsemble` or a "
        f"non-empty list of `keras.Model`s. Received: model_or_ensemble={model_or_ensemble!r}"
    )


def _family(models: list) -> str | None:
    heads = [find_head(model) for model in models]
    families = {None if head is None else head.family for head in heads}
    if len(families) > 1:
        raise ValueError(
            "All ensemble members must end in the same kind of head. "
            f"Received families: {sorted(map(str, families))}"
        )
    return families.pop()


def predict(
    model_or_ensemble,
    x,
    num_samples: int = 100,
    batch_size: int | None = None,
    seed: int | None = None,
) -> Predictive:
    """Predictive distribution of a model or an ensemble at inputs `x`.

    Example:

    >>> from tfcraft.layers.mc_dropout import MCDropout
    >>> model = keras.Sequential([keras.Input((2,)), MCDropout(0.5), keras.layers.Dense(1)])
    >>> p = predict(model, np.ones((3, 2), "float32"), num_samples=20, seed=0)
    >>> p.samples.shape, bool((p.epistemic_stddev > 0).all())
    ((20, 3, 1), True)

    Args:
        model_or_ensemble: A `keras.Model` with a distribution head and/or
            stochastic layers, a `DeepEnsemble`, or a list of `keras.Model`s.
        x: Inputs, an array (or nested structure of arrays) with `batch` rows.
        num_samples: Positive int; forward passes of a stochastic model (per
            member for an ensemble of stochastic members). Ignored for
            deterministic models. Defaults to `100`.
        batch_size: Optional positive int; rows per forward pass, to bound memory.
        seed: Optional int. With a seed the dropout/weight noise is
            reproducible and the models' own random streams are left untouched.

    Returns:
        A `Predictive`.

    Raises:
        ValueError: a single model has neither a distribution head nor a
            stochastic layer, or `num_samples`/`batch_size` is not positive.
    """
    num_samples = check_positive_int("num_samples", num_samples)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    models, is_ensemble = _members(model_or_ensemble)
    family = _family(models)
    stochastic = [is_stochastic(model) for model in models]
    if not is_ensemble and family is None and not stochastic[0]:
        raise ValueError(
            f"Model {models[0].name!r} has no distribution head and no stochastic layer "
            "(variational layer or MCDropout); its predictions carry no uncertainty. End "
            "it in a head such as `tfcraft.layers.NormalHead`, add stochastic layers, or "
            "pass several models as an ensemble."
        )
    x = tf.nest.map_structure(_as_float_tensor, x)
    passes = num_samples if any(stochastic) else 1
    outputs = []
    with _seeded(models, seed):
        for model, is_random in zip(models, stochastic, strict=True):
            member_outputs = _run_passes(model, x, passes if is_random else 1, batch_size)
            outputs.append(np.repeat(member_outputs, passes // len(member_outputs), axis=0))
    outputs = np.concatenate(outputs, axis=0)
    samples, variances = _per_pass_moments(family, outputs)
    return Predictive(
        samples=samples,
        variances=variances,
        family=family,
        params=None if family is None else outputs,
    )


def _as_float_tensor(array) -> tf.Tensor:
    check_numeric("x", array)
    tensor = tf.convert_to_tensor(array)
    if tensor.shape.rank == 0:
        raise ValueError(f"Argument `x` needs a batch axis. Received: x of shape {tensor.shape}")
    return tf.cast(tensor, keras.backend.floatx()) if tensor.dtype == tf.float64 else tensor
