"""Checkpoint and resume for the Trainer: what is saved, and where a resumed run continues.

`TrainingCheckpoints` opens a `CheckpointStore` over everything a run's
outcome depends on (model variables, optimizer, the step's accumulators and
trackers, a `train_step` module, callbacks' variables) and writes, beside
each checkpoint, the counters needed to continue at the same epoch and batch.

Example:

>>> import tempfile, keras, numpy as np
>>> from tfcraft.training import Trainer
>>> directory = tempfile.mkdtemp()
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> trainer = Trainer(model, loss="mse", seed=0, checkpoint_dir=directory)
>>> _ = trainer.fit((np.ones((8, 2)), np.ones((8, 1))), epochs=2, batch_size=4, verbose=0)
>>> TrainingCheckpoints(directory).latest_metadata()["epoch"]
2
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import tensorflow as tf

from tfcraft.training.callbacks_base import CallbackList
from tfcraft.training.checkpoint import CheckpointStore, variable_signature
from tfcraft.training.nan_guard import first_nonfinite

__all__ = ["ResumePoint", "TrainingCheckpoints"]

CHECKPOINT_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where training (re)starts: epoch, batch position in it, and saved state."""

    epoch: int = 0
    position: int = 0
    epoch_nonfinite: int = 0
    step: int = 0
    seed: int | None = None
    callback_state: dict | None = None


def _trackables(trainer, callbacks: CallbackList) -> dict:
    model = trainer.model
    trackables = {"model": model, "step_state": trainer.step_state()}
    if not isinstance(model, tf.Module) or hasattr(model, "get_weights"):
        # A Keras 3 model does not list its variables as checkpoint children (only the
        # optimizer's trainable ones get saved), so save all of them, in order: this
        # covers non-trainable state such as BatchNorm statistics and the dropout
        # SeedGenerator states.
        trackables["model_variables"] = list(model.variables)
    if trainer.optimizer is not None:
        trackables["optimizer"] = trainer.optimizer
    if isinstance(trainer.train_step, tf.Module):
        trackables["train_step"] = trainer.train_step
    callback_variables = {
        f"{index}:{type(callback).__name__}": variables
        for index, callback in enumerate(callbacks.callbacks)
        if (variables := callback.checkpoint_variables()) and tf.nest.flatten(variables)
    }
    if callback_variables:
        trackables["callbacks"] = callback_variables
    return trackables


class TrainingCheckpoints:
    """The Trainer's checkpoints in `directory` (see `CheckpointStore` for crash safety).

    Args:
        directory: Checkpoint folder.
        max_to_keep: Checkpoints kept. Defaults to `3`.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3) -> None:
        self.directory = directory
        self.max_to_keep = max_to_keep
        self._store: CheckpointStore | None = None

    def latest_metadata(self) -> dict[str, Any] | None:
        """The sidecar of the latest trusted checkpoint, or `None`."""
        store = CheckpointStore(self.directory, {}, max_to_keep=self.max_to_keep)
        latest = store.latest()
        return None if latest is None else store.read_metadata(latest)

    def open(self, trainer, callbacks: CallbackList, resume: bool) -> ResumePoint:
        """Create the store over the trainer's state; restore the latest if `resume`."""
        store = CheckpointStore(
            self.directory, _trackables(trainer, callbacks), max_to_keep=self.max_to_keep
        )
        store.lock()  # before training: a second process is refused at once
        self._store = store
        latest = store.latest()
        if not resume:
            if latest is not None:
                warnings.warn(
                    f"`checkpoint_dir` {self.directory} already holds checkpoints; new "
                    "ones will be added next to them. Pass `resume=True` to continue instead.",
                    stacklevel=4,
                )
            return ResumePoint()
        if latest is None:
            if store.checkpoints():
                raise ValueError(
                    f"No checkpoint in {self.directory} has its metadata file "
                    f"(ckpt-N.json); they cannot be trusted. Listed: {store.checkpoints()}"
                )
            warnings.warn(
                f"`resume=True` but {self.directory} has no checkpoint; starting fresh.",
                stacklevel=4,
            )
            return ResumePoint()
        metadata = store.restore(latest, variable_signature(trainer.model.variables))
        position = int(metadata["position"])
        return ResumePoint(
            epoch=int(metadata["epoch"]),
            position=position,
            epoch_nonfinite=int(metadata["epoch_nonfinite"]) if position else 0,
            step=int(metadata["step"]),
            seed=int(metadata["seed"]),
            callback_state=metadata["callbacks"],
        )

    def restore_latest(self, trainer) -> dict[str, Any]:
        """Load the latest checkpoint into the open store's objects; returns its metadata."""
        if self._store is None or self._store.latest() is None:
            raise ValueError(f"There is no checkpoint to restore in {self.directory}.")
        return self._store.restore(
            self._store.latest(), variable_signature(trainer.model.variables)
        )

    def save(self, trainer, epoch: int, position: int, epoch_nonfinite: int, callbacks) -> None:
        """Write a checkpoint of the current state (a no-op before `open`)."""
        if self._store is None:
            return
        optimizer_variables = getattr(trainer.optimizer, "variables", None) or []
        bad = first_nonfinite([*trainer.model.variables, *optimizer_variables])
        if bad is not None:  # never a checkpoint a resume or a rollback would regret
            warnings.warn(
                f"Not writing checkpoint ckpt-{trainer.step} in {self.directory}: variable "
                f"{bad!r} is not finite. The latest checkpoint, {self._store.latest()}, is kept.",
                RuntimeWarning,
                stacklevel=4,
            )
            return
        from tfcraft import __version__

        self._store.save(
            trainer.step,
            {
                "format": CHECKPOINT_FORMAT,
                "tfcraft_version": __version__,
                "step": trainer.step,
                "epoch": epoch,
                "position": position,
                "epoch_nonfinite": epoch_nonfinite,
                "seed": trainer.seed,
                "callbacks": callbacks.state_dict(),
                "model_signature": variable_signature(trainer.model.variables),
            },
        )
