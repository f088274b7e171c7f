"""The Trainer on `tf.distribute`: strategy resolution, scopes, chief-only writes, a launcher.

`Trainer(..., strategy=...)` takes any `tf.distribute.Strategy`, `"mirrored"`
(all local devices) or `"multi_worker"` (`MultiWorkerMirroredStrategy`, cluster
from `TF_CONFIG`). The Trainer then:

- builds the model (if given as a function), the optimizer, the metrics and
  the step's own variables (accumulators, trackers) under `strategy.scope()`;
- runs every step through `strategy.run`: losses are averaged over the
  global batch and the gradients all-reduced before clipping, accumulation
  and the non-finite check (see `tfcraft.training.replica_step`). In-memory
  data keeps its stateless `(seed, epoch)` permutation; every worker computes
  the same one and each replica takes its contiguous slice of each batch. A
  `tf.data.Dataset` goes through `strategy.distribute_datasets_from_function`:
  each worker keeps its replicas' parts of every global batch
  (`tfcraft.training.distributed_data`);
- evaluates on the replicas too (same numbers as one device); predicts on one
  device per worker (every worker gets every prediction, and random-drawing
  models draw what one device draws);
- runs a custom `train_step` on every replica, on its part of the batch (it
  averages its loss with `global_batch_size()`);
- in multi-worker runs lets only the chief write: checkpoints (the other
  workers write theirs, as TensorFlow requires every worker to save, to a
  copy beside it that is removed) and the file loggers (`chief_only` callbacks).

`launch_local(fn, num_workers)` tries multi-worker training on one machine.

Example:

>>> get_strategy(None) is None
True
>>> is_chief(None)
True
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import weakref
from collections.abc import Sequence

import tensorflow as tf

from tfcraft.layers.walk import draws_random_numbers, variational_layers
from tfcraft.training import precision
from tfcraft.training.data import ArrayData
from tfcraft.training.distributed_data import (
    DistributedLoopCache,
    ReplicatedTrainStep,
    global_batch_size,
    per_worker_dataset,
)
from tfcraft.training.launch import WorkerFailed, launch_local
from tfcraft.training.parts import CustomStep
from tfcraft.training.planning import LoopCache
from tfcraft.training.replica_step import ReplicaOptimizer, ReplicatedLossFn, UnscaledLoss
from tfcraft.training.steps import (
    TestStep,
    get_loss,
    get_metrics,
    get_optimizer,
    make_default_loss_fn,
    make_eval_step,
    make_train_step,
)

__all__ = [
    "Distribution",
    "WorkerFailed",
    "get_strategy",
    "global_batch_size",
    "is_chief",
    "launch_local",
]


def get_strategy(strategy: object) -> tf.distribute.Strategy | None:
    """`None`, a `tf.distribute.Strategy`, or one built from `"mirrored"` / `"multi_worker"`.

    `"multi_worker"` must be resolved before TensorFlow runs any op in the
    process (TensorFlow configures its collectives at start-up).
    """
    if strategy is None or isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy == "multi_worker":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            raise RuntimeError(
                f"{error}. TensorFlow already ran an op in this process (an optimizer or a "
                "model created before the Trainer, say). Create "
                "`tf.distribute.MultiWorkerMirroredStrategy()` first thing and pass it as "
                "`strategy=`, or pass the optimizer by name and the model as a function."
            ) from error
    raise ValueError(
        "Argument `strategy` must be a tf.distribute.Strategy, 'mirrored' or "
        f"'multi_worker'. Received: strategy={strategy!r}"
    )


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process writes checkpoints and logs (always, without several workers)."""
    return strategy is None or bool(strategy.extended.should_checkpoint)


def _is_model_factory(model: object) -> bool:
    return callable(model) and not hasattr(model, "trainable_variables")


