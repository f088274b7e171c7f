"""Speed of the tfcraft Trainer against Keras `model.fit` on every kind of input (issue #9).

One process, one MLP (64 -> 256 ReLU -> 256 ReLU -> 1, MSE, Adam with global-norm
clipping at 1.0, batch 256) on 32,768 rows of seeded synthetic regression data
(128 steps per epoch), every method starting from the same initial weights:

  fit/...       Keras 3 `model.fit` on NumPy arrays, on the pipeline
                `tf.data.Dataset.from_tensor_slices((x, y)).batch(256).prefetch(2)`,
                on an endless Python generator (`steps_per_epoch=128`) and on a
                `keras.utils.PyDataset`, each with the default settings and with
                `steps_per_execution` in {16, 64, 256} x `jit_compile` in {False, True};
  trainer/...   `tfcraft.training.Trainer.fit` on the arrays, on the same pipeline
                (within one long `fit(ds, epochs=N)`, and as repeated one-epoch
                `fit(ds, epochs=1)` calls, each whole call timed), and on a callable
                returning a fresh generator of the same NumPy batches;
  xla-epoch     a hand-written loop: a whole epoch in one `tf.function(jit_compile=True)`
                over resident tensors (stateless per-epoch permutation, batches
                gathered by index, `tf.while_loop` over the steps, the same Keras
                model and Adam), compile excluded: the fastest loop known here;
  eager         the textbook eager `GradientTape` loop, timed over a few hundred steps;
  small/...     the Trainer on the 442-row diabetes data (sklearn), 80% for training,
                with the 20% hold-out as `validation_data` and `EarlyStopping(
                monitor="val_loss", patience=10**6)` (never stops), and without them.

Per method: a warm-up epoch (or call) excluded, then the median of the timed
epochs; all rows run `--rounds` times in alternating order and each keeps its best
round. Small data: one `fit` of many epochs timed from outside after a warm-up
`fit`, samples/s counting training rows. GFLOP/s = 6 x parameters x samples/s,
against a float32 matmul peak (n x n, n in 2048/3072/4096) measured at start and end.
The script does not pin threads: run it as the machine is (the header prints the
CPU affinity and thread settings).

Run: `.venv/bin/python benchmarks/trainer_vs_fit.py` (full: about 10 minutes on 2
cores; writes `benchmarks/results/trainer_vs_fit.md`), `--quick` (smoke run, small
sizes, prints only), `--rows 'fit/tfdata/*,trainer/tfdata/*'` (a subset; glob
patterns on the row keys, `--list-rows` shows them).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf
from _common import (
    RESULTS_DIR,
    SQUARE_PEAK_SIZES,
    Row,
    best_of,
    machine_summary,
    markdown_table,
    pass_fail,
    run_rounds,
    select_rows,
    square_matmul_peak_gflops,
    thread_summary,
    training_gflops,
    write_text_atomic,
)
from _trainer_bench import (
    BATCH_SIZE,
    KERAS_INPUTS,
    KERAS_SETTINGS,
    NUM_FEATURES,
    batches,
    bench_eager,
    bench_keras_fit,
    bench_small,
    bench_trainer_calls,
    bench_trainer_long,
    bench_xla_epoch,
    import_trainer,
    load_diabetes_split,
    make_mlp,
    make_pipeline,
    make_regression,
)


# ------------------------------------------------------------------------ rows
def make_rows(config, api, notes) -> list[Row]:
    """Every row of the benchmark, in running order."""
    x, y, initial, epochs, prefetch = (
        config["x"],
        config["y"],
        config["initial"],
        config["epochs"],
        config["prefetch"],
    )
    num_params = make_mlp(NUM_FEATURES, initial).count_params()
    num_rows = len(x)
    pipeline = f"from_tensor_slices.batch({BATCH_SIZE}).prefetch({prefetch})"
    rows = [
        Row(
            "eager",
            "eager GradientTape loop",
            "tf.data, shuffled",
            "median of {2} chunks of {1} steps, after {0}".format(*config["eager_steps"]),
            num_params,
            lambda: bench_eager(initial, x, y, *config["eager_steps"]),
        )
    ]
    for kind, label in KERAS_INPUTS.items():
        for name, settings in KERAS_SETTINGS:
            tag = "default" if not settings else f"spe{settings['steps_per_execution']}"
            tag += "-jit" if settings.get("jit_compile") else ""
            rows.append(
                Row(
                    f"fit/{kind}/{tag}",
                    "Keras model.fit",
                    pipeline if kind == "tfdata" else label,
                    name,
                    num_params,
                    lambda kind=kind, settings=settings: bench_keras_fit(
                        initial, x, y, kind, settings, epochs, prefetch
                    ),
                )
            )
    rows.append(
        Row(
            "xla-epoch",
            "hand-written XLA epoch",
            "resident tensors",
            "one tf.function(jit_compile=True) per epoch",
            num_params,
            lambda: bench_xla_epoch(initial, x, y, epochs),
        )
    )
    if api is None:
        return rows
    dataset = make_pipeline(x, y, prefetch)
    rows += [
        Row(
            "trainer/numpy",
            "tfcraft Trainer.fit",
            "NumPy arrays",
            "defaults",
            num_params,
            lambda: bench_trainer_long(api, initial, (x, y), num_rows, epochs),
        ),
        Row(
            "trainer/tfdata/long",
            "tfcraft Trainer.fit",
            pipeline,
            f"(i) one fit(ds, epochs={1 + epochs}), per epoch",
            num_params,
            lambda: bench_trainer_long(api, initial, dataset, num_rows, epochs),
        ),
        Row(
            "trainer/tfdata/per-call",
            "tfcraft Trainer.fit",
            pipeline,
            "(ii) repeated fit(ds, epochs=1), whole call",
            num_params,
            lambda: bench_trainer_calls(api, initial, dataset, num_rows, epochs, notes),
        ),
        Row(
            "trainer/generator",
            "tfcraft Trainer.fit",
            "Python generator",
            "a callable returning a fresh generator",
            num_params,
            lambda: bench_trainer_long(api, initial, lambda: batches(x, y), num_rows, epochs),
        ),
    ]
    train, validation = config["small"]
    small_params = make_mlp(train[0].shape[1]).count_params()
    small_epochs = config["small_epochs"]
    small_input = f"diabetes, {len(train[0])} training rows x {train[0].shape[1]}"
    for key, settings, hold, patience, restore in (
        (
            "small/val-es",
            f"validation_data ({len(validation[0])} rows) + EarlyStopping(patience=10**6)",
            validation,
            10**6,
            False,
        ),
        (
            "small/val-es-restore",
            "validation_data + EarlyStopping(patience=10**6, restore_best_weights=True)",
            validation,
            10**6,
            True,
        ),
        ("small/no-val", "no validation, no callbacks", None, 0, False),
    ):
        rows.append(
            Row(
                key,
                "tfcraft Trainer.fit",
                small_input,
                f"{settings}; one fit of {small_epochs} epochs",
                small_params,
                lambda hold=hold, patience=patience, restore=restore, key=key: bench_small(
                    api, train, hold, small_epochs, patience, restore, notes, key
                ),
            )
        )
    return rows


# ---------------------------------------------------------------------- report
def ratio_check(name: str, row: Row | None, anchor: Row | None, factor: float) -> str:
    for side in (row, anchor):
        if side is not None and side.error is not None:
            return pass_fail(name, False, f"{side.key} failed: {side.error}")
    if row is None or anchor is None or not row.rates or not anchor.rates:
        return f"SKIP  {name} (row not run)"
    ratio = row.rate / anchor.rate
    detail = f"{ratio:.2f}x: {row.rate:,.0f} vs {anchor.rate:,.0f} samples/s, {anchor.key}"
    return pass_fail(name, ratio >= factor, detail)


def target_checks(rows: list[Row], peak: float) -> list[str]:
    """PASS/FAIL lines for the targets of issue #9, section 1."""
    by_key = {r.key: r for r in rows}
    arrays = by_key.get("trainer/numpy")
    best_fit = best_of(rows, "fit/")
    best_tfdata = best_of(rows, "fit/tfdata/")
    best_generator = max(
        [r for r in (best_of(rows, "fit/generator/"), best_of(rows, "fit/pydataset/")) if r],
        key=lambda r: r.rate,
        default=None,
    )
    lines = [
        ratio_check(
            "Trainer on tf.data (i) one long fit >= 1.2x best fit on the same pipeline",
            by_key.get("trainer/tfdata/long"),
            best_tfdata,
            1.2,
        ),
        ratio_check(
            "Trainer on tf.data (ii) one-epoch fit calls >= 1.2x best fit on the same pipeline",
            by_key.get("trainer/tfdata/per-call"),
            best_tfdata,
            1.2,
        ),
        ratio_check(
            "Trainer on a generator >= best fit on the same batches (generator or PyDataset)",
            by_key.get("trainer/generator"),
            best_generator,
            1.0,
        ),
        ratio_check("Trainer on arrays >= 1.5x best fit overall", arrays, best_fit, 1.5),
        ratio_check(
            "Trainer on arrays >= 0.95x the hand-written XLA epoch",
            arrays,
            by_key.get("xla-epoch"),
            0.95,
        ),
        ratio_check(
            "small data with validation + EarlyStopping >= 0.8x the large-data Trainer rate",
            by_key.get("small/val-es"),
            arrays,
            0.8,
        ),
    ]
    for key in ("trainer/numpy", "xla-epoch", "trainer/tfdata/long", "trainer/tfdata/per-call"):
        if key in by_key and by_key[key].rates:
            share = training_gflops(by_key[key].num_params, by_key[key].rate) / peak
            lines.append(f"INFO  {key}: {100 * share:.1f}% of the float32 matmul peak")
    return lines


