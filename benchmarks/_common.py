"""Helpers shared by the benchmark scripts: matmul peak, timing, tables, atomic writes.

Import from a script in `benchmarks/` with `from _common import ...` (the script's
folder is on `sys.path` when it is run as `python benchmarks/<script>.py`).
Running this file on its own prints the machine's float32 matmul peak.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import platform
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

# Re-exported: the benchmark scripts import it from here.
from tfcraft._io import write_text_atomic as write_text_atomic

RESULTS_DIR = Path(__file__).resolve().parent / "results"


PEAK_SHAPES = ((512, 32), (1024, 8), (2048, 1))  # (n, chain): small tiles run fastest here


def best_matmul_peak_gflops(trials: int = 20) -> float:
    """The best `matmul_peak_gflops` over `PEAK_SHAPES`: the machine's peak, conservatively high.

    A higher peak makes a "% of peak" target harder, so we take the best shape.
    """
    return max(matmul_peak_gflops(n, chain, trials) for n, chain in PEAK_SHAPES)


def matmul_peak_gflops(n: int = 2048, chain: int = 1, trials: int = 20) -> float:
    """Best float32 GFLOP/s of `chain` dependent n x n matmuls in one compiled call.

    `2 * n**3` flops per matmul; the best of `trials` timed calls after one
    warm-up call, so the figure is what the machine can do, not what it did
    on average while other processes were running. Many short calls catch a
    quiet moment on a shared machine more often than a few long ones.
    """
    a = tf.random.stateless_normal((n, n), seed=(1, 2), dtype=tf.float32)
    b = tf.random.stateless_normal((n, n), seed=(3, 4), dtype=tf.float32) / n**0.5

    @tf.function
    def run(x):
        for _ in range(chain):  # unrolled at trace time; each depends on the last
            x = tf.linalg.matmul(x, b)
        return tf.reduce_sum(x)

    run(a).numpy()  # trace and warm up
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        run(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 * chain / best / 1e9


def median_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of `repeats` calls of `fn` (warm it up before)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_gflops(num_params: int, samples_per_second: float) -> float:
    """Achieved GFLOP/s of dense training: ~6 flops per parameter per sample.

    2 for the forward multiply-add, 4 for the two backward products (Kaplan et
    al. 2020, "Scaling Laws for Neural Language Models", sec. 2.1).
    """
    return 6.0 * num_params * samples_per_second / 1e9


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; floats get a sensible number of digits."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            if value != value:
                return "n/a"
            return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
        return str(value)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def pass_fail(name: str, ok: bool, detail: str) -> str:
    """One result line: `PASS  name (detail)`."""
    return f"{'PASS' if ok else 'FAIL'}  {name} ({detail})"


def machine_summary() -> str:
    """CPU count, load average and versions: the context a reader needs for the numbers."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.machine()} x{os.cpu_count()} CPUs, load average {load}, "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}"
    )


SQUARE_PEAK_SIZES = (2048, 3072, 4096)  # n >= 2048: large enough to reach the BLAS peak


def square_matmul_peak_gflops(
    sizes: Sequence[int] = SQUARE_PEAK_SIZES, trials: int = 5
) -> dict[int, float]:
    """`{n: best GFLOP/s}` of one float32 n x n matmul per call, for each n in `sizes`.

    The machine's peak is the max of the values; every n should be >= 2048 so
    that the figure is not held back by per-call overhead or small tiles.
    """
    return {n: matmul_peak_gflops(n, 1, trials) for n in sizes}


def thread_summary() -> str:
    """CPU affinity and thread settings of this process (not changed here, only reported)."""
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "n/a"
    names = (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_NUM_INTEROP_THREADS",
    )
    env = ", ".join(f"{name}={os.environ.get(name, 'unset')}" for name in names)
    return (
        f"CPU affinity {affinity}; TensorFlow intra-op threads "
        f"{tf.config.threading.get_intra_op_parallelism_threads()}, inter-op "
        f"{tf.config.threading.get_inter_op_parallelism_threads()} (0 = one per core); {env}"
    )