class Distribution:
    """What a Trainer does differently under a strategy and/or mixed precision.

    Args:
        strategy: See `get_strategy`.
        mixed_precision: `None`, `"mixed_float16"` or `"mixed_bfloat16"`.
    """

    def __init__(self, strategy: object = None, mixed_precision: object = None) -> None:
        self.policy = precision.policy_name(mixed_precision)
        self.strategy = get_strategy(strategy)
        self.is_chief = is_chief(self.strategy)
        self._loss_fn: ReplicatedLossFn | None = None
        self._distributed: dict = {}  # id(dataset) -> (dataset, distributed dataset)

    @property
    def active(self) -> bool:
        """Whether the step needs the replica adapters (a strategy or a float16 loss scale)."""
        return self.strategy is not None or precision.needs_loss_scale(self.policy)

    def scope(self):
        """`strategy.scope()`, or a no-op."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def build_model(self, model, train_step=None):
        """Call a model-building function under the scope and the dtype policy; check a model."""
        if train_step is not None and precision.needs_loss_scale(self.policy):
            raise ValueError(
                "A custom `train_step` does its own update, which the Trainer cannot "
                "loss-scale for it; use mixed_precision='mixed_bfloat16' (no loss scale) or "
                "wrap its optimizer in `keras.optimizers.LossScaleOptimizer` yourself. "
                f"Received: train_step with mixed_precision={self.policy!r}"
            )
        factory = _is_model_factory(model)
        if factory:
            with self.scope(), precision.dtype_policy(self.policy):
                model = model()
        elif self.strategy is not None and not self._created_in_scope(model):
            raise ValueError(
                "Under a strategy the model's variables must be created in "
                "`strategy.scope()`. Pass a function that builds the model "
                "(`Trainer(build_model, strategy=...)`), or build it inside "
                "`with strategy.scope():`. Received: a model built outside the scope"
            )
        precision.check_model(model, self.policy, warn=not factory)
        return model

    def _created_in_scope(self, model) -> bool:
        variables = list(getattr(model, "weights", None) or model.trainable_variables)
        if not variables:
            return True  # not built yet: it is built under the scope (see Trainer)
        with self.scope():
            return all(
                self.strategy.extended.variable_created_in_scope(
                    v if isinstance(v, tf.Variable) else v.value  # a Keras variable's tf one
                )
                for v in variables
            )

    def optimizer(self, optimizer: object):
        """The optimizer, created (or re-created from its config) under the scope, wrapped."""
        if optimizer is None:
            return None
        with self.scope():
            optimizer = get_optimizer(optimizer)
            if self.strategy is not None and not getattr(optimizer, "built", False):
                # Keras binds an optimizer to the strategy current at its construction.
                optimizer = type(optimizer).from_config(optimizer.get_config())
            return precision.wrap_optimizer(optimizer, self.policy)

    def metrics(self, metrics: Sequence[object] | None) -> list:
        """Metric objects, created under the scope."""
        with self.scope():
            return get_metrics(metrics)

    def make_train_step(self, model, optimizer, loss, **kwargs):
        """`make_train_step`, under the scope, with the replica adapters when needed."""
        with self.scope():
            if not self.active:
                return make_train_step(model, optimizer, loss, **kwargs)
            if not getattr(optimizer, "built", True) or not optimizer.variables:
                optimizer.build(model.trainable_variables)
            loss_fn = kwargs.pop("loss_fn", None)
            if loss_fn is None:
                inner = make_default_loss_fn(UnscaledLoss(get_loss(loss)), model)
                extra = ("nll", "kl") if variational_layers(model) else ()
                inner.mean_logs = extra
            else:
                inner = loss_fn
            self._loss_fn = ReplicatedLossFn(
                inner,
                model,
                self.strategy,
                optimizer,
                metrics_need_predictions=bool(kwargs.get("metrics")),
            )
            return make_train_step(
                model,
                ReplicaOptimizer(optimizer, self.strategy),
                loss_fn=self._loss_fn,
                **kwargs,
            )

    def custom_step(self, train_step, model, skip_nonfinite: bool) -> CustomStep:
        """A user's `train_step`, run on every replica (`ReplicatedTrainStep`)."""
        with self.scope():
            return CustomStep(ReplicatedTrainStep(train_step, self.strategy), model, skip_nonfinite)

    def make_eval_step(self, model, loss, *, loss_fn=None, metrics=None) -> TestStep:
        """`make_eval_step`; under a strategy its loss runs on the replicas."""
        if self.strategy is None:
            return make_eval_step(model, loss, loss_fn=loss_fn, metrics=metrics)
        with self.scope():
            step = make_eval_step(model, loss, loss_fn=loss_fn, metrics=metrics)
            if loss_fn is None:
                inner = make_default_loss_fn(UnscaledLoss(get_loss(loss)), model)
                inner.mean_logs = tuple(step.trackers.means)[1:]
            else:
                inner = loss_fn
            step.loss_fn = ReplicatedLossFn(
                inner, model, self.strategy, None, metrics_need_predictions=bool(metrics)
            )
            return step

    def loop_cache(self) -> LoopCache:
        """The Trainer's `LoopCache`; under a strategy, datasets run distributed."""
        return LoopCache() if self.strategy is None else DistributedLoopCache(self)

    def distribute(self, dataset: tf.data.Dataset):
        """The distributed dataset (`per_worker_dataset` on each worker), built once per dataset.

        With one replica in sync the dataset is that replica's input as it is:
        it is fed without a distributed iterator, which cost ~0.17 ms a step
        here (measured with a one-replica `MirroredStrategy`).
        """
        if self.strategy.num_replicas_in_sync == 1:
            return dataset
        key = id(dataset)
        if key not in self._distributed or self._distributed[key][0] is not dataset:
            if len(self._distributed) >= 8:
                self._distributed.pop(next(iter(self._distributed)))
            distributed = self.strategy.distribute_datasets_from_function(
                functools.partial(per_worker_dataset, dataset)
            )
            self._distributed[key] = (dataset, distributed)
        return self._distributed[key][1]

    def iterate(self, dataset: tf.data.Dataset):
        """An iterator over `dataset`; under a strategy, over its distributed version."""
        return iter(dataset) if self.strategy is None else iter(self.distribute(dataset))

    def set_batch_size(self, data, batch_size: int) -> None:
        """The largest global batch (rows of the buffer that gathers predictions)."""
        if self._loss_fn is None:
            return
        if not isinstance(data, ArrayData):
            batch = data.first_batch()
            batch_size = None if batch is None else int(tf.shape(tf.nest.flatten(batch)[0])[0])
        self._loss_fn.max_batch_size = batch_size

    def use_xla(self, jit_compile: bool | str, model) -> bool:
        """XLA unless a strategy runs the step, or `"auto"` and the model draws random numbers.

        (`strategy.run` does not compile as one XLA cluster; XLA's CPU random
        kernels made random-drawing steps 8-20x slower here.)
        """
        if self.strategy is not None:
            return False
        return not draws_random_numbers(model) if jit_compile == "auto" else bool(jit_compile)

    def callbacks(self, callbacks: Sequence) -> list:
        """All callbacks on the chief; elsewhere those that do not write files."""
        if self.is_chief:
            return list(callbacks)
        return [c for c in callbacks if not getattr(c, "chief_only", False)]

    def checkpoint_dir(self, directory: str | os.PathLike | None):
        """The chief's folder; on another worker a copy of it beside it, removed after use.

        The copy (`<folder>-worker<i>-tmp`, as Keras' `workertemp_<i>`) lets a
        resumed worker restore the chief's state; every worker must save (the
        saves are collective), but only the chief's are kept. A restarted worker
        replaces a copy left by a killed one.
        """
        if directory is None or self.is_chief:
            return directory
        task = getattr(self.strategy.cluster_resolver, "task_id", 0)
        local = f"{os.fspath(directory).rstrip(os.sep)}-worker{task}-tmp"
        shutil.rmtree(local, ignore_errors=True)
        if os.path.isdir(directory):
            shutil.copytree(directory, local)
        else:
            os.makedirs(local)
        weakref.finalize(self, shutil.rmtree, local, True)
        return local
