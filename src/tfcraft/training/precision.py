"""Mixed precision for the Trainer: the Keras dtype policy, float32 outputs, the loss scale.

`Trainer(..., mixed_precision="mixed_float16" | "mixed_bfloat16")`:

- builds a model given as a function under that Keras dtype policy (or checks
  that a built model uses it), and keeps the output layer in float32, so the
  loss is computed in float32 (the Keras mixed-precision guide's advice);
- for float16 wraps the optimizer in `keras.optimizers.LossScaleOptimizer`.
  The step multiplies the loss by its dynamic scale before the backward pass
  and divides the gradients by it right after (the scale is a power of two, so
  both are exact), hence clipping and the logged `grad_norm` see the unscaled
  gradients. A step whose scaled gradients overflow is skipped and halves the
  scale; `growth_steps` finite steps in a row double it (Keras' rule, on Keras'
  own `dynamic_scale` and `step_counter` variables, so they are checkpointed).
  The scale is logged as `loss_scale`.

bfloat16 has float32's exponent range and needs no loss scale.

Example:

>>> policy_name("mixed_bfloat16"), needs_loss_scale("mixed_bfloat16")
('mixed_bfloat16', False)
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import keras
import tensorflow as tf

from tfcraft.layers.walk import iter_layers, output_layer

__all__ = [
    "POLICIES",
    "apply_growth",
    "check_model",
    "dtype_policy",
    "halve_scale",
    "is_loss_scaled",
    "needs_loss_scale",
    "policy_name",
    "wrap_optimizer",
]

POLICIES = ("mixed_float16", "mixed_bfloat16")


def policy_name(mixed_precision: object) -> str | None:
    """Validate the Trainer's `mixed_precision` argument (`None`, or one of `POLICIES`)."""
    if mixed_precision is None or mixed_precision in POLICIES:
        return mixed_precision
    raise ValueError(
        f"Argument `mixed_precision` must be None, {POLICIES[0]!r} or {POLICIES[1]!r}. "
        f"Received: mixed_precision={mixed_precision!r}"
    )


def needs_loss_scale(policy: str | None) -> bool:
    """Whether the policy computes in float16 (which underflows without a loss scale)."""
    return policy == "mixed_float16"


def is_loss_scaled(optimizer) -> bool:
    """Whether `optimizer` is a `keras.optimizers.LossScaleOptimizer`."""
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


@contextlib.contextmanager
def dtype_policy(policy: str | None) -> Iterator[None]:
    """Set Keras' global dtype policy inside the block (nothing if `policy` is None)."""
    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def check_model(model, policy: str | None, warn: bool = True) -> None:
    """Check that a built model computes in `policy`; put its output layer in float32.

    Raises:
        ValueError: no layer of the model uses the policy (it was built in float32).
    """
    if policy is None or not isinstance(model, keras.layers.Layer):
        return
    names = {
        layer.dtype_policy.name
        for layer in iter_layers(model, include_self=False)
        if isinstance(layer, keras.layers.Layer) and layer.weights
    }
    if policy not in names:
        raise ValueError(
            f"`mixed_precision={policy!r}`, but the model's layers use the dtype "
            f"policies {sorted(names)}. Build the model under "
            f"`keras.config.set_dtype_policy({policy!r})`, or pass a function that builds "
            "it (`Trainer(build_model, ...)`), which the Trainer calls under the policy."
        )
    last = output_layer(model)
    if last is not None and last.dtype_policy.compute_dtype != "float32":
        # Keras' advice: the output (softmax, logits fed to the loss) in float32.
        last.dtype_policy = "float32"
        if warn:
            warnings.warn(
                f"The output layer {last.name!r} now computes in float32 (it was "
                f"{policy!r}), so the loss is computed in float32.",
                stacklevel=3,
            )


def wrap_optimizer(optimizer, policy: str | None):
    """`optimizer` wrapped in a `LossScaleOptimizer` for float16, else unchanged."""
    if needs_loss_scale(policy) and not is_loss_scaled(optimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def halve_scale(optimizer) -> None:
    """An overflow: halve the loss scale and restart the growth count (graph code)."""
    optimizer.dynamic_scale.assign(optimizer.dynamic_scale * 0.5)
    optimizer.step_counter.assign(tf.zeros_like(optimizer.step_counter))


def apply_growth(optimizer) -> None:
    """After a finite update: double the scale every `dynamic_growth_steps` in a row."""

    def grow():
        optimizer.step_counter.assign(tf.zeros_like(optimizer.step_counter))
        optimizer.dynamic_scale.assign(optimizer.dynamic_scale * 2.0)
        return tf.constant(True)

    def count():
        optimizer.step_counter.assign_add(tf.ones_like(optimizer.step_counter))
        return tf.constant(False)

    tf.cond(tf.equal(optimizer.step_counter, optimizer.dynamic_growth_steps - 1), grow, count)
