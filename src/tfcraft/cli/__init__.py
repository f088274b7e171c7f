"""The `tfcraft` command: parse arguments, call the library, write files; no math here.

Exit codes: 0 success, 1 failure during a run, 2 usage or config error. Errors
are one clear message on stderr; `--debug` shows the traceback.

Example:

>>> build_parser().parse_args(["train", "configs/bnn_regression.yaml", "--set",
...                            "trainer.epochs=1"]).overrides
['trainer.epochs=1']
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

__all__ = ["build_parser", "main"]

_EPILOG = """examples:
  tfcraft demo --quick                           # every part, tiny budgets
  tfcraft train configs/bnn_regression.yaml --set trainer.epochs=5
  tfcraft train bnn_regression --set trainer.epochs=80 --resume   # bundled config
  tfcraft predict runs/bnn_regression --input rows.csv --output preds.csv
  tfcraft recipe healthcare --set models=[deterministic]
  tfcraft report runs/bnn_regression
exit codes: 0 success, 1 failure during a run, 2 usage or config error
`tfcraft COMMAND --help` describes each command."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from tfcraft import __version__

    parser = argparse.ArgumentParser(
        prog="tfcraft",
        description="Custom models and training on TensorFlow 2.21 / Keras 3, from YAML configs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tfcraft {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="the whole chapter end to end on bundled data")
    demo.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="folder of the parts (runs/demo)"
    )
    demo.add_argument(
        "--quick", action="store_true", help="tiny budgets and no recipes (about a minute)"
    )

    train = commands.add_parser("train", help="train a model from a YAML config")
    train.add_argument(
        "config", type=Path, help="a YAML config file, or a bundled config's name (configs/)"
    )
    _add_overrides(train, "override a config key (value parsed as YAML)")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in a run directory that holds an earlier run",
    )
    train.add_argument("--out", type=Path, help="run directory (default runs/NAME)")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.add_argument(
        "--workers",
        type=int,
        default=1,
        help="train in N local worker processes (MultiWorkerMirroredStrategy); default 1",
    )

    evaluate = commands.add_parser("evaluate", help="evaluate a finished run")
    evaluate.add_argument("run_dir", type=Path, help="a finished `tfcraft train` run directory")
    evaluate.add_argument(
        "--data", help="a .csv/.npy/.npz file with the target column (default: the test split)"
    )

    predict = commands.add_parser("predict", help="predict for rows without a target")
    predict.add_argument("run_dir", type=Path, help="a finished `tfcraft train` run directory")
    predict.add_argument(
        "--input", required=True, help="feature rows: .csv (header row), .npy or .npz (array x)"
    )
    predict.add_argument(
        "--output",
        required=True,
        help="CSV to write: mean,std,lower_*,upper_* (probabilistic), mean, or label,prob_*",
    )

    detect = commands.add_parser("detect", help="fit and evaluate an anomaly detector")
    detect.add_argument("config", type=Path, help="a YAML config file or a bundled config's name")
    _add_overrides(detect, "override a config key (value parsed as YAML)")
    detect.add_argument("--out", type=Path, help="run directory (default runs/NAME)")

    rl = commands.add_parser("rl", help="train a reinforcement-learning agent")
    rl.add_argument("config", type=Path, help="a YAML config file or a bundled config's name")
    _add_overrides(rl, "override a config key (value parsed as YAML)")
    rl.add_argument("--out", type=Path, help="run directory (default runs/NAME)")

    recipe = commands.add_parser("recipe", help="run the healthcare or finance recipe")
    recipe.add_argument("name", choices=("healthcare", "finance"), help="the recipe")
    recipe.add_argument("--out", type=Path, help="run directory (default runs/recipe_NAME)")
    recipe.add_argument("--full", action="store_true", help="the full budget (default: quick)")
    recipe.add_argument("--seed", type=int, default=0, help="seed of the models (default 0)")
    _add_overrides(recipe, "a keyword argument of the recipe's run(), e.g. models=[deterministic]")

    report = commands.add_parser("report", help="rebuild report.html of a run directory")
    report.add_argument("run_dir", type=Path, help="a run directory (any command's)")
    return parser


def _add_overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The repeatable `--set KEY=VALUE` option."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


def _run(args) -> int:
    from tfcraft.cli import train as run_commands
    from tfcraft.config import load_config

    if args.command == "demo":
        from tfcraft.cli.demo import demo

        demo(args.out, quick=args.quick)
    elif args.command == "train":
        config = load_config(args.config, "train", args.overrides)
        out = args.out or Path("runs") / config.name
        results = run_commands.train(
            config,
            out,
            resume=args.resume,
            overwrite=args.overwrite,
            verbose=0 if args.quiet else 1,
            workers=args.workers,
        )
        _print_metrics(results["metrics"])
        print(f"report: {results['report']}")
    elif args.command == "evaluate":
        _print_metrics(run_commands.evaluate_run(args.run_dir, args.data))
    elif args.command == "predict":
        path = run_commands.predict_run(args.run_dir, args.input, args.output)
        print(f"predictions: {path}")
    elif args.command == "detect":
        from tfcraft.cli.detect import detect

        config = load_config(args.config, "detect", args.overrides)
        results = detect(config, args.out or Path("runs") / config.name)
        _print_metrics(results["metrics"])
        print(f"report: {results['report']}")
    elif args.command == "rl":
        from tfcraft.cli.rl import rl

        config = load_config(args.config, "rl", args.overrides)
        results = rl(config, args.out or Path("runs") / config.name)
        _print_metrics(results["metrics"])
        print(f"report: {results['report']}")
    elif args.command == "recipe":
        from tfcraft.cli.recipe import recipe, recipe_options

        options = recipe_options(args.name, args.overrides)
        out = args.out or Path("runs") / f"recipe_{args.name}"
        results = recipe(args.name, out, quick=not args.full, seed=args.seed, options=options)
        print(results["summary"])
        print(f"report: {results['report']}")
    elif args.command == "report":
        print(f"report: {run_commands.report_run(args.run_dir)}")
    return 0


def _print_metrics(metrics: dict) -> None:
    for key, value in metrics.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  {key:<32} {text}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns (and exits with) the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from tfcraft.config import ConfigError
        from tfcraft.runs import RunLockedError

        try:
            code = _run(args)
        except (ConfigError, RunLockedError) as error:
            if args.debug:
                traceback.print_exc()
            for line in str(error).splitlines():
                print(f"tfcraft: error: {line}", file=sys.stderr)
            code = 2
    except KeyboardInterrupt:
        print("tfcraft: interrupted", file=sys.stderr)
        code = 1
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        message = lines[-1] if lines else ""  # TF puts the cause on the last line
        print(f"tfcraft: error: {type(error).__name__}: {message}", file=sys.stderr)
        print("tfcraft: (run again with --debug for the traceback)", file=sys.stderr)
        code = 1
    if argv is None:
        sys.exit(code)
    return code