@dataclass
class Row:
    """One measured row of a benchmark: labels, `measure() -> samples/s`, and its results.

    `rates` holds one samples/s per round (the row's figure is the best);
    `error` the first failure, after which the row is not run again.
    """

    key: str
    method: str
    input: str
    settings: str
    num_params: int
    measure: Callable[[], float]
    rates: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def rate(self) -> float:
        """Best samples/s over the rounds (NaN before the first)."""
        return max(self.rates) if self.rates else float("nan")


def select_rows(rows: list[Row], patterns: str | None) -> list[Row]:
    """The rows whose key matches one of the comma-separated glob `patterns` (all if None)."""
    if not patterns:
        return rows
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [r for r in rows if any(fnmatch.fnmatchcase(r.key, p) for p in wanted)]
    if not chosen:
        raise SystemExit(f"--rows matched no row. Received: --rows={patterns!r}")
    return chosen


def run_rounds(rows: list[Row], rounds: int) -> None:
    """Each row `rounds` times, order reversed every other round; rates kept per row.

    Rows run one after another, so load that comes and goes would favour whichever
    ran in a quiet moment; alternating the order and keeping each row's best
    round evens that out.
    """
    for round_index in range(rounds):
        order = rows if round_index % 2 == 0 else rows[::-1]
        for row in order:
            if row.error is not None:
                continue  # failed before: do not spend the time again
            try:
                row.rates.append(row.measure())
            except Exception as error:  # one broken row must not lose the others
                last_line = (str(error).strip().splitlines() or [""])[-1]
                row.error = f"{type(error).__name__}: {last_line}"
                traceback.print_exc()
                print(f"round {round_index + 1}: {row.key}: FAILED ({row.error})", flush=True)
                continue
            print(f"round {round_index + 1}: {row.key}: {row.rates[-1]:,.0f} samples/s", flush=True)


def best_of(rows: list[Row], prefix: str) -> Row | None:
    """The fastest measured row whose key starts with `prefix`, or None."""
    candidates = [r for r in rows if r.key.startswith(prefix) and r.rates]
    return max(candidates, key=lambda r: r.rate) if candidates else None


def timed_median(seconds: list[float], warmup: int = 1) -> float:
    """Median of `seconds` after dropping the first `warmup` (compiling) entries."""
    timed = seconds[warmup:]
    if not timed:
        raise RuntimeError(f"No timed epochs. Received: seconds={seconds}")
    return statistics.median(timed)


if __name__ == "__main__":
    print(f"float32 matmul peak: {best_matmul_peak_gflops():.1f} GFLOP/s ({machine_summary()})")


def parse_split_args(doc: str, argv, default_splits: int, quick_splits: int):
    """`--quick` / `--splits N` of the split-based benchmarks; returns `(quick, splits)`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{quick_splits} split(s) per set, prints only"
    )
    parser.add_argument("--splits", type=int, default=default_splits, help="splits per set")
    args = parser.parse_args(argv)
    return args.quick, quick_splits if args.quick else args.splits


def standardised_splits(X, y, splits: int):
    """The anomaly protocol's splits: stratified 60/40, standardised on the training part.

    Yields `(split, X_train, X_test, y_test)` with float32 features.
    """
    import numpy as np
    from sklearn.model_selection import StratifiedShuffleSplit
    from sklearn.preprocessing import StandardScaler

    splitter = StratifiedShuffleSplit(splits, test_size=0.4, random_state=0)
    for split, (train, test) in enumerate(splitter.split(X, y)):
        scaler = StandardScaler().fit(X[train])
        X_train = scaler.transform(X[train]).astype(np.float32)
        yield split, X_train, scaler.transform(X[test]).astype(np.float32), y[test]


def fit_and_score_outliers(make, split: int, X_train, X_test):
    """Fit `make(split)` without labels; returns `(model, anomaly scores of X_test, seconds)`."""
    start = time.perf_counter()
    model = make(split).fit(X_train)
    score = (
        model.anomaly_score(X_test)
        if hasattr(model, "anomaly_score")
        else model.decision_function(X_test)
    )
    return model, score, time.perf_counter() - start
