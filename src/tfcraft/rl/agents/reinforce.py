"""REINFORCE with a learned baseline (Williams 1992; Sutton & Barto, section 13.4).

Each update: `n_steps` steps from each env, Monte Carlo returns (GAE with
`gae_lambda=1.0`: the discounted reward-to-go, bootstrapped from V only where
the rollout or a time limit cuts an episode), advantages `G - V(s)`, then one
Adam step on `-log pi(a|s) (G - V) + vf_coef (V - G)^2 / 2`: the value net is
the learned baseline.

Example:

>>> agent = REINFORCE("CartPole-v1", n_envs=2, seed=0, n_steps=32)
>>> agent.learn(64).timesteps
64

References:
    Williams. Simple statistical gradient-following algorithms for connectionist
    reinforcement learning. Machine Learning 8, 1992.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tfcraft.rl.agents.base import OnPolicyAgent, policy_gradient_loss

__all__ = ["REINFORCE"]


class REINFORCE(OnPolicyAgent):
    """Monte Carlo policy gradient with a learned value baseline.

    Args:
        env: A Gymnasium env id, an `Env` or a callable returning one.
        policy: A `tfcraft.rl` policy; built from the env's spaces when None.
        n_envs: Positive int, parallel envs. Defaults to `4`.
        seed: Optional int; the same seed gives the same run.
        vectorization: `"sync"` or `"async"`.
        **hyperparameters: Any of `REINFORCE.DEFAULTS`: `learning_rate` (1e-3),
            `n_steps` (500), `gamma` (0.99), `gae_lambda` (1.0),
            `ent_coef` (0.0), `vf_coef` (0.5), `max_grad_norm` (0.5),
            `normalize_advantage` (True), `normalize_observations` (True),
            `normalize_rewards` (False), `policy_kwargs` (None).
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 1e-3,
        "n_steps": 500,
        "gamma": 0.99,
        "gae_lambda": 1.0,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "normalize_advantage": True,
        "normalize_observations": True,
        "normalize_rewards": False,
        "policy_kwargs": None,
    }

    def loss_fn(self, policy, batch: dict, training: bool):
        """The REINFORCE-with-baseline loss of the whole rollout."""
        return policy_gradient_loss(self, policy, batch, training)
