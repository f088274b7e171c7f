"""A2C: synchronous advantage actor-critic (Mnih et al. 2016), one step per short rollout.

Each update: `n_steps` (5) steps from each of `n_envs` envs, n-step returns
(GAE with `gae_lambda=1.0`, bootstrapped from the last value), then one
RMSprop step on `-log pi(a|s) A + vf_coef (V - R)^2 / 2 - ent_coef H`, with the
gradient norm clipped to `max_grad_norm`. Defaults follow SB3's A2C.

Example:

>>> agent = A2C("CartPole-v1", n_envs=2, seed=0)
>>> agent.learn(40).timesteps
40

References:
    Mnih et al. Asynchronous Methods for Deep Reinforcement Learning. ICML 2016.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras

from tfcraft.rl.agents.base import OnPolicyAgent, policy_gradient_loss

__all__ = ["A2C"]


class A2C(OnPolicyAgent):
    """Advantage actor-critic.

    Args:
        env: A Gymnasium env id, an `Env` or a callable returning one.
        policy: A `tfcraft.rl` policy; built from the env's spaces when None.
        n_envs: Positive int, parallel envs. Defaults to `8`.
        seed: Optional int; the same seed gives the same run.
        vectorization: `"sync"` or `"async"`.
        **hyperparameters: Any of `A2C.DEFAULTS`: `learning_rate` (7e-4),
            `n_steps` (5), `gamma` (0.99), `gae_lambda` (1.0), `ent_coef`
            (0.0), `vf_coef` (0.5), `max_grad_norm` (0.5), `normalize_advantage`
            (False), `normalize_observations` (True), `normalize_rewards`
            (True), `policy_kwargs` (None).
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 7e-4,
        "n_steps": 5,
        "gamma": 0.99,
        "gae_lambda": 1.0,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "normalize_advantage": False,
        "normalize_observations": True,
        "normalize_rewards": True,
        "policy_kwargs": None,
    }

    def __init__(self, env, policy=None, *, n_envs: int = 8, **kwargs) -> None:
        super().__init__(env, policy, n_envs=n_envs, **kwargs)

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        """RMSprop(rho=0.99, epsilon=1e-5), as SB3's A2C."""
        return keras.optimizers.RMSprop(self.hparams["learning_rate"], rho=0.99, epsilon=1e-5)

    def loss_fn(self, policy, batch: dict, training: bool):
        """The actor-critic loss of the whole rollout."""
        return policy_gradient_loss(self, policy, batch, training)
