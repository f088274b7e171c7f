"""Bayesian (mean-field variational) layers for Keras 3, and the protocol functions.

Each layer keeps a factorised Gaussian posterior over its kernel as two
`add_weight` variables, `kernel_loc` and `kernel_scale_raw` (the scale is
`softplus(kernel_scale_raw)`), builds the `tfd` distributions from them inside
`call`, and adds `kl_weight * KL(q || p) / num_train_examples` with `add_loss`.
Minimising mean-over-batch NLL plus `sum(model.losses)` is then the negative
ELBO divided by the number of training examples, whatever the batch size.

The bias is a deterministic point estimate `bias_loc` (TFP's default), so it has
no KL term.

The posterior starts as TFP's default one: means ~ N(0, 0.1^2), standard
deviations softplus(-3) ~ 0.049. Of the initialisations compared by
`benchmarks/bnn_defaults_study.py` (means N(0, 0.1^2), Glorot or He, x initial
scales 1e-3 to 0.2; `benchmarks/results/bnn_defaults_study.md`) it had the
lowest test NLL averaged over three UCI sets; the former defaults (Glorot
means, scale 1e-3) left a small BNN nearly deterministic and were clearly worse.

Protocol (read by `tfcraft.layers.walk`, which `tfcraft.training` and
`tfcraft.bayes` use):

- `stochastic = True` on every layer whose prediction is random;
  `is_stochastic(model)` tells whether a model has one.
- `is_variational = True` on the layers of this module;
  `variational_layers(model)` lists them and `set_num_train_examples(model, n)`
  fills in `num_train_examples` (the `Trainer` calls it from `fit`). These
  functions live in `tfcraft.layers.walk` and are re-exported here.
- `kl_weight` is a non-trainable scalar weight; KL annealing assigns to it.

`num_train_examples` is a Python number read when `call` is traced: change it
before the training step is compiled (the `Trainer` does), not in the middle.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from tfcraft._validation import (
    check_choice,
    check_numeric,
    check_positive_float,
    check_positive_int,
    check_seed,
)
from tfcraft.layers import priors as priors_lib
from tfcraft.layers._random_state import SeedStateMixin, seeded_initializer
from tfcraft.layers.flipout import flipout
from tfcraft.layers.linear import last_dimension

# The protocol functions moved to `tfcraft.layers.walk`; re-exported so that
# `from tfcraft.layers.variational import variational_layers` keeps working.
from tfcraft.layers.walk import is_stochastic, set_num_train_examples, variational_layers

tfd = tfp.distributions

__all__ = [
    "DenseFlipout",
    "DenseLocalReparameterization",
    "DenseReparameterization",
    "VariationalLayer",
    "is_stochastic",
    "set_num_train_examples",
    "variational_layers",
]

KL_METHODS = ("analytic", "mc", "auto")
# The default posterior (TFP's default_mean_field_normal_fn); see the module docstring.
# A config, not an initializer object, so every layer gets its own initializer.
DEFAULT_KERNEL_INITIALIZER = {"class_name": "RandomNormal", "config": {"stddev": 0.1}}
DEFAULT_POSTERIOR_SCALE_INIT = math.log1p(math.exp(-3.0))  # softplus(-3) ~ 0.0486


class VariationalLayer(SeedStateMixin, keras.layers.Layer):
    """Base of the variational layers: posterior weights, prior, KL loss, config.

    Subclasses create their weights with `_add_kernel_posterior(shape)` and
    `_add_bias(size)` in `build` and implement `_kernel_outputs(inputs, loc,
    scale) -> (outputs, kernel_sample)`, where `kernel_sample` is a posterior
    sample of the kernel or None when the estimator never draws one.

    The state of `seed_generator` is saved in `.keras` files and in
    `tf.train.Checkpoint`s with the weights, so a restored layer continues the
    same noise stream.
    """

    stochastic = True
    is_variational = True

    def __init__(
        self,
        activation=None,
        use_bias: bool = True,
        kernel_initializer=DEFAULT_KERNEL_INITIALIZER,
        bias_initializer="zeros",
        posterior_scale_init: float = DEFAULT_POSTERIOR_SCALE_INIT,
        prior="normal",
        kl: str = "auto",
        num_train_examples: int | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.seed = check_seed("seed", seed)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = seeded_initializer(kernel_initializer, self.seed)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.posterior_scale_init = check_positive_float(
            "posterior_scale_init", posterior_scale_init
        )
        self.prior = priors_lib.get(prior)
        self._prior_arg = prior if isinstance(prior, str | dict) else None
        self.kl = check_choice("kl", kl, KL_METHODS)
        self.num_train_examples = _check_num_train_examples(num_train_examples)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.kl_weight = self.add_weight(
            name="kl_weight", shape=(), initializer="ones", trainable=False
        )

    # -- weights ---------------------------------------------------------------

    def _add_kernel_posterior(self, shape: tuple[int, ...]) -> None:
        self.kernel_loc = self.add_weight(
            name="kernel_loc", shape=shape, initializer=self.kernel_initializer
        )
        # softplus^-1(s) = log(expm1(s)), so softplus(kernel_scale_raw) starts at s.
        raw = math.log(math.expm1(self.posterior_scale_init))
        self.kernel_scale_raw = self.add_weight(
            name="kernel_scale_raw",
            shape=shape,
            initializer=keras.initializers.Constant(raw),
        )

    def _add_bias(self, size: int) -> None:
        self.bias_loc = (
            self.add_weight(name="bias_loc", shape=(size,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )

    # -- distributions -----------------------------------------------------------

    def kernel_posterior(self) -> tfd.Distribution:
        """The posterior `q(kernel)`: Independent Normal over the whole kernel (float32)."""
        loc, scale = _loc_and_scale(self.kernel_loc, self.kernel_scale_raw, "float32")
        return _independent_normal(loc, scale)

    def kernel_prior(self) -> tfd.Distribution:
        """The prior `p(kernel)`, with the kernel shape as event shape (float32)."""
        return self.prior(tuple(self.kernel_loc.shape), "float32")

    def kl_divergence(self, kernel_sample=None) -> tf.Tensor:
        """`KL(q || p)` of the kernel: analytic, or one-sample Monte Carlo.

        With `kl="auto"` the analytic value is used when TFP knows it for the
        posterior/prior pair (Normal/Normal) and the Monte Carlo estimate
        `log q(w) - log p(w)` at `kernel_sample` otherwise (a fresh sample if None).
        """
        return self._kl_divergence(self.kernel_posterior(), kernel_sample)

    def _kl_divergence(self, posterior, kernel_sample):
        prior = self.kernel_prior()
        if self.kl != "mc":
            try:
                return tfd.kl_divergence(posterior, prior)
            except NotImplementedError:  # TFP registers no analytic KL for this pair
                if self.kl == "analytic":
                    raise ValueError(
                        f"No analytic KL divergence between the Normal posterior and "
                        f"{self.prior!r}. Pass kl='mc' or kl='auto'. Received: kl='analytic'"
                    ) from None
        if kernel_sample is None:
            noise = keras.random.normal(ops.shape(posterior.mean()), seed=self.seed_generator)
            kernel_sample = posterior.mean() + posterior.stddev() * noise
        kernel_sample = ops.cast(kernel_sample, "float32")
        return posterior.log_prob(kernel_sample) - prior.log_prob(kernel_sample)

    # -- forward pass --------------------------------------------------------------

    def _kernel_outputs(self, inputs, loc, scale):
        raise NotImplementedError  # abstract: subclasses implement it

    def call(self, inputs, training=None):
        """Stochastic forward pass; adds the scaled KL term with `add_loss`.

        Raises:
            ValueError: `training=True` while `num_train_examples` is None. Calls
                with `training` False or None (prediction, symbolic model
                construction) add no KL term and do not raise.
        """
        check_numeric("inputs", inputs)
        if training and self.num_train_examples is None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} needs `num_train_examples` to scale "
                "its KL term (KL / N). Pass `num_train_examples=` (the training set "
                "size) to the layer, call `tfcraft.layers.set_num_train_examples(model, n)`, "
                "or train with `tfcraft.training.Trainer`, which sets it. "
                "Received: num_train_examples=None"
            )
        # Posterior parameters in float32 for the KL, in the compute dtype for outputs.
        loc, scale = _loc_and_scale(self.kernel_loc, self.kernel_scale_raw, "float32")
        outputs, kernel_sample = self._kernel_outputs(
            inputs, ops.cast(loc, inputs.dtype), ops.cast(scale, inputs.dtype)
        )
        if self.bias_loc is not None:
            outputs = ops.add(outputs, ops.cast(self.bias_loc, outputs.dtype))
        if self.num_train_examples is not None:
            kl = self._kl_divergence(_independent_normal(loc, scale), kernel_sample)
            scaled = ops.cast(self.kl_weight, "float32") * kl / float(self.num_train_examples)
            self.add_loss(scaled)
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same layer."""
        prior = self._prior_arg if self._prior_arg is not None else priors_lib.serialize(self.prior)
        return {
            **super().get_config(),
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "posterior_scale_init": self.posterior_scale_init,
            "prior": prior,
            "kl": self.kl,
            "num_train_examples": self.num_train_examples,
            "seed": self.seed,
        }


