"""Graph loops that run several training steps per `tf.function` call.

Per-call overhead dominates small models on CPU, so the Trainer amortises it:
`ArrayLoop` gathers batches by index from in-memory tensors and runs up to a
whole epoch in one (optionally XLA-compiled) `tf.while_loop`; `IteratorLoop`
pulls batches from a `tf.data` iterator inside the graph.

Both return the logs of the last step plus `nonfinite_steps` (how many steps
of the call had a non-finite loss or gradient) and the running results of the
step's trackers. For data so small that an epoch is a few steps,
`ArrayLoop.run_epochs` runs several whole epochs in one call and returns the
logs of each (the Trainer's `epochs_per_execution`).

Example:

>>> import keras, tensorflow as tf
>>> from tfcraft.training.steps import make_train_step
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> step = make_train_step(model, "sgd", loss="mse")
>>> loop = ArrayLoop(step, (tf.ones((8, 2)), tf.zeros((8, 1))), batch_size=4, seed=0)
>>> loop.set_epoch(0)
>>> logs, steps_done = loop.run(0, 2)
>>> steps_done, sorted(logs)
(2, ['grad_norm', 'learning_rate', 'loss', 'nonfinite_steps'])
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import tensorflow as tf

from tfcraft.training.data import epoch_permutation

__all__ = ["MAX_EPOCHS_PER_CALL", "ArrayLoop", "IteratorLoop", "to_python_logs"]

MAX_EPOCHS_PER_CALL = 64  # size of the per-epoch log buffers of `ArrayLoop.run_epochs`


def to_python_logs(logs: dict) -> dict[str, float]:
    """Tensors to Python floats (ints stay ints), as callbacks receive them."""
    out = {}
    for name, value in logs.items():
        value = value.numpy() if hasattr(value, "numpy") else value
        out[name] = int(value) if name == "nonfinite_steps" else float(value)
    return out


def _logs_spec(step: Callable, batch_spec) -> dict:
    """Structure of the step's logs, found by tracing it once in a throwaway graph."""
    graph = tf.function(lambda batch: step(batch)).get_concrete_function(batch_spec)
    return {
        name: tf.TensorSpec(tensor.shape, tensor.dtype)
        for name, tensor in graph.structured_outputs.items()
    }


def _zeros(spec: dict, leading: tuple = ()) -> dict:
    return {name: tf.zeros((*leading, *s.shape), s.dtype) for name, s in spec.items()}


def _specs_of(tensors: dict) -> dict:
    return {name: tf.TensorSpec(t.shape, t.dtype) for name, t in tensors.items()}


def _loop_step(step: Callable, batch, count, logs: dict):
    new = dict(step(batch))
    count += tf.cast(new.pop("nonfinite", 0), tf.int32)
    return count, {name: tf.cast(new[name], logs[name].dtype) for name in logs}


