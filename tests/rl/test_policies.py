import gymnasium as gym
import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

import tfcraft
from tfcraft.rl import CategoricalPolicy, GaussianPolicy, make_policy

tfd, tfb = tfp.distributions, tfp.bijectors


def obs_batch(n=5, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype("float32")


def test_categorical_log_prob_and_entropy_match_scipy():
    policy = CategoricalPolicy(4, 3, hidden_sizes=(8,), seed=0)
    obs = obs_batch()
    logits, _ = policy(obs)
    probs = scipy.special.softmax(logits.numpy().astype("float64"), axis=-1)
    actions = np.array([0, 1, 2, 3, 1])
    _, log_prob, entropy, _ = policy.get_action_and_value(obs, actions)
    np.testing.assert_allclose(log_prob, np.log(probs[np.arange(5), actions]), rtol=1e-5)
    np.testing.assert_allclose(entropy, scipy.stats.entropy(probs, axis=-1), rtol=1e-5)


@pytest.mark.parametrize("log_std", ["state_independent", "state_dependent"])
def test_gaussian_log_prob_matches_scipy(log_std):
    policy = GaussianPolicy(2, 3, log_std=log_std, log_std_init=-0.5, hidden_sizes=(8,), seed=1)
    obs = obs_batch()
    head, _ = policy(obs)
    loc, raw_log_std = np.split(head.numpy().astype("float64"), 2, axis=-1)
    actions = obs_batch(5, 2, seed=3)
    _, log_prob, entropy, _ = policy.get_action_and_value(obs, actions)
    reference = scipy.stats.norm(loc, np.exp(raw_log_std)).logpdf(actions).sum(-1)
    np.testing.assert_allclose(log_prob, reference, rtol=1e-5)
    np.testing.assert_allclose(
        entropy, scipy.stats.norm(loc, np.exp(raw_log_std)).entropy().sum(-1), rtol=1e-5
    )


def test_tanh_squashed_log_prob_has_the_change_of_variables_correction():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    policy = GaussianPolicy(2, 3, low=low, high=high, squash=True, hidden_sizes=(8,), seed=2)
    obs = obs_batch()
    head, _ = policy(obs)
    loc, log_std = np.split(head.numpy().astype("float64"), 2, axis=-1)
    u = np.random.default_rng(4).normal(size=(5, 2))
    mid, half = (high + low) / 2, (high - low) / 2
    actions = (mid + half * np.tanh(u)).astype("float32")
    _, log_prob, _, _ = policy.get_action_and_value(obs, actions)
    # By hand: log N(u) - log|d a / d u| with a = mid + half * tanh(u).
    u_back = np.arctanh((actions.astype("float64") - mid) / half)
    jacobian = np.log(half * (1.0 - np.tanh(u_back) ** 2))
    by_hand = (scipy.stats.norm(loc, np.exp(log_std)).logpdf(u_back) - jacobian).sum(-1)
    np.testing.assert_allclose(log_prob, by_hand, rtol=2e-4, atol=2e-4)
    # And a hand-built tfd object agrees.
    built = tfd.TransformedDistribution(
        tfd.Independent(tfd.Normal(loc, np.exp(log_std)), 1),
        tfb.Chain([tfb.Shift(mid), tfb.Scale(half), tfb.Tanh()]),
    )
    np.testing.assert_allclose(log_prob, built.log_prob(actions.astype("float64")), rtol=2e-4)
    # Samples stay inside the box, with finite log-probabilities.
    sampled, sampled_log_prob, _ = policy.act(obs, seed=(0, 1))
    assert np.all(sampled >= low) and np.all(sampled <= high)
    assert np.all(np.isfinite(sampled_log_prob))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shared": True, "hidden_sizes": (16,)},
        {"normalize_observations": True, "hidden_sizes": (8, 8)},
        {"squash": True, "log_std": "state_dependent"},
    ],
)
def test_save_and_load_in_safe_mode_gives_the_same_actions(tmp_path, kwargs):
    env = gym.make("Pendulum-v1")
    policy = make_policy(env.observation_space, env.action_space, seed=0, **kwargs)
    if policy.normalizer is not None:
        policy.normalizer.update(obs_batch(50, 3) * 3 + 1)
    path = tmp_path / "policy.keras"
    policy.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored) is GaussianPolicy
    obs = obs_batch()
    for deterministic in (True, False):
        np.testing.assert_array_equal(
            restored.act(obs, seed=(3, 4), deterministic=deterministic)[0],
            policy.act(obs, seed=(3, 4), deterministic=deterministic)[0],
        )


def test_custom_actor_network_with_a_tfcraft_layer_saves(tmp_path):
    actor = keras.Sequential([keras.Input((4,)), tfcraft.layers.Linear(16, activation="relu")])
    policy = CategoricalPolicy(2, 4, actor_network=actor, seed=0)
    policy.save(tmp_path / "p.keras")
    restored = keras.saving.load_model(tmp_path / "p.keras")
    obs = obs_batch(3, 4)
    np.testing.assert_allclose(restored(obs)[0], policy(obs)[0], rtol=1e-6)
    assert isinstance(restored.actor_network.layers[0], tfcraft.layers.Linear)


def test_act_does_not_retrace_per_step():
    policy = CategoricalPolicy(2, 4, hidden_sizes=(8,), seed=0)
    for step in range(20):
        policy.act(obs_batch(1 + step % 3, 4, seed=step), seed=(0, step))
    policy.act(obs_batch(2, 4), deterministic=True)
    assert set(policy._act_functions) == {False, True}  # one concrete function per mode
    concrete = policy._act_functions[False]
    assert isinstance(concrete, tf.types.experimental.ConcreteFunction)


def test_seeded_sampling_is_reproducible_and_varies_with_the_seed():
    policy = CategoricalPolicy(5, 4, hidden_sizes=(8,), seed=0)
    obs = np.zeros((64, 4), "float32")
    a = policy.act(obs, seed=(1, 2))[0]
    np.testing.assert_array_equal(a, policy.act(obs, seed=(1, 2))[0])
    assert not np.array_equal(a, policy.act(obs, seed=(1, 3))[0])


def test_thompson_exploration_holds_the_weight_sample_per_rollout():
    actor = keras.Sequential(
        [
            keras.Input((4,)),
            tfcraft.layers.DenseFlipout(16, activation="tanh", seed=0, posterior_scale_init=0.5),
        ]
    )
    policy = CategoricalPolicy(3, 4, actor_network=actor, exploration="thompson", seed=0)
    obs = obs_batch(4, 4)
    policy.resample_exploration(1)
    first = policy.act(obs, deterministic=True)[1]
    np.testing.assert_array_equal(first, policy.act(obs, deterministic=True)[1])
    policy.resample_exploration(2)
    assert not np.allclose(first, policy.act(obs, deterministic=True)[1])


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.MultiDiscrete([2, 3]),
        gym.spaces.Box(-1, 1, (2, 2)),
        gym.spaces.Discrete(1),
        gym.spaces.MultiBinary(3),
    ],
    ids=repr,
)
def test_unsupported_action_spaces(space):
    with pytest.raises(ValueError, match="Received: action_space="):
        make_policy(gym.spaces.Box(-1, 1, (3,)), space)


def test_unsupported_observation_space():
    with pytest.raises(ValueError, match="Received: observation_space="):
        make_policy(gym.spaces.Discrete(4), gym.spaces.Discrete(2))


def test_squash_needs_finite_bounds():
    with pytest.raises(ValueError, match="finite action bounds"):
        GaussianPolicy(1, 3, squash=True)
