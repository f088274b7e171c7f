import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tfcraft.rl import CategoricalPolicy, EnvReward, RewardWrapper, StepPenalty, collect
from tfcraft.rl.rollout import derive_seed

MODES = [gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP]


def test_the_test_envs_pass_check_env(corridor, bandit):
    check_env(corridor(), skip_render_check=True)
    check_env(bandit(), skip_render_check=True)


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_truncated_bootstraps_from_the_final_observation(corridor, mode):
    envs = gym.vector.SyncVectorEnv([corridor] * 2, autoreset_mode=mode)
    policy = CategoricalPolicy(2, 1, hidden_sizes=(8,), seed=0)
    rollout = collect(envs, policy, num_steps=20, seed=3)
    values_of = lambda obs: policy.act(np.asarray(obs, "float32"), deterministic=True)[2]  # noqa: E731
    valid = rollout.valid
    done = (rollout.terminated | rollout.truncated) & valid
    assert rollout.truncated[valid].any() or rollout.terminated[valid].any()
    # Where an episode ended, next_values is V(final observation), whatever the mode.
    for t, e in zip(*np.nonzero(done), strict=True):
        if mode is gym.vector.AutoresetMode.NEXT_STEP:
            final = rollout.obs[t + 1, e] if t + 1 < len(rollout.obs) else rollout.state.obs[e]
        else:
            final = None
        if final is not None:
            assert rollout.next_values[t, e] == pytest.approx(float(values_of(final[None])[0]))
    if mode is gym.vector.AutoresetMode.NEXT_STEP:
        # The step after an episode's end is a reset step: masked out, reward 0.
        after = np.zeros_like(done)
        after[1:] = done[:-1]
        np.testing.assert_array_equal(~valid[after], True)
        assert np.all(rollout.rewards[after] == 0)
        assert valid[0].all() and (~valid).sum() == after.sum()
    else:
        assert valid.all()


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_episode_statistics_match_a_manual_count(corridor, mode):
    envs = gym.vector.SyncVectorEnv([corridor], autoreset_mode=mode)
    policy = CategoricalPolicy(2, 1, hidden_sizes=(8,), seed=0)
    rollout = collect(envs, policy, num_steps=40, seed=0)
    lengths, current = [], 0
    for t in range(40):
        if not rollout.valid[t, 0]:
            continue
        current += 1
        if rollout.terminated[t, 0] or rollout.truncated[t, 0]:
            lengths.append(current)
            current = 0
    assert rollout.episodes["lengths"].tolist() == lengths
    assert all(length <= 6 for length in lengths)


def test_original_return_is_logged_beside_the_shaped_one(corridor):
    make = lambda: RewardWrapper(corridor(), EnvReward() + StepPenalty(1.0))  # noqa: E731
    envs = gym.vector.SyncVectorEnv([make], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    policy = CategoricalPolicy(2, 1, hidden_sizes=(8,), seed=0)
    rollout = collect(envs, policy, num_steps=30, seed=0)
    episodes = rollout.episodes
    np.testing.assert_allclose(
        episodes["returns"], episodes["original_returns"] - episodes["lengths"]
    )


def test_rollouts_continue_and_are_reproducible(corridor):
    def run():
        envs = gym.vector.SyncVectorEnv([corridor] * 2)
        policy = CategoricalPolicy(2, 1, hidden_sizes=(8,), seed=0)
        first = collect(envs, policy, 7, seed=5)
        second = collect(envs, policy, 7, state=first.state, seed=5)
        return first, second

    (a1, a2), (_, b2) = run(), run()
    np.testing.assert_array_equal(a2.actions, b2.actions)
    assert a2.state.timesteps == 28 and a2.state.vector_steps == 14
    np.testing.assert_array_equal(a2.obs[0], a1.state.obs)


def test_async_vector_env(corridor):
    envs = gym.vector.AsyncVectorEnv([corridor] * 2)
    try:
        rollout = collect(envs, CategoricalPolicy(2, 1, hidden_sizes=(8,), seed=0), 5, seed=0)
    finally:
        envs.close()
    assert rollout.actions.shape == (5, 2)


def test_derive_seed_is_deterministic_and_distinct():
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(1, 3)
    assert 0 <= derive_seed(123, 4, 5) < 2**31
