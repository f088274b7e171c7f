"""Loggers: TensorBoard scalars and per-epoch CSV / JSON Lines files.

Re-exported by `tfcraft.training.callbacks` and `tfcraft.training`, which is
where to import them from. The CSV and JSONL files are rewritten whole and
atomically each epoch (`tfcraft._io.write_text_atomic`); TensorBoard event
files are TensorFlow's append-only records.

Example:

>>> from tfcraft.training import callbacks
>>> callbacks.CSVLogger is CSVLogger, callbacks.TensorBoard is TensorBoard
(True, True)
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tfcraft._io import write_text_atomic
from tfcraft._validation import check_positive_int
from tfcraft.training.callbacks_base import Callback

__all__ = ["CSVLogger", "JSONLLogger", "TensorBoard", "check_update_freq"]


# Also used by `callbacks.ProgressBar`; it lives here so neither module imports the other
# in a cycle (`callbacks` re-exports this module's loggers).
def check_update_freq(update_freq: object) -> str | int:
    """`"epoch"` or a positive int: how often a logger or progress bar writes batch lines."""
    if update_freq == "epoch":
        return "epoch"
    if isinstance(update_freq, numbers.Integral) and not isinstance(update_freq, bool):
        return check_positive_int("update_freq", update_freq)
    raise ValueError(
        "Argument `update_freq` must be 'epoch' or a positive integer number of steps. "
        f"Received: update_freq={update_freq!r}"
    )


# What `tensorboard.summary.scalar` attaches; writing it ourselves avoids needing the
# `tensorboard` package (which `tf.summary.scalar` imports) at run time.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR,
)


class TensorBoard(Callback):
    """Write scalars for TensorBoard: loss, metrics, `grad_norm`, `learning_rate`, `val_*`.

    Layout as in `keras.callbacks.TensorBoard`, so training and validation curves
    share a chart: `log_dir/train` holds `epoch_<key>` (and `batch_<key>` when
    `update_freq` is an integer, at the global step), `log_dir/validation`
    holds `epoch_<key>` for each `val_<key>`. Event files are TensorFlow's
    append-only record format (each record has a checksum), so they are the one
    kind of file written in place rather than renamed.

    Example:

    >>> import tempfile, types
    >>> board = TensorBoard(tempfile.mkdtemp())
    >>> board.set_trainer(types.SimpleNamespace(step=10))
    >>> board.on_train_begin()
    >>> board.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.75})
    >>> board.on_train_end()

    Args:
        log_dir: Directory for the event files; created if needed.
        update_freq: `"epoch"`, or an integer: also write `batch_*` scalars every
            that many steps. Defaults to `"epoch"`.
    """

    epoch_sync = False  # only records logs
    chief_only = True  # with several workers, only the chief writes (tfcraft.training.distribute)

    def __init__(self, log_dir: str | os.PathLike, update_freq: str | int = "epoch") -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self.update_freq = check_update_freq(update_freq)
        self._writers: dict[str, Any] = {}
        self._last_batch_step = 0

    def _writer(self, split: str):
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(str(self.log_dir / split))
        return self._writers[split]

    def _write(self, split: str, prefix: str, logs: dict, step: int) -> None:
        with self._writer(split).as_default():
            for key, value in logs.items():
                if isinstance(value, numbers.Real):
                    tensor = tf.constant(float(value), tf.float32)
                    tf.summary.write(
                        f"{prefix}_{key}", tensor, step=step, metadata=_SCALAR_METADATA
                    )

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Start counting steps for batch-level summaries."""
        self._last_batch_step = int(getattr(self.trainer, "step", 0) or 0)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Write `batch_*` scalars every `update_freq` steps."""
        if self.update_freq == "epoch":
            return
        step = int(self.trainer.step)
        if step - self._last_batch_step >= self.update_freq:
            self._last_batch_step = step
            self._write("train", "batch", logs or {}, step)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Write `epoch_*` scalars for training and validation and flush."""
        logs = logs or {}
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        validation = {k.removeprefix("val_"): v for k, v in logs.items() if k.startswith("val_")}
        self._write("train", "epoch", train, epoch)
        if validation:
            self._write("validation", "epoch", validation, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        """Close the event files."""
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class _EpochFileLogger(Callback):
    """One row per epoch in a file that is rewritten whole and atomically each epoch.

    Subclasses say how rows are made, parsed and rendered. Rewriting the whole
    file costs one small write per epoch and means the file on disk is always
    complete and valid, even after a crash. On resume the state holds the
    number of rows written at that checkpoint: rows written after it (the
    epochs being re-run) are dropped, so none is duplicated.
    """

    epoch_sync = False  # only records logs
    chief_only = True  # with several workers, only the chief writes (tfcraft.training.distribute)

    def __init__(self, path: str | os.PathLike, append: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.append = bool(append)
        self._rows: list = []
        self._resumed = False

    def _make_row(self, epoch: int, logs: dict) -> object:
        raise NotImplementedError  # abstract: subclasses implement it

    def _parse(self, text: str) -> list:
        raise NotImplementedError  # abstract: subclasses implement it

    def _render(self, rows: list) -> str:
        raise NotImplementedError  # abstract: subclasses implement it

    def _existing_rows(self) -> list:
        return self._parse(self.path.read_text(encoding="utf-8")) if self.path.exists() else []

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Keep the rows in the file if appending; a resume already loaded them."""
        if not self._resumed:
            self._rows = self._existing_rows() if self.append else []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Add this epoch's row and rewrite the file atomically."""
        self._rows.append(self._make_row(int(epoch), logs or {}))
        write_text_atomic(self.path, self._render(self._rows))

    def on_train_end(self, logs: dict | None = None) -> None:
        """Forget the resume, so the next `fit` follows `append`."""
        self._resumed = False

    def state_dict(self) -> dict[str, Any]:
        """The number of rows in the file."""
        return {"rows_written": len(self._rows)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep the first `rows_written` rows of the file and continue after them."""
        self._rows = self._existing_rows()[: int(state.get("rows_written", 0))]
        self._resumed = True


class CSVLogger(_EpochFileLogger):
    """Write one CSV row per epoch: `epoch` (0-based) and every log key.

    The file is rewritten whole through a temporary file and `os.replace` at
    each epoch end, so after a crash it is a complete, valid CSV; a resumed run
    continues it without duplicated rows. Columns are `epoch` then the log keys
    in sorted order; a key that first appears later (a `val_` metric, say) adds
    a column, left empty in earlier rows.

    Example:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
    >>> logger = CSVLogger(path)
    >>> logger.on_train_begin()
    >>> logger.on_epoch_end(0, {"loss": 0.5})
    >>> print(path.read_text(), end="")
    epoch,loss
    0,0.5

    Args:
        path: File to write.
        append: Whether a fresh (not resumed) run keeps the rows already in the
            file. Defaults to `False` (overwrite).
    """

    def _make_row(self, epoch: int, logs: dict) -> dict[str, str]:
        cells = {k: repr(float(v)) if isinstance(v, float) else str(v) for k, v in logs.items()}
        return {"epoch": str(epoch), **cells}

    def _parse(self, text: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(text)))

    def _render(self, rows: list[dict[str, str]]) -> str:
        keys = sorted({key for row in rows for key in row} - {"epoch"})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, ["epoch", *keys], restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()


class JSONLLogger(_EpochFileLogger):
    """Write one JSON object per epoch and line: `{"epoch": 0, "loss": ..., ...}`.

    Written like `CSVLogger`: the whole file through a temporary file and
    `os.replace`, and a resumed run continues it without duplicated lines.
    Non-finite values are written as `null`, since strict JSON has no NaN; the
    `nonfinite_steps` key says when that happened.

    Example:

    >>> import json, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
    >>> logger = JSONLLogger(path)
    >>> logger.on_train_begin()
    >>> logger.on_epoch_end(0, {"loss": 0.5})
    >>> json.loads(path.read_text())
    {'epoch': 0, 'loss': 0.5}

    Args:
        path: File to write.
        append: Whether a fresh (not resumed) run keeps the lines already in the
            file. Defaults to `False` (overwrite).
    """

    def _make_row(self, epoch: int, logs: dict) -> str:
        finite = {
            key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in logs.items()
        }
        return json.dumps({"epoch": epoch, **finite}, allow_nan=False)

    def _parse(self, text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip()]

    def _render(self, rows: list[str]) -> str:
        return "".join(f"{row}\n" for row in rows)
