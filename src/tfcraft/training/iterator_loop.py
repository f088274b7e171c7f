"""`IteratorLoop`: training steps on batches pulled from a `tf.data` iterator inside the graph.

The iterator is consumed inside one graph call of up to `num_steps` steps.
With `jit_compile=True` the loop pulls up to `chunk_size` batches of the
first batch's shape, stacks them and runs them as one XLA-compiled
`while_loop` (XLA fuses the step but cannot hold the iterator, and calling an
XLA step once per batch pays a launch per batch). A batch of another shape
(the partial last batch) ends the chunk and runs after it, without XLA, so the
steps keep the dataset's order exactly. Nothing is cached: every epoch pulls
the dataset's own (shuffled, augmented) batches.

Example:

>>> import keras, tensorflow as tf
>>> from tfcraft.training.steps import make_train_step
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> step = make_train_step(model, "sgd", loss="mse")
>>> dataset = tf.data.Dataset.from_tensor_slices((tf.ones((10, 2)), tf.zeros((10, 1)))).batch(4)
>>> loop = IteratorLoop(step, dataset.element_spec, next(iter(dataset)), jit_compile=True)
>>> logs, steps_done = loop.run(iter(dataset), 8)
>>> steps_done  # two full batches in one XLA chunk, then the partial one
3
"""

from __future__ import annotations

import functools
import queue
import sys
import threading
import time
import warnings

import tensorflow as tf

from tfcraft.training.loop_parts import XLA_ERRORS, logs_spec, loop_step, zeros_like_spec

__all__ = ["RETIRED_ITERATORS", "IteratorLoop", "RetiredIterators"]

# Bytes of stacked batches per XLA chunk; at most `_MAX_CHUNK` batches.
_CHUNK_BYTES = 16 * 2**20
_MAX_CHUNK = 32


