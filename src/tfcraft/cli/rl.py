"""`tfcraft rl`: a `tfcraft.rl` agent on a Gymnasium env, with an optional reward term."""

from __future__ import annotations

from pathlib import Path

from tfcraft.config import ConfigError, RLConfig
from tfcraft.reports import build_report, plots
from tfcraft.runs import RunDirectory, read_metrics

__all__ = ["rl"]


def _name_args(spec) -> tuple[str, dict]:
    if isinstance(spec, str):
        return spec, {}
    return spec["type"], {k: v for k, v in spec.items() if k != "type"}


def _env_factory(config: RLConfig):
    import gymnasium as gym

    from tfcraft.rl import rewards

    if config.env not in gym.registry:
        raise ConfigError(f"env: expected a registered Gymnasium id, got {config.env!r}")
    if config.reward is None:
        return config.env, None
    name, args = _name_args(config.reward)
    try:
        term = rewards.reward_from_config({"class_name": name, "config": args})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"reward: {str(error).splitlines()[0]}") from None
    fn = rewards.EnvReward() + term

    def make_env():
        return rewards.RewardWrapper(gym.make(config.env), fn)

    return make_env, fn


def rl(config: RLConfig, out: str | Path) -> dict:
    """Train, evaluate deterministically, write the return curve and the report."""
    from tfcraft.rl import agents

    env, fn = _env_factory(config)
    name, args = _name_args(config.agent)
    if name not in ("PPO", "A2C", "REINFORCE"):
        raise ConfigError(f"agent: expected one of 'PPO', 'A2C', 'REINFORCE', got {name!r}")
    try:
        agent = getattr(agents, name)(env, n_envs=config.n_envs, seed=config.seed, **args)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"agent: {name}({args}) was refused: {error}") from None
    with RunDirectory.open(out) as run:
        run.write_config(config, config.seed)
        agent.learn(
            config.total_timesteps,
            checkpoint_dir=run / "checkpoints",
            resume=True,
            tensorboard_dir=run / "tensorboard",
            jsonl_path=run / "metrics.jsonl",
        )
        evaluation = agent.evaluate(config.env, episodes=config.eval_episodes, seed=config.seed)
        rows = read_metrics(run / "metrics.jsonl")
        if rows:
            plots.learning_curves(rows, run.plots)
        results = {
            "title": f"tfcraft rl: {config.name}",
            "kind": "rl",
            "summary": (
                f"{name} on {config.env} for {config.total_timesteps} steps"
                + (f" with reward {fn!r}" if fn is not None else "")
                + f"; deterministic evaluation over {config.eval_episodes} episodes "
                "(original env reward)."
            ),
            "metrics": {
                "eval_mean_return": float(evaluation["mean"]),
                "eval_std_return": float(evaluation["std"]),
                "timesteps": int(config.total_timesteps),
            },
        }
        run.write_json("results.json", results)
        results["report"] = str(build_report(run.path))
    return results
