"""Evaluation and prediction graphs the Trainer builds once and reuses across calls.

- `ArrayEvaluator`: loss and metrics over in-memory tensors in one graph call
  (optionally XLA), batches taken in order by index. It can also run inside
  the training graph (`evaluate_in_graph`), so tiny data with validation runs
  several epochs, each with its validation pass, in one call.
- `DatasetEvaluator`: the same over a `tf.data.Dataset`, iterated in the graph.
- `Predictor`: the model's outputs batch by batch through one cached
  `tf.function` (no retracing when called in a loop).

Example:

>>> import keras, tensorflow as tf
>>> from tfcraft.training.steps import make_eval_step
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="ones")])
>>> step = make_eval_step(model, loss="mse")
>>> evaluator = ArrayEvaluator(step, (tf.ones((5, 2)), tf.zeros((5, 1))), batch_size=2)
>>> evaluator.run()
{'loss': 4.0}
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from tfcraft.training.data import ArrayData, features_only
from tfcraft.training.loop_parts import to_python_logs
from tfcraft.training.steps import TestStep, call_model

__all__ = ["ArrayEvaluator", "DatasetEvaluator", "Predictor", "same_arrays"]


def same_arrays(tensors, variables) -> bool:
    """Whether `tensors` have the structure, shapes and dtypes of `variables`."""
    same_structure = tf.nest.map_structure(lambda _: 0, tensors) == tf.nest.map_structure(
        lambda _: 0, variables
    )
    return same_structure and all(
        a.shape == b.shape and a.dtype == b.dtype
        for a, b in zip(tf.nest.flatten(tensors), tf.nest.flatten(variables), strict=True)
    )


class ArrayEvaluator:
    """Evaluates a `TestStep` over resident tensors, in order, in one graph call.

    Args:
        step: A `TestStep` (see `tfcraft.training.steps.make_eval_step`).
        tensors: `(x, y[, sample_weight])` tensors.
        batch_size: Examples per batch.
        jit_compile: Compile the pass with XLA.
    """

    def __init__(self, step: TestStep, tensors: tuple, batch_size: int, jit_compile=False):
        self.step = step
        # Variables, so new arrays of the same shapes reuse the graph (`set_data`).
        self.tensors = tf.nest.map_structure(
            lambda t: tf.Variable(t, trainable=False, name="validation_data"), tensors
        )
        self.requested_batch_size = batch_size
        num_examples = int(tf.nest.flatten(tensors)[0].shape[0])
        self.batch_size = min(batch_size, num_examples)
        self.num_full, self.remainder = divmod(num_examples, self.batch_size)
        self.jit_compile = jit_compile
        self._call = tf.function(
            functools.partial(ArrayEvaluator.evaluate_in_graph, self), jit_compile=jit_compile
        )

    def matches(self, step: TestStep, tensors: tuple, batch_size: int) -> bool:
        """Whether `set_data(tensors)` lets this evaluator serve the request."""
        return (
            step is self.step
            and batch_size == self.requested_batch_size
            and same_arrays(tensors, self.tensors)
        )

    def set_data(self, tensors: tuple) -> None:
        """Replace the data by arrays of the same shapes."""
        tf.nest.map_structure(lambda v, t: v.assign(t), self.tensors, tensors)

    def _batch(self, start, size: int):
        indices = start + tf.range(size)  # a gather: XLA would fix a slice's start
        return tf.nest.map_structure(lambda t: tf.gather(t, indices), self.tensors)

    def evaluate_in_graph(self) -> dict[str, tf.Tensor]:
        """Reset the trackers, run every batch, return their results (graph code)."""
        self.step.reset_metrics()

        def body(i):
            self.step(self._batch(i * self.batch_size, self.batch_size))
            return i + 1

        tf.while_loop(lambda i: i < self.num_full, body, (tf.constant(0),))
        if self.remainder:
            self.step(self._batch(self.num_full * self.batch_size, self.remainder))
        return self.step.results()

    def run(self) -> dict[str, float]:
        """One evaluation pass; Python floats."""
        return to_python_logs(self._call())


class DatasetEvaluator:
    """Evaluates a `TestStep` over a `tf.data.Dataset` in one graph call."""

    def __init__(self, step: TestStep) -> None:
        self.step = step
        self._call = tf.function(functools.partial(DatasetEvaluator._evaluate, self))

    def _evaluate(self, dataset):
        self.step.reset_metrics()
        for batch in dataset:
            self.step(batch)
        return self.step.results()

    def run(self, dataset: tf.data.Dataset) -> dict[str, float]:
        """One pass over `dataset`; Python floats."""
        return to_python_logs(self._call(dataset))


class Predictor:
    """Model outputs batch by batch through one cached `tf.function`.

    The function is traced once per batch shape (`reduce_retracing`), so
    calling `predict` in a loop (an agent acting, a detector scoring) reuses it.
    """

    def __init__(self, model) -> None:
        self.model = model
        self._call = tf.function(functools.partial(Predictor._forward, self), reduce_retracing=True)

    def _forward(self, inputs):
        return call_model(self.model, inputs, training=False)

    def run(self, data, batch_size: int):
        """Outputs on `data` (`ArrayData` or a `DatasetData`), concatenated as NumPy."""
        if isinstance(data, ArrayData):
            x = data.tensors[0]
            size = int(tf.nest.flatten(x)[0].shape[0])
            batches = (
                tf.nest.map_structure(lambda t, s=start: t[s : s + batch_size], x)
                for start in range(0, size, batch_size)
            )
        else:
            batches = iter(data.dataset.map(features_only))
        outputs = [self._call(batch) for batch in batches]
        return tf.nest.map_structure(
            lambda *parts: np.concatenate([np.asarray(p) for p in parts]), *outputs
        )
