"""Reinforcement learning on Gymnasium 1.x: policies, reward functions, rollouts, agents.

Example:

>>> from tfcraft.rl import PPO
>>> agent = PPO("CartPole-v1", n_envs=2, seed=0, n_steps=16, batch_size=16, n_epochs=1)
>>> agent.learn(32).timesteps
32
"""

from tfcraft.rl.agents import A2C, PPO, REINFORCE, OnPolicyAgent, RunningMeanStd, TimestepAxis
from tfcraft.rl.gae import compute_gae
from tfcraft.rl.heads import categorical_distribution, gaussian_distribution
from tfcraft.rl.policies import (
    ActorCriticPolicy,
    CategoricalPolicy,
    GaussianPolicy,
    ObservationNormalizer,
    make_policy,
)
from tfcraft.rl.rewards import (
    ClipReward,
    EnvReward,
    NormalizeReward,
    PotentialShaping,
    RewardFunction,
    RewardWrapper,
    ScaledReward,
    StepPenalty,
    SumReward,
    get_reward_function,
    register_reward_function,
    reward_from_config,
)
from tfcraft.rl.rollout import Rollout, RolloutState, collect

__all__ = [
    "A2C",
    "PPO",
    "REINFORCE",
    "ActorCriticPolicy",
    "CategoricalPolicy",
    "ClipReward",
    "EnvReward",
    "GaussianPolicy",
    "NormalizeReward",
    "ObservationNormalizer",
    "OnPolicyAgent",
    "PotentialShaping",
    "RewardFunction",
    "RewardWrapper",
    "Rollout",
    "RolloutState",
    "RunningMeanStd",
    "ScaledReward",
    "StepPenalty",
    "SumReward",
    "TimestepAxis",
    "categorical_distribution",
    "collect",
    "compute_gae",
    "gaussian_distribution",
    "get_reward_function",
    "make_policy",
    "register_reward_function",
    "reward_from_config",
]
