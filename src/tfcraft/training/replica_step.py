"""The training step on replicas and with a loss scale, through the one step factory.

`make_train_step` stays the only place that clips, accumulates, checks for
non-finite values and applies updates. Under a `tf.distribute` strategy (or a
float16 loss scale) it is given two adapters instead of the user's pieces:

- `ReplicatedLossFn` wraps the `loss_fn`. On each replica (`strategy.run`) it
  takes that replica's contiguous slice of the global batch (or, from a
  distributed dataset, the part the replica already holds: a `ShardedBatch`,
  see `tfcraft.training.distributed_data`), runs the forward
  and backward pass, weights loss and gradients by `local_size / global_size`
  (for a loss that is a mean over its slice this is exactly
  `tf.nn.compute_average_loss(per_example, global_batch_size)`, and it counts
  `model.losses` once in total, as `tf.nn.scale_regularization_loss` does), so
  nothing depends on the number of replicas; then one batched SUM all-reduce.
  It returns the global loss with the all-reduced gradients attached
  (`tf.custom_gradient`), so the step's own tape, clipping, non-finite check
  and accumulators see the same all-reduced values on every replica, and every
  replica skips the same updates. Predictions for metrics are all-reduced into
  a fixed-size buffer (collectives need the same shape at every call).
  Evaluation (`training=False`) runs on the replicas the same way, without
  gradients.
- `ReplicaOptimizer` applies the (clipped) gradients on every replica with the
  Keras optimizer, which sums gradients across replicas itself: replica 0 gives
  the gradients and the others zeros, so the sum is exact.

Example (no strategy, float16 loss scaling only):

>>> import keras, tensorflow as tf
>>> from tfcraft.training.steps import make_default_loss_fn, make_train_step
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
>>> optimizer.build(model.trainable_variables)
>>> loss_fn = ReplicatedLossFn(make_default_loss_fn(keras.losses.MeanSquaredError(), model),
...                            model, None, optimizer)
>>> step = make_train_step(model, ReplicaOptimizer(optimizer, None), loss_fn=loss_fn)
>>> logs = tf.function(step)((tf.ones((4, 2)), tf.zeros((4, 1))))
>>> float(logs["loss_scale"])
32768.0
"""

from __future__ import annotations

import tensorflow as tf

from tfcraft.training import precision
from tfcraft.training.steps import unpack_batch

__all__ = ["ReplicaOptimizer", "ReplicatedLossFn", "ShardedBatch", "UnscaledLoss"]

_SUM = tf.distribute.ReduceOp.SUM


class ShardedBatch(tuple):
    """One global batch whose rows are spread over the replicas (a distributed dataset's).

    As a tuple it is what the step's trackers read: `(x, y, sample_weight)`
    where `x` is only a stand-in with one row per example of the global batch
    and `y`, `sample_weight` are gathered when metrics need them (else `None`).
    `per_replica` holds the replicas' parts, `sizes` their numbers of rows (by
    replica id) and `rows` the size of the buffers predictions are gathered in.
    Built by `tfcraft.training.distributed_data.sharded_batch`.
    """

    def __new__(cls, view: tuple, per_replica, sizes: tf.Tensor, rows: int | None):
        """The view `(x stand-in, y, sample_weight)` with the replicas' parts attached."""
        batch = super().__new__(cls, view)
        batch.per_replica, batch.sizes, batch.rows = per_replica, sizes, rows
        return batch


