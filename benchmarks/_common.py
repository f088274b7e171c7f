"""Helpers shared by the benchmark scripts: matmul peak, timing, tables, atomic writes.

Import from a script in `benchmarks/` with `from _common import ...` (the script's
folder is on `sys.path` when it is run as `python benchmarks/<script>.py`).
Running this file on its own prints the machine's float32 matmul peak.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
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
