"""On-policy agents: REINFORCE (learned baseline), A2C and PPO."""

from tfcraft.rl.agents.a2c import A2C
from tfcraft.rl.agents.base import OnPolicyAgent, RunningMeanStd, TimestepAxis
from tfcraft.rl.agents.ppo import PPO
from tfcraft.rl.agents.reinforce import REINFORCE

__all__ = ["A2C", "PPO", "REINFORCE", "OnPolicyAgent", "RunningMeanStd", "TimestepAxis"]