# The `Args:` of every variational layer, appended to each layer's docstring.
VARIATIONAL_ARGS_DOC = """
        activation: Activation name or callable. Defaults to `None` (linear).
        use_bias: Whether to add the deterministic bias `bias_loc`. Defaults to `True`.
        kernel_initializer: Initializer of the posterior mean `kernel_loc`.
            Defaults to `RandomNormal(stddev=0.1)` (TFP's default; chosen by
            `benchmarks/bnn_defaults_study.py`).
        bias_initializer: Initializer of `bias_loc`. Defaults to `"zeros"`.
        posterior_scale_init: Positive float, the initial posterior standard
            deviation of every kernel entry. Defaults to `softplus(-3) ~ 0.0486`
            (TFP's default; in `benchmarks/bnn_defaults_study.py` smaller
            scales won on one data set and lost on two, larger ones lost on all).
        prior: `"normal"`, `"scale_mixture"`, a prior config dict or a prior
            object from `tfcraft.layers.priors`. Defaults to `"normal"` (N(0, 1)).
        kl: `"analytic"` (closed form; Normal prior only), `"mc"` (one-sample
            Monte Carlo with the sampled kernel) or `"auto"` (analytic when
            available). Defaults to `"auto"`.
        num_train_examples: Positive integer N, the training set size; the layer
            adds `kl_weight * KL / N` to `model.losses`. Required for
            `training=True` calls unless set later with `set_num_train_examples`
            (the `Trainer` does); while it is None, prediction and symbolic calls
            add no KL term. Defaults to `None`.
        seed: Optional integer seed of the kernel initializer and of the layer's
            `keras.random.SeedGenerator`, the only source of its randomness.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).
"""


