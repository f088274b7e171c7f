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

from tfcraft._validation import check_positive_int, check_seed
from tfcraft.layers.walk import set_num_train_examples, variational_layers
from tfcraft.training import clipping as clipping_lib
from tfcraft.training import data as data_lib
from tfcraft.training.callbacks_base import Callback, CallbackList
from tfcraft.training.distribute import Distribution
from tfcraft.training.evaluation import ArrayEvaluator, Predictor
from tfcraft.training.iterator_loop import RETIRED_ITERATORS
from tfcraft.training.loop_parts import XLA_ERRORS, to_python_logs
from tfcraft.training.loops import MAX_EPOCHS_PER_CALL, ArrayLoop
from tfcraft.training.parts import CustomStep, default_callbacks
from tfcraft.training.planning import plan_epochs_per_call, steps_this_call
from tfcraft.training.resume import ResumePoint, TrainingCheckpoints
from tfcraft.training.steps import call_model, get_loss, make_test_step

__all__ = ["Trainer"]


class Trainer:
    """Compiled custom training loop with clipping, accumulation, callbacks and checkpoints.

    In-memory data stays on the device: each epoch's batch order is a
    stateless permutation of `(seed, epoch)` gathered in the graph, and up to
    a whole epoch runs in one XLA-compiled call. `tf.data` input is iterated
    in the graph, same-shape batches stacked into XLA-compiled chunks. Batch
    callbacks fire once per call. Tiny epochs run several to a call
    (`epochs_per_execution`), with array validation and `EarlyStopping` inside
    the graph, when every other callback only records logs (`epoch_sync =
    False`); the callbacks then replay each epoch's logs. A second `fit` on
    data of the same shapes reuses every compiled function.

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
        strategy: A `tf.distribute.Strategy`, `"mirrored"` or `"multi_worker"`; `model`
            may be a function building it (see `tfcraft.training.distribute`).
        mixed_precision: `"mixed_float16"` or `"mixed_bfloat16"` (`training.precision`).

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
        strategy: object = None,
        mixed_precision: str | None = None,
    ) -> None:
        self._distribution = Distribution(strategy, mixed_precision)
        model = self._distribution.build_model(model, train_step)
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
        seed = check_seed("seed", seed)
        self.model = model
        self.optimizer = self._distribution.optimizer(optimizer)
        self.loss = get_loss(loss)
        self.metrics = self._distribution.metrics(metrics)
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
        self.checkpoint_dir = self._distribution.checkpoint_dir(checkpoint_dir)
        if checkpoint_every is not None:
            checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
        self.checkpoint_every = checkpoint_every
        self.max_to_keep = check_positive_int("max_to_keep", max_to_keep)
        if self.optimizer is None and train_step is None:
            raise ValueError("Argument `optimizer` is required without `train_step`.")
        self.params: dict[str, Any] = {}
        self.step = 0
        self.epoch = 0
        self.stop_training = False
        self.history = None
        self._step = None
        self._skip = False
        self._test_step = None
        self._loops = self._distribution.loop_cache()
        self._loop = None  # the training loop of the last `fit`
        self._predictor = None
        self._checkpoints = (
            None
            if checkpoint_dir is None
            else TrainingCheckpoints(self.checkpoint_dir, max_to_keep=self.max_to_keep)
        )

    def get_weights(self) -> list[np.ndarray]:
        """Model weights as NumPy arrays (trainable variables for a `tf.Module`)."""
        return [v.numpy() for v in self.weight_variables()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Set what `get_weights` returned."""
        for variable, value in zip(self.weight_variables(), weights, strict=True):
            variable.assign(value)

    def weight_variables(self) -> list[tf.Variable]:
        """The variables `get_weights` reads (`model.weights`, or a module's trainable ones)."""
        if hasattr(self.model, "get_weights"):
            return list(self.model.weights)
        return list(self.model.trainable_variables)

    def step_state(self) -> dict:
        """Variables the training step owns (accumulators, trackers), for checkpoints."""
        return self._step.variables if self._step is not None else {}

    def restore_latest(self) -> dict[str, Any]:
        """Load the latest checkpoint of the current `fit` into model, optimizer and step.

        Returns its metadata. Raises `ValueError` if there is none (or no `checkpoint_dir`).
        """
        if self._checkpoints is None:
            raise ValueError("`restore_latest` needs `checkpoint_dir`. Received: None")
        return self._checkpoints.restore_latest(self)

    def _ensure_built(self, data, for_training: bool = True) -> None:
        if isinstance(data, data_lib.ArrayData):
            sample = tf.nest.map_structure(lambda t: t[:2], data.tensors[0])
        else:
            batch = data.first_batch()
            sample = None if batch is None else data_lib.features_only(batch)
            sample = tf.nest.map_structure(
                lambda v: tf.cast(v, tf.float32) if np.asarray(v).dtype == np.float64 else v,
                sample,
            )
        unbuilt = not getattr(self.model, "built", True)
        if unbuilt or (for_training and not self.model.trainable_variables):
            try:
                with self._distribution.scope():
                    call_model(self.model, sample, training=False)
            except Exception as error:
                shapes = [tuple(np.shape(v)) for v in tf.nest.flatten(sample)]
                raise ValueError(
                    "The model is not built and could not be built by calling it on the "
                    f"data ({type(error).__name__}: {error}). Received: x shapes={shapes}"
                ) from error
        if for_training and not self.model.trainable_variables:
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
            self._step = self._distribution.custom_step(self.train_step, self.model, skip_nonfinite)
        else:
            self._step = self._distribution.make_train_step(
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
        self._test_step = None
        return self._step

    def _get_test_step(self):
        """The evaluation step: shares the metrics of the default step, else has its own."""
        if self._test_step is None:
            if self._step is not None and not isinstance(self._step, CustomStep):
                self._test_step = make_test_step(self._step)
            elif self.loss is None and self.loss_fn is None:
                raise ValueError(
                    "`evaluate` and `validation_data` need `loss` or `loss_fn`; this Trainer "
                    "has `train_step` only. Received: loss=None, loss_fn=None"
                )
            else:
                self._test_step = self._distribution.make_eval_step(
                    self.model, self.loss, loss_fn=self.loss_fn, metrics=self.metrics
                )
        return self._test_step

    def _use_xla(self) -> bool:
        return self._distribution.use_xla(self.jit_compile, self.model)

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
            data: `(x, y[, sample_weight])` arrays, unlabelled `x` (with a
                `loss_fn`), a `tf.data.Dataset`, a generator or a callable
                returning an iterator of batches.
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
        self._ensure_built(train)
        self._set_num_train_examples(train)
        history, callbacks = self._fit_callbacks(verbose)
        skip = any(getattr(c, "skips_nonfinite_updates", False) for c in callbacks.callbacks)
        step = self._get_step(skip)
        self._distribution.set_batch_size(train, batch_size)
        loop = self._loops.training_loop(
            step, train, batch_size, shuffle, drop_remainder, self.seed, self._use_xla()
        )
        self._loop = loop
        evaluator, validation = self._validation(validation_data, batch_size)
        start = self._open_checkpoints(callbacks, resume)
        if isinstance(loop, ArrayLoop):
            loop.seed = self.seed  # the checkpoint's seed, so epochs shuffle as before
        steps = getattr(loop, "steps_per_epoch", None) or steps_per_epoch or train.cardinality
        self.stop_training = False
        self.history = history
        self.params = {"epochs": epochs, "steps": steps, "verbose": verbose}
        callbacks.on_train_begin()
        if start.callback_state is not None:
            # After on_train_begin, which may reset a callback (as Keras' do).
            callbacks.load_state_dict(start.callback_state)
        plan = plan_epochs_per_call(
            self.epochs_per_execution,
            loop,
            evaluator,
            callbacks,
            checkpoint_every=self.checkpoint_every,
            steps_per_execution=self.steps_per_execution,
        )
        epoch, position, epoch_nonfinite = start.epoch, start.position, start.epoch_nonfinite
        while epoch < epochs and not self.stop_training:
            if plan.epochs_per_call > 1 and position == 0:
                num_epochs = min(plan.epochs_per_call, epochs - epoch)
                epoch = self._fit_epochs(loop, epoch, num_epochs, evaluator, plan, callbacks)
                continue
            self.epoch = epoch
            if position == 0:
                epoch_nonfinite = 0
            epoch, position, epoch_nonfinite = self._fit_epoch(
                loop,
                train,
                steps,
                (epoch, position, epoch_nonfinite),
                evaluator,
                validation,
                callbacks,
            )
        callbacks.on_train_end()
        return history

    def _fit_callbacks(self, verbose: int) -> tuple[Callback, CallbackList]:
        # History and the progress bar last, as in Keras: they see the logs that
        # other callbacks add at epoch end (a KL weight, say).
        history, extra = default_callbacks(verbose)
        callbacks = CallbackList([*self._distribution.callbacks(self.callbacks), *extra, history])
        callbacks.set_trainer(self)
        return history, callbacks

    def _validation(self, validation_data, batch_size: int):
        """`(evaluator, dataset)` for the validation data; built once per fit."""
        if validation_data is None:
            return None, None
        data = data_lib.adapt(validation_data, "validation_data")
        evaluator = self._loops.evaluator(self._get_test_step(), data, batch_size, self._use_xla())
        return evaluator, (None if isinstance(data, data_lib.ArrayData) else data.dataset)

    def _open_checkpoints(self, callbacks: CallbackList, resume: bool) -> ResumePoint:
        if self._checkpoints is None:
            return ResumePoint()
        start = self._checkpoints.open(self, callbacks, resume)
        if start.seed is not None:
            self.step, self.seed = start.step, start.seed
        return start

    def _save(self, epoch: int, position: int, epoch_nonfinite: int, callbacks) -> None:
        if self._checkpoints is not None:
            self._checkpoints.save(self, epoch, position, epoch_nonfinite, callbacks)

    def _fit_epoch(self, loop, train, steps, where, evaluator, validation, callbacks):
        """One epoch (or its rest, after a resume or stop); returns the next `where`."""
        epoch, position, epoch_nonfinite = where
        if position == 0 and not isinstance(loop, ArrayLoop):
            self._step.reset_metrics()  # an ArrayLoop resets inside its graph
        callbacks.on_epoch_begin(epoch)
        logs, position, epoch_nonfinite, ran_out = self._run_epoch(
            loop, train, steps, epoch, position, epoch_nonfinite, callbacks
        )
        if ran_out and logs is None:
            warnings.warn(
                "The training data ran out of batches; stopping. Pass a callable that "
                "returns a fresh iterator, or a tf.data.Dataset, to train several epochs.",
                stacklevel=3,
            )
            self.stop_training = True
            return epoch, position, epoch_nonfinite
        completed = ran_out or (steps is not None and position >= steps)
        epoch_logs = {**(logs or {}), "nonfinite_steps": epoch_nonfinite}
        if evaluator is not None:
            val_logs = self._evaluate(evaluator, validation, callbacks)
            epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
        if completed:
            callbacks.on_epoch_end(epoch, epoch_logs)
            self._save(epoch + 1, 0, 0, callbacks)
            return epoch + 1, 0, 0
        # Stopped mid-epoch: save the callbacks' mid-epoch state first, so a
        # resume finishes this epoch without a duplicate History entry.
        self._save(epoch, position, epoch_nonfinite, callbacks)
        callbacks.on_epoch_end(epoch, epoch_logs)
        return epoch + 1, 0, 0

    def _fit_epochs(self, loop: ArrayLoop, first_epoch, num_epochs, evaluator, plan, callbacks):
        """Run whole epochs in one graph call, then replay each one's logs to the callbacks."""
        all_logs, stopped = self._with_xla_fallback(
            loop, lambda: loop.run_epochs(first_epoch, num_epochs, evaluator, plan.stoppers)
        )
        steps = loop.steps_per_epoch
        in_graph = [c for c in callbacks.callbacks if c in plan.stoppers]
        replayed = CallbackList([c for c in callbacks.callbacks if c not in in_graph])
        for offset, logs in enumerate(all_logs):
            self.epoch = first_epoch + offset
            replayed.on_epoch_begin(self.epoch)
            replayed.on_train_batch_begin(0)
            self.step += steps
            train_logs = {k: v for k, v in logs.items() if not k.startswith("val_")}
            replayed.on_train_batch_end(steps - 1, train_logs)
            if evaluator is not None:
                replayed.on_test_begin()
                replayed.on_test_end({k[4:]: v for k, v in logs.items() if k.startswith("val_")})
            replayed.on_epoch_end(self.epoch, dict(logs))
        if stopped:
            self.stop_training = True
        done = first_epoch + len(all_logs)
        self._save(done, 0, 0, callbacks)
        return done

    def _run_epoch(self, loop, train, steps, epoch, position, epoch_nonfinite, callbacks):
        if isinstance(loop, ArrayLoop):
            loop.set_epoch(epoch)
            iterator = None
        else:
            dataset = train.dataset.skip(position) if position else train.dataset
            iterator = self._distribution.iterate(dataset)
        logs = None
        ran_out = False
        while steps is None or position < steps:
            num = steps_this_call(
                self.steps_per_execution, position, steps, self.checkpoint_every, self.step
            )
            callbacks.on_train_batch_begin(position)
            if iterator is None:
                raw, done = self._with_xla_fallback(
                    loop, lambda n=num, p=position: loop.run(p, n, p == 0)
                )
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
        if iterator is not None:
            RETIRED_ITERATORS.retire(iterator)
            del iterator  # the background thread holds the last reference now
        return logs, position, epoch_nonfinite, ran_out

    def _with_xla_fallback(self, loop: ArrayLoop, run: Callable):
        """`run()`, retried without XLA if `jit_compile="auto"` chose XLA and it failed."""
        if self.jit_compile != "auto" or not loop.jit_compile:
            return run()
        try:
            return run()
        except XLA_ERRORS as error:
            warnings.warn(
                f"XLA compilation failed, continuing without jit_compile "
                f"({type(error).__name__}: {str(error)[:200]}).",
                stacklevel=4,
            )
            loop.build(jit_compile=False)
            return run()

    def _evaluate(self, evaluator, dataset, callbacks) -> dict[str, float]:
        callbacks.on_test_begin()
        array = isinstance(evaluator, ArrayEvaluator)
        logs = evaluator.run() if array else evaluator.run(dataset)
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
        self._ensure_built(data, for_training=False)
        if self._step is None:
            self._get_step(self._skip)
        evaluator = self._loops.evaluator(self._get_test_step(), data, batch_size, self._use_xla())
        callbacks = CallbackList(self.callbacks)
        callbacks.set_trainer(self)
        dataset = None if isinstance(data, data_lib.ArrayData) else data.dataset
        return self._evaluate(evaluator, dataset, callbacks)

    def predict(self, x: object, *, batch_size: int = 32) -> np.ndarray:
        """Model outputs on `x` (arrays, a dataset or a generator), as NumPy.

        The compiled function is cached: calling `predict` in a loop does not retrace.

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
        self._ensure_built(data, for_training=False)
        if self._predictor is None:
            self._predictor = Predictor(self.model)
        callbacks = CallbackList(self.callbacks)
        callbacks.set_trainer(self)
        callbacks.on_predict_begin()
        outputs = self._predictor.run(data, batch_size)
        callbacks.on_predict_end()
        return outputs
