"""`Linear`: the chapter's `MyCustomLayer`, done right for Keras 3."""

from __future__ import annotations

import keras
from keras import ops

from tfcraft._validation import check_positive_int, check_seed
from tfcraft.layers._random_state import seeded_initializer

__all__ = ["Linear"]


def last_dimension(layer_name: str, input_shape) -> int:
    """Return the known last dimension of `input_shape` or raise a clear error.

    Shared by every layer that sizes its weights from its input.
    """
    input_shape = tuple(input_shape)
    if not input_shape or input_shape[-1] is None:
        raise ValueError(
            f"{layer_name} needs a known last input dimension. "
            f"Received: input_shape={input_shape}. "
            "Give the model a `keras.Input(shape=(num_features,))`."
        )
    return int(input_shape[-1])


@keras.saving.register_keras_serializable(package="tfcraft")
class Linear(keras.layers.Layer):
    """Fully connected layer `activation(inputs @ kernel + bias)`.

    The weights are created lazily in `build` from the last input dimension,
    with `add_weight`, so Keras tracks, trains, saves and loads them. The
    layer follows the dtype policy: under `"mixed_float16"` it computes in
    float16 and keeps float32 variables. With the same weights it gives the
    same outputs as `keras.layers.Dense`.

    Example:

    >>> import numpy as np
    >>> layer = Linear(3, kernel_initializer="ones")
    >>> layer(np.ones((2, 4), "float32")).shape
    TensorShape([2, 3])

    Args:
        units: Positive integer, the output size.
        activation: Activation name or callable. Defaults to `None` (linear).
        use_bias: Whether to add a bias vector. Defaults to `True`.
        kernel_initializer: Initializer of the kernel. Defaults to `"glorot_uniform"`.
        bias_initializer: Initializer of the bias. Defaults to `"zeros"`.
        kernel_regularizer: Optional regularizer of the kernel.
        bias_regularizer: Optional regularizer of the bias.
        seed: Optional integer seed for the kernel initializer, so the same seed
            gives the same initial weights.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(..., input_dim)`.

    Output shape:
        `(..., units)`.
    """

    def __init__(
        self,
        units: int,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self.seed = check_seed("seed", seed)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = seeded_initializer(kernel_initializer, self.seed)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_spec = keras.InputSpec(min_ndim=2)

    def build(self, input_shape) -> None:
        """Create `kernel` `(input_dim, units)` and `bias` `(units,)`."""
        input_dim = last_dimension(type(self).__name__, input_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_dim, self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = (
            self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
            if self.use_bias
            else None
        )
        self.input_spec = keras.InputSpec(min_ndim=2, axes={-1: input_dim})

    def call(self, inputs):
        """Return `activation(inputs @ kernel + bias)`."""
        outputs = ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        return self.activation(outputs) if self.activation is not None else outputs

    def compute_output_shape(self, input_shape):
        """Same leading axes, last axis `units`."""
        return (*tuple(input_shape)[:-1], self.units)

    def get_config(self) -> dict:
        """Constructor arguments, so `from_config` rebuilds the same layer."""
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "seed": self.seed,
        }
