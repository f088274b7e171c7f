"""Checkpoints: `tf.train.Checkpoint` + `CheckpointManager` + an atomic JSON sidecar.

Each checkpoint `ckpt-N` holds the TF state (model, optimizer, step state such
as gradient accumulators and metric trackers, RNG states inside the model) and
a sidecar `ckpt-N.json` with the Trainer's counters, the position in the
epoch, the seed and the callbacks' `state_dict()`.

Crash safety: the sidecar is written atomically (temp file + `os.replace`)
*before* the manager writes the TF files and then atomically updates its
`checkpoint` index; a checkpoint is trusted only if its sidecar exists. A
crash at any point therefore leaves the previous checkpoint loadable.

Example:

>>> import tempfile, tensorflow as tf
>>> store = CheckpointStore(tempfile.mkdtemp(), {"v": tf.Variable(1.0)})
>>> path = store.save(7, {"epoch": 0})
>>> store.latest() == path, store.read_metadata(path)["epoch"]
(True, 0)
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfcraft._io import write_json_atomic
from tfcraft._locks import hold_folder_lock

__all__ = ["CheckpointStore", "variable_signature", "write_json_atomic"]


def variable_signature(variables) -> list[list]:
    """`[[name, shape], ...]` of variables, to recognise an incompatible model.

    Example:

    >>> variable_signature([tf.Variable(tf.zeros((2, 3)), name="w")])
    [['w', [2, 3]]]
    """
    signature = []
    for variable in variables:
        name = getattr(variable, "path", None) or variable.name
        signature.append([str(name).split(":")[0], [int(d) for d in variable.shape]])
    return signature


def _describe_difference(saved: list, current: list) -> str:
    if len(saved) != len(current):
        return f"the checkpoint has {len(saved)} model variables, this model has {len(current)}"
    for (saved_name, saved_shape), (name, shape) in zip(saved, current, strict=False):
        if saved_shape != shape:
            return (
                f"variable {name!r} has shape {shape} in this model but {saved_shape} "
                f"(saved as {saved_name!r}) in the checkpoint"
            )
    return "the variables differ"


class CheckpointStore:
    """Saves and restores the last `max_to_keep` checkpoints in `directory`.

    Args:
        directory: Folder of the checkpoints (created if missing).
        trackables: Objects to save, e.g. `{"model": model, "optimizer": opt}`.
        max_to_keep: Number of checkpoints kept. Defaults to `3`.
    """

    def __init__(self, directory: str | os.PathLike, trackables: dict, max_to_keep: int = 3):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.checkpoint = tf.train.Checkpoint(**trackables)
        index = self.directory / "checkpoint"
        problem = None
        try:
            # TF logs and ignores an unreadable index; we refuse to write over it.
            if index.exists() and tf.train.get_checkpoint_state(str(self.directory)) is None:
                problem = "it does not parse"
            self.manager = tf.train.CheckpointManager(
                self.checkpoint, str(self.directory), max_to_keep=max_to_keep
            )
        except Exception as error:
            problem = f"{type(error).__name__}: {error}"
        if problem is not None:
            raise ValueError(
                f"The checkpoint index {index} is corrupt and cannot be read ({problem}). "
                "Fix or remove it; nothing was overwritten."
            )

    @staticmethod
    def sidecar(path: str) -> Path:
        """Path of the JSON sidecar of checkpoint prefix `path`."""
        return Path(path + ".json")

    def checkpoints(self) -> list[str]:
        """Checkpoint prefixes listed in the index, oldest first."""
        return list(self.manager.checkpoints)

    def latest(self) -> str | None:
        """Newest checkpoint whose sidecar exists (`None` if there is none)."""
        listed = self.checkpoints()
        for path in reversed(listed):
            if self.sidecar(path).exists():
                if path != listed[-1]:
                    warnings.warn(
                        f"Checkpoint {listed[-1]} has no metadata file "
                        f"{self.sidecar(listed[-1])}; using {path} instead.",
                        stacklevel=2,
                    )
                return path
        return None

    def lock(self) -> None:
        """Become this folder's only writing process (`FolderLockedError` if another is)."""
        hold_folder_lock(self.directory)

    def save(self, number: int, metadata: dict[str, Any]) -> str:
        """Write checkpoint `ckpt-<number>` with its sidecar; returns its prefix."""
        self.lock()
        prefix = str(self.directory / f"ckpt-{number}")
        write_json_atomic(self.sidecar(prefix), metadata)  # before the index points to it
        try:
            path = self.manager.save(checkpoint_number=number)
        except Exception as error:  # disk full, permission denied, ... in TF's writer
            self.sidecar(prefix).unlink(missing_ok=True)
            shutil.rmtree(prefix + "_temp", ignore_errors=True)  # TF's partial files
            raise OSError(
                f"Could not write checkpoint {prefix} ({type(error).__name__}: {error}). "
                f"The previous checkpoint, {self.latest()}, is intact."
            ) from error
        kept = {self.sidecar(p).name for p in self.checkpoints()}
        for stale in self.directory.glob("ckpt-*.json"):
            if stale.name not in kept:
                stale.unlink(missing_ok=True)
        for partial in self.directory.glob("ckpt-*_temp"):  # TF files of a killed write
            shutil.rmtree(partial, ignore_errors=True)
        return path

    def read_metadata(self, path: str) -> dict[str, Any]:
        """The sidecar of `path`; raises `ValueError` naming the file if unreadable."""
        sidecar = self.sidecar(path)
        try:
            return json.loads(sidecar.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(
                f"Checkpoint metadata {sidecar} is missing or corrupt "
                f"({type(error).__name__}: {error})."
            ) from error

    def restore(self, path: str, model_signature: list | None = None) -> dict[str, Any]:
        """Restore `path` into the trackables and return its metadata.

        Raises:
            ValueError: the checkpoint is corrupt, truncated or was written by a
                model with a different architecture. Nothing is modified on disk.
        """
        metadata = self.read_metadata(path)
        saved_signature = metadata.get("model_signature")
        shapes_differ = (
            model_signature is not None
            and saved_signature is not None
            and [shape for _, shape in saved_signature] != [s for _, s in model_signature]
        )
        if shapes_differ:
            raise ValueError(
                f"Checkpoint {path} is incompatible with this model: "
                f"{_describe_difference(saved_signature, model_signature)}."
            )
        try:
            status = self.checkpoint.restore(path)
            status.assert_existing_objects_matched()
        except Exception as error:  # TF raises OpError, ValueError, IndexError, ...
            raise ValueError(
                f"Checkpoint {path} could not be restored; it is corrupt, truncated or "
                f"incompatible with this model ({type(error).__name__}: {error})."
            ) from error
        return metadata
