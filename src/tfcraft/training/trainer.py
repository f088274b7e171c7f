"""The Trainer: wires data, compiled steps, callbacks and checkpoints; no math here.

Example:

>>> import keras, numpy as np
>>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
>>> trainer = Trainer(model, optimizer="sgd", loss="mse", seed=0)
>>> x, y = np.ones((16, 3), "float32"), np.zeros((16, 1), "float32")
>>> history = trainer.fit((x, y), epochs=2, batch_size=8, verbose=0)
>>> len(history.history["loss"]), trainer.step
(2, 4)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfcraft._validation import check_positive_int
from tfcraft.layers.variational import set_num_train_examples, variational_layers
from tfcraft.training import checkpoint as checkpoint_lib
from tfcraft.training import clipping as clipping_lib
from tfcraft.training import data as data_lib
from tfcraft.training.callbacks_base import Callback, CallbackList
from tfcraft.training.loops import (
    MAX_EPOCHS_PER_CALL,
    ArrayLoop,
    IteratorLoop,
    to_python_logs,
)
from tfcraft.training.parts import CustomStep, default_callbacks
from tfcraft.training.steps import (
    call_model,
    get_loss,
    get_metrics,
    get_optimizer,
    make_test_step,
    make_train_step,
)

__all__ = ["Trainer", "draws_random_numbers"]


def draws_random_numbers(model) -> bool:
    """Whether any layer of `model` owns a random seed generator (dropout, noise, BNN layers).

    Example:

    >>> import keras
    >>> draws_random_numbers(keras.Sequential([keras.Input((2,)), keras.layers.Dropout(0.5)]))
    True
    """
    flatten = getattr(model, "_flatten_layers", None)
    layers = flatten() if flatten is not None else []
    return any(
        getattr(layer, "seed_generator", None) is not None or getattr(layer, "stochastic", False)
        for layer in layers
    )


_XLA_ERRORS = (
    tf.errors.InvalidArgumentError,
    tf.errors.UnimplementedError,
    tf.errors.InternalError,
    tf.errors.NotFoundError,
)
_DEFAULT_ITERATOR_STEPS = 64  # steps per call when a dataset's length is unknown
# "auto" epochs_per_execution: enough tiny epochs per call to reach this many steps.
_TARGET_STEPS_PER_CALL = 64


class Trainer:
    """Compiled custom training loop with clipping, accumulation, callbacks and checkpoints.

    In-memory data (NumPy/tensors) stays on the device: each epoch's batch
    order is a stateless permutation of `(seed, epoch)` gathered inside the
    graph, and up to a whole epoch runs in one (XLA-compiled) graph call.
    `tf.data` input is iterated inside the graph, `steps_per_execution` steps
    per call. Batch callbacks fire once per call; checkpoints and
    `checkpoint_every` cap the steps per call so they fire on time. When an
    epoch is only a few steps (a few hundred rows), several whole epochs run
    in one call (`epochs_per_execution`) and the callbacks then replay each
    epoch's logs, provided every callback has `epoch_sync = False` (it only
    records logs) and there is no validation data.

    Replace the loss computation with `loss_fn(model, batch, training) ->
    (loss, logs)`, or the whole step with `train_step(model, batch) -> logs`
    (e.g. several optimizers). A `train_step` that is a `tf.Module` is
    checkpointed with everything it tracks (its optimizers, say):

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> class SignSGD(tf.Module):
    ...     def __call__(self, model, batch):
    ...         x, y = batch
    ...         with tf.GradientTape() as tape:
    ...             loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
    ...         grads = tape.gradient(loss, model.trainable_variables)
    ...         for g, v in zip(grads, model.trainable_variables):
    ...             v.assign_sub(0.01 * tf.sign(g))
    ...         return {"loss": loss}
    >>> trainer = Trainer(model, optimizer=None, train_step=SignSGD(), seed=0)
    >>> xy = (np.ones((8, 2), "float32"), np.ones((8, 1), "float32"))
    >>> sorted(trainer.fit(xy, batch_size=4, verbose=0).history)
    ['loss', 'nonfinite_steps']

    Args:
        model: A `keras.Model` or a callable `tf.Module` with `trainable_variables`.
        optimizer: A Keras optimizer or its name. Defaults to `"adam"`.
        loss: A `keras.losses.Loss`, a loss name or `(y_true, y_pred) -> loss`.
        metrics: `keras.metrics.Metric` objects or names.
        loss_fn: Optional `(model, batch, training) -> (loss, logs)`; see
            `tfcraft.training.make_train_step`.
        train_step: Optional `(model, batch) -> dict of scalar logs` doing its own update.
        clip: Clip spec (see `tfcraft.training.clipping.get`), applied to the
            averaged gradient before each update.
        accumulate_steps: Micro-batches per update. Defaults to `1`.
        steps_per_execution: Steps per graph call, or `"auto"` (as many as
            fit in the epoch and before the next checkpoint).
        epochs_per_execution: Whole epochs per graph call for in-memory data
            (at most 64), or `"auto"`: enough epochs for about 64 steps per
            call when every callback allows it (see above), else 1. Each
            epoch's result is the same as when run alone; checkpoints are
            written after each call.
        jit_compile: `True`, `False` or `"auto"`: XLA for in-memory data unless
            the model draws random numbers while training (dropout, variational
            layers: XLA's CPU random-number kernels made such steps 8-20x
            slower here), falling back with a warning if the model does not compile.
        seed: Integer seed of the shuffling; drawn at random if `None`.
        callbacks: `tfcraft.training.Callback` objects.
        checkpoint_dir: Folder for checkpoints; `None` disables them.
        checkpoint_every: Also checkpoint every this many global steps.
        max_to_keep: Checkpoints kept. Defaults to `3`.

    Attributes:
        params: `{"epochs", "steps", "verbose"}` of the current `fit`.
        step: Global step counter (batches trained, micro-batches included).
        epoch: Current epoch (0-based).
        stop_training: Set to `True` by a callback to end `fit`.
    """

    def __init__(
        self,
        model,
        optimizer: object = "adam",
        loss: object = None,
        metrics: Sequence[object] | None = None,
        *,
        loss_fn: Callable | None = None,
        train_step: Callable | None = None,
        clip: object = None,
        accumulate_steps: int = 1,
        steps_per_execution: int | str = "auto",
        epochs_per_execution: int | str = "auto",
        jit_compile: bool | str = "auto",
        seed: int | None = None,
        callbacks: Sequence[Callback] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        max_to_keep: int = 3,
    ) -> None:
        if not callable(model) or not hasattr(model, "trainable_variables"):
            raise TypeError(
                "Argument `model` must be a `keras.Model` or a callable `tf.Module` with "
                f"`trainable_variables`. Received: model={model!r}"
            )
        if train_step is None and loss is None and loss_fn is None:
            raise ValueError("Give `loss`, `loss_fn` or `train_step`. Received: loss=None")
        if steps_per_execution != "auto":
            check_positive_int("steps_per_execution", steps_per_execution)
        if epochs_per_execution != "auto":
            check_positive_int("epochs_per_execution", epochs_per_execution)
            if epochs_per_execution > MAX_EPOCHS_PER_CALL:
                raise ValueError(
                    f"Argument `epochs_per_execution` must be at most {MAX_EPOCHS_PER_CALL} "
                    f"or 'auto'. Received: epochs_per_execution={epochs_per_execution}"
                )
        if jit_compile not in (True, False, "auto"):
            raise ValueError(
                "Argument `jit_compile` must be True, False or 'auto'. "
                f"Received: jit_compile={jit_compile!r}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"Argument `seed` must be an integer. Received: seed={seed!r}")
        self.model = model
        self.optimizer = get_optimizer(optimizer) if optimizer is not None else None
        self.loss = get_loss(loss)
        self.metrics = get_metrics(metrics)
        self.loss_fn = loss_fn
        self.train_step = train_step
        self.clip = clipping_lib.get(clip)
        self.accumulate_steps = check_positive_int("accumulate_steps", accumulate_steps)
        self.steps_per_execution = steps_per_execution
        self.epochs_per_execution = epochs_per_execution
        self.jit_compile = jit_compile
        self.seed = int(np.random.default_rng().integers(2**31)) if seed is None else seed
        self.callbacks = list(callbacks or [])
        CallbackList(self.callbacks)  # type-check now, not mid-fit
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = (
            None
            if checkpoint_every is None
            else check_positive_int("checkpoint_every", checkpoint_every)
        )
        self.max_to_keep = check_positive_int("max_to_keep", max_to_keep)
        if self.optimizer is None and train_step is None:
            raise ValueError("Argument `optimizer` is required without `train_step`.")
        self.params: dict[str, Any] = {}
        self.step = 0
        self.epoch = 0
        self.stop_training = False
        self.history = None
        self._step = None
        self._loop = None
        self._skip = False
        self._eval_function = None
        self._store = None

    # ----------------------------------------------------------------- weights
    def get_weights(self) -> list[np.ndarray]:
        """Model weights as NumPy arrays (trainable variables for a `tf.Module`)."""
        if hasattr(self.model, "get_weights"):
            return self.model.get_weights()
        return [v.numpy() for v in self.model.trainable_variables]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Set what `get_weights` returned."""
        if hasattr(self.model, "set_weights"):
            self.model.set_weights(weights)
            return
        for variable, value in zip(self.model.trainable_variables, weights, strict=True):
            variable.assign(value)

    # ------------------------------------------------------------------- setup
    def _ensure_built(self, data) -> None:
        if isinstance(data, data_lib.ArrayData):
            sample = tf.nest.map_structure(lambda t: t[:2], data.tensors[0])
        else:
            batch = data.first_batch()
            sample = None if batch is None else data_lib.features_only(batch)
            sample = tf.nest.map_structure(
                lambda v: tf.cast(v, tf.float32) if np.asarray(v).dtype == np.float64 else v,
                sample,
            )
        if not getattr(self.model, "built", True) or not self.model.trainable_variables:
            try:
                call_model(self.model, sample, training=False)
            except Exception as error:
                shapes = [tuple(np.shape(v)) for v in tf.nest.flatten(sample)]
                raise ValueError(
                    "The model is not built and could not be built by calling it on the "
                    f"data ({type(error).__name__}: {error}). Received: x shapes={shapes}"
                ) from error
        if not self.model.trainable_variables:
            raise ValueError("The model has no trainable variables; there is nothing to train.")

    def _set_num_train_examples(self, data) -> None:
        pending = [
            layer
            for layer in variational_layers(self.model)
            if getattr(layer, "num_train_examples", 0) is None
        ]
        if not pending:
            return
        count = data.num_examples if isinstance(data, data_lib.ArrayData) else data.count_examples()
        if count is None:
            raise ValueError(
                "The model has variational layers with `num_train_examples=None` and the "
                "number of training examples is unknown (a generator or an infinite "
                "dataset). Set `num_train_examples` on those layers before `fit`."
            )
        set_num_train_examples(self.model, count)

    def _get_step(self, skip_nonfinite: bool):
        if self._step is not None and self._skip == skip_nonfinite:
            return self._step
        if self.train_step is not None:
            self._step = CustomStep(self.train_step, self.model)
        else:
            self._step = make_train_step(
                self.model,
                self.optimizer,
                self.loss,
                loss_fn=self.loss_fn,
                metrics=self.metrics,
                clip=self.clip,
                accumulate_steps=self.accumulate_steps,
                skip_nonfinite=skip_nonfinite,
            )
        self._skip = skip_nonfinite
        self._eval_function = None
        return self._step

    def _make_loop(self, data, batch_size, shuffle, drop_remainder):
        step = self._step
        cached = self._loop
        if isinstance(data, data_lib.ArrayData):
            if (
                isinstance(cached, ArrayLoop)
                and cached.step is step
                and cached.matches(data.tensors, batch_size, shuffle, drop_remainder)
            ):
                cached.set_data(data.tensors)  # no retracing across `fit` calls
                return cached
            self._loop = ArrayLoop(
                step,
                data.tensors,
                batch_size,
                self.seed,
                shuffle=shuffle,
                drop_remainder=drop_remainder,
                jit_compile=self.jit_compile is True
                or (self.jit_compile == "auto" and not draws_random_numbers(self.model)),
            )
            return self._loop
        return IteratorLoop(step, data.dataset.element_spec, jit_compile=self.jit_compile is True)

    def _trackables(self) -> dict:
        trackables = {"model": self.model, "step_state": self._step.variables}
        if not isinstance(self.model, tf.Module) or hasattr(self.model, "get_weights"):
            # A Keras 3 model does not list its variables as checkpoint children (only the
            # optimizer's trainable ones get saved), so save all of them, in order: this
            # covers non-trainable state such as BatchNorm statistics and the dropout
            # SeedGenerator states.
            trackables["model_variables"] = list(self.model.variables)
        if self.optimizer is not None:
            trackables["optimizer"] = self.optimizer
        if isinstance(self.train_step, tf.Module):
            trackables["train_step"] = self.train_step
        return trackables

    def _signature(self) -> list:
        return checkpoint_lib.variable_signature(self.model.variables)

    # --------------------------------------------------------------------- fit
    def fit(
        self,
        data: object,
        epochs: int = 1,
        *,
        batch_size: int = 32,
        validation_data: object = None,
        shuffle: bool = True,
        drop_remainder: bool = False,
        steps_per_epoch: int | None = None,
        resume: bool = False,
        verbose: int = 1,
    ):
        """Train for `epochs` epochs and return the `History` callback.

        Args:
            data: `(x, y[, sample_weight])` arrays, a `tf.data.Dataset`, a
                generator or a callable returning an iterator of batches.
            epochs: Total number of epochs (also when resuming).
            batch_size: Batch size for array data. Defaults to `32`.
            validation_data: Evaluated at the end of every epoch (`val_` logs).
            shuffle: Shuffle array data each epoch. Defaults to `True`.
            drop_remainder: Skip the last partial batch of array data.
            steps_per_epoch: Steps per epoch for iterator data (required for
                an infinite dataset).
            resume: Continue from the latest checkpoint in `checkpoint_dir`
                (same epoch, same position, same shuffling); starts fresh with
                a warning if there is none.
            verbose: `0` silent, `1` progress bar.

        Raises:
            ValueError, TypeError: bad arguments or data, or an unusable checkpoint.
        """
        epochs = check_positive_int("epochs", epochs)
        batch_size = check_positive_int("batch_size", batch_size)
        if steps_per_epoch is not None:
            steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
        if resume and self.checkpoint_dir is None:
            raise ValueError("`resume=True` needs `checkpoint_dir`. Received: checkpoint_dir=None")
        train = data_lib.adapt(data, "data")
        validation = None
        if validation_data is not None:  # built once per fit, not per epoch
            validation = self._evaluation_dataset(
                data_lib.adapt(validation_data, "validation_data"), batch_size
            )
        self._ensure_built(train)
        self._set_num_train_examples(train)

        history, extra = default_callbacks(verbose)
        callbacks = CallbackList([history, *self.callbacks, *extra])
        skip = any(getattr(c, "skips_nonfinite_updates", False) for c in callbacks.callbacks)
        self._get_step(skip)
        loop = self._make_loop(train, batch_size, shuffle, drop_remainder)
        start_epoch, position, state = self._open_checkpoints(resume)
        if isinstance(loop, ArrayLoop):
            loop.seed = self.seed  # the checkpoint's seed, so epochs shuffle as before
        self.stop_training = False
        self.history = history
        steps = getattr(loop, "steps_per_epoch", None) or steps_per_epoch or train.cardinality
        self.params = {"epochs": epochs, "steps": steps, "verbose": verbose}
        callbacks.set_trainer(self)
        callbacks.on_train_begin()
        if state is not None:
            # After on_train_begin, which may reset a callback (as Keras' do).
            callbacks.load_state_dict(state["callbacks"])
        epoch_nonfinite = state["epoch_nonfinite"] if state and position else 0
        epochs_per_call = self._epochs_per_call(loop, validation, callbacks)
        epoch = start_epoch
        while epoch < epochs:
            if epochs_per_call > 1 and position == 0:
                num_epochs = min(epochs_per_call, epochs - epoch)
                epoch = self._fit_epochs(loop, epoch, num_epochs, callbacks)
                if self.stop_training:
                    break
                continue
            self.epoch = epoch
            if position == 0:
                if not isinstance(loop, ArrayLoop):  # an ArrayLoop resets inside its graph
                    self._step.reset_metrics()
                epoch_nonfinite = 0
            callbacks.on_epoch_begin(epoch)
            logs, position, epoch_nonfinite, ran_out = self._run_epoch(
                loop, train, steps, epoch, position, epoch_nonfinite, callbacks
            )
            if ran_out and logs is None:
                warnings.warn(
                    "The training data ran out of batches; stopping. Pass a callable that "
                    "returns a fresh iterator, or a tf.data.Dataset, to train several epochs.",
                    stacklevel=2,
                )
                break
            completed = ran_out or (steps is not None and position >= steps)
            epoch_logs = {**(logs or {}), "nonfinite_steps": epoch_nonfinite}
            if validation is not None:
                val_logs = self._evaluate(validation, callbacks)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            if completed:
                callbacks.on_epoch_end(epoch, epoch_logs)
                position = 0
                self._save(epoch + 1, 0, 0, callbacks)
            else:
                # Stopped mid-epoch: save the callbacks' mid-epoch state first, so a
                # resume finishes this epoch without a duplicate History entry.
                self._save(epoch, position, epoch_nonfinite, callbacks)
                callbacks.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
            epoch += 1
        callbacks.on_train_end()
        return history

    def _epochs_per_call(self, loop, validation, callbacks: CallbackList) -> int:
        """Whole epochs per graph call: 1 unless the data is in memory and nothing needs a pause."""
        blockers = [type(c).__name__ for c in callbacks.callbacks if c.epoch_sync]
        if validation is not None:
            blockers.append("validation_data")
        if self.checkpoint_every:
            blockers.append("checkpoint_every")
        if self.steps_per_execution != "auto":
            blockers.append("steps_per_execution")
        if not isinstance(loop, ArrayLoop):
            blockers.append("non-array data")
        if self.epochs_per_execution == "auto":
            if blockers:
                return 1
            return min(MAX_EPOCHS_PER_CALL, -(-_TARGET_STEPS_PER_CALL // loop.steps_per_epoch))
        if self.epochs_per_execution > 1 and blockers:
            raise ValueError(
                f"`epochs_per_execution={self.epochs_per_execution}` runs several epochs "
                "without pausing between them, which these need: "
                f"{', '.join(blockers)}. Use epochs_per_execution='auto' or 1, or set "
                "`epoch_sync = False` on callbacks that only record logs."
            )
        return self.epochs_per_execution

    def _fit_epochs(self, loop: ArrayLoop, first_epoch: int, num_epochs: int, callbacks) -> int:
        """Run whole epochs in one graph call, then replay each one's logs to the callbacks."""
        all_logs = self._with_xla_fallback(loop, lambda: loop.run_epochs(first_epoch, num_epochs))
        steps = loop.steps_per_epoch
        for offset, logs in enumerate(all_logs):
            self.epoch = first_epoch + offset
            callbacks.on_epoch_begin(self.epoch)
            callbacks.on_train_batch_begin(0)
            self.step += steps
            callbacks.on_train_batch_end(steps - 1, logs)
            callbacks.on_epoch_end(self.epoch, dict(logs))
        self._save(first_epoch + num_epochs, 0, 0, callbacks)
        return first_epoch + num_epochs

    def _run_epoch(self, loop, train, steps, epoch, position, epoch_nonfinite, callbacks):
        if isinstance(loop, ArrayLoop):
            loop.set_epoch(epoch)
            iterator = None
        else:
            dataset = train.dataset.skip(position) if position else train.dataset
            iterator = iter(dataset)
        logs = None
        ran_out = False
        while steps is None or position < steps:
            num = self._steps_this_call(position, steps)
            callbacks.on_train_batch_begin(position)
            if iterator is None:
                raw, done = self._run_array(loop, position, num, reset=position == 0)
            else:
                raw, done = loop.run(iterator, num)
            if done == 0:
                ran_out = True
                break
            logs = to_python_logs(raw)
            position += done
            self.step += done
            epoch_nonfinite += logs["nonfinite_steps"]
            callbacks.on_train_batch_end(position - 1, logs)
            at_end = steps is not None and position >= steps
            if self.checkpoint_every and self.step % self.checkpoint_every == 0 and not at_end:
                self._save(epoch, position, epoch_nonfinite, callbacks)
            if iterator is not None and done < num:
                ran_out = True
                break
            if self.stop_training:
                break
        return logs, position, epoch_nonfinite, ran_out

    def _steps_this_call(self, position: int, steps: int | None) -> int:
        if self.steps_per_execution == "auto":
            num = steps if steps is not None else _DEFAULT_ITERATOR_STEPS
        else:
            num = self.steps_per_execution
        if steps is not None:
            num = min(num, steps - position)
        if self.checkpoint_every:
            num = min(num, self.checkpoint_every - self.step % self.checkpoint_every)
        return max(num, 1)

    def _run_array(self, loop: ArrayLoop, position: int, num: int, reset: bool):
        return self._with_xla_fallback(loop, lambda: loop.run(position, num, reset))

    def _with_xla_fallback(self, loop: ArrayLoop, run: Callable):
        """`run()`, retried without XLA if `jit_compile="auto"` chose XLA and it failed."""
        if self.jit_compile != "auto" or not loop.jit_compile:
            return run()
        try:
            return run()
        except _XLA_ERRORS as error:
            warnings.warn(
                f"XLA compilation failed, continuing without jit_compile "
                f"({type(error).__name__}: {str(error)[:200]}).",
                stacklevel=4,
            )
            loop.build(jit_compile=False)
            return run()

    # ------------------------------------------------------------- checkpoints
    def _open_checkpoints(self, resume: bool):
        """Create the store and restore from it; returns `(epoch, position, metadata)`."""
        self._store = None
        if self.checkpoint_dir is None:
            return 0, 0, None
        store = checkpoint_lib.CheckpointStore(
            self.checkpoint_dir, self._trackables(), max_to_keep=self.max_to_keep
        )
        latest = store.latest()
        if not resume:
            if latest is not None:
                warnings.warn(
                    f"`checkpoint_dir` {self.checkpoint_dir} already holds checkpoints; new "
                    "ones will be added next to them. Pass `resume=True` to continue instead.",
                    stacklevel=3,
                )
            self._store = store
            return 0, 0, None
        if latest is None:
            if store.checkpoints():
                raise ValueError(
                    f"No checkpoint in {self.checkpoint_dir} has its metadata file "
                    f"(ckpt-N.json); they cannot be trusted. Listed: {store.checkpoints()}"
                )
            warnings.warn(
                f"`resume=True` but {self.checkpoint_dir} has no checkpoint; starting fresh.",
                stacklevel=3,
            )
            self._store = store
            return 0, 0, None
        metadata = store.restore(latest, self._signature())
        self.step = int(metadata["step"])
        self.seed = int(metadata["seed"])
        self._store = store
        return int(metadata["epoch"]), int(metadata["position"]), metadata

    def _save(self, epoch: int, position: int, epoch_nonfinite: int, callbacks) -> None:
        if self._store is None:
            return
        from tfcraft import __version__

        self._store.save(
            self.step,
            {
                "format": 1,
                "tfcraft_version": __version__,
                "step": self.step,
                "epoch": epoch,
                "position": position,
                "epoch_nonfinite": epoch_nonfinite,
                "seed": self.seed,
                "callbacks": callbacks.state_dict(),
                "model_signature": self._signature(),
            },
        )

    # ---------------------------------------------------------- eval / predict
    def _evaluation_dataset(self, data, batch_size: int) -> tf.data.Dataset:
        if isinstance(data, data_lib.ArrayData):
            return tf.data.Dataset.from_tensor_slices(data.tensors).batch(batch_size)
        return data.dataset

    def _evaluate(self, dataset: tf.data.Dataset, callbacks) -> dict[str, float]:
        if self.train_step is not None and self.loss_fn is None and self.loss is None:
            raise ValueError(
                "`evaluate` needs `loss` or `loss_fn`; this Trainer has `train_step` only."
            )
        if self._eval_function is None:
            test_step = make_test_step(self._step)

            def run(dataset):
                for batch in dataset:
                    test_step(batch)
                return test_step.trackers.results()

            self._eval_function = tf.function(run)
        callbacks.on_test_begin()
        self._step.reset_metrics()
        logs = to_python_logs(self._eval_function(dataset))
        callbacks.on_test_end(logs)
        return logs

    def evaluate(self, data: object, *, batch_size: int = 32) -> dict[str, float]:
        """Mean loss and metric values over `data` (`training=False`).

        Example:

        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> trainer = Trainer(model, loss="mse", seed=0)
        >>> sorted(trainer.evaluate((np.ones((4, 1)), np.ones((4, 1)))))
        ['loss']
        """
        batch_size = check_positive_int("batch_size", batch_size)
        data = data_lib.adapt(data, "data")
        self._ensure_built(data)
        if self._step is None or isinstance(self._step, CustomStep):
            self._get_step(self._skip)
        callbacks = CallbackList(self.callbacks)
        callbacks.set_trainer(self)
        return self._evaluate(self._evaluation_dataset(data, batch_size), callbacks)

    def predict(self, x: object, *, batch_size: int = 32) -> np.ndarray:
        """Model outputs on `x` (arrays, a dataset or a generator), as NumPy.

        Example:

        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> Trainer(model, loss="mse").predict(np.ones((5, 3)), batch_size=2).shape
        (5, 2)
        """
        batch_size = check_positive_int("batch_size", batch_size)
        if isinstance(x, tuple | list):
            x = x[0]
        data = data_lib.adapt(x, "x")
        self._ensure_built(data)
        if isinstance(data, data_lib.ArrayData):
            dataset = tf.data.Dataset.from_tensor_slices(data.tensors[0]).batch(batch_size)
        else:
            dataset = data.dataset.map(data_lib.features_only)
        function = tf.function(
            lambda inputs: call_model(self.model, inputs, training=False), reduce_retracing=True
        )
        callbacks = CallbackList(self.callbacks)
        callbacks.set_trainer(self)
        callbacks.on_predict_begin()
        outputs = [function(batch) for batch in dataset]
        callbacks.on_predict_end()
        return tf.nest.map_structure(
            lambda *parts: np.concatenate([np.asarray(p) for p in parts]), *outputs
        )
