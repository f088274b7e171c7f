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

import tensorflow as tf

from tfcraft.training.data import epoch_permutation
from tfcraft.training.iterator_loop import IteratorLoop
from tfcraft.training.loop_parts import (
    logs_spec,
    loop_step,
    specs_of,
    to_python_logs,
    zeros_like_spec,
)

__all__ = ["MAX_EPOCHS_PER_CALL", "ArrayLoop", "IteratorLoop", "to_python_logs"]

MAX_EPOCHS_PER_CALL = 64  # size of the per-epoch log buffers of `ArrayLoop.run_epochs`


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
        self._spec = {k: v for k, v in logs_spec(step, batch_spec).items() if k != "nonfinite"}
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
        self._epochs_concrete: dict = {}  # per (evaluator, stoppers), see `run_epochs`

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
            **specs_of(results),
        }

    def _run_epochs(self, first_epoch, seed, num_epochs, evaluator, stoppers):
        """Whole epochs from `first_epoch`; buffer row `j` holds epoch `first_epoch + j`.

        After each epoch the `evaluator` (if any) adds `val_` logs and each
        stopper's `graph_epoch_end(epoch, logs)` may end the loop.
        """

        def body(j, stop, buffers):
            self.step.reset_metrics()  # ordered before the steps by automatic control deps
            epoch = first_epoch + tf.cast(j, tf.int64)
            logs = self._chunk(self._order(epoch, seed), 0, self.num_full, tf.constant(True))
            if evaluator is not None:
                val_logs = evaluator.evaluate_in_graph()
                logs = {**logs, **{f"val_{k}": v for k, v in val_logs.items()}}
            for stopper in stoppers:
                stop = tf.logical_or(stop, stopper.graph_epoch_end(epoch, logs))
            row = tf.reshape(j, (1, 1))
            return (
                j + 1,
                stop,
                {
                    name: tf.tensor_scatter_nd_update(
                        buffer, row, tf.cast(logs[name], buffer.dtype)[tf.newaxis]
                    )
                    for name, buffer in buffers.items()
                },
            )

        spec = self.epoch_logs_spec(evaluator)
        buffers = zeros_like_spec(spec, (MAX_EPOCHS_PER_CALL,))
        epochs_run, stop, buffers = tf.while_loop(
            lambda j, stop, _: tf.logical_and(j < num_epochs, tf.logical_not(stop)),
            body,
            (tf.constant(0), tf.constant(False), buffers),
        )
        return epochs_run, stop, buffers

    def epoch_logs_spec(self, evaluator=None) -> dict:
        """Names and specs of one epoch's logs, with the evaluator's `val_` ones."""
        spec = self._epoch_logs_spec()
        if evaluator is not None:
            results = tf.function(evaluator.step.results).get_concrete_function()
            spec.update({f"val_{k}": v for k, v in specs_of(results.structured_outputs).items()})
        return spec

    def _gather(self, order, start, size: int):
        # A gather, not tf.slice: XLA would treat a slice's `begin` as a compile-time
        # constant and recompile for every start position.
        indices = tf.gather(order, start + tf.range(size))
        return tf.nest.map_structure(lambda t: tf.gather(t, indices), self.tensors)

    def _chunk(self, order, first_batch, num_full, with_last):
        """`num_full` full batches from `first_batch`, then the partial one if asked."""

        def body(i, count, logs):
            start = (first_batch + i) * self.batch_size
            count, logs = loop_step(
                self.step, self._gather(order, start, self.batch_size), count, logs
            )
            return i + 1, count, logs

        _, count, logs = tf.while_loop(
            lambda i, *_: i < num_full,
            body,
            (tf.constant(0), tf.constant(0), zeros_like_spec(self._spec)),
        )
        if self.remainder:
            last = self._gather(order, self.num_full * self.batch_size, self.remainder)
            count, logs = tf.cond(
                with_last,
                lambda: loop_step(self.step, last, count, logs),
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

    def run_epochs(
        self, first_epoch: int, num_epochs: int, evaluator=None, stoppers: tuple = ()
    ) -> tuple[list[dict[str, float]], bool]:
        """Run up to `num_epochs` whole epochs from `first_epoch` in one graph call.

        Each epoch starts with reset trackers and uses its own permutation, so
        the result equals `num_epochs` calls of `run(0, steps_per_epoch, reset=True)`.
        An `ArrayEvaluator` adds each epoch's validation logs; a stopper (a
        callback with `graph_epoch_end`) may end the call after any epoch.

        Returns one dict of Python logs per epoch run, and whether a stopper stopped.
        """
        if not 1 <= num_epochs <= MAX_EPOCHS_PER_CALL:
            raise ValueError(
                f"`num_epochs` must be in [1, {MAX_EPOCHS_PER_CALL}]. Received: {num_epochs}"
            )
        key = (id(evaluator), tuple(id(s) for s in stoppers))
        concrete = self._epochs_concrete.get(key)
        if concrete is None:
            call = tf.function(
                functools.partial(
                    ArrayLoop._run_epochs, self, evaluator=evaluator, stoppers=tuple(stoppers)
                ),
                input_signature=[
                    tf.TensorSpec((), tf.int64),
                    tf.TensorSpec((), tf.int64),
                    tf.TensorSpec((), tf.int32),
                ],
                jit_compile=self.jit_compile,
            )
            concrete = self._epochs_concrete[key] = call.get_concrete_function()
        epochs_run, stop, buffers = concrete(
            tf.constant(first_epoch, tf.int64),
            tf.constant(self.seed, tf.int64),
            tf.constant(num_epochs, tf.int32),
        )
        epochs_run = int(epochs_run)
        columns = {name: buffer.numpy()[:epochs_run] for name, buffer in buffers.items()}
        logs = [to_python_logs({n: c[j] for n, c in columns.items()}) for j in range(epochs_run)]
        return logs, bool(stop)
