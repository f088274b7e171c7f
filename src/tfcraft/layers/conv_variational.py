"""`Conv2DFlipout`: a 2-D convolution with a Gaussian kernel posterior (Flipout)."""

from __future__ import annotations

import keras
from keras import ops

from tfcraft._validation import check_choice, check_positive_int
from tfcraft.layers.flipout import flipout
from tfcraft.layers.linear import last_dimension
from tfcraft.layers.variational import VARIATIONAL_ARGS_DOC, VariationalLayer

__all__ = ["Conv2DFlipout"]


@keras.saving.register_keras_serializable(package="tfcraft")
class Conv2DFlipout(VariationalLayer):
    """2-D convolution (channels last) with a mean-field Gaussian kernel and Flipout.

    `outputs = conv(inputs, loc) + conv(inputs * s_in, delta) * s_out` with one
    kernel perturbation `delta = scale * eps` per call and random signs per
    example and channel (`s_in`: input channels, `s_out`: filters), as in TFP's
    `Convolution2DFlipout`. The bias `bias_loc` is deterministic.

    Example:

    >>> import numpy as np
    >>> layer = Conv2DFlipout(4, 3, padding="same", seed=0)
    >>> layer(np.ones((2, 8, 8, 3), "float32")).shape
    TensorShape([2, 8, 8, 4])

    Args:
        filters: Positive integer, the number of output channels.
        kernel_size: Integer or pair of integers, the height and width of the kernel.
        strides: Integer or pair of integers. Defaults to `1`.
        padding: `"valid"` or `"same"`. Defaults to `"valid"`.

    References:
        Wen et al., "Flipout: Efficient Pseudo-Independent Weight Perturbations
        on Mini-Batches", ICLR 2018.
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.padding = check_choice("padding", padding, ("valid", "same"))
        self.input_spec = keras.InputSpec(ndim=4)

    def build(self, input_shape) -> None:
        """Create `kernel_loc`, `kernel_scale_raw` `(kh, kw, channels, filters)`, `bias_loc`."""
        channels = last_dimension(type(self).__name__, input_shape)
        self._add_kernel_posterior((*self.kernel_size, channels, self.filters))
        self._add_bias(self.filters)
        self.input_spec = keras.InputSpec(ndim=4, axes={-1: channels})

    def _convolve(self, inputs, kernel):
        return ops.conv(inputs, kernel, strides=self.strides, padding=self.padding)

    def _kernel_outputs(self, inputs, loc, scale):
        # Signs per example and channel: `s_in` over input channels, `s_out` over filters.
        batch, channels = ops.shape(inputs)[0], ops.shape(inputs)[-1]
        return flipout(
            inputs,
            loc,
            scale,
            self._convolve,
            (batch, 1, 1, channels),
            (batch, 1, 1, self.filters),
            self.seed_generator,
        )

    def compute_output_shape(self, input_shape):
        """`(batch, out_height, out_width, filters)`."""
        batch, *spatial, _ = tuple(input_shape)
        out = []
        for size, k, s in zip(spatial, self.kernel_size, self.strides, strict=True):
            if size is None:
                out.append(None)
            elif self.padding == "same":
                out.append(-(-size // s))
            else:
                out.append((size - k) // s + 1)
        return (batch, *out, self.filters)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
        }


Conv2DFlipout.__doc__ = (
    Conv2DFlipout.__doc__.rstrip()
    + "\n"
    + VARIATIONAL_ARGS_DOC
    + """
    Input shape:
        `(batch, height, width, channels)`.

    Output shape:
        `(batch, new_height, new_width, filters)`.
"""
)


def _pair(name: str, value) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise ValueError(
            f"Argument `{name}` must be an integer or a pair of integers. "
            f"Received: {name}={value!r}"
        )
    for item in pair:
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise ValueError(
                f"Argument `{name}` must hold positive integers. Received: {name}={value!r}"
            )
    return tuple(int(item) for item in pair)
