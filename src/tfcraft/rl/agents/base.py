"""What every on-policy agent shares: envs, policy, rollouts, the compiled update, learn/evaluate.

An agent is a composition: a policy (`tfcraft.rl.policies`), vector envs
collected with `tfcraft.rl.collect`, `compute_gae`, and an update that runs
`tfcraft.training.make_train_step(policy, optimizer, loss_fn=..., clip=...)`
over minibatches inside one compiled `tf.function` (one graph call per update).
Subclasses (`REINFORCE`, `A2C`, `PPO`) only set their defaults and write their
`loss_fn`.

Resume: `learn(..., checkpoint_dir=d)` writes a `tfcraft.training.checkpoint.
CheckpointStore` checkpoint every `checkpoint_freq` updates and at the end:
policy (with its observation statistics), optimizer, reward-normaliser
statistics, the step counters, the episode log and the callbacks' state. The
randomness is a function of `(seed, counter)`: action samples use stateless
seeds `(seed, vector step)`, minibatch order a generator seeded by `(seed,
update)`, and at every checkpoint the envs are reset with a seed derived from
`(seed, update)` (episodes in progress end there as truncated, bootstrapped).
So the checkpoint holds the whole state, and a resumed run is the uninterrupted
run, bit for bit under `tfcraft.enable_determinism`.

Callbacks are `tfcraft.training` callbacks; the agent stands in for the
Trainer (`self.trainer` is the agent: `stop_training`, `step`, `params`). One
update is one "epoch": `on_epoch_end(update, logs)` with `logs["timesteps"]`;
`TensorBoard` callbacks are wrapped so their x axis is the timestep.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from tfcraft._validation import check_float_in_range, check_positive_float, check_positive_int
from tfcraft.layers import is_stochastic, set_num_train_examples, variational_layers
from tfcraft.rl.gae import compute_gae
from tfcraft.rl.policies import check_action_space, make_policy, observation_size
from tfcraft.rl.rollout import _INT32, collect, derive_seed, initial_state
from tfcraft.training import (
    Callback,
    CallbackList,
    JSONLLogger,
    ProgressBar,
    TensorBoard,
    make_train_step,
)
from tfcraft.training.checkpoint import CheckpointStore, variable_signature

__all__ = ["OnPolicyAgent", "RunningMeanStd", "TimestepAxis", "masked_mean"]

LOG_NAMES = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "grad_norm")


def masked_mean(x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean of `x` over the entries where `mask` is 1 (0 if there are none)."""
    return tf.reduce_sum(x * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def normalize(x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """`(x - mean) / (std + 1e-8)` over the masked entries (advantage normalisation)."""
    mean = masked_mean(x, mask)
    return (x - mean) / (tf.sqrt(masked_mean(tf.square(x - mean), mask)) + 1e-8)


class RunningMeanStd:
    """Running mean and variance of scalars (Chan et al.), JSON-serialisable state."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, values: np.ndarray) -> None:
        """Merge a batch of values."""
        values = np.asarray(values, np.float64).ravel()
        n, batch_mean, batch_var = values.size, float(values.mean()), float(values.var())
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.var, self.count = m2 / total, total

    def state_dict(self) -> dict[str, float]:
        """`mean`, `var`, `count` (floats round-trip exactly through JSON)."""
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore `state_dict()`."""
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


class TimestepAxis(Callback):
    """Pass a callback `logs["timesteps"]` as its epoch, so it logs on a timestep axis."""

    epoch_sync = False

    def __init__(self, callback: Callback) -> None:
        super().__init__()
        self.callback = callback

    def set_trainer(self, trainer) -> None:
        """Attach the agent to the wrapped callback too."""
        super().set_trainer(trainer)
        self.callback.set_trainer(trainer)

    def on_train_begin(self, logs=None) -> None:
        """Forward."""
        self.callback.on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None) -> None:
        """Forward with `epoch = logs["timesteps"]`."""
        self.callback.on_epoch_end(int((logs or {}).get("timesteps", epoch)), logs)

    def on_train_end(self, logs=None) -> None:
        """Forward."""
        self.callback.on_train_end(logs)


def _env_factory(env) -> Callable[[], gym.Env]:
    if isinstance(env, str):
        return lambda: gym.make(env)
    if isinstance(env, gym.Env):
        # One instance cannot serve several sub-envs: copies of it (fresh RNG on reset).
        return lambda: copy.deepcopy(env)
    if callable(env):
        return env
    raise TypeError(
        "Argument `env` must be a Gymnasium env id, a `gymnasium.Env` or a callable "
        f"returning one. Received: env={env!r}"
    )


def _explained_variance(values: np.ndarray, returns: np.ndarray) -> float:
    variance = float(np.var(returns))
    return float("nan") if variance == 0 else 1.0 - float(np.var(returns - values)) / variance


class OnPolicyAgent:
    """Base of the on-policy agents; see the module docstring.

    Subclasses set `DEFAULTS` (hyperparameter defaults), implement
    `loss_fn(policy, batch, training) -> (loss, logs)` and may override
    `make_optimizer()`.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        env,
        policy: keras.Model | None = None,
        *,
        n_envs: int = 4,
        seed: int | None = None,
        vectorization: str = "sync",
        **hyperparameters,
    ) -> None:
        unknown = sorted(set(hyperparameters) - set(self.DEFAULTS))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown hyperparameters {unknown}. "
                f"Known: {sorted(self.DEFAULTS)}"
            )
        self.hparams = {**self.DEFAULTS, **hyperparameters}
        self.n_envs = check_positive_int("n_envs", n_envs)
        if vectorization not in ("sync", "async"):
            raise ValueError(
                "Argument `vectorization` must be 'sync' or 'async'. "
                f"Received: vectorization={vectorization!r}"
            )
        self.vectorization = vectorization
        self._check_hyperparameters(self.hparams)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"Argument `seed` must be an integer or None. Received: seed={seed!r}")
        self.seed = int(np.random.SeedSequence().entropy % _INT32) if seed is None else seed
        self.env_fn = _env_factory(env)
        probe = self.env_fn()  # made, never stepped: read its spaces
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        probe.close()
        check_action_space(self.action_space)
        self.policy = policy if policy is not None else self._default_policy()
        if getattr(self.policy, "observation_size", None) != observation_size(
            self.observation_space
        ):
            raise ValueError(
                "The policy does not fit the env's observations. Received: "
                f"policy.observation_size={getattr(self.policy, 'observation_size', None)}, "
                f"observation_space={self.observation_space!r}"
            )
        if variational_layers(self.policy):
            set_num_train_examples(self.policy, self.hparams["n_steps"] * self.n_envs)
        self.optimizer = self.make_optimizer()
        clip = self.hparams.get("max_grad_norm")
        self.train_step = make_train_step(
            self.policy,
            self.optimizer,
            loss_fn=self.loss_fn,
            clip=None if clip is None else f"global_norm:{clip}",
        )
        # One XLA call runs every minibatch of an update, unless the policy draws random
        # numbers (a Bayesian policy), which stays a plain graph.
        self._update_function = tf.function(
            self._run_minibatches,
            reduce_retracing=True,
            jit_compile=not is_stochastic(self.policy),
        )
        self.reward_stats = RunningMeanStd()
        self.timesteps = 0
        self.updates = 0
        self.episodes = {"returns": [], "original_returns": [], "lengths": [], "timesteps": []}
        self.stop_training = False
        self.params: dict[str, Any] = {}
        self._envs = None
        self._state = None
        self._discounted = np.zeros(self.n_envs)

    # -- construction -------------------------------------------------------------

    def _check_hyperparameters(self, h: dict) -> None:
        check_float_in_range("gamma", h["gamma"], 0.0, 1.0, True, True)
        check_float_in_range("gae_lambda", h["gae_lambda"], 0.0, 1.0, True, True)
        if not isinstance(h["learning_rate"], keras.optimizers.schedules.LearningRateSchedule):
            check_positive_float("learning_rate", h["learning_rate"])
        check_positive_int("n_steps", h["n_steps"])
        check_positive_float("vf_coef", h["vf_coef"], allow_zero=True)
        check_positive_float("ent_coef", h["ent_coef"], allow_zero=True)
        if h.get("max_grad_norm") is not None:
            check_positive_float("max_grad_norm", h["max_grad_norm"])

    def _default_policy(self) -> keras.Model:
        kwargs = dict(self.hparams.get("policy_kwargs") or {})
        kwargs.setdefault("normalize_observations", self.hparams["normalize_observations"])
        kwargs.setdefault("seed", self.seed)
        return make_policy(self.observation_space, self.action_space, **kwargs)

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        """Adam with epsilon 1e-5 (CleanRL/SB3); A2C overrides it with RMSprop."""
        return keras.optimizers.Adam(self.hparams["learning_rate"], epsilon=1e-5)

    def loss_fn(self, policy, batch: dict, training: bool):
        """`(loss, logs)` of a minibatch; implemented by each agent."""
        raise NotImplementedError  # abstract: subclasses implement it

    def model_losses(self, policy) -> tf.Tensor:
        """`sum(policy.losses)`: the KL terms of a Bayesian policy (0 otherwise)."""
        losses = [tf.cast(t, tf.float32) for t in policy.losses]
        return tf.add_n(losses) if losses else tf.constant(0.0)

    # -- environments ---------------------------------------------------------------

    @property
    def envs(self) -> gym.vector.VectorEnv:
        """The vector env (SAME_STEP autoreset), made on first use."""
        if self._envs is None:
            vector = (
                gym.vector.AsyncVectorEnv
                if self.vectorization == "async"
                else (gym.vector.SyncVectorEnv)
            )
            self._envs = vector(
                [self.env_fn] * self.n_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
            )
        return self._envs

    def _reset_envs(self) -> None:
        state = initial_state(self.envs, derive_seed(self.seed, self.updates, 1))
        self._state = dataclasses.replace(
            state, timesteps=self.timesteps, vector_steps=self.timesteps // self.n_envs
        )
        self._discounted = np.zeros(self.n_envs)

    # -- one iteration ----------------------------------------------------------------

    def _scale_rewards(self, rollout) -> np.ndarray:
        """SB3's VecNormalize: rewards over the running std of the discounted return."""
        rewards = rollout.rewards
        if not self.hparams["normalize_rewards"]:
            return rewards
        gamma = self.hparams["gamma"]
        done = rollout.terminated | rollout.truncated
        for t in range(rewards.shape[0]):
            self._discounted = self._discounted * gamma + np.where(rollout.valid[t], rewards[t], 0)
            self.reward_stats.update(self._discounted[rollout.valid[t]])
            self._discounted[done[t]] = 0.0
        return np.clip(rewards / math.sqrt(self.reward_stats.var + 1e-8), -10.0, 10.0)

    def _minibatch_indices(self, batch_size: int) -> np.ndarray:
        h = self.hparams
        size = min(h.get("batch_size") or batch_size, batch_size)
        rng = np.random.default_rng(derive_seed(self.seed, self.updates, 2))
        rows = []
        for _ in range(h.get("n_epochs", 1)):
            order = rng.permutation(batch_size)
            rows.extend(order[i : i + size] for i in range(0, batch_size - size + 1, size))
        return np.stack(rows).astype(np.int32)

    def _run_minibatches(self, data: dict, indices: tf.Tensor) -> dict:
        sums = {name: tf.constant(0.0) for name in LOG_NAMES}
        count = tf.shape(indices)[0]
        for i in tf.range(count):
            batch = {key: tf.gather(value, indices[i]) for key, value in data.items()}
            logs = self.train_step(batch)
            sums = {name: sums[name] + tf.cast(logs[name], tf.float32) for name in LOG_NAMES}
        return {name: total / tf.cast(count, tf.float32) for name, total in sums.items()}

    def _iterate(self) -> dict[str, float]:
        start = time.perf_counter()
        h = self.hparams
        rollout = collect(self.envs, self.policy, h["n_steps"], state=self._state, seed=self.seed)
        self._state = rollout.state
        rewards = self._scale_rewards(rollout)
        advantages, returns = compute_gae(
            rewards,
            rollout.values,
            rollout.next_values,
            rollout.terminated,
            rollout.truncated,
            h["gamma"],
            h["gae_lambda"],
        )
        flat = lambda a: a.reshape(-1, *a.shape[2:])  # noqa: E731
        data = {
            "obs": flat(rollout.obs),
            "actions": flat(rollout.actions),
            "old_log_probs": flat(rollout.log_probs),
            "old_values": flat(rollout.values),
            "advantages": flat(advantages).astype(np.float32),
            "returns": flat(returns).astype(np.float32),
            "mask": flat(rollout.valid).astype(np.float32),
        }
        logs = self._update_function(data, self._minibatch_indices(len(data["mask"])))
        logs = {name: float(value) for name, value in logs.items()}
        if self.policy.normalizer is not None:  # after the update: same stats all iteration
            self.policy.normalizer.update(data["obs"][data["mask"] > 0])
        self.updates += 1
        self.timesteps = rollout.state.timesteps
        for key, values in rollout.episodes.items():
            self.episodes[key].extend(np.asarray(values).tolist())
        valid = data["mask"] > 0
        logs["explained_variance"] = _explained_variance(
            data["old_values"][valid], data["returns"][valid]
        )
        logs.update(self._episode_logs(rollout.episodes))
        logs["learning_rate"] = float(self.optimizer.learning_rate)
        logs["timesteps"] = self.timesteps
        logs["steps_per_second"] = rollout.rewards.size / (time.perf_counter() - start)
        return logs

    @staticmethod
    def _episode_logs(episodes: dict) -> dict[str, float]:
        count = len(episodes["returns"])
        mean = lambda key: float(np.mean(episodes[key])) if count else float("nan")  # noqa: E731
        return {
            "episodes": count,
            "episode_return": mean("returns"),
            "episode_original_return": mean("original_returns"),
            "episode_length": mean("lengths"),
        }

    # -- learn -------------------------------------------------------------------------

    @property
    def step(self) -> int:
        """Timesteps so far (what callbacks read as the Trainer's `step`)."""
        return self.timesteps

    def learn(
        self,
        total_timesteps: int,
        callbacks: Sequence[Callback] | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = True,
        *,
        checkpoint_freq: int = 10,
        progress_bar: bool = False,
        tensorboard_dir: str | Path | None = None,
        jsonl_path: str | Path | None = None,
    ) -> OnPolicyAgent:
        """Train until `total_timesteps` env steps (counted from the first `learn`).

        Args:
            total_timesteps: Positive int; env steps in total (all sub-envs).
            callbacks: `tfcraft.training` callbacks; one update = one epoch.
            checkpoint_dir: Folder for checkpoints (every `checkpoint_freq`
                updates and at the end); `None` writes none.
            resume: Continue from the newest checkpoint in `checkpoint_dir`.
            checkpoint_freq: Positive int, updates between checkpoints.
            progress_bar: Add a `ProgressBar` (one line per update).
            tensorboard_dir: Add a `TensorBoard` logger (timestep axis).
            jsonl_path: Add a `JSONLLogger` writing one line per update.

        Returns:
            `self`.
        """
        total_timesteps = check_positive_int("total_timesteps", total_timesteps)
        checkpoint_freq = check_positive_int("checkpoint_freq", checkpoint_freq)
        callbacks = list(callbacks or [])
        if progress_bar:
            callbacks.append(ProgressBar(verbose=2))
        if jsonl_path is not None:
            callbacks.append(JSONLLogger(jsonl_path))
        if tensorboard_dir is not None:
            callbacks.append(TensorBoard(tensorboard_dir))
        callback_list = CallbackList(
            [TimestepAxis(c) if isinstance(c, TensorBoard) else c for c in callbacks]
        )
        callback_list.set_trainer(self)
        store = None
        if checkpoint_dir is not None:
            store = CheckpointStore(
                checkpoint_dir, {"policy": self.policy, "optimizer": self.optimizer}
            )
            latest = store.latest() if resume else None
            if latest is not None:
                self._restore(store, latest, callback_list)
        per_update = self.hparams["n_steps"] * self.n_envs
        self.params = {"epochs": math.ceil(total_timesteps / per_update), "steps": None}
        if self._state is None:
            self._reset_envs()
        self.stop_training = False
        callback_list.on_train_begin()
        while self.timesteps < total_timesteps and not self.stop_training:
            callback_list.on_epoch_begin(self.updates)
            logs = self._iterate()
            callback_list.on_epoch_end(self.updates - 1, logs)
            if store is not None and self.updates % checkpoint_freq == 0:
                self._save(store, callback_list)
                self._reset_envs()
        if store is not None and self.timesteps >= total_timesteps:
            self._save(store, callback_list)
        callback_list.on_train_end()
        return self

    def _save(self, store: CheckpointStore, callbacks: CallbackList) -> None:
        store.save(
            self.updates,
            {
                "updates": self.updates,
                "timesteps": self.timesteps,
                "seed": self.seed,
                "reward_stats": self.reward_stats.state_dict(),
                "episodes": self.episodes,
                "callbacks": callbacks.state_dict(),
                "model_signature": variable_signature(self.policy.weights),
                "agent": type(self).__name__,
            },
        )

    def _restore(self, store: CheckpointStore, path: str, callbacks: CallbackList) -> None:
        metadata = store.restore(path, variable_signature(self.policy.weights))
        if metadata.get("seed") != self.seed:
            raise ValueError(
                f"Checkpoint {path} was written with seed={metadata.get('seed')}, this agent "
                f"has seed={self.seed}. Pass the same seed to resume exactly."
            )
        self.updates, self.timesteps = metadata["updates"], metadata["timesteps"]
        self.reward_stats.load_state_dict(metadata["reward_stats"])
        self.episodes = metadata["episodes"]
        callbacks.load_state_dict(metadata.get("callbacks", {}))
        self._reset_envs()

    # -- evaluate ----------------------------------------------------------------------

    def evaluate(
        self, env=None, episodes: int = 20, deterministic: bool = True, seed: int | None = None
    ) -> dict[str, Any]:
        """Run `episodes` episodes on a single env and return their returns.

        Args:
            env: Env id, `Env` or callable; defaults to a new copy of the training env.
            episodes: Positive int.
            deterministic: Act with the mode (default) or sample.
            seed: Seed of the first reset. Defaults to one derived from the agent's seed.

        Returns:
            `{"returns", "lengths", "mean", "std"}` (arrays of length `episodes`),
            plus `"original_returns"` when the env has a `RewardWrapper`.
        """
        episodes = check_positive_int("episodes", episodes)
        env = _env_factory(self.env_fn if env is None else env)()
        seed = derive_seed(self.seed, 10**6) if seed is None else seed
        returns, lengths, originals = [], [], []
        obs, _ = env.reset(seed=seed)
        for episode in range(episodes):
            total, original, length, done = 0.0, 0.0, 0, False
            while not done:
                action, _, _ = self.policy.act(
                    obs[None],
                    seed=(seed & _INT32, episode * 100_000 + length),
                    deterministic=deterministic,
                )
                obs, reward, terminated, truncated, info = env.step(
                    self.policy.env_action(action)[0]
                )
                total += float(reward)
                original += float(info.get("original_reward", reward))
                length += 1
                done = terminated or truncated
            returns.append(total)
            originals.append(original)
            lengths.append(length)
            obs, _ = env.reset()
        env.close()
        result = {
            "returns": np.asarray(returns),
            "lengths": np.asarray(lengths),
            "mean": float(np.mean(returns)),
            "std": float(np.std(returns)),
        }
        if originals != returns:
            result["original_returns"] = np.asarray(originals)
        return result

    def close(self) -> None:
        """Close the vector env."""
        if self._envs is not None:
            self._envs.close()
            self._envs = None


def policy_gradient_loss(agent: OnPolicyAgent, policy, batch: dict, training: bool):
    """`-log pi(a|s) A + vf_coef (V - R)^2 / 2 - ent_coef H`: REINFORCE's and A2C's loss."""
    h = agent.hparams
    mask = batch["mask"]
    _, log_prob, entropy, value = policy.get_action_and_value(
        batch["obs"], batch["actions"], training=training
    )
    advantages = batch["advantages"]
    if h["normalize_advantage"]:
        advantages = normalize(advantages, mask)
    policy_loss = -masked_mean(log_prob * advantages, mask)
    value_loss = 0.5 * masked_mean(tf.square(value - batch["returns"]), mask)
    entropy = masked_mean(entropy, mask)
    loss = policy_loss + h["vf_coef"] * value_loss - h["ent_coef"] * entropy
    log_ratio = log_prob - batch["old_log_probs"]
    logs = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": masked_mean(tf.exp(log_ratio) - 1.0 - log_ratio, mask),
        "clipfrac": tf.constant(0.0),
    }
    return loss + agent.model_losses(policy), logs
