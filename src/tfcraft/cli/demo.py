"""`tfcraft demo`: the chapter end to end through the same code paths as the other commands.

Parts (each a run directory under `--out`, each with its `report.html`):

1. `custom_classification`: custom layer `Linear`, custom loss `BinaryFocal`,
   custom metrics `Precision`/`Recall`, Trainer with gradient clipping.
2. `bnn_regression`: `DenseFlipout` + `NormalHead`, predictive uncertainty from
   `tfcraft.bayes.predict`, calibrated by variance scaling on validation data.
3. `detect_breastw`: a density anomaly detector (`tfcraft.anomaly`).
4. `rl_cartpole`: PPO with a custom reward term (`tfcraft.rl`).
5. the healthcare and finance recipes (not with `--quick`).
"""

from __future__ import annotations

from pathlib import Path

from tfcraft.config import bundled_config, load_config

__all__ = ["QUICK_EPOCHS", "demo"]

QUICK_EPOCHS = 10  # `--quick`: epochs of the two training parts


def _config(name: str, kind: str, overrides: list[str]):
    # Package data (`tfcraft/configs/`), so a wheel install finds them too.
    return load_config(bundled_config(name), kind, overrides)


def demo(out: str | Path = "runs/demo", quick: bool = False, say=print) -> dict[str, dict]:
    """Run every part; print what each achieved; return each part's results."""
    from tfcraft.cli.detect import detect
    from tfcraft.cli.rl import rl
    from tfcraft.cli.train import train

    out = Path(out)
    done: dict[str, dict] = {}
    epochs = [f"trainer.epochs={QUICK_EPOCHS}"] if quick else []
    parts = [
        (
            "custom_classification",
            lambda c: train(c, out / c.name, overwrite=True, verbose=0),
            "train",
            epochs,
            ("test_accuracy", "test_precision", "test_recall", "test_ece"),
        ),
        (
            "bnn_regression",
            lambda c: train(c, out / c.name, overwrite=True, verbose=0),
            "train",
            epochs,
            ("test_rmse", "test_coverage_90", "test_gaussian_nll"),
        ),
        (
            "detect_breastw",
            lambda c: detect(c, out / c.name),
            "detect",
            [],
            ("test_roc_auc", "test_average_precision"),
        ),
        (
            "rl_cartpole",
            lambda c: rl(c, out / c.name),
            "rl",
            ["total_timesteps=1024", "eval_episodes=2"] if quick else ["total_timesteps=30000"],
            ("eval_mean_return",),
        ),
    ]
    for name, run, kind, overrides, shown in parts:
        results = run(_config(name, kind, overrides))
        done[name] = results
        numbers = ", ".join(
            f"{k} {results['metrics'][k]:.3g}" for k in shown if k in results["metrics"]
        )
        say(f"[{name}] {numbers}\n    report: {results['report']}")
    if not quick:
        from tfcraft.cli.recipe import RECIPES, recipe

        for name in RECIPES:
            results = recipe(name, out / f"recipe_{name}", quick=True)
            done[name] = results
            say(f"[recipe {name}] {results['summary'][:300]}\n    report: {results['report']}")
    return done
