"""`tf.data` input, evaluation and custom steps under a `tf.distribute` strategy.

A `tf.data.Dataset` of *global* batches goes through
`strategy.distribute_datasets_from_function(fn)`; `fn(input_context)`
(`per_worker_dataset`) builds each worker's dataset from the user's:

- every global batch of `B` rows is cut into `num_replicas_in_sync`
  contiguous parts, part `r` for replica `r` (replica ids are worker-major:
  worker `i` holds replicas `i * L ... i * L + L - 1`, `L` replicas per
  worker). A full batch gives each replica
  `input_context.get_per_replica_batch_size(B)` rows when `B` divides evenly;
  otherwise (and for the partial last batch) the parts differ by at most a
  row, and may be empty;
- worker `input_pipeline_id` keeps only its replicas' parts, in replica
  order: the DATA auto-shard policy applied to the rows of each batch. Every
  worker runs the whole input pipeline, which must give every worker the
  same batches (a deterministic pipeline; `Dataset.shuffle(seed=...)` only if
  every worker sets the same global seed too), and feeds only its own rows
  to its replicas. Together the workers train on
  every row of every batch exactly once per epoch, in the dataset's order,
  and each step sees exactly the global batch one device would see; hence
  the results equal one device's (tested to 1e-5).

The loop pulls the per-replica parts from the distributed iterator and runs
the step on them with `strategy.run` (`ShardedStep` -> `ReplicatedLossFn`).
The step's running loss and metrics need the global batch's size and, for
metrics, its targets: `sharded_batch` all-reduces the replicas' sizes (and
gathers the targets into a fixed-size buffer), so the trackers are updated
once per global batch, as on one device. Evaluation over a dataset runs the
same way (`ShardedEvaluator`); over arrays each replica evaluates its slice.

A custom `train_step(model, batch)` runs on every replica in `strategy.run`
(`ReplicatedTrainStep`) on that replica's part of the global batch; it must
average its loss over the global batch
(`tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size())`)
and update through a Keras optimizer created under `strategy.scope()` (which
sums the replicas' gradients). Its logs are summed over the replicas.

Example (one device: the helper works without a strategy too):

>>> import keras, numpy as np
>>> from tfcraft.training import Trainer
>>> from tfcraft.training.distribute import global_batch_size
>>> class Step(tf.Module):
...     def __init__(self, model):
...         super().__init__()
...         self.optimizer = keras.optimizers.SGD(0.1)
...         self.optimizer.build(model.trainable_variables)
...     def __call__(self, model, batch):
...         x, y = batch
...         with tf.GradientTape() as tape:
...             per_example = tf.square(model(x, training=True) - y)[:, 0]
...             loss = tf.nn.compute_average_loss(per_example, global_batch_size())
...         grads = tape.gradient(loss, model.trainable_variables)
...         self.optimizer.apply_gradients(zip(grads, model.trainable_variables))
...         return {"loss": loss}
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> trainer = Trainer(model, optimizer=None, train_step=Step(model), seed=0)
>>> xy = (np.ones((8, 2), "float32"), np.ones((8, 1), "float32"))
>>> len(trainer.fit(xy, epochs=2, batch_size=4, verbose=0).history["loss"])
2
"""

from __future__ import annotations

import functools
import threading

import tensorflow as tf

from tfcraft.training.data import ArrayData
from tfcraft.training.evaluation import DatasetEvaluator
from tfcraft.training.iterator_loop import IteratorLoop
from tfcraft.training.planning import LoopCache
from tfcraft.training.replica_step import ShardedBatch
from tfcraft.training.steps import unpack_batch

__all__ = [
    "DistributedLoopCache",
    "ReplicatedTrainStep",
    "ShardedEvaluator",
    "ShardedStep",
    "global_batch_size",
    "per_worker_dataset",
    "replica_bounds",
    "sharded_batch",
]

_SUM = tf.distribute.ReduceOp.SUM
_CURRENT = threading.local()  # per replica thread (MirroredStrategy runs replicas in threads)


def replica_bounds(replica, num_replicas: int, size):
    """Rows `[low, high)` of a global batch of `size` rows that `replica` holds.

    Example:

    >>> [replica_bounds(r, 2, 5) for r in range(2)]
    [(0, 2), (2, 5)]
    """
    return replica * size // num_replicas, (replica + 1) * size // num_replicas


