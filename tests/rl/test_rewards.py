import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tfcraft.rl import (
    ClipReward,
    EnvReward,
    NormalizeReward,
    PotentialShaping,
    RewardWrapper,
    StepPenalty,
    register_reward_function,
    reward_from_config,
)
from tfcraft.rl.rewards import serialize


@register_reward_function("test_cartpole_upright")
def upright(obs):
    return -abs(float(obs[2]))


@register_reward_function("test_nan_reward")
def nan_reward(obs, action, next_obs, reward, terminated, info):
    return float("nan")


@register_reward_function("test_vector_reward")
def vector_reward(obs, action, next_obs, reward, terminated, info):
    return np.ones(2)


FUNCTIONS = [
    EnvReward(),
    EnvReward() + StepPenalty(0.1),
    EnvReward() + 0.5 * PotentialShaping("test_cartpole_upright", gamma=0.99),
    ClipReward(-0.5, 0.5),
    NormalizeReward(EnvReward() + StepPenalty(-1.0)),
]


@pytest.mark.parametrize("fn", FUNCTIONS, ids=repr)
def test_check_env_on_every_reward_wrapper(fn):
    check_env(RewardWrapper(gym.make("CartPole-v1").unwrapped, fn), skip_render_check=True)


@pytest.mark.parametrize("fn", FUNCTIONS, ids=repr)
def test_config_round_trip_gives_the_same_rewards(fn):
    assert serialize(reward_from_config(serialize(fn))) == serialize(fn)
    obs, next_obs = np.array([0, 0, 0.1, 0]), np.array([0, 0, 0.2, 0])
    for terminated in (False, True):
        args = (obs, 1, next_obs, 3.0, terminated, {})
        rebuilt, fresh = reward_from_config(serialize(fn)), type(fn).from_config(fn.get_config())
        assert rebuilt(*args) == pytest.approx(fresh(*args))


def test_composition_values():
    obs, next_obs = np.array([0, 0, 0.1, 0]), np.array([0, 0, 0.3, 0])
    fn = 2.0 * EnvReward() + StepPenalty(0.25) + PotentialShaping("test_cartpole_upright", 0.5)
    expected = 2.0 * 3.0 - 0.25 + (0.5 * -0.3 - -0.1)
    assert fn(obs, 0, next_obs, 3.0, False, {}) == pytest.approx(expected)
    # After termination the next state's potential is zero (Ng et al.).
    assert PotentialShaping("test_cartpole_upright", 0.5)(obs, 0, next_obs, 0.0, True, {}) == (
        pytest.approx(0.1)
    )
    assert ClipReward(-1, 1)(obs, 0, next_obs, 7.0, False, {}) == 1.0


def test_wrapper_logs_original_and_shaped_returns():
    env = RewardWrapper(gym.make("CartPole-v1"), EnvReward() + StepPenalty(0.5))
    env.reset(seed=0)
    done, steps = False, 0
    while not done:
        _, reward, terminated, truncated, info = env.step(0)
        assert reward == 0.5 and info["original_reward"] == 1.0
        steps += 1
        done = terminated or truncated
    assert info["episode_original_return"] == steps
    assert info["episode_shaped_return"] == 0.5 * steps


def test_running_normalisation_has_unit_scale():
    fn = NormalizeReward()
    rng = np.random.default_rng(0)
    out = [fn(None, None, None, r, False, {}) for r in rng.normal(3.0, 5.0, size=5000)]
    assert np.std(out[1000:]) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize(
    ("name", "message"), [("test_nan_reward", "finite"), ("test_vector_reward", "real scalar")]
)
def test_bad_reward_values(name, message):
    from tfcraft.rl.rewards import get_reward_function

    env = RewardWrapper(gym.make("CartPole-v1"), get_reward_function(name))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(0)


def test_lambdas_are_refused():
    with pytest.raises(ValueError, match="registered function"):
        PotentialShaping(lambda obs: 0.0)
    with pytest.raises(ValueError, match="No reward function"):
        PotentialShaping("not_registered")


# -- Ng, Harada & Russell (1999): shaping keeps the optimal policy -----------------


def random_mdp(seed, states=6, actions=3):
    rng = np.random.default_rng(seed)
    # The last state is terminal (absorbing, no reward after it).
    transitions = rng.dirichlet(np.ones(states), size=(states - 1, actions))
    rewards = rng.normal(size=(states - 1, actions, states))
    return transitions, rewards


def value_iteration(transitions, rewards, gamma, iterations=2000):
    states = transitions.shape[0] + 1
    values = np.zeros(states)
    for _ in range(iterations):
        q = np.einsum("ijk,ijk->ij", transitions, rewards + gamma * values[None, None, :])
        values[:-1] = q.max(axis=1)  # terminal value stays 0
    return q


@pytest.mark.parametrize("seed", range(5))
def test_potential_shaping_keeps_the_optimal_policy(seed):
    transitions, rewards = random_mdp(seed)
    gamma = 0.9
    potentials = np.random.default_rng(100 + seed).normal(scale=5.0, size=transitions.shape[0] + 1)

    @register_reward_function(f"test_tabular_potential_{seed}")
    def phi(obs):
        return potentials[int(obs)]

    shaping = EnvReward() + PotentialShaping(f"test_tabular_potential_{seed}", gamma=gamma)
    terminal = transitions.shape[0]
    shaped = np.empty_like(rewards)
    for s, a, s_next in np.ndindex(rewards.shape):
        shaped[s, a, s_next] = shaping(s, a, s_next, rewards[s, a, s_next], s_next == terminal, {})
    q, q_shaped = (
        value_iteration(transitions, rewards, gamma),
        value_iteration(transitions, shaped, gamma),
    )
    np.testing.assert_array_equal(q.argmax(axis=1), q_shaped.argmax(axis=1))
    # The theorem's stronger form: Q' = Q - phi(s).
    np.testing.assert_allclose(q_shaped, q - potentials[:-1, None], atol=1e-8)
    # A non-potential bonus of the same size can change it (the test can fail).
    assert shaping.terms[1].gamma == gamma
