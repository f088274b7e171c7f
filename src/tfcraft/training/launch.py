"""`launch_local`: N worker processes on 127.0.0.1 with a correct `TF_CONFIG`.

For trying `MultiWorkerMirroredStrategy` on one machine: each worker is a
fresh (spawned) Python process whose `TF_CONFIG` names the whole cluster (free
ports on 127.0.0.1) and its own index, set before TensorFlow starts in it.
Each worker's stdout and stderr go to `worker-<i>.log`. If a worker exits
with an error or is killed, the others are stopped and `WorkerFailed` is
raised with that worker's log; the processes are always cleaned up.

On a real cluster nothing of this is needed: start the same program once per
host with that host's `TF_CONFIG` (see docs/distributed.md).

Example:

>>> import json
>>> config = cluster_config(["127.0.0.1:2222", "127.0.0.1:2223"], index=1)
>>> json.loads(config)["task"]
{'type': 'worker', 'index': 1}
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pickle
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tfcraft._validation import check_positive_int

__all__ = ["WorkerFailed", "cluster_config", "free_ports", "launch_local"]


class WorkerFailed(RuntimeError):
    """A worker of `launch_local` failed; `worker`, `exitcode` and `log` tell which and why."""

    def __init__(self, worker: int, exitcode: int | None, log: str, log_path: str) -> None:
        self.worker, self.exitcode, self.log, self.log_path = worker, exitcode, log, log_path
        how = "timed out" if exitcode is None else f"exited with code {exitcode}"
        super().__init__(f"Worker {worker} {how}. Its log ({log_path}), last lines:\n{log}")


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held open together while choosing)."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]


def cluster_config(addresses: Sequence[str], index: int) -> str:
    """The `TF_CONFIG` JSON of worker `index` in a cluster of `addresses`."""
    return json.dumps(
        {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}}
    )


def _worker_main(fn, args, tf_config: str, log_path: str, result_path: str) -> None:
    os.environ["TF_CONFIG"] = tf_config
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with open(log_path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    result = fn(*args)
    tmp = result_path + ".tmp"
    with open(tmp, "wb") as file:
        pickle.dump(result, file)
    os.replace(tmp, result_path)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def launch_local(
    fn: Callable,
    num_workers: int = 2,
    *,
    args: Sequence = (),
    timeout: float = 600.0,
    log_dir: str | os.PathLike | None = None,
) -> list:
    """Run `fn(*args)` in `num_workers` local worker processes; returns their results.

    `fn` must be importable (a module-level function) and its result picklable.
    Inside it, `tf.distribute.MultiWorkerMirroredStrategy()` (or
    `Trainer(..., strategy="multi_worker")`) finds the cluster in `TF_CONFIG`;
    create it before any other TensorFlow call.

    Args:
        fn: The worker program.
        num_workers: Number of worker processes. Defaults to `2`.
        args: Positional arguments of `fn`.
        timeout: Seconds before every worker is stopped and `WorkerFailed` raised.
        log_dir: Folder for `worker-<i>.log` (a new temporary folder if `None`).

    Returns:
        The list of `fn`'s return values, by worker index (worker 0 is the chief).

    Raises:
        WorkerFailed: a worker failed, died or the run timed out.
    """
    num_workers = check_positive_int("num_workers", num_workers)
    if not callable(fn):
        raise TypeError(f"Argument `fn` must be callable. Received: fn={fn!r}")
    folder = Path(log_dir or tempfile.mkdtemp(prefix="tfcraft-launch-"))
    folder.mkdir(parents=True, exist_ok=True)
    addresses = [f"127.0.0.1:{port}" for port in free_ports(num_workers)]
    context = multiprocessing.get_context("spawn")
    processes, results = [], []
    try:
        for index in range(num_workers):
            result = folder / f"worker-{index}.result"
            result.unlink(missing_ok=True)
            log = folder / f"worker-{index}.log"
            log.write_bytes(b"")
            process = context.Process(
                target=_worker_main,
                args=(fn, tuple(args), cluster_config(addresses, index), str(log), str(result)),
                name=f"tfcraft-worker-{index}",
            )
            process.start()
            processes.append(process)
            results.append(result)
        _wait(processes, folder, timeout)
        return [pickle.loads(path.read_bytes()) for path in results]
    finally:
        _stop(processes)


def _wait(processes: list, folder: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        running = False
        for index, process in enumerate(processes):
            code = process.exitcode
            if code is None:
                running = True
            elif code != 0:
                log = folder / f"worker-{index}.log"
                raise WorkerFailed(index, code, _tail(log), str(log))
        if not running:
            return
        if time.monotonic() > deadline:
            log = folder / "worker-0.log"
            raise WorkerFailed(0, None, _tail(log), str(log))
        time.sleep(0.05)


def _stop(processes: list) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)