def _chunk_size(sample) -> int:
    batch_bytes = sum(
        max(1, t.shape.num_elements()) * t.dtype.size for t in tf.nest.flatten(sample)
    )
    return max(1, min(_MAX_CHUNK, _CHUNK_BYTES // max(1, batch_bytes)))


def _same_shape(value, full_spec) -> tf.Tensor:
    checks = [
        tf.reduce_all(tf.equal(tf.shape(v), s.shape.as_list()))
        for v, s in zip(tf.nest.flatten(value), tf.nest.flatten(full_spec), strict=True)
    ]
    return tf.reduce_all(tf.stack(checks))


def _fit_to(value, shape: tf.TensorShape) -> tf.Tensor:
    """`value` padded or cut to `shape`: a no-op for a batch of that shape.

    TF may run both branches of a stateless `tf.cond` (here: full batch or
    not), so the full-batch branch must not fail on a partial batch it discards.
    """
    full = tf.constant(shape.as_list(), tf.int32)
    missing = tf.maximum(full - tf.shape(value, out_type=tf.int32), 0)
    padded = tf.pad(value, tf.stack([tf.zeros_like(missing), missing], axis=1))
    return tf.reshape(tf.slice(padded, tf.zeros_like(full), full), shape)


class IteratorLoop:
    """Runs up to `num_steps` steps per call, pulling batches from a `tf.data` iterator.

    Args:
        step: A `TrainStep` (or any `step(batch) -> logs` with `results()`).
        element_spec: The dataset's `element_spec`.
        sample: One batch of the dataset (its shapes are the XLA chunk's shapes).
        jit_compile: Run chunks of same-shape batches in one XLA call; falls
            back without XLA (and warns) if the step does not compile.
    """

    def __init__(self, step, element_spec, sample, jit_compile: bool = False) -> None:
        self.step = step
        self.element_spec = element_spec
        self._spec = {k: v for k, v in logs_spec(step, element_spec).items() if k != "nonfinite"}
        self.full_spec = tf.nest.map_structure(
            lambda t: tf.TensorSpec(t.shape, t.dtype), tf.nest.map_structure(tf.constant, sample)
        )
        self.chunk_size = _chunk_size(self.full_spec)
        self.jit_compile = jit_compile and self._xla_compiles()
        # A `partial`, not a bound method: TF counts retraces per function code.
        body = IteratorLoop._chunked_steps if self.jit_compile else IteratorLoop._plain_steps
        self._run = tf.function(functools.partial(body, self))

    def matches(self, element_spec, sample) -> bool:
        """Whether this loop runs a dataset of `element_spec` whose batches look like `sample`."""
        shapes = tf.nest.map_structure(lambda t: tuple(tf.shape(t).numpy()), sample)
        return element_spec == self.element_spec and shapes == tf.nest.map_structure(
            lambda s: tuple(s.shape.as_list()), self.full_spec
        )

    # ------------------------------------------------------------ XLA chunks
    def _xla_compiles(self) -> bool:
        """Compile the chunk once on zeros with 0 steps (no update runs), before any data."""
        self._xla_chunk = tf.function(
            functools.partial(IteratorLoop._run_chunk, self), jit_compile=True
        )
        stacked = tf.nest.map_structure(
            lambda s: tf.zeros((self.chunk_size, *s.shape), s.dtype), self.full_spec
        )
        try:
            self._xla_chunk(stacked, tf.constant(0), tf.constant(0), zeros_like_spec(self._spec))
        except XLA_ERRORS as error:
            warnings.warn(
                f"XLA compilation failed, continuing without jit_compile "
                f"({type(error).__name__}: {str(error)[:200]}).",
                stacklevel=4,
            )
            return False
        return True

    def _run_chunk(self, stacked, num, count, logs):
        def body(i, count, logs):
            batch = tf.nest.map_structure(lambda t: tf.gather(t, i), stacked)
            count, logs = loop_step(self.step, batch, count, logs)
            return i + 1, count, logs

        _, count, logs = tf.while_loop(lambda i, *_: i < num, body, (tf.constant(0), count, logs))
        return count, logs

    def _pull(self, iterator, want):
        """Up to `want` full-shape batches, stacked and zero-padded to `chunk_size`.

        Returns `(stacked, num, leftover, has_leftover, ended)`: `leftover` is a
        batch of another shape that ended the chunk (it runs after the chunk).
        """
        arrays = [
            tf.TensorArray(s.dtype, size=self.chunk_size, element_shape=s.shape)
            for s in tf.nest.flatten(self.full_spec)
        ]
        empty = tf.nest.map_structure(
            lambda s: tf.zeros((0, *s.shape[1:]), s.dtype), self.full_spec
        )
        invariants = tf.nest.map_structure(
            lambda s: tf.TensorShape([None, *s.shape[1:]]), self.full_spec
        )

        def body(i, ended, has_leftover, leftover, arrays):
            optional = iterator.get_next_as_optional()

            def got():
                value = optional.get_value()

                def write():
                    leaves = zip(arrays, tf.nest.flatten(value), self.full_spec_leaves, strict=True)
                    written = [a.write(i, _fit_to(v, s.shape)) for a, v, s in leaves]
                    return i + 1, tf.constant(False), tf.constant(False), leftover, written

                def keep():
                    return i, tf.constant(False), tf.constant(True), value, arrays

                return tf.cond(_same_shape(value, self.full_spec), write, keep)

            return tf.cond(
                optional.has_value(),
                got,
                lambda: (i, tf.constant(True), has_leftover, leftover, arrays),
            )

        i, ended, has_leftover, leftover, arrays = tf.while_loop(
            lambda i, ended, has_leftover, *_: tf.logical_and(
                i < want, tf.logical_not(tf.logical_or(ended, has_leftover))
            ),
            body,
            (tf.constant(0), tf.constant(False), tf.constant(False), empty, arrays),
            shape_invariants=(
                tf.TensorShape([]),
                tf.TensorShape([]),
                tf.TensorShape([]),
                invariants,
                [tf.TensorShape(None)] * len(arrays),
            ),
        )
        stacked = tf.nest.pack_sequence_as(self.full_spec, [a.stack() for a in arrays])
        return stacked, i, leftover, has_leftover, ended

    @functools.cached_property
    def full_spec_leaves(self) -> list:
        """The flat leaves of `full_spec`."""
        return tf.nest.flatten(self.full_spec)

    def _chunked_steps(self, iterator, num_steps):
        def body(done, ended, count, logs):
            want = tf.minimum(self.chunk_size, num_steps - done)
            stacked, num, leftover, has_leftover, ended = self._pull(iterator, want)
            count, logs = self._xla_chunk(stacked, num, count, logs)
            count, logs = tf.cond(
                has_leftover,
                lambda: loop_step(self.step, leftover, count, logs),
                lambda: (count, logs),
            )
            return done + num + tf.cast(has_leftover, tf.int32), ended, count, logs

        done, _, count, logs = tf.while_loop(
            lambda done, ended, *_: tf.logical_and(done < num_steps, tf.logical_not(ended)),
            body,
            (tf.constant(0), tf.constant(False), tf.constant(0), zeros_like_spec(self._spec)),
        )
        return {**logs, "nonfinite_steps": count, **self.step.results()}, done

    # ------------------------------------------------------------- no XLA
    def _plain_steps(self, iterator, num_steps):
        def body(i, done, count, logs):
            optional = iterator.get_next_as_optional()

            def run():
                new_count, new_logs = loop_step(self.step, optional.get_value(), count, logs)
                return i + 1, tf.constant(False), new_count, new_logs

            return tf.cond(optional.has_value(), run, lambda: (i, tf.constant(True), count, logs))

        steps, _, count, logs = tf.while_loop(
            lambda i, done, *_: tf.logical_and(i < num_steps, tf.logical_not(done)),
            body,
            (tf.constant(0), tf.constant(False), tf.constant(0), zeros_like_spec(self._spec)),
        )
        return {**logs, "nonfinite_steps": count, **self.step.results()}, steps

    def run(self, iterator, num_steps: int) -> tuple[dict, int]:
        """Run up to `num_steps` steps; returns logs (tensors) and the number of steps run."""
        logs, steps = self._run(iterator, tf.constant(min(num_steps, 2**31 - 1)))
        return logs, int(steps)


class RetiredIterators:
    """Lets go of finished iterators on a background thread.

    Deleting a `tf.data` iterator blocks until its pipeline's background
    threads wind down: measured here 0.03-0.2 s right after the last batch,
    and 0.5-1.3 s for one that finished a second earlier, which was most of
    the cost of a one-epoch `fit` call. `retire` hands the iterator to a
    daemon thread that drops it there, so training goes on meanwhile (the
    wait is idle, not compute). `join()` waits until every retired iterator
    is gone.

    Example:

    >>> import tensorflow as tf
    >>> retired = RetiredIterators()
    >>> retired.retire(iter(tf.data.Dataset.range(3)))
    >>> retired.join()
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._lock = threading.Condition()

    def retire(self, iterator) -> None:
        """Drop `iterator` (the caller's last reference) on the background thread."""
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._drop_forever, name="tfcraft-retired-iterators", daemon=True
                )
                self._thread.start()
        self._queue.put(iterator)

    def join(self) -> None:
        """Wait until every retired iterator has been deleted."""
        with self._lock:
            self._lock.wait_for(lambda: self._pending == 0)

    def _drop_forever(self) -> None:
        while True:
            iterator = self._queue.get()
            # Wait (briefly) until the caller has dropped its reference, so that
            # the blocking deletion happens here, off the training thread.
            for _ in range(100):
                if sys.getrefcount(iterator) <= 2:  # this name and the call's argument
                    break
                time.sleep(0.01)
            del iterator
            with self._lock:
                self._pending -= 1
                self._lock.notify_all()


# One per process: every Trainer hands its finished iterators to this one thread.
RETIRED_ITERATORS = RetiredIterators()
