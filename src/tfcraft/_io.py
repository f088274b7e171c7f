"""Atomic file writes: after a crash a file is the old one or the new one, never half.

Every file tfcraft writes itself (checkpoint sidecars, CSV/JSONL logs, benchmark
reports) goes through `write_text_atomic`: the text goes to a temporary file in
the same folder, is flushed and `os.fsync`-ed, then `os.replace` swaps it in.
`os.replace` is atomic when both paths are on one file system, which the same
folder guarantees. If anything fails on the way the temporary file is removed
and the previous file is left as it was.

Example:

>>> import json, pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "run" / "meta.json"
>>> write_json_atomic(path, {"b": 1, "a": 2})
>>> json.loads(path.read_text())
{'a': 2, 'b': 1}
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["replace_folder_atomic", "write_json_atomic", "write_text_atomic"]


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8, newlines as given) to `path` atomically.

    Missing parent folders are created. The temporary file is `<name>.tmp` next
    to `path`; it is removed if the write, the sync or the rename fails.

    Example:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "report.md"
    >>> write_text_atomic(path, "old")
    >>> write_text_atomic(path, "new")
    >>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
    ('new', ['report.md'])

    Args:
        path: File to write or replace.
        text: The whole new content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if error.filename is None:  # e.g. ENOSPC from fsync: say which file
            raise type(error)(error.errno, error.strerror or str(error), str(path)) from error
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, payload: Any, *, allow_nan: bool = True) -> None:
    """Write `payload` as indented, key-sorted JSON to `path` atomically.

    The payload is serialised before anything is written, so a value JSON cannot
    hold raises with the file untouched.

    Example:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "state.json"
    >>> write_json_atomic(path, {"step": 3, "best": float("inf")})
    >>> print(path.read_text())
    {
      "best": Infinity,
      "step": 3
    }

    Args:
        path: File to write or replace.
        payload: JSON-serialisable object.
        allow_nan: Whether NaN and infinities are written as `NaN`/`Infinity`
            (Python's JSON dialect, as the checkpoint sidecars need) rather than
            raising `ValueError` (strict JSON). Defaults to `True`.
    """
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=allow_nan)
    write_text_atomic(path, text)


def replace_folder_atomic(new: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move the finished folder `new` to `path`, replacing an old folder.

    The old folder is renamed aside first, then `new` takes its name: after a
    crash there is the old folder or the new one, never half of one.
    """
    new, path = Path(new), Path(path)
    if not path.exists():
        os.replace(new, path)
        return
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    os.replace(path, old)
    os.replace(new, path)  # the only moment `path` is absent; never half-written
    shutil.rmtree(old, ignore_errors=True)
