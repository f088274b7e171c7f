"""Throughput of the Trainer on tf.distribute and with mixed precision, on this CPU.

Samples per second of one MLP trained on in-memory data, for:

- the plain Trainer (XLA, its default here) and the plain Trainer without XLA;
- `MirroredStrategy` with one replica (the overhead of the strategy path
  against the plain Trainer without XLA, which a strategy turns off; target
  <= 15%) and with two replicas on two logical CPU devices;
- `MultiWorkerMirroredStrategy` with two local worker processes (`launch_local`);
- float32 against `mixed_bfloat16` (this CPU has AVX-512 bf16; float16 matmuls
  are emulated on CPU and not measured).

Each configuration runs in its own process (logical devices must be set
before TensorFlow starts; one MirroredStrategy per process). Every run trains
the same model on the same data; after one warm-up `fit` (tracing), the
median of `--repeats` timed `fit` calls is reported.

Run: `/tmp/bench .venv/bin/python benchmarks/distributed.py` (writes
benchmarks/results/distributed.md). On 2 shared cores the point is correctness
and overhead, not speed-up: two replicas split the same two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
NUM_EXAMPLES, FEATURES, BATCH, EPOCHS = 16384, 64, 512, 2

CONFIGS = {
    "plain_xla": dict(strategy=None, jit_compile="auto"),
    "plain_no_xla": dict(strategy=None, jit_compile=False),
    "mirrored_1": dict(strategy="mirrored_1"),
    "mirrored_2": dict(strategy="mirrored_2"),
    "workers_2": dict(strategy="workers_2"),
    "bfloat16_xla": dict(strategy=None, mixed_precision="mixed_bfloat16", jit_compile="auto"),
    "bfloat16_no_xla": dict(strategy=None, mixed_precision="mixed_bfloat16", jit_compile=False),
}


def _build():
    import keras

    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(1),
        ]
    )


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(NUM_EXAMPLES, FEATURES)).astype("float32")
    y = np.sin(x[:, :1]) + x[:, 1:2] * x[:, 2:3]
    return x, y.astype("float32")


def _time_fits(strategy, repeats: int, **kwargs) -> dict:
    from tfcraft.training import Trainer

    trainer = Trainer(_build, optimizer="adam", loss="mse", seed=0, strategy=strategy, **kwargs)
    data = _data()
    trainer.fit(data, epochs=1, batch_size=BATCH, verbose=0)  # traces
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        history = trainer.fit(data, epochs=EPOCHS, batch_size=BATCH, verbose=0)
        seconds.append(time.perf_counter() - start)
    return {
        "samples_per_s": NUM_EXAMPLES * EPOCHS / statistics.median(seconds),
        "loss": history.history["loss"][-1],
    }


def overhead_pair(repeats: int) -> dict:
    """Plain Trainer (no XLA) and MirroredStrategy with one replica, alternated in one process.

    Alternating the two fits `repeats` times each cancels the drift of other
    jobs' load on shared cores, which separate processes do not.
    """
    import tensorflow as tf

    from tfcraft.training import Trainer

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    data = _data()
    trainers = {
        "plain_no_xla": Trainer(_build, optimizer="adam", loss="mse", seed=0, jit_compile=False),
        "mirrored_1": Trainer(_build, optimizer="adam", loss="mse", seed=0, strategy=strategy),
    }
    seconds: dict = {name: [] for name in trainers}
    for trainer in trainers.values():
        trainer.fit(data, epochs=1, batch_size=BATCH, verbose=0)  # traces
    for _ in range(repeats):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.fit(data, epochs=EPOCHS, batch_size=BATCH, verbose=0)
            seconds[name].append(time.perf_counter() - start)
    rates = {n: NUM_EXAMPLES * EPOCHS / statistics.median(t) for n, t in seconds.items()}
    return {**rates, "overhead": 1 - rates["mirrored_1"] / rates["plain_no_xla"]}


def dataset_pair(repeats: int) -> dict:
    """`overhead_pair` on a `tf.data` input: the plain Trainer's in-graph iterator against
    MirroredStrategy's distributed dataset (`distribute_datasets_from_function`, one replica).
    """
    import tensorflow as tf

    from tfcraft.training import Trainer

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    dataset = tf.data.Dataset.from_tensor_slices(_data()).batch(BATCH).cache()
    trainers = {
        "plain_no_xla": Trainer(_build, optimizer="adam", loss="mse", seed=0, jit_compile=False),
        "mirrored_1": Trainer(_build, optimizer="adam", loss="mse", seed=0, strategy=strategy),
    }
    seconds: dict = {name: [] for name in trainers}
    for trainer in trainers.values():
        trainer.fit(dataset, epochs=1, verbose=0)  # traces
    for _ in range(repeats):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.fit(dataset, epochs=EPOCHS, verbose=0)
            seconds[name].append(time.perf_counter() - start)
    rates = {n: NUM_EXAMPLES * EPOCHS / statistics.median(t) for n, t in seconds.items()}
    return {**rates, "overhead": 1 - rates["mirrored_1"] / rates["plain_no_xla"]}


def worker(repeats: int) -> dict:
    """One of the two `launch_local` workers (module-level, so it can be spawned)."""
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return _time_fits(strategy, repeats)


def run_config(name: str, repeats: int) -> dict:
    """Measure one configuration in this (fresh) process."""
    config = dict(CONFIGS[name])
    strategy = config.pop("strategy")
    if strategy == "workers_2":
        sys.path.insert(0, str(HERE))
        from distributed import worker as spawnable  # importable by the spawned workers

        from tfcraft.training.distribute import launch_local

        return launch_local(spawnable, 2, args=(repeats,), timeout=1200)[0]
    import tensorflow as tf

    # Two logical CPU devices in every configuration, so the runs differ only in the strategy.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    if strategy is not None:
        devices = ["/cpu:0"] if strategy == "mirrored_1" else ["/cpu:0", "/cpu:1"]
        strategy = tf.distribute.MirroredStrategy(devices)
    return _time_fits(strategy, repeats, **config)


def _table(results: dict) -> str:
    base = results["plain_no_xla"]["samples_per_s"]
    lines = [
        "| configuration | samples/s | vs plain Trainer without XLA | final loss |",
        "|---|---:|---:|---:|",
    ]
    for name, result in results.items():
        rate = result["samples_per_s"]
        lines.append(f"| {name} | {rate:,.0f} | {rate / base:.2f}x | {result['loss']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=[*sorted(CONFIGS), "overhead_pair", "dataset_pair"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="passes over all configurations")
    args = parser.parse_args()
    if args.config in ("overhead_pair", "dataset_pair"):
        pair = overhead_pair if args.config == "overhead_pair" else dataset_pair
        print(json.dumps(pair(args.repeats)))
        return
    if args.config:
        print(json.dumps(run_config(args.config, args.repeats)))
        return
    results: dict = {}
    for _ in range(args.rounds):  # interleaved rounds; the best one of each (shared cores)
        for name in CONFIGS:
            out = subprocess.run(
                [sys.executable, __file__, "--config", name, "--repeats", str(args.repeats)],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(name, result, flush=True)
            if result["samples_per_s"] > results.get(name, {}).get("samples_per_s", 0):
                results[name] = result
    overhead = 1 - results["mirrored_1"]["samples_per_s"] / results["plain_no_xla"]["samples_per_s"]
    table = _table(results)
    pair = subprocess.run(
        [sys.executable, __file__, "--config", "overhead_pair", "--repeats", str(2 * args.repeats)],
        capture_output=True,
        text=True,
        check=True,
    )
    pair = json.loads(pair.stdout.strip().splitlines()[-1])
    print("overhead_pair", pair, flush=True)
    cpu = platform.processor() or platform.machine()
    text = (
        "# Trainer on tf.distribute and mixed precision: throughput\n\n"
        f"`/tmp/bench .venv/bin/python benchmarks/distributed.py` on {cpu}, "
        f"{os.cpu_count()} cores shared with other jobs; MLP {FEATURES}-512-512-1, "
        f"{NUM_EXAMPLES} examples, global batch {BATCH}, Adam; each number is the best of "
        f"{args.rounds} interleaved rounds of the median of {args.repeats} fits of {EPOCHS} "
        f"epochs after a warm-up fit.\n\n{table}\n\n"
        f"Overhead of MirroredStrategy with one replica against the plain Trainer "
        f"without XLA, from the table (separate processes): {100 * overhead:.1f}%; "
        f"alternating both in one process ({2 * args.repeats} fits each, medians "
        f"{pair['plain_no_xla']:,.0f} and {pair['mirrored_1']:,.0f} samples/s): "
        f"{100 * pair['overhead']:.1f}% (target <= 15%).\n"
    )
    sys.path.insert(0, str(HERE))
    from _common import write_text_atomic

    (HERE / "results").mkdir(exist_ok=True)
    write_text_atomic(HERE / "results" / "distributed.md", text)
    print(text)


if __name__ == "__main__":
    main()
