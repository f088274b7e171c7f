"""Folder locks between processes: one writer per checkpoint folder.

`hold_folder_lock(path)` takes an exclusive `fcntl.flock` on `path/.lock` and
keeps it for the life of the process (the operating system releases it when
the process exits, also on SIGKILL). Within one process the lock is shared:
several Trainers or agents of one program may write to one folder in turn, as
tests and notebooks do; another process is refused with `FolderLockedError`.

Example:

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> hold_folder_lock(folder)
>>> hold_folder_lock(folder)  # again in this process: fine
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["FolderLockedError", "hold_folder_lock", "lock_pid_file"]

_LOCK_NAME = ".lock"
_HELD: dict[str, object] = {}  # resolved folder -> open lock file, for this process


class FolderLockedError(RuntimeError):
    """Another process is writing to this folder."""


def hold_folder_lock(path: str | os.PathLike) -> None:
    """Lock `path` for this process, or raise `FolderLockedError` naming the holder."""
    path = Path(path)
    key = str(path.resolve())
    if key in _HELD:
        return
    handle, holder = lock_pid_file(path / _LOCK_NAME)
    if handle is None:
        raise FolderLockedError(
            f"Folder {str(path)!r} is being written by another process (pid {holder}); "
            "two writers would mix their checkpoints. Wait for it to finish or choose "
            "another folder."
        )
    _HELD[key] = handle


def lock_pid_file(path: Path):
    """Take an exclusive non-blocking `flock` on the file `path` and write our pid in it.

    Returns `(handle, None)` with the open, locked file (keep it open to hold
    the lock), or `(None, holder)` with the holding process's pid as text.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        return None, holder
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle, None
