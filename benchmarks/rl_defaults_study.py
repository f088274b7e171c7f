"""Do tfcraft PPO's defaults learn classic-control tasks they were not picked on? Bayesian too.

Run: `/tmp/light .venv/bin/python benchmarks/rl_defaults_study.py` (returns, not speed, are
measured here, so the shared core is fine). `PPO(env_id, seed=s)` with nothing tuned on
Acrobot-v1 and MountainCarContinuous-v0 (neither is in `rl_vs_sb3.py`), deterministic
20-episode evaluation after the budget. Then the README's Bayesian policy (DenseFlipout
actor, Thompson exploration: one weight sample per rollout) beside the plain default
policy on CartPole-v1 with the same budget and seeds.

Writes `benchmarks/results/rl_defaults_study.md`.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from _common import RESULTS_DIR, machine_summary, markdown_table, write_text_atomic

import tfcraft
from tfcraft.rl import PPO, CategoricalPolicy

# (env, budget, a reference level: Gymnasium's reward_threshold or a published PPO level)
TASKS = [
    ("Acrobot-v1", 200_000, -100.0, "reward_threshold -100"),
    ("MountainCarContinuous-v0", 200_000, 90.0, "reward_threshold 90"),
]
SEEDS = (0, 1)


def bayesian_policy(seed: int) -> CategoricalPolicy:
    actor = keras.Sequential(
        [
            keras.Input((4,)),
            tfcraft.layers.DenseFlipout(64, activation="tanh", seed=seed),
            tfcraft.layers.DenseFlipout(64, activation="tanh", seed=seed + 1),
        ]
    )
    return CategoricalPolicy(
        2, 4, actor_network=actor, exploration="thompson", normalize_observations=True, seed=seed
    )


def run(env_id, budget, seed, policy=None):
    agent = PPO(env_id, policy=policy, seed=seed)
    start = time.perf_counter()
    agent.learn(budget)
    seconds = time.perf_counter() - start
    result = agent.evaluate(episodes=20, deterministic=True, seed=seed + 10_000)
    agent.close()
    return result["mean"], seconds


def main():
    quick = "--quick" in sys.argv
    rows = []
    for env_id, budget, level, source in TASKS:
        budget = 4096 if quick else budget
        evals = []
        for seed in SEEDS:
            mean, seconds = run(env_id, budget, seed)
            evals.append(mean)
            print(f"{env_id} seed {seed}: {mean:.1f} ({seconds:.0f} s)", flush=True)
        rows.append(
            [
                env_id,
                f"{budget:,}",
                ", ".join(f"{e:.1f}" for e in evals),
                f"{statistics.mean(evals):.1f}",
                f"{level:g} ({source})",
                f"{sum(e >= level for e in evals)}/{len(evals)}",
            ]
        )
    bayes_rows = []
    budget = 4096 if quick else 50_000
    for name, make in (
        ("plain (defaults)", lambda s: None),
        ("Bayesian, Thompson", bayesian_policy),
    ):
        evals = []
        for seed in SEEDS:
            mean, seconds = run("CartPole-v1", budget, seed, make(seed))
            evals.append(mean)
            print(f"CartPole {name} seed {seed}: {mean:.1f} ({seconds:.0f} s)", flush=True)
        bayes_rows.append(
            [
                name,
                f"{budget:,}",
                ", ".join(f"{e:.1f}" for e in evals),
                f"{statistics.mean(evals):.1f}",
            ]
        )
    text = (
        "# tfcraft PPO defaults on tasks they were not chosen on\n\n"
        "Command: `/tmp/light .venv/bin/python benchmarks/rl_defaults_study.py`\n\n"
        f"Machine: {machine_summary()}\n\n"
        "`PPO(env_id, seed=s)`, deterministic 20-episode evaluation after the budget.\n\n"
        + markdown_table(["env", "steps", "eval per seed", "mean", "level", "seeds at level"], rows)
        + "\n\n## Bayesian policy vs plain policy (CartPole-v1)\n\n"
        "DenseFlipout actor (64-64, tanh), Thompson exploration (one weight sample per "
        "rollout), otherwise PPO defaults; the plain row is `PPO('CartPole-v1', seed=s)`.\n\n"
        + markdown_table(["policy", "steps", "eval per seed", "mean"], bayes_rows)
        + "\n"
    )
    write_text_atomic(RESULTS_DIR / "rl_defaults_study.md", text)
    print(text)


if __name__ == "__main__":
    main()
