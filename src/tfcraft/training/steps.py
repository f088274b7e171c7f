"""The training and test steps: `make_train_step(...)` is the only place with a GradientTape.

A step is a plain Python callable `step(batch) -> logs` meant to run inside a
`tf.function` (the Trainer runs several of them per graph call). It computes
the loss, its gradients, clips them, optionally accumulates them over several
micro-batches, applies them and updates running loss/metric trackers.

Order of operations, chosen to match Keras 3 (`BaseOptimizer.apply`): with
`accumulate_steps=N` the micro-batch gradients are summed, the sum is divided
by `N` on every N-th micro-batch, and only that averaged gradient is clipped
and applied. So the update equals one step on the N-times larger batch for a
mean loss (`model.losses` such as KL terms are part of each micro-batch loss,
hence averaged too, which keeps their scale). The optimizer sees one iteration
per applied update, exactly like the large-batch step (Keras 3's
`gradient_accumulation_steps` does the same for Adam's bias correction, but
evaluates learning-rate schedules at the micro-batch count).

For `tf.distribute` the default loss is computed per example in `compute_loss`;
averaging over the global batch is a change to that one function.

Example:

>>> import keras, tensorflow as tf
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> step = make_train_step(model, keras.optimizers.SGD(0.1), loss="mse")
>>> logs = tf.function(step)((tf.ones((4, 2)), tf.zeros((4, 1))))
>>> sorted(logs)
['grad_norm', 'learning_rate', 'nonfinite']
>>> sorted(step.results())
['loss']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from tfcraft._validation import check_positive_int
from tfcraft.layers.walk import model_losses, variational_layers
from tfcraft.training import clipping as clipping_lib

__all__ = [
    "TestStep",
    "TrainStep",
    "call_model",
    "get_loss",
    "get_metrics",
    "get_optimizer",
    "make_default_loss_fn",
    "make_eval_step",
    "make_test_step",
    "make_train_step",
    "unpack_batch",
]

LossFn = Callable[[Any, Any, bool], tuple[tf.Tensor, dict]]


def unpack_batch(batch) -> tuple[Any, Any, Any]:
    """Split a batch into `(x, y, sample_weight)`; missing parts are `None`.

    Example:

    >>> unpack_batch((1, 2))
    (1, 2, None)
    """
    if isinstance(batch, tuple | list):
        if not 1 <= len(batch) <= 3:
            raise ValueError(
                "A batch must be `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`. "
                f"Received: a tuple of length {len(batch)}"
            )
        return (*batch, *([None] * (3 - len(batch))))
    return batch, None, None


class _FunctionLoss(keras.losses.Loss):
    """A `(y_true, y_pred) -> per-example loss` function as a reducing Keras loss."""

    def __init__(self, fn: Callable, name: str | None = None) -> None:
        super().__init__(name=name or getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def get_loss(loss: object) -> keras.losses.Loss | None:
    """Return a reducing `keras.losses.Loss` for a Loss, a name or a callable.

    Example:

    >>> type(get_loss("mse")).__name__
    '_FunctionLoss'
    """
    if loss is None or isinstance(loss, keras.losses.Loss):
        return loss
    if isinstance(loss, str):
        try:
            loss = keras.losses.get(loss)
        except ValueError as error:
            raise ValueError(
                f"Argument `loss` is not a known Keras loss name. Received: loss={loss!r}"
            ) from error
        return loss if isinstance(loss, keras.losses.Loss) else _FunctionLoss(loss)
    if isinstance(loss, type) and issubclass(loss, keras.losses.Loss):
        return loss()
    if callable(loss):
        return _FunctionLoss(loss)
    raise TypeError(
        "Argument `loss` must be a `keras.losses.Loss`, a loss name or a callable "
        f"`(y_true, y_pred) -> loss`. Received: loss={loss!r}"
    )


def get_metrics(metrics: Sequence[object] | None) -> list[keras.metrics.Metric]:
    """Return `keras.metrics.Metric` instances for metric objects or names.

    Example:

    >>> [m.name for m in get_metrics(["mae"])]
    ['mean_absolute_error']
    """
    if metrics is None:
        return []
    if isinstance(metrics, str | keras.metrics.Metric):
        metrics = [metrics]
    result = []
    for metric in metrics:
        if isinstance(metric, str):
            metric = keras.metrics.get(metric)
            if not isinstance(metric, keras.metrics.Metric):
                metric = keras.metrics.MeanMetricWrapper(metric, name=metric.__name__)
        if not isinstance(metric, keras.metrics.Metric):
            raise TypeError(
                "Every metric must be a `keras.metrics.Metric` or a metric name. "
                f"Received: metrics=[..., {metric!r}, ...]"
            )
        result.append(metric)
    return result


def get_optimizer(optimizer: object):
    """Return an optimizer instance for an optimizer object or a Keras name.

    Example:

    >>> type(get_optimizer("adam")).__name__
    'Adam'
    """
    if isinstance(optimizer, str):
        try:
            return keras.optimizers.get(optimizer)
        except ValueError as error:
            raise ValueError(
                "Argument `optimizer` is not a known Keras optimizer name. "
                f"Received: optimizer={optimizer!r}"
            ) from error
    if not hasattr(optimizer, "apply_gradients"):
        raise TypeError(
            "Argument `optimizer` must be a Keras optimizer or its name. "
            f"Received: optimizer={optimizer!r}"
        )
    return optimizer


def call_model(model, x, training: bool):
    """Call a Keras model or a `tf.Module`; `training` is passed only if accepted.

    Example:

    >>> int(call_model(lambda x: x + 1, tf.constant(1), training=True))
    2
    """
    if isinstance(model, keras.layers.Layer):
        return model(x, training=training)
    try:
        parameters = inspect.signature(model).parameters
    except (TypeError, ValueError):
        parameters = {}
    accepts = "training" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )
    return model(x, training=training) if accepts else model(x)


def _sum_or_zero(tensors: Sequence[tf.Tensor]) -> tf.Tensor:
    tensors = [tf.cast(t, tf.float32) for t in tensors]
    return tf.add_n(tensors) if tensors else tf.constant(0.0)


def _check_scalar(value: tf.Tensor, what: str) -> tf.Tensor:
    value = tf.convert_to_tensor(value)
    if value.shape.rank != 0:
        raise ValueError(
            f"The {what} must reduce to a scalar. Received: a loss of shape "
            f"{value.shape}. Use a reducing loss (e.g. reduction='sum_over_batch_size')."
        )
    return value


def make_default_loss_fn(loss: keras.losses.Loss, model) -> LossFn:
    """The default `loss_fn(model, batch, training) -> (loss, logs)`.

    `loss = mean data loss + sum(model.losses)`; logs hold `y_pred`, `nll` (the
    data term) and, when the model has variational layers, `kl`.

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> loss_fn = make_default_loss_fn(keras.losses.MeanSquaredError(), model)
    >>> loss, logs = loss_fn(model, (tf.ones((3, 2)), tf.ones((3, 1))), True)
    >>> loss.shape, sorted(logs)
    (TensorShape([]), ['nll', 'y_pred'])
    """
    kl_layers = variational_layers(model)

    def loss_fn(model, batch, training):
        x, y, sample_weight = unpack_batch(batch)
        if y is None:
            raise ValueError(
                "`loss` compares predictions with targets, but the data has no targets "
                "(only `x`). Pass `(x, y)`, or train on unlabelled data with "
                "`loss_fn(model, batch, training) -> (loss, logs)`, e.g. `-log p(x)`."
            )
        y_pred = call_model(model, x, training)
        data_loss = _check_scalar(loss(y, y_pred, sample_weight=sample_weight), "loss")
        total = tf.cast(data_loss, tf.float32) + _sum_or_zero(model_losses(model))
        logs = {"y_pred": y_pred, "nll": data_loss}
        if kl_layers:
            logs["kl"] = _sum_or_zero([t for layer in kl_layers for t in layer.losses])
        return total, logs

    return loss_fn


class _Trackers:
    """Running means of `loss` (and `nll`/`kl`) plus the user's metrics."""

    def __init__(self, metrics: list, extra_names: Sequence[str] = ()) -> None:
        self.means = {name: keras.metrics.Mean(name=name) for name in ("loss", *extra_names)}
        self.metrics = metrics

    def update(self, loss, logs: dict, batch) -> None:
        x, y, sample_weight = unpack_batch(batch)
        # Weight by batch size, so a partial last batch counts per example (as Keras).
        size = tf.cast(tf.shape(tf.nest.flatten(x)[0])[0], tf.float32)
        self.means["loss"].update_state(loss, sample_weight=size)
        for name, mean in self.means.items():
            if name != "loss" and name in logs:
                mean.update_state(logs[name], sample_weight=size)
        if self.metrics and y is not None and "y_pred" in logs:
            for metric in self.metrics:
                metric.update_state(y, logs["y_pred"], sample_weight=sample_weight)

    def reset(self) -> None:
        for metric in [*self.means.values(), *self.metrics]:
            metric.reset_state()

    def results(self) -> dict[str, tf.Tensor]:
        out = {name: mean.result() for name, mean in self.means.items()}
        for metric in self.metrics:
            result = metric.result()
            if isinstance(result, dict):
                out.update(result)
            else:
                out[metric.name] = result
        return out

    @property
    def variables(self) -> dict[str, list]:
        trackers = [*self.means.values(), *self.metrics]
        return {m.name: list(m.variables) for m in trackers if m.variables}


