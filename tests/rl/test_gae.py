import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfcraft.rl import compute_gae


def gae_loop(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Plain per-env Python loop (the reference)."""
    steps, envs = rewards.shape
    advantages = np.zeros((steps, envs))
    for e in range(envs):
        running = 0.0
        for t in reversed(range(steps)):
            bootstrap = 0.0 if terminated[t, e] else gamma * next_values[t, e]
            delta = rewards[t, e] + bootstrap - values[t, e]
            if terminated[t, e] or truncated[t, e]:
                running = 0.0
            running = delta + gamma * lam * running
            advantages[t, e] = running
    return advantages, advantages + values


@settings(max_examples=40, deadline=None)
@given(
    steps=st.integers(1, 12),
    envs=st.integers(1, 3),
    gamma=st.floats(0.0, 1.0),
    lam=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_gae_matches_python_loop(steps, envs, gamma, lam, seed):
    rng = np.random.default_rng(seed)
    shape = (steps, envs)
    rewards, values, next_values = rng.normal(size=(3, *shape))
    terminated = rng.random(shape) < 0.2
    truncated = ~terminated & (rng.random(shape) < 0.2)
    ours = compute_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    reference = gae_loop(rewards, values, next_values, terminated, truncated, gamma, lam)
    np.testing.assert_allclose(ours[0], reference[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ours[1], reference[1], rtol=1e-10, atol=1e-10)


def test_terminated_does_not_bootstrap_but_truncated_does():
    ones = np.ones((1, 1))
    args = dict(rewards=ones, values=0 * ones, next_values=10 * ones, gamma=0.5, gae_lambda=1.0)
    term, _ = compute_gae(terminated=ones > 0, truncated=ones < 0, **args)
    trunc, _ = compute_gae(terminated=ones < 0, truncated=ones > 0, **args)
    assert term[0, 0] == 1.0  # r only
    assert trunc[0, 0] == 1.0 + 0.5 * 10.0  # r + gamma V(final obs)


def test_done_cuts_the_recursion():
    rewards = np.array([[0.0], [5.0]])
    zeros = np.zeros((2, 1))
    truncated = np.array([[True], [False]])
    adv, _ = compute_gae(rewards, zeros, zeros, zeros > 1, truncated, 0.9, 0.9)
    assert adv[0, 0] == 0.0  # the next episode's reward does not leak back


@pytest.mark.parametrize(("name", "value"), [("gamma", 1.5), ("gamma", -0.1), ("gae_lambda", 2.0)])
def test_bad_gamma_or_lambda(name, value):
    args = {"gamma": 0.99, "gae_lambda": 0.95, name: value}
    z = np.zeros((2, 1))
    with pytest.raises(ValueError, match=rf"Received: {name}={value}"):
        compute_gae(z, z, z, z > 0, z > 0, **args)


def test_shape_mismatch():
    z = np.zeros((2, 1))
    with pytest.raises(ValueError, match="shape"):
        compute_gae(z, np.zeros((3, 1)), z, z > 0, z > 0, 0.9, 0.9)