class _DenseVariational(VariationalLayer):
    """Dense variant: kernel `(input_dim, units)`; subclasses choose the estimator."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self.input_spec = keras.InputSpec(min_ndim=2)

    def build(self, input_shape) -> None:
        """Create `kernel_loc`, `kernel_scale_raw` `(input_dim, units)` and `bias_loc`."""
        input_dim = last_dimension(type(self).__name__, input_shape)
        self._add_kernel_posterior((input_dim, self.units))
        self._add_bias(self.units)
        self.input_spec = keras.InputSpec(min_ndim=2, axes={-1: input_dim})

    def compute_output_shape(self, input_shape):
        """Same leading axes, last axis `units`."""
        return (*tuple(input_shape)[:-1], self.units)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {**super().get_config(), "units": self.units}


_DENSE_SHAPES = """
    Input shape:
        `(..., input_dim)`.

    Output shape:
        `(..., units)`.
"""


@keras.saving.register_keras_serializable(package="tfcraft")
class DenseReparameterization(_DenseVariational):
    """Dense layer with a Gaussian kernel posterior, one kernel sample per call.

    `outputs = activation(inputs @ W + bias_loc)` with `W = loc + scale * eps`,
    the same `W` for the whole batch (reparameterization trick). Simple, but
    examples in a batch share their noise, so gradients are noisier than with
    `DenseFlipout` or `DenseLocalReparameterization`.

    Example:

    >>> import numpy as np
    >>> layer = DenseReparameterization(2, num_train_examples=100, seed=0)
    >>> y = layer(np.ones((3, 4), "float32"), training=True)
    >>> y.shape, len(layer.losses), len(layer.trainable_weights)
    (TensorShape([3, 2]), 1, 3)

    Args:
        units: Positive integer, the output size.
    """

    def _kernel_outputs(self, inputs, loc, scale):
        noise = keras.random.normal(ops.shape(loc), dtype=loc.dtype, seed=self.seed_generator)
        kernel = loc + scale * noise
        return ops.matmul(inputs, kernel), kernel


@keras.saving.register_keras_serializable(package="tfcraft")
class DenseFlipout(_DenseVariational):
    """Dense layer with a Gaussian kernel posterior and the Flipout estimator.

    One perturbation `delta = scale * eps` is drawn per call and decorrelated
    across examples with random signs: `inputs @ loc + ((inputs * s_in) @ delta)
    * s_out`, `s_in`, `s_out` in {-1, +1}. Each example sees a valid posterior
    sample, and the gradient variance is much lower than with one shared sample,
    for about twice the cost.

    Example:

    >>> import numpy as np
    >>> layer = DenseFlipout(2, num_train_examples=100, seed=0)
    >>> layer(np.ones((3, 4), "float32")).shape
    TensorShape([3, 2])

    Args:
        units: Positive integer, the output size.

    References:
        Wen et al., "Flipout: Efficient Pseudo-Independent Weight Perturbations
        on Mini-Batches", ICLR 2018.
    """

    def _kernel_outputs(self, inputs, loc, scale):
        input_shape = ops.shape(inputs)
        output_shape = (*input_shape[:-1], self.units)
        return flipout(
            inputs, loc, scale, ops.matmul, input_shape, output_shape, self.seed_generator
        )


@keras.saving.register_keras_serializable(package="tfcraft")
class DenseLocalReparameterization(_DenseVariational):
    """Dense layer with a Gaussian kernel posterior, sampling pre-activations.

    The pre-activation of a mean-field Gaussian kernel is Gaussian with mean
    `inputs @ loc` and variance `inputs**2 @ scale**2`; the layer samples it
    directly, independently for every example (local reparameterization).
    No kernel is drawn, so a Monte Carlo KL draws one separately.

    Example:

    >>> import numpy as np
    >>> layer = DenseLocalReparameterization(2, seed=0)
    >>> layer(np.ones((3, 4), "float32")).shape
    TensorShape([3, 2])

    Args:
        units: Positive integer, the output size.

    References:
        Kingma, Salimans & Welling, "Variational Dropout and the Local
        Reparameterization Trick", NeurIPS 2015.
    """

    def _kernel_outputs(self, inputs, loc, scale):
        mean = ops.matmul(inputs, loc)
        variance = ops.matmul(ops.square(inputs), ops.square(scale))
        # A tiny floor keeps the gradient of sqrt finite for all-zero input rows.
        stddev = ops.sqrt(variance + ops.cast(1e-12, variance.dtype))
        noise = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + stddev * noise, None


for _layer in (DenseReparameterization, DenseFlipout, DenseLocalReparameterization):
    _layer.__doc__ = _layer.__doc__.rstrip() + "\n" + VARIATIONAL_ARGS_DOC + _DENSE_SHAPES


# -- private helpers -----------------------------------------------------------------


def _check_num_train_examples(value: object) -> int | None:
    return None if value is None else check_positive_int("num_train_examples", value)


def _loc_and_scale(loc_variable, scale_raw_variable, dtype):
    loc = ops.cast(loc_variable, dtype)
    scale = ops.cast(ops.softplus(ops.cast(scale_raw_variable, "float32")), dtype)
    return loc, scale


def _independent_normal(loc, scale) -> tfd.Distribution:
    return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=len(loc.shape))