def _false() -> tf.Tensor:
    return tf.constant(False)


def _all_finite(loss: tf.Tensor, grad_norm: tf.Tensor) -> tf.Tensor:
    return tf.logical_and(
        tf.reduce_all(tf.math.is_finite(tf.cast(loss, tf.float32))), tf.math.is_finite(grad_norm)
    )


class TrainStep:
    """One optimisation step on a batch; built by `make_train_step`.

    Attributes:
        variables: State the step owns besides model and optimizer (gradient
            accumulators, loss and metric trackers); checkpoint these.
    """

    def __init__(
        self, model, optimizer, loss_fn, metrics, clip, accumulate_steps, skip_nonfinite, extra
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.clip = clip
        self.accumulate_steps = accumulate_steps
        self.skip_nonfinite = skip_nonfinite
        self.trainable_variables = list(model.trainable_variables)
        self.trackers = _Trackers(metrics, extra)
        self._accumulators = []
        self._micro_step = None
        # Under skip_nonfinite: float state the forward pass assigns (BatchNorm
        # statistics), restored after a non-finite step; and the first non-finite
        # tensor of the epoch (-1 none, 0 the loss, i + 1 gradient i) and its step.
        self._guarded = [v for v in model.non_trainable_variables if "float" in str(v.dtype)]
        self._calls = tf.Variable(0, dtype=tf.int64, trainable=False, name="calls")
        self._first_bad = tf.Variable([-1, 0], dtype=tf.int64, trainable=False, name="first_bad")
        if accumulate_steps > 1:
            self._micro_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="micro_step")
            self._accumulators = [
                tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="grad_accumulator")
                for v in self.trainable_variables
            ]

    @property
    def variables(self) -> dict:
        """Accumulators, the micro-step counter and tracker variables, by name."""
        state = {"trackers": self.trackers.variables}
        if self._micro_step is not None:
            state["micro_step"] = self._micro_step
            state["accumulators"] = list(self._accumulators)
        return state

    def reset_metrics(self) -> None:
        """Reset the running loss and metrics (start of an epoch)."""
        self.trackers.reset()
        self._first_bad.assign(tf.constant([-1, 0], tf.int64))

    def results(self) -> dict[str, tf.Tensor]:
        """Running loss, `nll`/`kl` and metric values since the last reset."""
        return self.trackers.results()

    def _apply(self, grads) -> None:
        if self.clip is not None:
            grads = self.clip(grads, self.trainable_variables)
        pairs = zip(grads, self.trainable_variables, strict=True)
        pairs = [(g, v) for g, v in pairs if g is not None]
        self.optimizer.apply_gradients(pairs)

    def _apply_if(self, condition, grads) -> None:
        def apply():
            self._apply(grads)
            return tf.constant(True)

        tf.cond(condition, apply, lambda: tf.constant(False))

    def __call__(self, batch) -> dict[str, tf.Tensor]:
        """Run one step; returns `grad_norm`, `learning_rate`, `nonfinite` and extra logs."""
        saved = [tf.identity(v) for v in self._guarded] if self.skip_nonfinite else []
        with tf.GradientTape() as tape:
            loss, logs = self.loss_fn(self.model, batch, True)
            loss = _check_scalar(loss, "value returned by `loss_fn`")
        grads = tape.gradient(loss, self.trainable_variables)
        micro_norm = clipping_lib.global_norm(grads)
        finite = _all_finite(loss, micro_norm)
        if self.skip_nonfinite:
            self._undo_if_nonfinite(finite, saved, loss, grads)
        if self.accumulate_steps == 1:
            grad_norm = micro_norm
            if self.skip_nonfinite:
                self._apply_if(finite, grads)
            else:
                self._apply(grads)
        else:
            grad_norm = self._accumulate(grads, micro_norm, finite)
        out = {"grad_norm": grad_norm, "nonfinite": tf.cast(tf.logical_not(finite), tf.int32)}
        if self.skip_nonfinite:  # a skipped batch leaves the running loss and metrics alone
            tf.cond(finite, lambda: self._update_trackers(loss, logs, batch), _false)
            out["nonfinite_tensor"] = self._first_bad[0]
            out["nonfinite_steps_ago"] = self._calls - self._first_bad[1]
        else:
            self.trackers.update(loss, logs, batch)
        if hasattr(self.optimizer, "learning_rate"):
            out["learning_rate"] = tf.cast(self.optimizer.learning_rate, tf.float32)
        for name, value in logs.items():
            if name not in ("y_pred", "nll", "kl"):
                out[name] = value
        return out

    def _update_trackers(self, loss, logs, batch):
        self.trackers.update(loss, logs, batch)
        return tf.constant(True)

    def _undo_if_nonfinite(self, finite, saved, loss, grads) -> None:
        """Restore the forward pass's float state and note the first bad tensor."""
        self._calls.assign_add(1)
        checks = [tf.math.is_finite(tf.cast(loss, tf.float32))]
        checks += [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
        indices = [0] + [i + 1 for i, g in enumerate(grads) if g is not None]
        first = tf.gather(tf.constant(indices, tf.int64), tf.argmin(tf.cast(checks, tf.int32)))

        def undo():
            for variable, value in zip(self._guarded, saved, strict=True):
                variable.assign(value)
            fresh = tf.equal(self._first_bad[0], -1)
            self._first_bad.assign(tf.where(fresh, tf.stack([first, self._calls]), self._first_bad))
            return tf.constant(True)

        tf.cond(finite, _false, undo)

    def _accumulate(self, grads, micro_norm, finite) -> tf.Tensor:
        keep = finite if self.skip_nonfinite else tf.constant(True)
        summed = []
        for grad, accumulator in zip(grads, self._accumulators, strict=False):
            if grad is None:
                summed.append(accumulator.read_value())
                continue
            summed.append(accumulator + tf.where(keep, grad, tf.zeros_like(grad)))
        self._micro_step.assign_add(1)
        is_update = tf.equal(self._micro_step % self.accumulate_steps, 0)
        # Keras order: average the accumulated gradients, then clip, then apply.
        mean_grads = [s / self.accumulate_steps for s in summed]
        mean_norm = clipping_lib.global_norm(mean_grads)
        should_apply = is_update
        if self.skip_nonfinite:
            should_apply = tf.logical_and(is_update, tf.math.is_finite(mean_norm))
        self._apply_if(should_apply, mean_grads)
        for total, accumulator in zip(summed, self._accumulators, strict=False):
            accumulator.assign(tf.where(is_update, tf.zeros_like(total), total))
        return tf.where(is_update, mean_norm, micro_norm)


def _resolve_loss_fn(model, loss, loss_fn) -> tuple[LossFn, tuple[str, ...]]:
    """The step's `loss_fn` and the names of its logs averaged over an epoch."""
    if loss_fn is None:
        loss = get_loss(loss)
        if loss is None:
            raise ValueError("Give `loss` or `loss_fn`. Received: loss=None, loss_fn=None")
        extra = ("nll", "kl") if variational_layers(model) else ()
        return make_default_loss_fn(loss, model), extra
    if not callable(loss_fn):
        raise TypeError(f"Argument `loss_fn` must be callable. Received: loss_fn={loss_fn!r}")
    return loss_fn, tuple(getattr(loss_fn, "mean_logs", ()))


def make_train_step(
    model,
    optimizer,
    loss: object = None,
    *,
    loss_fn: LossFn | None = None,
    metrics: Sequence[object] | None = None,
    clip: object = None,
    accumulate_steps: int = 1,
    skip_nonfinite: bool = False,
) -> TrainStep:
    """Build the training step the Trainer runs (several per graph call).

    Give either `loss` (the default step: `model(x, training=True)`, the loss
    plus `sum(model.losses)`) or `loss_fn(model, batch, training) -> (loss,
    logs)` to replace the loss computation; gradients, clipping, accumulation,
    metrics (updated when `logs["y_pred"]` is given) and logging stay the same.

    Example of a custom `loss_fn` (an extra L1 penalty, logged as `l1`):

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> def loss_fn(model, batch, training):
    ...     x, y = batch
    ...     y_pred = model(x, training=training)
    ...     l1 = 0.01 * tf.add_n([tf.reduce_sum(tf.abs(w)) for w in model.trainable_weights])
    ...     mse = tf.reduce_mean(tf.square(y - y_pred))
    ...     return mse + l1, {"y_pred": y_pred, "l1": l1}
    >>> step = make_train_step(model, keras.optimizers.SGD(0.1), loss_fn=loss_fn)
    >>> sorted(tf.function(step)((tf.ones((4, 2)), tf.zeros((4, 1)))))
    ['grad_norm', 'l1', 'learning_rate', 'nonfinite']

    Args:
        model: A `keras.Model` or any callable `tf.Module` with
            `trainable_variables`; must be built.
        optimizer: A built-or-unbuilt Keras optimizer.
        loss: A `keras.losses.Loss`, a loss name or a callable
            `(y_true, y_pred) -> loss`. Ignored when `loss_fn` is given.
        loss_fn: Optional `(model, batch, training) -> (scalar loss, logs)`.
            Its logs are reported as of the last step, except those named in
            an optional attribute `loss_fn.mean_logs`, averaged over the epoch
            like `loss`.
        metrics: `keras.metrics.Metric` objects or names.
        clip: A clip spec accepted by `tfcraft.training.clipping.get`.
        accumulate_steps: Positive int; micro-batches per update.
        skip_nonfinite: If `True`, an update whose loss or gradients are not
            finite is skipped entirely (optimizer slots untouched).

    Returns:
        A `TrainStep`: call it on a batch inside a `tf.function`.
    """
    accumulate_steps = check_positive_int("accumulate_steps", accumulate_steps)
    clip = clipping_lib.get(clip)
    optimizer = get_optimizer(optimizer)
    if not getattr(optimizer, "built", True):
        optimizer.build(model.trainable_variables)  # no variable creation inside tf.cond
    loss_fn, extra = _resolve_loss_fn(model, loss, loss_fn)
    return TrainStep(
        model,
        optimizer,
        loss_fn,
        get_metrics(metrics),
        clip,
        accumulate_steps,
        skip_nonfinite,
        extra,
    )


class TestStep:
    """Loss and metrics on a batch without updates; built by `make_test_step`/`make_eval_step`."""

    def __init__(self, model, loss_fn, trackers: _Trackers) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.trackers = trackers

    def __call__(self, batch) -> None:
        """Update the running loss and metrics with one batch."""
        loss, logs = self.loss_fn(self.model, batch, False)
        self.trackers.update(_check_scalar(loss, "loss"), logs, batch)

    def reset_metrics(self) -> None:
        """Reset the running loss and metrics."""
        self.trackers.reset()

    def results(self) -> dict[str, tf.Tensor]:
        """Running loss and metric values since the last reset."""
        return self.trackers.results()


def make_test_step(train_step: TrainStep) -> TestStep:
    """A step that evaluates `train_step`'s loss and metrics with `training=False`.

    It shares the metric objects with the training step (as Keras does), so
    evaluate after reading the training results.

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> test_step = make_test_step(make_train_step(model, "sgd", loss="mse"))
    >>> test_step((tf.ones((2, 2)), tf.zeros((2, 1))))
    >>> sorted(test_step.trackers.results())
    ['loss']
    """
    return TestStep(train_step.model, train_step.loss_fn, train_step.trackers)


def make_eval_step(
    model,
    loss: object = None,
    *,
    loss_fn: LossFn | None = None,
    metrics: Sequence[object] | None = None,
) -> TestStep:
    """An evaluation step with trackers of its own (e.g. beside a custom `train_step`).

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> step = make_eval_step(model, loss="mse", metrics=["mae"])
    >>> step((tf.ones((2, 2)), tf.zeros((2, 1))))
    >>> sorted(step.results())
    ['loss', 'mean_absolute_error']
    """
    loss_fn, extra = _resolve_loss_fn(model, loss, loss_fn)
    return TestStep(model, loss_fn, _Trackers(get_metrics(metrics), extra))
