import json

import gymnasium as gym
import keras
import numpy as np
import pytest

import tfcraft
from tfcraft.rl import A2C, PPO, REINFORCE, CategoricalPolicy
from tfcraft.training import Callback

SMALL = dict(n_steps=16, batch_size=16, n_epochs=2)


class StopAfter(Callback):
    def __init__(self, updates):
        super().__init__()
        self.updates = updates

    def on_epoch_end(self, epoch, logs=None):
        if self.trainer.updates >= self.updates:
            self.trainer.stop_training = True


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": 1.5}, r"Received: gamma=1.5"),
        ({"gae_lambda": -0.1}, r"Received: gae_lambda=-0.1"),
        ({"clip_range": 0.0}, r"Received: clip_range=0.0"),
        ({"clip_range": -0.2}, r"Received: clip_range=-0.2"),
        ({"n_envs": 0}, r"Received: n_envs=0"),
    ],
)
def test_bad_arguments_fail_before_any_env_step(kwargs, match, nostep):
    with pytest.raises(ValueError, match=match):
        PPO(nostep, **kwargs)


def test_bad_total_timesteps_fail_before_any_env_step(nostep):
    agent = PPO(nostep, n_envs=1, **SMALL)
    for bad in (0, -5):
        with pytest.raises(ValueError, match=rf"Received: total_timesteps={bad}"):
            agent.learn(bad)


def test_unsupported_action_space_fails_before_any_env_step(nostep):
    class MultiAction(nostep):
        def __init__(self):
            super().__init__()
            self.action_space = gym.spaces.MultiDiscrete([2, 2])

    with pytest.raises(ValueError, match="Received: action_space=MultiDiscrete"):
        PPO(MultiAction)


def test_unknown_hyperparameter_and_wrong_env_type():
    with pytest.raises(TypeError, match="unknown hyperparameters \\['lr'\\]"):
        PPO("CartPole-v1", lr=0.1)
    with pytest.raises(TypeError, match="Received: env=3"):
        PPO(3)


def test_policy_that_does_not_fit_the_env():
    with pytest.raises(ValueError, match=r"policy\.observation_size=7"):
        PPO("CartPole-v1", policy=CategoricalPolicy(2, 7, hidden_sizes=(4,)))


@pytest.mark.parametrize("agent_class", [PPO, A2C, REINFORCE])
def test_every_agent_solves_a_bandit(agent_class, bandit):
    kwargs = {"learning_rate": 3e-3, "n_steps": 32}
    if agent_class is PPO:
        kwargs.update(batch_size=32, n_epochs=4)
    agent = agent_class(bandit, n_envs=2, seed=0, **kwargs)
    agent.learn(1500)
    result = agent.evaluate(episodes=5)
    assert result["mean"] == 1.0  # the greedy action is the paying one
    assert agent.evaluate(episodes=50, deterministic=False)["mean"] > 0.85


def test_ppo_defaults_improve_cartpole_within_a_small_budget():
    agent = PPO("CartPole-v1", seed=0)
    agent.learn(8192)
    returns = np.asarray(agent.episodes["returns"])
    assert returns[-20:].mean() > 2 * returns[:20].mean()


def test_interrupted_learn_resumes_bit_for_bit(tmp_path):
    def make():
        tfcraft.enable_determinism(0)
        return PPO("CartPole-v1", n_envs=2, seed=0, **SMALL)

    whole = make().learn(192, checkpoint_dir=tmp_path / "whole", checkpoint_freq=2)
    stopped = make().learn(
        192, checkpoint_dir=tmp_path / "cut", checkpoint_freq=2, callbacks=[StopAfter(4)]
    )
    assert stopped.timesteps == 128 < whole.timesteps == 192
    resumed = make().learn(192, checkpoint_dir=tmp_path / "cut", checkpoint_freq=2)
    assert resumed.timesteps == 192 and resumed.updates == whole.updates
    for a, b in zip(whole.policy.weights, resumed.policy.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(whole.optimizer.variables, resumed.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert whole.reward_stats.state_dict() == resumed.reward_stats.state_dict()
    assert whole.episodes == resumed.episodes
    with pytest.raises(ValueError, match="seed=0"):  # another seed cannot resume exactly
        PPO("CartPole-v1", n_envs=2, seed=1, **SMALL).learn(256, checkpoint_dir=tmp_path / "cut")


def test_logs_on_a_timestep_axis(tmp_path):
    agent = PPO("CartPole-v1", n_envs=2, seed=0, **SMALL)
    agent.learn(96, jsonl_path=tmp_path / "m.jsonl", tensorboard_dir=tmp_path / "tb")
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [row["timesteps"] for row in rows] == [32, 64, 96]
    expected = {
        "episode_return",
        "episode_length",
        "episode_original_return",
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "clipfrac",
        "explained_variance",
        "steps_per_second",
        "grad_norm",
        "learning_rate",
    }
    assert expected <= set(rows[0])
    assert all(np.isfinite(row["policy_loss"]) and row["approx_kl"] >= -1e-6 for row in rows)
    import tensorflow as tf

    steps = [
        event.step
        for path in (tmp_path / "tb" / "train").iterdir()
        for event in tf.compat.v1.train.summary_iterator(str(path))
        if any(value.tag == "epoch_policy_loss" for value in event.summary.value)
    ]
    assert steps == [32, 64, 96]


def test_evaluate_returns_arrays():
    agent = PPO("CartPole-v1", n_envs=2, seed=0, **SMALL)
    result = agent.evaluate("CartPole-v1", episodes=3)
    assert result["returns"].shape == (3,) and result["lengths"].dtype.kind == "i"
    assert result["mean"] == pytest.approx(result["returns"].mean())


def test_continuous_agent_and_bayesian_policy_train():
    agent = PPO("Pendulum-v1", n_envs=2, seed=0, policy_kwargs={"squash": True}, **SMALL)
    agent.learn(64)
    assert np.isfinite(agent.evaluate(episodes=1)["mean"])
    actor = keras.Sequential(
        [keras.Input((4,)), tfcraft.layers.DenseFlipout(16, activation="tanh", seed=0)]
    )
    policy = CategoricalPolicy(2, 4, actor_network=actor, exploration="thompson", seed=0)
    bayes = PPO("CartPole-v1", policy=policy, n_envs=2, seed=0, **SMALL)
    before = [w.numpy().copy() for w in policy.trainable_weights]
    bayes.learn(64)
    assert any(
        not np.array_equal(a, b.numpy())
        for a, b in zip(before, policy.trainable_weights, strict=True)
    )
