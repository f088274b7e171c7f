"""Pieces shared by the graph loops: log structures, the counted step, Python logs.

Example:

>>> to_python_logs({"loss": tf.constant(0.5), "nonfinite_steps": tf.constant(2)})
{'loss': 0.5, 'nonfinite_steps': 2}
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

__all__ = ["XLA_ERRORS", "logs_spec", "loop_step", "specs_of", "to_python_logs", "zeros_like_spec"]

# What a failed XLA compilation raises (unsupported op, shape, or kernel).
XLA_ERRORS = (
    tf.errors.InvalidArgumentError,
    tf.errors.UnimplementedError,
    tf.errors.InternalError,
    tf.errors.NotFoundError,
)


def to_python_logs(logs: dict) -> dict[str, float]:
    """Tensors to Python floats (ints stay ints), as callbacks receive them."""
    out = {}
    for name, value in logs.items():
        value = value.numpy() if hasattr(value, "numpy") else value
        out[name] = int(value) if name == "nonfinite_steps" else float(value)
    return out


def logs_spec(step: Callable, batch_spec) -> dict:
    """Structure of the step's logs, found by tracing it once in a throwaway graph."""
    graph = tf.function(lambda batch: step(batch)).get_concrete_function(batch_spec)
    return {
        name: tf.TensorSpec(tensor.shape, tensor.dtype)
        for name, tensor in graph.structured_outputs.items()
    }


def zeros_like_spec(spec: dict, leading: tuple = ()) -> dict:
    """Zeros for every entry of a `{name: TensorSpec}`, with optional leading dimensions."""
    return {name: tf.zeros((*leading, *s.shape), s.dtype) for name, s in spec.items()}


def specs_of(tensors: dict) -> dict:
    """`{name: TensorSpec}` of a dict of tensors."""
    return {name: tf.TensorSpec(t.shape, t.dtype) for name, t in tensors.items()}


def loop_step(step: Callable, batch, count, logs: dict):
    """Run `step(batch)`; add its `nonfinite` flag to `count`; keep the logs' dtypes."""
    new = dict(step(batch))
    count += tf.cast(new.pop("nonfinite", 0), tf.int32)
    return count, {name: tf.cast(new[name], logs[name].dtype) for name in logs}
