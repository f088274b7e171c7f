"""Distribution heads: a linear projection to the parameters of a distribution family.

A Keras 3 model can only output tensors, so a head outputs the *raw parameter
tensor* of its family (layout in `tfcraft.distributions`) and
`head.distribution(params)` turns it into a real `tfd.Distribution`. Because the
symbolic output is a plain tensor, a model ending in a head works with
`model.fit`, the tfcraft `Trainer` and `.keras` saving. Train it with the
negative log-likelihood of the head's family:

```python
model.compile(optimizer="adam", loss=tfcraft.losses.NegativeLogLikelihood(head.family))
```

`find_head(model)` returns the head that produces a model's output, which is how
`tfcraft.bayes` knows how to read a model's predictions.

Under a `"mixed_float16"` policy give the head `dtype="float32"`, as for any
Keras output layer, so the distribution parameters keep full precision.
"""

from __future__ import annotations

import keras
import tensorflow_probability as tfp
from keras import ops

from tfcraft._validation import check_positive_int, check_seed
from tfcraft.distributions import distribution_from_params, num_params
from tfcraft.layers._random_state import seeded_initializer
from tfcraft.layers.linear import last_dimension
from tfcraft.layers.walk import iter_layers, output_layer

tfd = tfp.distributions

__all__ = [
    "BernoulliHead",
    "CategoricalHead",
    "DistributionHead",
    "MixtureNormalHead",
    "NormalHead",
    "StudentTHead",
    "find_head",
]


