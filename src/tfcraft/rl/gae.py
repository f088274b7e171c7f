"""Generalised advantage estimation (Schulman et al. 2016), as a pure NumPy function.

`terminated[t]` means the episode really ended at step `t`: the value after it
is zero, so nothing is bootstrapped. `truncated[t]` means it was cut (a time
limit, the end of a checkpoint segment): the recursion stops there too, but the
one-step target still bootstraps from `next_values[t]`, the value of the final
observation. Gymnasium 1.x vector envs report both flags; `tfcraft.rl.collect`
fills `next_values` with V(final observation) in either autoreset mode.

Example:

>>> import numpy as np
>>> adv, ret = compute_gae(
...     rewards=np.ones((3, 1)), values=np.zeros((3, 1)), next_values=np.zeros((3, 1)),
...     terminated=np.zeros((3, 1), bool), truncated=np.zeros((3, 1), bool),
...     gamma=0.5, gae_lambda=1.0)
>>> adv[:, 0].tolist()
[1.75, 1.5, 1.0]
"""

from __future__ import annotations

import numpy as np

from tfcraft._validation import check_float_in_range

__all__ = ["compute_gae"]


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and value targets of a rollout of shape `(num_steps, num_envs)`.

    `delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t` and
    `A_t = delta_t + gamma * gae_lambda * (1 - done_t) * A_{t+1}` with
    `done = terminated | truncated`; the returns are `A + values`.

    Args:
        rewards: Rewards `r_t`, shape `(num_steps, num_envs)`.
        values: `V(s_t)`, same shape.
        next_values: `V(s_{t+1})`, the value of the observation *after* step
            `t` (the final observation when the episode ended), same shape.
        terminated: Booleans, the episode ended at step `t` (no bootstrap).
        truncated: Booleans, the episode was cut at step `t` (bootstrap).
        gamma: Discount factor in [0, 1].
        gae_lambda: GAE's lambda in [0, 1] (1 = Monte Carlo returns with a
            bootstrap at cuts, 0 = one-step TD).

    Returns:
        `(advantages, returns)`, float64 arrays of shape `(num_steps, num_envs)`.

    Raises:
        ValueError: `gamma` or `gae_lambda` outside [0, 1], or shapes differ.
    """
    gamma = check_float_in_range("gamma", gamma, 0.0, 1.0, True, True)
    gae_lambda = check_float_in_range("gae_lambda", gae_lambda, 0.0, 1.0, True, True)
    arrays = [np.asarray(a) for a in (rewards, values, next_values, terminated, truncated)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 2:
        raise ValueError(
            "`rewards`, `values`, `next_values`, `terminated` and `truncated` must all have "
            f"shape (num_steps, num_envs). Received shapes: {[a.shape for a in arrays]}"
        )
    rewards, values, next_values = (a.astype(np.float64) for a in arrays[:3])
    terminated, truncated = (a.astype(bool) for a in arrays[3:])
    not_terminated = 1.0 - terminated
    not_done = 1.0 - (terminated | truncated)
    deltas = rewards + gamma * not_terminated * next_values - values
    advantages = np.zeros_like(deltas)
    last = np.zeros(deltas.shape[1])
    for t in reversed(range(deltas.shape[0])):  # a loop over time, vectorised over envs
        last = deltas[t] + gamma * gae_lambda * not_done[t] * last
        advantages[t] = last
    return advantages, advantages + values
