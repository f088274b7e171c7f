"""tfcraft PPO next to Stable-Baselines3 PPO (RL Zoo tuned settings), same seeds, same run.

Run: `/tmp/bench .venv/bin/python benchmarks/rl_vs_sb3.py [--envs cartpole pendulum] [--seeds 5]`
(1 core, 1 thread per library). Each env runs SB3 + Zoo, tfcraft with the same
Zoo settings ("tuned") and tfcraft with its defaults, on the same seeds:

- CartPole-v1: timesteps until the mean return of the last 100 training episodes
  first reaches 475 (budget 100k, the Zoo's), and env-steps/s of the whole learn call.
- Pendulum-v1: deterministic 20-episode evaluation after 200k steps.
- LunarLander-v3 / continuous (`--envs lunarlander lunarlander_continuous`):
  deterministic 20-episode evaluation after 1M steps (hours of CPU).

Results merge into `benchmarks/results/rl_vs_sb3.json`; the table goes to
`benchmarks/results/rl_vs_sb3.md` and the curves to `benchmarks/results/rl_curves.png`.
Differences from the Zoo that tfcraft cannot express are stated in the output (gSDE on
Pendulum).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from _common import RESULTS_DIR, machine_summary, markdown_table, pass_fail, write_text_atomic

ENVS = {
    "cartpole": ("CartPole-v1", 100_000),
    "pendulum": ("Pendulum-v1", 200_000),
    "lunarlander": ("LunarLander-v3", 1_000_000),
    "lunarlander_continuous": ("LunarLanderContinuous-v3", 1_000_000),
}
# RL Zoo hyperparams/ppo.yml (rl-baselines3-zoo), per env.
ZOO = {
    "cartpole": dict(
        n_envs=8,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate="lin_0.001",
        clip_range="lin_0.2",
    ),
    "pendulum": dict(
        n_envs=4,
        n_steps=1024,
        gae_lambda=0.95,
        gamma=0.9,
        n_epochs=10,
        ent_coef=0.0,
        learning_rate=1e-3,
        clip_range=0.2,
        use_sde=True,
        sde_sample_freq=4,
    ),
    "lunarlander": dict(
        n_envs=16,
        n_steps=1024,
        batch_size=64,
        gae_lambda=0.98,
        gamma=0.999,
        n_epochs=4,
        ent_coef=0.01,
    ),
    "lunarlander_continuous": dict(
        n_envs=16,
        n_steps=1024,
        batch_size=64,
        gae_lambda=0.98,
        gamma=0.999,
        n_epochs=4,
        ent_coef=0.01,
    ),
}
SOLVED = {"cartpole": 475.0}
RESULTS_JSON = RESULTS_DIR / "rl_vs_sb3.json"


def first_reach(returns, timesteps, threshold, window=100):
    """First timestep at which the mean of the last `window` episode returns >= threshold."""
    for i in range(len(returns)):
        if np.mean(returns[max(0, i + 1 - window) : i + 1]) >= threshold:
            return int(timesteps[i])
    return None


def run_sb3(key, seed, total):
    import torch
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    env_id = ENVS[key][0]
    hp = dict(ZOO[key])
    n_envs = hp.pop("n_envs")
    for name in ("learning_rate", "clip_range"):
        value = hp.get(name)
        if isinstance(value, str) and value.startswith("lin_"):
            start = float(value[4:])
            hp[name] = lambda progress, start=start: progress * start
    episodes = {"returns": [], "timesteps": []}

    class Record(BaseCallback):
        def _on_step(self):
            for info in self.locals["infos"]:
                if "episode" in info:
                    episodes["returns"].append(float(info["episode"]["r"]))
                    episodes["timesteps"].append(int(self.num_timesteps))
            return True

    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    model = SB3PPO("MlpPolicy", env, seed=seed, verbose=0, device="cpu", **hp)
    start = time.perf_counter()
    model.learn(total, callback=Record())
    seconds = time.perf_counter() - start
    import gymnasium as gym

    eval_env = gym.make(env_id)
    eval_env.reset(seed=seed + 10_000)
    returns, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=20, deterministic=True, return_episode_rewards=True
    )
    return {"episodes": episodes, "seconds": seconds, "eval": float(np.mean(returns))}


def tfcraft_zoo(key, total):
    """The Zoo settings as tfcraft hyperparameters (no normalisation, as in the Zoo)."""
    import keras

    hp = dict(ZOO[key])
    n_envs = hp.pop("n_envs")
    hp.pop("use_sde", None), hp.pop("sde_sample_freq", None)  # gSDE: not in tfcraft
    # SB3's value loss is `vf_coef * MSE`; tfcraft's (CleanRL's) is `vf_coef * 0.5 * MSE`,
    # so the same weight on the squared error is twice SB3's coefficient (default 0.5).
    hp["vf_coef"] = 2.0 * hp.get("vf_coef", 0.5)
    per_update = n_envs * hp["n_steps"]
    minibatches = max(1, per_update // hp.get("batch_size", 64))
    steps = -(-total // per_update) * hp["n_epochs"] * minibatches
    for name in ("learning_rate", "clip_range"):  # "lin_x": linear decay to 0, as the Zoo
        value = hp.get(name)
        if isinstance(value, str):
            hp[name] = keras.optimizers.schedules.PolynomialDecay(
                float(value[4:]), decay_steps=steps, end_learning_rate=0.0
            )
    hp.setdefault("batch_size", 64)
    return n_envs, {**hp, "normalize_observations": False, "normalize_rewards": False}


def run_tfcraft(key, seed, total, tuned):
    from tfcraft.rl import PPO

    env_id = ENVS[key][0]
    if tuned:
        n_envs, hp = tfcraft_zoo(key, total)
        agent = PPO(env_id, n_envs=n_envs, seed=seed, **hp)
    else:
        agent = PPO(env_id, seed=seed)
    start = time.perf_counter()
    agent.learn(total)
    seconds = time.perf_counter() - start
    evaluation = agent.evaluate(env_id, episodes=20, deterministic=True, seed=seed + 10_000)
    agent.close()
    episodes = {"returns": agent.episodes["returns"], "timesteps": agent.episodes["timesteps"]}
    return {"episodes": episodes, "seconds": seconds, "eval": evaluation["mean"]}


RUNNERS = {
    "SB3 PPO (Zoo)": lambda k, s, t: run_sb3(k, s, t),
    "tfcraft PPO (Zoo settings)": lambda k, s, t: run_tfcraft(k, s, t, tuned=True),
    "tfcraft PPO (defaults)": lambda k, s, t: run_tfcraft(k, s, t, tuned=False),
}


def summarize(results):
    lines, verdicts = [], []
    for key, (env_id, total) in ENVS.items():
        if key not in results:
            lines.append(f"\n### {env_id}\n\nNot run in this session.\n")
            continue
        rows, per_lib = [], {}
        for lib, runs in results[key].items():
            seeds = sorted(runs, key=int)
            sps = [total / runs[s]["seconds"] for s in seeds]
            evals = [runs[s]["eval"] for s in seeds]
            row = [lib, ",".join(seeds), f"{statistics.mean(sps):,.0f}"]
            if key in SOLVED:
                reach = [
                    first_reach(
                        runs[s]["episodes"]["returns"],
                        runs[s]["episodes"]["timesteps"],
                        SOLVED[key],
                    )
                    for s in seeds
                ]
                hit = [r for r in reach if r is not None]
                mean_reach = statistics.mean(hit) if hit else float("nan")
                row += [
                    f"{len(hit)}/{len(seeds)}",
                    f"{mean_reach:,.0f}" if hit else "n/a",
                    f"{min(hit):,}-{max(hit):,}" if hit else "n/a",
                ]
                per_lib[lib] = {
                    "hit": len(hit),
                    "n": len(seeds),
                    "reach": mean_reach,
                    "sps": statistics.mean(sps),
                    "evals": evals,
                }
            else:
                per_lib[lib] = {"sps": statistics.mean(sps), "evals": evals}
            row += [", ".join(f"{e:.0f}" for e in evals), f"{statistics.mean(evals):.1f}"]
            rows.append(row)
        headers = ["run", "seeds", "env-steps/s"]
        if key in SOLVED:
            headers += ["reached 475", "mean timesteps to 475", "range"]
        headers += [f"eval (20 ep, deterministic) after {total:,}", "mean eval"]
        lines.append(
            f"\n### {env_id} ({total:,} steps per run)\n\n" + markdown_table(headers, rows)
        )
        sb3, ours = per_lib.get("SB3 PPO (Zoo)"), per_lib.get("tfcraft PPO (Zoo settings)")
        if sb3 and ours:
            if key in SOLVED:
                verdicts.append(
                    pass_fail(
                        f"{env_id}: tfcraft reaches 475 on every seed",
                        ours["hit"] == ours["n"],
                        f"{ours['hit']}/{ours['n']}",
                    )
                )
                verdicts.append(
                    pass_fail(
                        f"{env_id}: mean timesteps to 475 <= SB3's",
                        ours["reach"] <= sb3["reach"],
                        f"{ours['reach']:,.0f} vs SB3 {sb3['reach']:,.0f}",
                    )
                )
                verdicts.append(
                    pass_fail(
                        f"{env_id}: env-steps/s >= SB3's",
                        ours["sps"] >= sb3["sps"],
                        f"{ours['sps']:,.0f} vs SB3 {sb3['sps']:,.0f}",
                    )
                )
                default = per_lib.get("tfcraft PPO (defaults)")
                if default:
                    verdicts.append(
                        pass_fail(
                            f"{env_id}: tfcraft defaults reach 475 on every seed, "
                            "in no more timesteps than SB3",
                            default["hit"] == default["n"] and default["reach"] <= sb3["reach"],
                            f"{default['hit']}/{default['n']}, {default['reach']:,.0f} vs SB3 "
                            f"{sb3['reach']:,.0f}",
                        )
                    )
            elif key == "pendulum":
                a, b = statistics.mean(ours["evals"]), statistics.mean(sb3["evals"])
                verdicts.append(
                    pass_fail(
                        f"{env_id}: eval after 200k >= SB3's", a >= b, f"{a:.1f} vs SB3 {b:.1f}"
                    )
                )
            else:
                solved = sum(e >= 200 for e in ours["evals"])
                verdicts.append(
                    pass_fail(
                        f"{env_id}: eval >= 200 on >= 2 of 3 seeds",
                        solved >= 2,
                        f"{solved}/{len(ours['evals'])} seeds; SB3 {sb3['evals']}",
                    )
                )
                verdicts.append(
                    pass_fail(
                        f"{env_id}: env-steps/s >= SB3's",
                        ours["sps"] >= sb3["sps"],
                        f"{ours['sps']:,.0f} vs SB3 {sb3['sps']:,.0f}",
                    )
                )
    return "\n".join(lines), verdicts


def plot(results):
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ENVS if k in results]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        total = ENVS[key][1]
        grid = np.linspace(0, total, 101)
        for lib, runs in results[key].items():
            curves = []
            for run in runs.values():
                r = np.asarray(run["episodes"]["returns"], float)
                t = np.asarray(run["episodes"]["timesteps"], float)
                if len(r) == 0:
                    continue
                rolling = np.array([r[max(0, i - 99) : i + 1].mean() for i in range(len(r))])
                curves.append(np.interp(grid, t, rolling, left=np.nan))
            if curves:
                ax.plot(
                    grid, np.nanmean(np.stack(curves), axis=0), label=f"{lib} ({len(curves)} seeds)"
                )
        ax.xaxis.set_major_formatter(
            matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:.0f}k")
        )
        ax.set_title(ENVS[key][0])
        ax.set_xlabel("timesteps")
        ax.set_ylabel("mean return, last 100 training episodes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = RESULTS_DIR / "rl_curves.png"
    tmp = path.with_name("rl_curves.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["cartpole", "pendulum"], choices=list(ENVS))
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeds per env (5 CartPole, 3 others)"
    )
    parser.add_argument("--runs", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    parser.add_argument(
        "--seed-list", type=int, nargs="+", default=None, help="run these seeds (overrides --seeds)"
    )
    parser.add_argument(
        "--results",
        default=str(RESULTS_JSON),
        help="JSON to merge into (runs split across processes each write their own)",
    )
    parser.add_argument(
        "--merge", nargs="*", default=[], help="JSON files of other runs to merge before the report"
    )
    parser.add_argument("--report-only", action="store_true", help="redo table/plot from JSON")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    path = Path(args.results)
    results = json.loads(path.read_text()) if path.exists() else {}
    for other in args.merge:  # per env and library, seeds of both files
        for key, libs in json.loads(Path(other).read_text()).items():
            for lib, seeds in libs.items():
                results.setdefault(key, {}).setdefault(lib, {}).update(seeds)
    for key in [] if args.report_only else args.envs:
        total = ENVS[key][1]
        seeds = args.seed_list or range(args.seeds or (5 if key == "cartpole" else 3))
        results[key] = {}
        for seed in seeds:  # libraries interleaved per seed: same load for each
            for lib in args.runs:
                run = RUNNERS[lib](key, seed, total)
                results[key].setdefault(lib, {})[str(seed)] = run
                print(
                    f"{key} seed {seed} {lib}: {total / run['seconds']:,.0f} steps/s, "
                    f"eval {run['eval']:.1f}",
                    flush=True,
                )
                write_text_atomic(path, json.dumps(results))
    command = " ".join(a for a in sys.argv[1:] if a != "--report-only")
    tables, verdicts = summarize(results)
    plot(results)
    text = (
        "# tfcraft PPO vs Stable-Baselines3 PPO\n\n"
        "Command: `/tmp/bench .venv/bin/python benchmarks/rl_vs_sb3.py "
        f"{command}` (1 core, 1 thread per library, same seeds, same run; "
        "libraries interleaved per seed). Envs not in this command keep the tables of the "
        "last run that had them (`rl_vs_sb3.json`; run with `--envs cartpole pendulum`).\n\n"
        f"Machine: {machine_summary()}\n\n"
        "SB3 runs the RL Zoo's tuned hyperparameters. 'tfcraft PPO (Zoo settings)' uses the same "
        "values (linear schedules as Keras `PolynomialDecay` over update steps), except gSDE "
        "on Pendulum, which tfcraft does not have (plain Gaussian exploration instead), and "
        "`vf_coef` doubled: SB3's value loss is `vf_coef * MSE`, tfcraft's (as CleanRL's) "
        "`vf_coef * 0.5 * MSE`, so 2 x 0.5 puts the same weight on the squared error. "
        "'defaults' is `PPO(env_id, seed=s)`.\n"
        + tables
        + "\n\n## Targets\n\n```\n"
        + "\n".join(verdicts)
        + "\n```\n\n"
        "![curves](rl_curves.png)\n"
    )
    write_text_atomic(RESULTS_DIR / "rl_vs_sb3.md", text)
    print(text)


if __name__ == "__main__":
    main()