def per_worker_dataset(dataset: tf.data.Dataset, input_context) -> tf.data.Dataset:
    """The dataset of worker `input_context.input_pipeline_id`: its replicas' rows of each batch.

    Each element of `dataset` is one global batch; the result yields, for each
    of them, one part per local replica (in replica order), as
    `distribute_datasets_from_function` hands them out. See the module docs.

    Example:

    >>> context = tf.distribute.InputContext(
    ...     num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    >>> batches = tf.data.Dataset.range(10).batch(4)
    >>> [b.numpy().tolist() for b in per_worker_dataset(batches, context)]
    [[2, 3], [6, 7], [9]]
    """
    replicas = input_context.num_replicas_in_sync
    local = replicas // input_context.num_input_pipelines
    first = input_context.input_pipeline_id * local
    is_tuple = isinstance(dataset.element_spec, tuple)
    options = tf.data.Options()
    # Sharding is done here, by rows of each batch; tf.data must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    if replicas == 1:
        return dataset.with_options(options)
    if local == 1:  # one part per batch: a map (a flat_map per batch costs more)

        def only_part(*element):
            batch = element if is_tuple else element[0]
            size = tf.shape(tf.nest.flatten(batch)[0], out_type=tf.int64)[0]
            low, high = replica_bounds(first, replicas, size)
            return tf.nest.map_structure(lambda t: t[low:high], batch)

        return dataset.map(only_part).with_options(options)

    def parts(*element):
        batch = element if is_tuple else element[0]
        size = tf.shape(tf.nest.flatten(batch)[0], out_type=tf.int64)[0]

        def part(j):
            low, high = replica_bounds(first + j, replicas, size)
            return tf.nest.map_structure(lambda t: t[low:high], batch)

        return tf.data.Dataset.range(local).map(part)

    return dataset.flat_map(parts).with_options(options)


def _batch_rows(batch) -> int:
    return int(tf.shape(tf.nest.flatten(unpack_batch(batch)[0])[0])[0])


def _pad_rows(value, low, rows: int):
    """`value` placed at rows `[low, low + len)` of `rows` zero rows (float32 for the sum)."""

    def pad(t):
        t = tf.cast(t, tf.float32)
        after = rows - low - tf.shape(t)[0]
        return tf.pad(t, [[low, after]] + [[0, 0]] * (t.shape.rank - 1))

    return tf.nest.map_structure(pad, value)


def sharded_batch(strategy, per_replica, rows: int | None, gather_targets: bool) -> ShardedBatch:
    """The step's view of one global batch whose parts live on the replicas.

    All-reduces each replica's number of rows (by replica id) and, with
    `gather_targets`, gathers `y` and `sample_weight` into `rows` rows (the
    largest global batch), so metrics see the global batch's targets.
    """

    def replica(batch):
        context = tf.distribute.get_replica_context()
        num_replicas = context.num_replicas_in_sync
        replica_id = tf.cast(context.replica_id_in_sync_group, tf.int32)
        x, y, sample_weight = unpack_batch(batch)
        local = tf.shape(tf.nest.flatten(x)[0])[0]
        targets = {k: v for k, v in (("y", y), ("w", sample_weight)) if v is not None}
        if num_replicas == 1:  # nothing to gather
            return {"sizes": tf.reshape(local, [1]), **(targets if gather_targets else {})}
        # float32: every collective implementation sums it (sizes are far below 2**24).
        one_hot = tf.one_hot(replica_id, num_replicas) * tf.cast(local, tf.float32)
        sizes = tf.cast(context.all_reduce(_SUM, one_hot), tf.int32)
        out = {"sizes": sizes}
        if gather_targets and targets:
            if rows is None:
                raise ValueError(
                    "Metrics under a strategy need the largest batch size; it is unknown. "
                    "Received: a dataset without a first batch."
                )
            low = tf.reduce_sum(sizes[:replica_id])
            gathered = context.all_reduce(_SUM, _pad_rows(targets, low, rows))
            out.update(tf.nest.map_structure(lambda g, t: tf.cast(g, t.dtype), gathered, targets))
        return out

    out = strategy.run(replica, args=(per_replica,))
    out = tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], out)
    total = tf.reduce_sum(out["sizes"])
    view = [tf.zeros(tf.stack([total, 0]))]  # the trackers count its rows
    view += [tf.nest.map_structure(lambda t: t[:total], out[k]) for k in ("y", "w") if k in out]
    return ShardedBatch(tuple(view), per_replica, out["sizes"], rows)


class ShardedStep:
    """A step (`TrainStep`, `TestStep`, `CustomStep`) fed per-replica parts of global batches.

    Args:
        step: The step; it receives a `ShardedBatch`.
        strategy: The `tf.distribute.Strategy`.
        rows: The largest global batch (size of the buffers targets are gathered in).
    """

    def __init__(self, step, strategy, rows: int | None) -> None:
        self.step = step
        self.strategy = strategy
        self.rows = rows
        trackers = getattr(step, "trackers", None)
        self.gather_targets = bool(trackers is not None and trackers.metrics)

    def __call__(self, per_replica):
        """Run the step on one distributed batch (replica parts from the iterator)."""
        batch = sharded_batch(self.strategy, per_replica, self.rows, self.gather_targets)
        return self.step(batch)

    def results(self):
        """The step's running results."""
        return self.step.results()

    def reset_metrics(self) -> None:
        """Reset the step's running loss and metrics."""
        self.step.reset_metrics()


