"""PPO: proximal policy optimisation with the clipped objective (Schulman et al. 2017).

Each update: collect `n_steps` steps from each of `n_envs` envs, compute GAE
advantages, then `n_epochs` passes over shuffled minibatches of `batch_size`
minimising

    L = -min(r A, clip(r, 1 - eps, 1 + eps) A) + vf_coef * (V - R)^2 - ent_coef * H,

`r = pi(a|s) / pi_old(a|s)`, with per-minibatch advantage normalisation and an
optional clipped value loss (`clip_range_vf`). Gradients are clipped to
`max_grad_norm` by `tfcraft.training.clipping` inside the shared train step.

Defaults (chosen once for classic control, see `benchmarks/rl_defaults_study.py`):
SB3's PPO defaults (lr 3e-4, 2048 steps per update, batch 64, 10 epochs, gamma
0.99, lambda 0.95, clip 0.2, max_grad_norm 0.5) spread over 4 envs, plus
observation and reward normalisation (SB3's `VecNormalize`).

Example:

>>> agent = PPO("CartPole-v1", n_envs=2, seed=0, n_steps=16, batch_size=16, n_epochs=1)
>>> _ = agent.learn(64)
>>> agent.timesteps, sorted(agent.evaluate(episodes=1))
(64, ['lengths', 'mean', 'returns', 'std'])

References:
    Schulman, Wolski, Dhariwal, Radford, Klimov. Proximal Policy Optimization
    Algorithms. arXiv:1707.06347, 2017. Huang et al., "The 37 implementation
    details of PPO", ICLR blog track 2022.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import tensorflow as tf

from tfcraft._validation import check_positive_float, check_positive_int
from tfcraft.rl.agents.base import OnPolicyAgent, masked_mean, normalize

__all__ = ["PPO"]


class PPO(OnPolicyAgent):
    """Proximal policy optimisation.

    Args:
        env: A Gymnasium env id, an `Env` or a callable returning one.
        policy: A `tfcraft.rl` policy; built from the env's spaces when None.
        n_envs: Positive int, parallel envs. Defaults to `4`.
        seed: Optional int; the same seed gives the same run.
        vectorization: `"sync"` or `"async"` (subprocesses, for slow envs).
        **hyperparameters: Any of `PPO.DEFAULTS`: `learning_rate` (3e-4),
            `n_steps` (512 per env), `batch_size` (64), `n_epochs` (10),
            `gamma` (0.99), `gae_lambda` (0.95), `clip_range` (0.2; a float or
            a Keras schedule over update steps),
            `clip_range_vf` (None: no value clipping), `normalize_advantage`
            (True), `ent_coef` (0.0), `vf_coef` (0.5), `max_grad_norm` (0.5),
            `normalize_observations` (True), `normalize_rewards` (True),
            `policy_kwargs` (None: arguments of the default policy).
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 3e-4,
        "n_steps": 512,
        "batch_size": 64,
        "n_epochs": 10,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "clip_range_vf": None,
        "normalize_advantage": True,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "normalize_observations": True,
        "normalize_rewards": True,
        "policy_kwargs": None,
    }

    def _check_hyperparameters(self, h: dict) -> None:
        super()._check_hyperparameters(h)
        if not isinstance(h["clip_range"], keras.optimizers.schedules.LearningRateSchedule):
            check_positive_float("clip_range", h["clip_range"])
        if h["clip_range_vf"] is not None:
            check_positive_float("clip_range_vf", h["clip_range_vf"])
        check_positive_int("batch_size", h["batch_size"])
        check_positive_int("n_epochs", h["n_epochs"])

    def loss_fn(self, policy, batch: dict, training: bool):
        """The clipped PPO loss of one minibatch, and what explains it."""
        h = self.hparams
        mask = batch["mask"]
        _, log_prob, entropy, value = policy.get_action_and_value(
            batch["obs"], batch["actions"], training=training
        )
        advantages = batch["advantages"]
        if h["normalize_advantage"]:
            advantages = normalize(advantages, mask)
        log_ratio = log_prob - batch["old_log_probs"]
        ratio = tf.exp(log_ratio)
        clip_range = h["clip_range"]
        if callable(clip_range):  # a schedule over optimizer steps, like the learning rate
            clip_range = tf.cast(clip_range(self.optimizer.iterations), tf.float32)
        clipped = tf.clip_by_value(ratio, 1.0 - clip_range, 1.0 + clip_range)
        policy_loss = masked_mean(tf.maximum(-advantages * ratio, -advantages * clipped), mask)
        value_error = tf.square(value - batch["returns"])
        if h["clip_range_vf"] is not None:
            old = batch["old_values"]
            value_clipped = old + tf.clip_by_value(
                value - old, -h["clip_range_vf"], h["clip_range_vf"]
            )
            value_error = tf.maximum(value_error, tf.square(value_clipped - batch["returns"]))
        value_loss = 0.5 * masked_mean(value_error, mask)
        entropy = masked_mean(entropy, mask)
        loss = policy_loss + h["vf_coef"] * value_loss - h["ent_coef"] * entropy
        loss += self.model_losses(policy)
        logs = {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            # The low-variance estimator of KL(old || new) (Schulman's blog, CleanRL).
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
            "clipfrac": masked_mean(tf.cast(tf.abs(ratio - 1.0) > clip_range, tf.float32), mask),
        }
        return loss, logs
