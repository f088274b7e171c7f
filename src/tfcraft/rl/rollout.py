"""Collect on-policy experience from Gymnasium 1.x vector envs: `collect(...) -> Rollout`.

One compiled policy call per vector step (`policy.act`). Both autoreset modes
of Gymnasium 1.x vector envs are handled (see the Gymnasium docs, "Vector
environment autoreset modes"):

- `NEXT_STEP` (Gymnasium's default): the step that ends an episode returns the
  final observation; the *next* `step` call resets that sub-env, ignores its
  action and returns reward 0. That reset step is not a transition: it is kept
  (fixed shapes) but marked `valid=False`, and the agents mask it out of
  their losses. The final observation is the next row's observation, so
  `next_values[t] = values[t + 1]` is already V(final observation).
- `SAME_STEP`: the ending step resets at once and returns the reset
  observation, with the final one in `info["final_obs"]`; V(final observation)
  is computed for the sub-envs that ended, so a truncated episode bootstraps
  from it.

Either way `compute_gae(..., next_values, terminated, truncated)` then
bootstraps truncated episodes and not terminated ones.

Example:

>>> import gymnasium as gym
>>> from tfcraft.rl.policies import make_policy
>>> envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
>>> policy = make_policy(envs.single_observation_space, envs.single_action_space, seed=0)
>>> rollout = collect(envs, policy, num_steps=8, seed=0)
>>> rollout.rewards.shape, rollout.state.timesteps
((8, 2), 16)
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np

from tfcraft._validation import check_positive_int

__all__ = ["Rollout", "RolloutState", "collect", "derive_seed"]

_INT32 = 2**31 - 1


def derive_seed(seed: int, *keys: int) -> int:
    """A reproducible 31-bit seed from `seed` and counters (NumPy's SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1)[0] & _INT32)


@dataclasses.dataclass(frozen=True)
class RolloutState:
    """Where a rollout stopped, so the next `collect` continues from there."""

    obs: np.ndarray
    autoreset: np.ndarray  # NEXT_STEP: the sub-env resets on the next step
    episode_returns: np.ndarray
    episode_original_returns: np.ndarray
    episode_lengths: np.ndarray
    vector_steps: int = 0
    timesteps: int = 0


@dataclasses.dataclass(frozen=True)
class Rollout:
    """`num_steps` vector steps of experience; arrays are `(num_steps, num_envs, ...)`.

    Attributes:
        obs, actions, log_probs, values, rewards, terminated, truncated: the
            transitions (`actions` as sampled, before clipping to the env box).
        next_values: V of the observation after each step (the final one at an
            episode's end).
        valid: False for NEXT_STEP reset steps (no transition); mask them out.
        episodes: Finished episodes: `returns`, `original_returns` (the env's
            reward before any `RewardWrapper`), `lengths`, `timesteps` (the
            global timestep at which each ended).
        state: Where to continue.
    """

    obs: np.ndarray
    actions: np.ndarray
    log_probs: np.ndarray
    values: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_values: np.ndarray
    valid: np.ndarray
    episodes: dict
    state: RolloutState


def _autoreset_mode(envs) -> gym.vector.AutoresetMode:
    mode = envs.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
    mode = gym.vector.AutoresetMode(mode)
    if mode is gym.vector.AutoresetMode.DISABLED:
        raise ValueError(
            "collect needs a vector env that resets its sub-envs. "
            "Received: autoreset_mode=AutoresetMode.DISABLED"
        )
    return mode


def initial_state(envs, seed: int | None) -> RolloutState:
    """Reset `envs` (seeded) and return the state a rollout starts from."""
    obs, _ = envs.reset(seed=seed)
    n = envs.num_envs
    zeros = np.zeros(n)
    return RolloutState(
        np.asarray(obs, np.float32), np.zeros(n, bool), zeros, zeros.copy(), zeros.copy()
    )


def _original_reward(infos: dict, reward: np.ndarray) -> np.ndarray:
    """The env's reward before a `RewardWrapper` (`reward` where there is none)."""
    original = reward
    # SAME_STEP puts an ending step's info in `final_info` (infos hold the reset's).
    for source in (infos, infos.get("final_info", {})):
        if "original_reward" in source:
            original = np.where(source["_original_reward"], source["original_reward"], original)
    return original


def _values_of(policy, obs: np.ndarray, seed) -> np.ndarray:
    return policy.act(obs, seed=seed, deterministic=True)[2]


def collect(
    envs: gym.vector.VectorEnv,
    policy,
    num_steps: int,
    *,
    state: RolloutState | None = None,
    seed: int = 0,
    deterministic: bool = False,
) -> Rollout:
    """Run `policy` for `num_steps` steps of every sub-env of `envs`.

    Args:
        envs: A Gymnasium vector env (sync or async, NEXT_STEP or SAME_STEP autoreset).
        policy: A `tfcraft.rl` policy (anything with `act`, `env_action`, `exploration`).
        num_steps: Positive int, vector steps to take.
        state: Where the previous rollout stopped; `None` resets `envs` with `seed`.
        seed: Seed of the reset (when `state` is None) and of the action samples
            (the sample of vector step `k` uses the stateless seed `(seed, k)`).
        deterministic: Act with the mode instead of sampling.

    Returns:
        A `Rollout`.
    """
    num_steps = check_positive_int("num_steps", num_steps)
    mode = _autoreset_mode(envs)
    next_step = mode is gym.vector.AutoresetMode.NEXT_STEP
    if state is None:
        state = initial_state(envs, seed)
    n = envs.num_envs
    seed32 = int(seed) & _INT32
    if getattr(policy, "exploration", "sample") == "thompson":
        policy.resample_exploration(derive_seed(seed, state.vector_steps))
    obs, autoreset = state.obs, state.autoreset
    ep_return = state.episode_returns.copy()
    ep_original = state.episode_original_returns.copy()
    ep_length = state.episode_lengths.copy()
    step = state.vector_steps
    rows = {
        key: [] for key in ("obs", "actions", "log_probs", "values", "rewards", "term", "trunc")
    }
    valid_rows, final_values = [], {}
    finished = {"returns": [], "original_returns": [], "lengths": [], "timesteps": []}
    for t in range(num_steps):
        action, log_prob, value = policy.act(obs, seed=(seed32, step), deterministic=deterministic)
        next_obs, reward, terminated, truncated, infos = envs.step(policy.env_action(action))
        step += 1
        valid = ~autoreset if next_step else np.ones(n, bool)
        reward = np.asarray(reward, np.float64)
        original = _original_reward(infos, reward)
        ep_return += np.where(valid, reward, 0.0)
        ep_original += np.where(valid, original, 0.0)
        ep_length += valid
        done = (terminated | truncated) & valid
        for i in np.flatnonzero(done):
            finished["returns"].append(ep_return[i])
            finished["original_returns"].append(ep_original[i])
            finished["lengths"].append(int(ep_length[i]))
            finished["timesteps"].append(state.timesteps + (t + 1) * n)
        ep_return[done] = ep_original[done] = ep_length[done] = 0.0
        if not next_step and truncated.any():
            ended = np.flatnonzero(truncated)
            final = np.stack([infos["final_obs"][i] for i in ended]).astype(np.float32)
            final_values[t] = (ended, _values_of(policy, final, (seed32, step)))
        for key, item in zip(
            rows, (obs, action, log_prob, value, reward, terminated, truncated), strict=True
        ):
            rows[key].append(item)
        valid_rows.append(valid)
        obs = np.asarray(next_obs, np.float32)
        autoreset = terminated | truncated
    last_values = _values_of(policy, obs, (seed32, step))
    values = np.stack(rows["values"])
    next_values = np.concatenate([values[1:], last_values[None]], axis=0).astype(np.float64)
    for t, (ended, value) in final_values.items():
        next_values[t, ended] = value
    new_state = RolloutState(
        obs, autoreset, ep_return, ep_original, ep_length, step, state.timesteps + num_steps * n
    )
    return Rollout(
        obs=np.stack(rows["obs"]),
        actions=np.stack(rows["actions"]),
        log_probs=np.stack(rows["log_probs"]),
        values=values,
        rewards=np.stack(rows["rewards"]),
        terminated=np.stack(rows["term"]),
        truncated=np.stack(rows["trunc"]),
        next_values=next_values,
        valid=np.stack(valid_rows),
        episodes={key: np.asarray(v) for key, v in finished.items()},
        state=new_state,
    )
