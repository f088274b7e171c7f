"""The run directory: one folder per run, locked while a process uses it, written atomically.

Layout of `runs/NAME/`:

- `config.yaml`: the resolved config (every default filled in) with the
  tfcraft, TensorFlow and Keras versions and the seed;
- `metrics.jsonl`: one JSON line per epoch (`JSONLLogger`);
- `checkpoints/`: the Trainer's checkpoints (what `--resume` continues from);
- `tensorboard/`: event files (append-only by design);
- `model.keras`, `results.json`, `preprocessing.json`, `report.html`, `plots/*.png`.

`RunDirectory.open(path)` takes an exclusive `fcntl.flock` on `path/.lock`: a
second process is refused with `RunLockedError` instead of writing into the
same files, and the operating system releases the lock when the holder exits,
also on a crash or SIGKILL. Every file is written to a temporary name and
renamed (`tfcraft._io`, `save_model_atomic`, `save_npz_atomic`; the plots
too), `model.keras` included; `metrics.jsonl` is rewritten atomically by
`JSONLLogger`, and only TensorBoard's event files are appended to.

Example:

>>> import tempfile
>>> with RunDirectory.open(tempfile.mkdtemp()) as run:
...     _ = run.write_json("results.json", {"loss": 0.5})
...     run.read_json("results.json")
{'loss': 0.5}
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from pathlib import Path
from typing import Any

import yaml

from tfcraft._io import write_json_atomic, write_text_atomic
from tfcraft._locks import lock_pid_file

__all__ = [
    "RunDirectory",
    "RunLockedError",
    "read_metrics",
    "save_model_atomic",
    "save_npz_atomic",
    "versions",
]

_LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """The run directory is in use by another process."""


def versions() -> dict[str, str]:
    """tfcraft, TensorFlow, Keras and TFP versions, for `config.yaml`."""
    import keras
    import tensorflow as tf
    import tensorflow_probability as tfp

    import tfcraft

    return {
        "tfcraft": tfcraft.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflow_probability": tfp.__version__,
    }


def save_model_atomic(model, path: str | os.PathLike) -> None:
    """`model.save` to a temporary `.keras` name in the same folder, then `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_npz_atomic(path: str | os.PathLike, **arrays) -> None:
    """`np.savez` to a temporary name in the same folder, then `os.replace`."""
    import numpy as np

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a `metrics.jsonl` file (`null` read back as NaN); [] if missing."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append({k: math.nan if v is None else v for k, v in row.items()})
    return rows


class RunDirectory:
    """An open, locked run directory; use `RunDirectory.open(path)` as a context manager.

    Args:
        path: The folder (created if missing).
        handle: The open lock file holding the `flock`.
    """

    def __init__(self, path: Path, handle) -> None:
        self.path = path
        self._handle = handle

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDirectory:
        """Create `path` if needed and lock it, or raise `RunLockedError` at once."""
        path = Path(path)
        handle, holder = lock_pid_file(path / _LOCK_NAME)
        if handle is None:
            raise RunLockedError(
                f"run directory {str(path)!r} is in use by another tfcraft process "
                f"(pid {holder}); wait for it to finish or choose another --out"
            )
        return cls(path, handle)

    def close(self) -> None:
        """Release the lock (also released by the OS if the process dies)."""
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- paths
    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def plots(self) -> Path:
        """The `plots/` folder (created on first use)."""
        folder = self.path / "plots"
        folder.mkdir(exist_ok=True)
        return folder

    def has_run(self) -> bool:
        """Whether an earlier run already wrote here (a `config.yaml` exists)."""
        return (self.path / "config.yaml").is_file()

    # -- atomic files
    def write_text(self, name: str, text: str) -> Path:
        """Write `name` atomically; returns its path."""
        write_text_atomic(self.path / name, text)
        return self.path / name

    def write_json(self, name: str, payload: Any) -> Path:
        """Write `name` as strict JSON (non-finite numbers as null), atomically."""
        write_json_atomic(self.path / name, _finite(payload), allow_nan=False)
        return self.path / name

    def read_json(self, name: str) -> Any:
        """Read a JSON file of the run."""
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def write_config(self, config, seed: int) -> Path:
        """`config.yaml`: the resolved config plus the library versions and the seed."""
        data = config.model_dump(mode="json")
        data["run"] = {"versions": versions(), "seed": int(seed)}
        return self.write_text("config.yaml", yaml.safe_dump(data, sort_keys=False))


def _finite(value: Any) -> Any:
    """NaN/inf become None, NumPy scalars and arrays plain Python, for strict JSON."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
