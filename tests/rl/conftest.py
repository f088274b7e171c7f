import gymnasium as gym
import numpy as np
import pytest


class Bandit(gym.Env):
    """One-step episodes; action 1 pays 1, action 0 pays 0 (a trivially solvable task)."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), float(action == 1), True, False, {}


class Corridor(gym.Env):
    """Walk right along 0..4 (reward 1 at the end, terminated) or hit a time limit of 6."""

    def __init__(self, limit=6):
        self.observation_space = gym.spaces.Box(0.0, 4.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.limit = limit

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.t = 0, 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.position = max(0, self.position + (1 if action == 1 else -1))
        self.t += 1
        terminated = self.position == 4
        truncated = not terminated and self.t >= self.limit
        obs = np.array([self.position], np.float32)
        return obs, float(terminated), terminated, truncated, {}


class NoStep(Bandit):
    """Raises if stepped: proves that bad arguments fail before any env step."""

    def step(self, action):
        raise AssertionError("the env was stepped")


@pytest.fixture
def bandit():
    return Bandit


@pytest.fixture
def corridor():
    return Corridor


@pytest.fixture
def nostep():
    return NoStep
