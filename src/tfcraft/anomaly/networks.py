"""Keras 3 networks the neural detectors are built from (MADE, MLP).

`tfp.bijectors.AutoregressiveNetwork` is a Keras 2 (`tf_keras`) layer, so it
cannot live in a Keras 3 model; `MaskedAutoregressiveNetwork` is the Keras 3
MADE (Germain et al. 2015) tfcraft feeds to `tfp.bijectors.MaskedAutoregressiveFlow`
as its `shift_and_log_scale_fn`.

Example:

>>> import numpy as np
>>> made = MaskedAutoregressiveNetwork(event_size=3, hidden_units=(8,))
>>> out = made(np.zeros((2, 3), "float32"))
>>> tuple(out.shape)
(2, 3, 2)
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = ["MaskedAutoregressiveNetwork"]

LOG_SCALE_BOUND = 5.0


@keras.saving.register_keras_serializable(package="tfcraft")
class MaskedAutoregressiveNetwork(keras.layers.Layer):
    """MADE: output `j` (a shift and a log-scale) depends only on inputs `< j`.

    The log-scale is softly bounded to `(-5, 5)` so a flow cannot blow up.

    Args:
        event_size: Number of features `d`.
        hidden_units: Widths of the masked hidden layers.
        activation: Hidden activation.
        seed: Seed of the kernel initialiser.

    Returns (from `call`):
        Tensor `(n, d, 2)`: `[..., 0]` shift, `[..., 1]` log-scale.
    """

    def __init__(
        self,
        event_size: int,
        hidden_units: tuple[int, ...] = (64, 64),
        activation: str = "relu",
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(event_size, bool) or not isinstance(event_size, int) or event_size < 1:
            raise ValueError(
                "Argument `event_size` must be a positive integer. "
                f"Received: event_size={event_size!r}"
            )
        self.event_size = event_size
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = keras.activations.get(activation)
        self._activation_name = activation
        self.seed = seed

    def build(self, input_shape) -> None:
        """Create the masked weights for `event_size` inputs."""
        d = self.event_size
        degrees = [np.arange(1, d + 1)]
        for units in self.hidden_units:  # hidden degrees cycle through 1..d-1
            degrees.append(np.arange(units) % max(d - 1, 1) + 1)
        self._kernels, self._biases, self._masks = [], [], []
        sizes = [d, *self.hidden_units]
        for index in range(len(self.hidden_units)):
            mask = (degrees[index + 1][None, :] >= degrees[index][:, None]).astype("float32")
            self._add_dense(index, sizes[index], sizes[index + 1], mask)
        out_degrees = np.repeat(np.arange(1, d + 1), 2)
        last = degrees[-1]
        mask = (out_degrees[None, :] > last[:, None]).astype("float32")
        self._add_dense(len(self.hidden_units), sizes[-1], 2 * d, mask, zeros=True)

    def _add_dense(self, index: int, fan_in: int, fan_out: int, mask: np.ndarray, zeros=False):
        seed = None if self.seed is None else self.seed + index
        initializer = "zeros" if zeros else keras.initializers.GlorotUniform(seed=seed)
        self._kernels.append(
            self.add_weight(
                name=f"kernel_{index}", shape=(fan_in, fan_out), initializer=initializer
            )
        )
        self._biases.append(
            self.add_weight(name=f"bias_{index}", shape=(fan_out,), initializer="zeros")
        )
        self._masks.append(mask)  # NumPy: a constant of each traced graph

    def call(self, inputs):
        """Shift and log-scale of each dimension, `(batch, event_size, 2)`."""
        h = inputs
        last = len(self._kernels) - 1
        for index, (kernel, bias, mask) in enumerate(
            zip(self._kernels, self._biases, self._masks, strict=True)
        ):
            h = ops.matmul(h, kernel * ops.convert_to_tensor(mask, kernel.dtype)) + bias
            if index < last:
                h = self.activation(h)
        h = ops.reshape(h, (-1, self.event_size, 2))
        shift = h[..., 0]
        log_scale = LOG_SCALE_BOUND * ops.tanh(h[..., 1] / LOG_SCALE_BOUND)
        return ops.stack([shift, log_scale], axis=-1)

    def compute_output_shape(self, input_shape):
        """`(batch, event_size, 2)`."""
        return (input_shape[0], self.event_size, 2)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "event_size": self.event_size,
            "hidden_units": list(self.hidden_units),
            "activation": self._activation_name,
            "seed": self.seed,
        }