def table_row(row: Row, best_fit: Row | None, xla: Row | None, peak: float, mark="") -> list:
    rate = row.rate
    if row.error is not None:
        return [row.method, row.input, row.settings + mark, f"failed: {row.error}", "", "", ""]
    return [
        row.method,
        row.input,
        row.settings + mark,
        rate,
        f"{rate / best_fit.rate:.2f}x" if best_fit else "n/a",
        f"{rate / xla.rate:.2f}x" if xla else "n/a",
        f"{100 * training_gflops(row.num_params, rate) / peak:.1f}%",
    ]


HEADERS = (
    "method",
    "input",
    "settings",
    "samples/s",
    "vs best fit",
    "vs hand-written XLA epoch",
    "% of matmul peak",
)


def full_table(rows: list[Row], peak: float) -> str:
    """Every row, with each round's samples/s."""
    best_fit, xla = best_of(rows, "fit/"), best_of(rows, "xla-epoch")
    body = [
        [r.key, *table_row(r, best_fit, xla, peak), " / ".join(f"{v:,.0f}" for v in r.rates)]
        for r in rows
        if r.rates or r.error
    ]
    return markdown_table(["key", *HEADERS, "each round"], body)


def readme_table(rows: list[Row], peak: float) -> str:
    """Short table for the README: per input form, Keras's default and best, then the rest."""
    best_fit, xla = best_of(rows, "fit/"), best_of(rows, "xla-epoch")
    body = []
    for kind in KERAS_INPUTS:
        default = next((r for r in rows if r.key == f"fit/{kind}/default" and r.rates), None)
        best = best_of(rows, f"fit/{kind}/")
        if default is not None:
            body.append(table_row(default, best_fit, xla, peak))
        if best is not None and best is not default:
            body.append(table_row(best, best_fit, xla, peak, " (best)"))
    for row in rows:
        if (row.rates or row.error) and not row.key.startswith("fit/"):
            body.append(table_row(row, best_fit, xla, peak))
    return markdown_table(HEADERS, body)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, prints only")
    parser.add_argument("--rows", default=None, help="comma-separated glob patterns on row keys")
    parser.add_argument("--list-rows", action="store_true", help="print the row keys and exit")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the full run")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (or calls) per row")
    parser.add_argument(
        "--prefetch", default="2", help="prefetch of the tf.data pipeline: an int or 'autotune'"
    )
    parser.add_argument("--out", default=None, help="Markdown output (full run default: results)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    quick = args.quick
    full = not quick and args.rows is None
    out = args.out or (str(RESULTS_DIR / "trainer_vs_fit.md") if full else None)
    epochs, rounds = (1, 1) if quick else (args.epochs, args.rounds)
    num_rows = 4096 if quick else 32768
    prefetch = tf.data.AUTOTUNE if args.prefetch.lower() == "autotune" else int(args.prefetch)
    peak_sizes, peak_trials = ((2048,), 2) if quick else (SQUARE_PEAK_SIZES, 5)

    x, y = make_regression(num_rows, NUM_FEATURES, seed=0)
    keras.utils.set_random_seed(0)
    config = {
        "x": x,
        "y": y,
        "initial": make_mlp(NUM_FEATURES).get_weights(),
        "epochs": epochs,
        "prefetch": prefetch,
        "eager_steps": (5, 10, 2) if quick else (20, 80, 3),
        "small": load_diabetes_split(seed=0),
        "small_epochs": 30 if quick else 500,
    }
    api, why_not = import_trainer()
    notes: list[str] = []
    rows = select_rows(make_rows(config, api, notes), args.rows)
    if args.list_rows:
        print("\n".join(f"{r.key}: {r.method}, {r.input}, {r.settings}" for r in rows))
        return 0

    command = "python benchmarks/trainer_vs_fit.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    header = (
        f"# Trainer vs model.fit on every input ({'quick' if quick else 'full'} run)\n\n"
        f"`{command}` on {machine_summary()}.\n\n"
        f"Threads (not set by the script): {thread_summary()}.\n\n"
        f"{num_rows:,} rows x {NUM_FEATURES} features, batch {BATCH_SIZE}, MLP 64-256-256-1, "
        f"MSE, Adam(1e-3) with global-norm clipping 1.0, same initial weights for every row. "
        f"Per row: warm-up epoch (or call) excluded, median of {epochs} timed epoch(s) or "
        f"call(s), best of {rounds} round(s) run in alternating order. Small data: one fit of "
        f"{config['small_epochs']} epochs after a warm-up fit. Peak: one float32 n x n matmul "
        f"per call, n in {list(peak_sizes)}, best of {peak_trials} calls, at start and at end."
    )
    print(header, flush=True)
    peaks = square_matmul_peak_gflops(peak_sizes, peak_trials)
    print(f"matmul peak at start: {peaks}", flush=True)
    run_rounds(rows, rounds)
    end_peaks = square_matmul_peak_gflops(peak_sizes, peak_trials)
    print(f"matmul peak at end: {end_peaks}", flush=True)
    peak = max(*peaks.values(), *end_peaks.values())  # a busy machine only lowers the peak

    if api is None:
        checks = [f"SKIP  tfcraft Trainer not available ({why_not})"]
    else:
        checks = target_checks(rows, peak)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    report = "\n".join(
        [
            header,
            "",
            f"float32 matmul peak: {peak:.1f} GFLOP/s (start {peaks}, end {end_peaks}); "
            f"GFLOP/s = 6 x parameters x samples/s.",
            "",
            "## Targets (issue #9, section 1)",
            "",
            *checks,
            "",
            "## README table",
            "",
            readme_table(rows, peak),
            "",
            "## Every row",
            "",
            full_table(rows, peak),
            "",
            *(f"- {note}" for note in notes),
            "",
            f"Load average at the end of the run: {load}.",
        ]
    )
    print()
    print(report)
    if out:
        write_text_atomic(out, report + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