class DistributionHead(keras.layers.Layer):
    """Base class: `inputs @ kernel + bias` with `num_params(family, size)` outputs.

    Subclasses set the class attribute `family` (a name from
    `tfcraft.distributions.FAMILIES`) and the size (`event_size`, `num_classes`
    or `num_components`) that `_size()` returns; everything else is shared.

    Attributes:
        family: Name of the distribution family of the output.
        num_outputs: Number of raw parameters the head outputs.
    """

    family: str = ""

    def __init__(
        self,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.seed = check_seed("seed", seed)
        self.kernel_initializer = seeded_initializer(kernel_initializer, self.seed)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.InputSpec(min_ndim=2)

    def _size(self) -> int:
        raise NotImplementedError  # abstract: subclasses implement it

    @property
    def num_outputs(self) -> int:
        """Length of the parameter axis of the output."""
        return num_params(self.family, self._size())

    def build(self, input_shape) -> None:
        """Create `kernel` `(input_dim, num_outputs)` and `bias` `(num_outputs,)`."""
        input_dim = last_dimension(type(self).__name__, input_shape)
        self.kernel = self.add_weight(
            name="kernel", shape=(input_dim, self.num_outputs), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.num_outputs,), initializer=self.bias_initializer
        )
        self.input_spec = keras.InputSpec(min_ndim=2, axes={-1: input_dim})

    def call(self, inputs):
        """Return the raw parameters `inputs @ kernel + bias`, `(..., num_outputs)`."""
        return ops.add(ops.matmul(inputs, self.kernel), self.bias)

    def compute_output_shape(self, input_shape):
        """Same leading axes, last axis `num_outputs`."""
        return (*tuple(input_shape)[:-1], self.num_outputs)

    def distribution(self, params) -> tfd.Distribution:
        """The `tfd.Distribution` described by a parameter tensor this head produced."""
        return distribution_from_params(self.family, params)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same head."""
        return {
            **super().get_config(),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "seed": self.seed,
        }


# One docstring paragraph shared by every head, instead of five copies.
_HEAD_ARGS = """
        kernel_initializer: Initializer of the projection kernel. Defaults to
            `"glorot_uniform"`.
        bias_initializer: Initializer of the projection bias. Defaults to `"zeros"`.
        seed: Optional integer seed of the kernel initializer.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, features)`.

    Output shape:
        `(batch, num_outputs)` raw parameters; `head.distribution(params)` gives the
        distribution and `tfcraft.losses.NegativeLogLikelihood(head.family)` its loss.
"""


class _EventSizeHead(DistributionHead):
    """A head over `event_size` independent targets (Normal, Student-t, Bernoulli)."""

    def __init__(self, event_size: int = 1, **kwargs):
        self.event_size = check_positive_int("event_size", event_size)
        super().__init__(**kwargs)

    def _size(self) -> int:
        return self.event_size

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {**super().get_config(), "event_size": self.event_size}


@keras.saving.register_keras_serializable(package="tfcraft")
class NormalHead(_EventSizeHead):
    """Independent Normal over `event_size` targets: `loc` and softplus `scale`.

    Example:

    >>> import numpy as np
    >>> head = NormalHead(event_size=2)
    >>> params = head(np.ones((3, 4), "float32"))
    >>> params.shape, head.distribution(params).event_shape
    (TensorShape([3, 4]), TensorShape([2]))

    Args:
        event_size: Positive integer, the number of targets. Defaults to `1`.
    """

    family = "normal"


@keras.saving.register_keras_serializable(package="tfcraft")
class StudentTHead(_EventSizeHead):
    """Independent Student-t over `event_size` targets: `loc`, `scale` and `df > 2`.

    Heavier tails than `NormalHead`, so outliers in the targets pull the fit less.

    Args:
        event_size: Positive integer, the number of targets. Defaults to `1`.
    """

    family = "student_t"


@keras.saving.register_keras_serializable(package="tfcraft")
class BernoulliHead(_EventSizeHead):
    """Independent Bernoulli over `event_size` binary targets; outputs logits.

    Args:
        event_size: Positive integer, the number of binary targets. Defaults to `1`.
    """

    family = "bernoulli"


@keras.saving.register_keras_serializable(package="tfcraft")
class CategoricalHead(DistributionHead):
    """Categorical over `num_classes` classes; outputs logits.

    Targets are class indices of shape `(batch,)` or `(batch, 1)`.

    Args:
        num_classes: Integer >= 2, the number of classes.
    """

    family = "categorical"

    def __init__(self, num_classes: int, **kwargs):
        check_positive_int("num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(
                "Argument `num_classes` must be an integer >= 2. "
                f"Received: num_classes={num_classes!r}"
            )
        self.num_classes = int(num_classes)
        super().__init__(**kwargs)

    def _size(self) -> int:
        return self.num_classes

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="tfcraft")
class MixtureNormalHead(DistributionHead):
    """Mixture of `num_components` univariate Normals (a mixture density network).

    Outputs mixture logits, locations and raw scales; targets have shape `(batch, 1)`.

    Args:
        num_components: Positive integer, the number of mixture components.
    """

    family = "mixture_normal"

    def __init__(self, num_components: int, **kwargs):
        self.num_components = check_positive_int("num_components", num_components)
        super().__init__(**kwargs)

    def _size(self) -> int:
        return self.num_components

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {**super().get_config(), "num_components": self.num_components}


for _head in (NormalHead, StudentTHead, BernoulliHead, CategoricalHead, MixtureNormalHead):
    _head.__doc__ = _head.__doc__.rstrip() + "\n" + _HEAD_ARGS


def _has_graph(model: keras.layers.Layer) -> bool:
    # Functional models know their output tensors; subclassed models do not.
    return isinstance(model, keras.Sequential) or getattr(model, "outputs", None) is not None


def find_head(model: keras.layers.Layer) -> DistributionHead | None:
    """Return the `DistributionHead` producing the output of `model`, or None.

    For Sequential and functional models this is the output layer (looked for
    inside a nested model that is the output layer); for subclassed models,
    and `tf.Module`s, whose graph is unknown, the last head among their layers
    (`tfcraft.layers.walk.iter_layers`).
    Models with several outputs, or whose output layer is not a head, give None.

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), NormalHead()])
    >>> find_head(model).family
    'normal'
    """
    if isinstance(model, DistributionHead):
        return model
    if _has_graph(model):
        layer = output_layer(model)
        if isinstance(layer, keras.Model):
            return find_head(layer)
        return layer if isinstance(layer, DistributionHead) else None
    layers = iter_layers(model, include_self=False)
    heads = [layer for layer in layers if isinstance(layer, DistributionHead)]
    return heads[-1] if heads else None