class ArrayLoop:
    """Runs steps over in-memory tensors, batches gathered from a per-epoch permutation.

    Args:
        step: A `TrainStep` (or any `step(batch) -> logs` with `results()`).
        tensors: `(x, y[, sample_weight])` tensors (nested structures allowed).
        batch_size: Examples per batch.
        seed: Seed of the per-epoch permutations.
        shuffle: If `False`, batches are taken in order.
        drop_remainder: If `True`, the last partial batch is skipped.
        jit_compile: Compile each call with XLA.
    """

    def __init__(
        self,
        step,
        tensors: tuple,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        drop_remainder: bool = False,
        jit_compile: bool = False,
    ) -> None:
        self.step = step
        # Variables, so a later `fit` on new arrays of the same shapes reuses the graphs.
        self.tensors = tf.nest.map_structure(
            lambda t: tf.Variable(t, trainable=False, name="data"), tensors
        )
        self.num_examples = int(tf.nest.flatten(tensors)[0].shape[0])
        self.requested_batch_size = batch_size
        self.drop_remainder = drop_remainder
        self.batch_size = min(batch_size, self.num_examples)
        self.seed = seed
        self.shuffle = shuffle
        self.num_full = self.num_examples // self.batch_size
        self.remainder = 0 if drop_remainder else self.num_examples % self.batch_size
        self.steps_per_epoch = self.num_full + (1 if self.remainder else 0)
        self._epoch = 0
        batch_spec = tf.nest.map_structure(
            lambda t: tf.TensorSpec((self.batch_size, *t.shape[1:]), t.dtype), tensors
        )
        self._spec = {k: v for k, v in _logs_spec(step, batch_spec).items() if k != "nonfinite"}
        self.build(jit_compile)

    def build(self, jit_compile: bool) -> None:
        """(Re)create the compiled functions, e.g. without XLA after a failure."""
        self.jit_compile = jit_compile
        # One (optionally XLA-compiled) graph per call: metric reset, the epoch's
        # permutation and the steps, so a tiny epoch pays one dispatch, not three.
        # A `partial`, not a bound method or closure: TF counts retraces per function
        # code, so several Trainers in one process would warn about retracing.
        self._call = tf.function(
            functools.partial(ArrayLoop._permute_and_run, self),
            input_signature=[
                tf.TensorSpec((), tf.int64),
                tf.TensorSpec((), tf.int64),
                tf.TensorSpec((), tf.int32),
                tf.TensorSpec((), tf.int32),
                tf.TensorSpec((), tf.bool),
                tf.TensorSpec((), tf.bool),
            ],
            jit_compile=jit_compile,
        )
        self._concrete = None
        self._epochs_call = tf.function(
            functools.partial(ArrayLoop._run_epochs, self),
            input_signature=[
                tf.TensorSpec((), tf.int64),
                tf.TensorSpec((), tf.int64),
                tf.TensorSpec((), tf.int32),
            ],
            jit_compile=jit_compile,
        )
        self._epochs_concrete = None

    def matches(self, tensors: tuple, batch_size: int, shuffle: bool, drop_remainder: bool) -> bool:
        """Whether this loop can run on `tensors` with these settings after `set_data`."""
        same_structure = tf.nest.map_structure(lambda _: 0, tensors) == tf.nest.map_structure(
            lambda _: 0, self.tensors
        )
        return (
            same_structure
            and all(
                a.shape == b.shape and a.dtype == b.dtype
                for a, b in zip(
                    tf.nest.flatten(tensors), tf.nest.flatten(self.tensors), strict=True
                )
            )
            and (batch_size, shuffle, drop_remainder)
            == (self.requested_batch_size, self.shuffle, self.drop_remainder)
        )

    def set_data(self, tensors: tuple) -> None:
        """Replace the data by arrays of the same shapes (see `matches`)."""
        tf.nest.map_structure(lambda v, t: v.assign(t), self.tensors, tensors)

    def set_epoch(self, epoch: int) -> None:
        """Use the batch order of `epoch` (recomputable from `(seed, epoch)`)."""
        self._epoch = epoch

    def _permute_and_run(self, epoch, seed, first_batch, num_full, with_last, reset):
        def reset_metrics():
            self.step.reset_metrics()
            return tf.constant(True)

        # Automatic control dependencies run the reset before the steps read the trackers.
        tf.cond(reset, reset_metrics, lambda: tf.constant(False))
        return self._chunk(self._order(epoch, seed), first_batch, num_full, with_last)

    def _order(self, epoch, seed):
        if self.shuffle:
            return epoch_permutation(self.num_examples, seed, epoch)
        return tf.range(self.num_examples, dtype=tf.int32)

    def _epoch_logs_spec(self) -> dict:
        """Structure of one epoch's logs: the last step's, the count, the trackers'."""
        results = tf.function(self.step.results).get_concrete_function().structured_outputs
        return {
            **self._spec,
            "nonfinite_steps": tf.TensorSpec((), tf.int32),
            **_specs_of(results),
        }

    def _run_epochs(self, first_epoch, seed, num_epochs):
        """Whole epochs from `first_epoch`; buffer row `j` holds epoch `first_epoch + j`."""

        def body(j, buffers):
            self.step.reset_metrics()  # ordered before the steps by automatic control deps
            epoch = first_epoch + tf.cast(j, tf.int64)
            logs = self._chunk(self._order(epoch, seed), 0, self.num_full, tf.constant(True))
            row = tf.reshape(j, (1, 1))
            return j + 1, {
                name: tf.tensor_scatter_nd_update(
                    buffer, row, tf.cast(logs[name], buffer.dtype)[tf.newaxis]
                )
                for name, buffer in buffers.items()
            }

        buffers = _zeros(self._epoch_logs_spec(), (MAX_EPOCHS_PER_CALL,))
        _, buffers = tf.while_loop(lambda j, _: j < num_epochs, body, (tf.constant(0), buffers))
        return buffers

    def _gather(self, order, start, size: int):
        # A gather, not tf.slice: XLA would treat a slice's `begin` as a compile-time
        # constant and recompile for every start position.
        indices = tf.gather(order, start + tf.range(size))
        return tf.nest.map_structure(lambda t: tf.gather(t, indices), self.tensors)

    def _chunk(self, order, first_batch, num_full, with_last):
        """`num_full` full batches from `first_batch`, then the partial one if asked."""

        def body(i, count, logs):
            start = (first_batch + i) * self.batch_size
            count, logs = _loop_step(
                self.step, self._gather(order, start, self.batch_size), count, logs
            )
            return i + 1, count, logs

        _, count, logs = tf.while_loop(
            lambda i, *_: i < num_full,
            body,
            (tf.constant(0), tf.constant(0), _zeros(self._spec)),
        )
        if self.remainder:
            last = self._gather(order, self.num_full * self.batch_size, self.remainder)
            count, logs = tf.cond(
                with_last,
                lambda: _loop_step(self.step, last, count, logs),
                lambda: (count, logs),
            )
        return {**logs, "nonfinite_steps": count, **self.step.results()}

    def run(self, position: int, num_steps: int, reset: bool = False) -> tuple[dict, int]:
        """Run up to `num_steps` steps from batch `position` of the epoch.

        With `reset=True` the step's running loss and metrics are reset first,
        inside the same graph call (the start of an epoch).

        Returns the logs (tensors) and the number of steps run.
        """
        num_full = max(0, min(num_steps, self.num_full - position))
        with_last = bool(self.remainder) and position + num_steps >= self.steps_per_epoch
        if self._concrete is None:
            # Calling the traced function directly skips tf.function's per-call
            # argument binding and cache lookup (~1-2 ms here, a tiny epoch's budget).
            self._concrete = self._call.get_concrete_function()
        logs = self._concrete(
            tf.constant(self._epoch, tf.int64),
            tf.constant(self.seed, tf.int64),
            tf.constant(position, tf.int32),
            tf.constant(num_full, tf.int32),
            tf.constant(with_last),
            tf.constant(reset),
        )
        return logs, num_full + int(with_last)

    def run_epochs(self, first_epoch: int, num_epochs: int) -> list[dict[str, float]]:
        """Run `num_epochs` whole epochs from `first_epoch` in one graph call.

        Each epoch starts with reset trackers and uses its own permutation, so
        the result equals `num_epochs` calls of `run(0, steps_per_epoch, reset=True)`.

        Returns one dict of Python logs per epoch, as `run` gives at an epoch's end.
        """
        if not 1 <= num_epochs <= MAX_EPOCHS_PER_CALL:
            raise ValueError(
                f"`num_epochs` must be in [1, {MAX_EPOCHS_PER_CALL}]. Received: {num_epochs}"
            )
        if self._epochs_concrete is None:
            self._epochs_concrete = self._epochs_call.get_concrete_function()
        buffers = self._epochs_concrete(
            tf.constant(first_epoch, tf.int64),
            tf.constant(self.seed, tf.int64),
            tf.constant(num_epochs, tf.int32),
        )
        columns = {name: buffer.numpy()[:num_epochs] for name, buffer in buffers.items()}
        return [to_python_logs({n: c[j] for n, c in columns.items()}) for j in range(num_epochs)]