class UnscaledLoss:
    """A reducing Keras loss without Keras' own division by the number of replicas.

    Keras 3 divides `"sum_over_batch_size"` losses by `num_replicas_in_sync`
    in a replica context; `ReplicatedLossFn` does the global-batch averaging
    itself, so the default step reduces the per-element values here as Keras
    does on one device.

    Example:

    >>> import keras
    >>> float(UnscaledLoss(keras.losses.MeanSquaredError())([[1.0], [3.0]], [[0.0], [0.0]]))
    5.0
    """

    def __init__(self, loss) -> None:
        self.reduction = loss.reduction
        # A shallow copy by hand: Keras objects copy (pickle) through their config.
        self.loss = object.__new__(type(loss))
        self.loss.__dict__.update(loss.__dict__)
        self.loss.reduction = None  # per-element values, masks and weights applied

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The loss reduced as by `self.reduction` on one device."""
        values = tf.cast(self.loss(y_true, y_pred, sample_weight=sample_weight), tf.float32)
        total = tf.reduce_sum(values)
        if self.reduction == "sum":
            return total
        if self.reduction == "mean_with_sample_weight" and sample_weight is not None:
            return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(sample_weight, tf.float32)))
        if self.reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight"):
            return tf.math.divide_no_nan(total, tf.cast(tf.size(values), tf.float32))
        raise ValueError(
            "Under a strategy the loss must reduce to a scalar. Received: "
            f"reduction={self.reduction!r}"
        )


def _bounds(replica, num_replicas: int, size):
    """Rows `[low, high)` of the global batch that `replica` trains on (contiguous)."""
    return replica * size // num_replicas, (replica + 1) * size // num_replicas


def _weighted(value, weight):
    # multiply_no_nan: a replica with an empty slice adds 0, not NaN (mean of nothing).
    return tf.math.multiply_no_nan(tf.cast(value, tf.float32), weight)


class ReplicatedLossFn:
    """`loss_fn(model, batch, training)` whose gradients are computed on the replicas.

    Args:
        loss_fn: The step's `(model, batch, training) -> (mean loss, logs)`.
        model: The model (its variables were created under the strategy's scope).
        strategy: A `tf.distribute.Strategy`, or `None` (one device).
        optimizer: The real optimizer; a `LossScaleOptimizer` scales the loss.
        metrics_need_predictions: Whether to all-reduce `y_pred` for the metrics.
    """

    def __init__(self, loss_fn, model, strategy, optimizer, metrics_need_predictions=False):
        self.loss_fn = loss_fn
        self.model = model
        self.strategy = strategy
        self.optimizer = optimizer
        self.metrics_need_predictions = metrics_need_predictions
        self.mean_logs = tuple(getattr(loss_fn, "mean_logs", ()))
        self.max_batch_size: int | None = None  # rows of the prediction buffer

    def __call__(self, model, batch, training):
        """Forward (and backward, when training) on the replicas; the plain loss without them."""
        if not training and self.strategy is None:
            return self.loss_fn(model, batch, training)
        variables = list(model.trainable_variables) if training else []
        if isinstance(batch, ShardedBatch):  # each replica holds its part already
            size, rows = tf.reduce_sum(batch.sizes), batch.rows
            args = (batch.per_replica, size, rows, variables, training, batch.sizes)
        else:
            size = tf.shape(tf.nest.flatten(unpack_batch(batch)[0])[0])[0]
            rows = tf.nest.flatten(batch)[0].shape[0] or self.max_batch_size
            args = (batch, size, rows, variables, training, None)
        if self.strategy is None:
            out = self._replica(*args)
        else:
            out = self.strategy.run(self._replica, args=args)
            first = self.strategy.experimental_local_results
            out = tf.nest.map_structure(lambda v: first(v)[0], out)
        grads = out.pop("grads")
        if "y_pred" in out:
            out["y_pred"] = tf.nest.map_structure(lambda t: t[:size], out["y_pred"])
        if not training:
            return out.pop("loss"), out
        if precision.is_loss_scaled(self.optimizer):
            finite = tf.reduce_all(
                [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
            )
            tf.cond(finite, lambda: tf.constant(False), self._overflow)
            out["loss_scale"] = tf.identity(self.optimizer.dynamic_scale)
        loss = _attach(out.pop("loss"), grads, variables)
        return loss, out

    def _overflow(self):
        precision.halve_scale(self.optimizer)
        return tf.constant(True)

    def _replica(self, batch, size, rows, variables, training, sizes):
        context = tf.distribute.get_replica_context()
        num_replicas = context.num_replicas_in_sync if self.strategy is not None else 1
        replica = tf.cast(context.replica_id_in_sync_group, tf.int32) if num_replicas > 1 else 0
        if sizes is None:  # the global batch: take this replica's contiguous slice
            low, high = _bounds(replica, num_replicas, size)
            local = tf.nest.map_structure(lambda t: t[low:high], batch)
        else:  # this replica's part, rows [low, high) of the global batch
            low = tf.reduce_sum(sizes[:replica])
            high = low + sizes[replica]
            local = batch
        scaled = training and precision.is_loss_scaled(self.optimizer)
        with tf.GradientTape() as tape:
            loss, logs = self.loss_fn(self.model, local, training)
            loss = tf.cast(loss, tf.float32)
            target = self.optimizer.scale_loss(loss) if scaled else loss
        grads = tape.gradient(target, variables) if training else []
        share = tf.cast(high - low, tf.float32) / tf.cast(size, tf.float32)
        weight = share
        if scaled:  # unscale first: the scale is a power of two, so this is exact
            weight = share / tf.cast(self.optimizer.dynamic_scale, tf.float32)
        out = {
            "loss": _weighted(loss, share),
            "grads": [None if g is None else _weighted(g, weight) for g in grads],
        }
        for name, value in logs.items():
            if name != "y_pred" and tf.convert_to_tensor(value).shape.rank == 0:
                out[name] = _weighted(value, share)
        if "y_pred" in logs and self.strategy is None:
            out["y_pred"] = logs["y_pred"]
        elif "y_pred" in logs and self.metrics_need_predictions:
            out["y_pred"] = self._padded(logs["y_pred"], low, high, rows)
        if num_replicas == 1:
            return out
        present = {k: v for k, v in out.items() if k != "grads"}
        grads = [g for g in out["grads"] if g is not None]
        reduced_logs, reduced_grads = context.all_reduce(_SUM, (present, grads))
        reduced_grads = iter(reduced_grads)
        return {
            **reduced_logs,
            "grads": [None if g is None else next(reduced_grads) for g in out["grads"]],
        }

    def _padded(self, y_pred, low, high, rows):
        if rows is None:
            raise ValueError(
                "Metrics under a strategy need the largest batch size; it is unknown. "
                "Received: a dataset without a static batch size."
            )
        if not all(isinstance(t, tf.Tensor) for t in tf.nest.flatten(y_pred)):
            raise TypeError(
                "Metrics under a strategy need tensor predictions. Received: y_pred of type "
                f"{type(y_pred).__name__}; compute the metric in `loss_fn` logs instead."
            )

        def pad(t):
            t = tf.cast(t, tf.float32) if t.dtype.is_floating else t
            extra = [[0, 0]] * (t.shape.rank - 1)
            # Zeros elsewhere: the SUM all-reduce assembles the global predictions exactly.
            return tf.pad(t, [[low, rows - high], *extra])

        return tf.nest.map_structure(pad, y_pred)


def _all_finite(tensors) -> tf.Tensor:
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


def _attach(loss, grads, variables):
    """`loss`, whose gradient with respect to `variables` is `grads` (all-reduced)."""

    @tf.custom_gradient
    def attached(*values):
        def gradient(upstream):
            return [None if g is None else upstream * g for g in grads]

        return tf.identity(loss), gradient

    return attached(*[tf.convert_to_tensor(v) for v in variables])


class ReplicaOptimizer:
    """Applies gradients that are already all-reduced, on every replica.

    Args:
        optimizer: The Keras optimizer (a `LossScaleOptimizer` included).
        strategy: A `tf.distribute.Strategy`, or `None`.
    """

    built = True

    def __init__(self, optimizer, strategy) -> None:
        self.optimizer = optimizer
        self.strategy = strategy
        scaled = precision.is_loss_scaled(optimizer)
        self.inner = optimizer.inner_optimizer if scaled else optimizer

    @property
    def learning_rate(self):
        """The optimizer's learning rate."""
        return self.optimizer.learning_rate

    def apply_gradients(self, pairs) -> None:
        """Apply `(gradient, variable)` pairs; with a loss scale, only finite ones."""
        pairs = list(pairs)
        if not precision.is_loss_scaled(self.optimizer):
            self._apply(pairs)
            return
        finite = _all_finite([g for g, _ in pairs])

        def apply():
            self._apply(pairs)
            precision.apply_growth(self.optimizer)
            return tf.constant(True)

        # An overflow already halved the scale (`ReplicatedLossFn`); skip the update.
        tf.cond(finite, apply, lambda: tf.constant(False))

    def _apply(self, pairs) -> None:
        if self.strategy is None:
            self.inner.apply_gradients(pairs)
            return
        grads = [g for g, _ in pairs]
        variables = [v for _, v in pairs]

        def on_replica(grads):
            first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
            # The optimizer SUM-reduces across replicas: gradients + zeros = gradients.
            zeroed = [tf.where(first, g, tf.zeros_like(g)) for g in grads]
            self.inner.apply_gradients(zip(zeroed, variables, strict=True))

        self.strategy.run(on_replica, args=(grads,))