class ShardedEvaluator(DatasetEvaluator):
    """Evaluates a `TestStep` over a dataset distributed like the training data."""

    def __init__(self, step, distribution) -> None:
        self.test_step = step
        self.distribution = distribution
        super().__init__(ShardedStep(step, distribution.strategy, None))

    def run(self, dataset: tf.data.Dataset) -> dict[str, float]:
        """One pass over `dataset`, each replica evaluating its rows; Python floats."""
        rows = max((_batch_rows(b) for b in dataset.take(1)), default=0)
        if self.step.rows is None or rows > self.step.rows:
            self.step.rows = rows  # the buffers' size is fixed at trace time: trace again
            self._call = tf.function(functools.partial(DatasetEvaluator._evaluate, self))
        return super().run(self.distribution.distribute(dataset))


class DistributedLoopCache(LoopCache):
    """`LoopCache` whose dataset loop and evaluator run distributed datasets."""

    def __init__(self, distribution) -> None:
        super().__init__()
        self.distribution = distribution

    def training_loop(self, step, data, batch_size, shuffle, drop_remainder, seed, use_xla):
        """`ArrayLoop` for arrays (replicas slice each batch), else a loop over replica parts."""
        if isinstance(data, ArrayData):
            return super().training_loop(
                step, data, batch_size, shuffle, drop_remainder, seed, use_xla
            )
        sample = data.first_batch()
        spec = self.distribution.distribute(data.dataset).element_spec
        loop = self.iterator_loop
        if loop is not None and loop.step.step is step and loop.matches(spec, sample):
            return loop
        rows = None if sample is None else _batch_rows(sample)
        sharded = ShardedStep(step, self.distribution.strategy, rows)
        self.iterator_loop = IteratorLoop(sharded, spec, sample, jit_compile=False)
        return self.iterator_loop

    def evaluator(self, test_step, data, batch_size: int, use_xla: bool):
        """An `ArrayEvaluator` for arrays, else a `ShardedEvaluator`; reused when possible."""
        if isinstance(data, ArrayData):
            return super().evaluator(test_step, data, batch_size, use_xla)
        evaluator = self.dataset_evaluator
        if evaluator is None or evaluator.test_step is not test_step:
            self.dataset_evaluator = ShardedEvaluator(test_step, self.distribution)
        return self.dataset_evaluator


def global_batch_size() -> tf.Tensor:
    """Examples in the current global batch, inside a custom `train_step` the Trainer runs.

    Use it to average a loss over the global batch on every replica:
    `tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size())`.
    (See the module example.)

    Raises:
        RuntimeError: outside a `train_step` run by the Trainer.
    """
    size = getattr(_CURRENT, "size", None)
    if size is None:
        raise RuntimeError(
            "`global_batch_size()` is only defined inside a custom `train_step` run by the "
            "Trainer. Received: a call outside one"
        )
    return size


class ReplicatedTrainStep(tf.Module):
    """Runs a user's `train_step(model, batch) -> logs` on every replica (`strategy.run`).

    Each replica gets its part of the global batch (its contiguous slice of an
    in-memory batch, or its part of a distributed dataset's `ShardedBatch`);
    `global_batch_size()` gives the global batch's size inside it. Logs are
    summed over the replicas (a loss averaged over the global batch is then
    the global mean). Without a strategy the step runs as is.

    Args:
        fn: The user's step (tracked, so a `tf.Module` step's variables count).
        strategy: A `tf.distribute.Strategy`, or `None`.
    """

    def __init__(self, fn, strategy) -> None:
        super().__init__(name="replicated_train_step")
        self.fn = fn
        self._strategy = strategy

    def _replica(self, model, batch, size, sizes):
        if sizes is None and self._strategy is not None:
            context = tf.distribute.get_replica_context()
            replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
            low, high = replica_bounds(replica, context.num_replicas_in_sync, size)
            batch = tf.nest.map_structure(lambda t: t[low:high], batch)
        _CURRENT.size = size
        try:
            logs = dict(self.fn(model, batch))
        finally:
            _CURRENT.size = None
        return {name: tf.cast(value, tf.float32) for name, value in logs.items()}

    def __call__(self, model, batch):
        """The user's step on the replicas; its logs summed over them."""
        if isinstance(batch, ShardedBatch):
            size, parts, sizes = tf.reduce_sum(batch.sizes), batch.per_replica, batch.sizes
        else:
            x = unpack_batch(batch)[0]
            size, parts, sizes = tf.shape(tf.nest.flatten(x)[0])[0], batch, None
        if self._strategy is None:
            return self._replica(model, parts, size, sizes)
        logs = self._strategy.run(
            lambda part, size, sizes: self._replica(model, part, size, sizes),
            args=(parts, size, sizes),
        )
        return self._strategy.reduce(_SUM, logs, axis=None)