class IteratorLoop:
    """Runs up to `num_steps` steps per call, pulling batches from a `tf.data` iterator.

    The iterator is consumed inside the graph; a call stops early when the
    iterator is exhausted and reports how many steps it ran.
    """

    def __init__(self, step, element_spec, jit_compile: bool = False) -> None:
        self.step = step
        self.jit_compile = jit_compile
        inner = tf.function(step, jit_compile=True) if jit_compile else step
        self._inner = inner
        self._spec = {k: v for k, v in _logs_spec(step, element_spec).items() if k != "nonfinite"}
        self._run = tf.function(self._steps)

    def _steps(self, iterator, num_steps):
        def body(i, done, count, logs):
            optional = iterator.get_next_as_optional()

            def run():
                new_count, new_logs = _loop_step(self._inner, optional.get_value(), count, logs)
                return i + 1, tf.constant(False), new_count, new_logs

            return tf.cond(optional.has_value(), run, lambda: (i, tf.constant(True), count, logs))

        steps, _, count, logs = tf.while_loop(
            lambda i, done, *_: tf.logical_and(i < num_steps, tf.logical_not(done)),
            body,
            (tf.constant(0), tf.constant(False), tf.constant(0), _zeros(self._spec)),
        )
        return {**logs, "nonfinite_steps": count, **self.step.results()}, steps

    def run(self, iterator, num_steps: int) -> tuple[dict, int]:
        """Run up to `num_steps` steps; returns logs and the number of steps run."""
        logs, steps = self._run(iterator, tf.constant(num_steps))
        return logs, int(steps)
