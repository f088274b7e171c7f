"""`NanGuard`: no non-finite update ever reaches the weights; raise, skip, stop or roll back.

With a `NanGuard` among its callbacks the Trainer builds steps that skip a
non-finite update entirely: the optimizer, the BatchNorm statistics the forward
pass assigned, and the running loss and metrics stay as before the poisoned
batch (a custom `train_step` gets its variables put back). The guard then acts
on `logs["nonfinite_steps"]` by its policy. Checkpoints are never written with
non-finite weights (see `tfcraft.training.resume`), so a rollback always finds
finite ones.

Example:

>>> import types
>>> trainer = types.SimpleNamespace(stop_training=False, step=7)
>>> guard = NanGuard(policy="stop")
>>> guard.set_trainer(trainer)
>>> guard.on_train_batch_end(6, {"loss": float("nan"), "nonfinite_steps": 1})
>>> trainer.stop_training, guard.skipped_steps
(True, 1)
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from tfcraft._validation import check_choice, check_positive_int
from tfcraft.training.callbacks_base import Callback

__all__ = ["NanGuard", "first_nonfinite"]

# Diagnostic logs of a skipping TrainStep, consumed (removed) by the guard.
_DIAGNOSTICS = ("nonfinite_tensor", "nonfinite_steps_ago")


def first_nonfinite(variables) -> str | None:
    """Name of the first variable holding a NaN or an infinity, or `None`.

    Example:

    >>> import tensorflow as tf
    >>> first_nonfinite([tf.Variable([1.0], name="w"), tf.Variable([float("inf")], name="b")])
    'b'
    """
    for variable in variables:
        value = np.asarray(variable)
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            return str(getattr(variable, "path", None) or variable.name).split(":")[0]
    return None


class NanGuard(Callback):
    """Guard against non-finite losses, gradients and weights.

    Having this callback makes the Trainer build steps that never apply a
    non-finite update (`skips_nonfinite_updates = True`): for the default step
    nor the optimizer, nor BatchNorm statistics, nor the running loss and
    metrics see the poisoned batch; a custom `train_step` has the variables it
    changed put back. After each graph call the guard reads
    `logs["nonfinite_steps"]` and acts by `policy`:

    - `"raise"`: raise `FloatingPointError` naming the global step and the
      first non-finite tensor (the loss, which gradient, or which weight);
    - `"stop"`: set `trainer.stop_training = True` and end `fit`;
    - `"skip"`: carry on; the bad updates were not applied;
    - `"rollback"`: restore the last checkpoint (`trainer.restore_latest()`:
      weights, optimizer with its iteration count, step state), multiply the
      learning rate by `lr_factor` and carry on from the current data
      position: with the batch after the graph call that went bad. The
      batches since the checkpoint are not replayed (their updates are
      dropped, as is the bad batch, which a replay would feed again), and the
      global step keeps counting. The epoch's running loss and metrics then
      cover the batches whose updates were kept (reset if the checkpoint is
      from before this epoch). After `max_rollbacks` rollbacks, raise. Needs
      `checkpoint_dir` (and a checkpoint written before the first bad step:
      use `checkpoint_every`).

    `skipped_steps` and `rollbacks` are saved with each checkpoint.

    Example:

    >>> import keras, numpy as np, tempfile
    >>> from tfcraft.training import Trainer
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> guard = NanGuard(policy="rollback", lr_factor=0.5)
    >>> trainer = Trainer(model, keras.optimizers.SGD(0.1), loss="mse", seed=0,
    ...                   callbacks=[guard], checkpoint_dir=tempfile.mkdtemp(),
    ...                   checkpoint_every=2)
    >>> x = np.ones((16, 1), "float32")
    >>> y = np.where(np.arange(16)[:, None] == 9, np.nan, 1.0).astype("float32")
    >>> _ = trainer.fit((x, y), epochs=1, batch_size=4, shuffle=False, verbose=0)
    >>> guard.rollbacks, round(float(trainer.optimizer.learning_rate), 3)
    (1, 0.05)

    Args:
        policy: One of `"raise"`, `"skip"`, `"stop"`, `"rollback"`. Defaults to `"raise"`.
        lr_factor: Float in (0, 1]; the learning rate is multiplied by it at
            each rollback. Defaults to `0.5`.
        max_rollbacks: Positive int; rollbacks allowed before raising. Defaults to `3`.
    """

    skips_nonfinite_updates = True
    POLICIES = ("raise", "skip", "stop", "rollback")

    @property
    def epoch_sync(self) -> bool:
        """`"raise"`, `"stop"` and `"rollback"` act between calls; `"skip"` only counts."""
        return self.policy != "skip"

    def __init__(self, policy: str = "raise", lr_factor: float = 0.5, max_rollbacks: int = 3):
        super().__init__()
        self.policy = check_choice("policy", policy, self.POLICIES)
        if (
            isinstance(lr_factor, bool)
            or not isinstance(lr_factor, numbers.Real)
            or not 0 < lr_factor <= 1
        ):
            raise ValueError(
                f"Argument `lr_factor` must be a float in (0, 1]. Received: lr_factor={lr_factor!r}"
            )
        self.lr_factor = float(lr_factor)
        self.max_rollbacks = check_positive_int("max_rollbacks", max_rollbacks)
        self.skipped_steps = 0
        self.rollbacks = 0
        self._epoch_start_step = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Note the global step at which the epoch starts (for a rollback's running loss)."""
        self._epoch_start_step = int(getattr(self.trainer, "step", 0))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Count non-finite steps and apply the policy."""
        logs = {} if logs is None else logs
        diagnostics = {key: logs.pop(key) for key in _DIAGNOSTICS if key in logs}
        if "nonfinite_steps" in logs:
            bad = int(logs["nonfinite_steps"])
        else:
            bad = int(not math.isfinite(logs.get("loss", 0.0)))
        if not bad:
            return
        self.skipped_steps += bad
        if self.policy == "stop":
            self.trainer.stop_training = True
        elif self.policy == "raise":
            raise FloatingPointError(self._describe(bad, batch, logs, diagnostics))
        elif self.policy == "rollback":
            self._roll_back(bad, batch, logs, diagnostics)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Drop the step's diagnostic logs from the epoch's logs."""
        for key in _DIAGNOSTICS:
            (logs or {}).pop(key, None)

    def _describe(self, bad: int, batch: int, logs: dict, diagnostics: dict) -> str:
        epoch = getattr(self.trainer, "epoch", None)
        tensor = self._culprit(diagnostics, logs)
        ago = int(diagnostics.get("nonfinite_steps_ago", 0))
        return (
            f"Non-finite {tensor} at global step {self._bad_step(diagnostics)} "
            f"(epoch {epoch}, batch {batch - ago}); "
            f"{bad} bad step(s) in the graph call, none applied. "
            f"Received: loss={logs.get('loss')!r}, grad_norm={logs.get('grad_norm')!r}. "
            "Use NanGuard(policy='skip') to carry on, 'rollback' to restore the last "
            "checkpoint with a lower learning rate, or 'stop' to end training."
        )

    def _bad_step(self, diagnostics: dict) -> int | None:
        """Global step of the first bad step of the call (the call's last if unknown)."""
        step = getattr(self.trainer, "step", None)
        return step if step is None else step - int(diagnostics.get("nonfinite_steps_ago", 0))

    def _culprit(self, diagnostics: dict, logs: dict) -> str:
        model = getattr(self.trainer, "model", None)
        variables = list(getattr(model, "trainable_variables", []))
        weight = first_nonfinite(getattr(model, "variables", variables))
        index = int(diagnostics.get("nonfinite_tensor", -1))
        if index == 0:
            return "loss"
        if index > 0 and index <= len(variables):
            name = str(getattr(variables[index - 1], "path", variables[index - 1].name))
            return f"gradient of {name.split(':')[0]!r}"
        if weight is not None:
            return f"weight {weight!r}"
        loss = logs.get("loss")
        if isinstance(loss, float) and not math.isfinite(loss):
            return "loss"
        return "loss or gradients"

    def _roll_back(self, bad: int, batch: int, logs: dict, diagnostics: dict) -> None:
        trainer = self.trainer
        if self.rollbacks >= self.max_rollbacks:
            raise FloatingPointError(
                f"Still non-finite after {self.rollbacks} rollback(s) (max_rollbacks="
                f"{self.max_rollbacks}). {self._describe(bad, batch, logs, diagnostics)}"
            )
        optimizer = getattr(trainer, "optimizer", None)
        before = _learning_rate(optimizer)
        try:
            metadata = trainer.restore_latest()
        except ValueError as error:
            raise FloatingPointError(
                f"NanGuard(policy='rollback') found no checkpoint to restore ({error}) "
                "Give the Trainer `checkpoint_dir` and `checkpoint_every`. "
                f"{self._describe(bad, batch, logs, diagnostics)}"
            ) from error
        self.rollbacks += 1
        if int(metadata.get("step", -1)) <= self._epoch_start_step:
            # The restored running loss and metrics are an earlier epoch's: start afresh.
            reset = getattr(getattr(trainer, "_step", None), "reset_metrics", None)
            if reset is not None:
                reset()
        restored = _learning_rate(optimizer)
        if restored is None:
            warnings.warn(
                "NanGuard rolled back but cannot lower the learning rate of "
                f"{optimizer!r} (no optimizer, or a schedule).",
                stacklevel=2,
            )
        else:
            try:
                optimizer.learning_rate = min(restored, before or restored) * self.lr_factor
            except TypeError:  # a LearningRateSchedule cannot be set
                warnings.warn(
                    f"NanGuard cannot lower the learning rate of {optimizer!r}.", stacklevel=2
                )
        warnings.warn(
            f"NanGuard: non-finite values at global step {self._bad_step(diagnostics)}; "
            f"restored the checkpoint of step {metadata.get('step')} (rollback "
            f"{self.rollbacks}/{self.max_rollbacks}), learning rate now "
            f"{_learning_rate(optimizer)}.",
            RuntimeWarning,
            stacklevel=2,
        )

    def state_dict(self) -> dict[str, Any]:
        """The counts of skipped steps and rollbacks."""
        return {"skipped_steps": self.skipped_steps, "rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue counting skipped steps and rollbacks."""
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.rollbacks = int(state.get("rollbacks", 0))


def _learning_rate(optimizer) -> float | None:
    try:
        return float(optimizer.learning_rate)
    except (AttributeError, TypeError, ValueError):
        return None
