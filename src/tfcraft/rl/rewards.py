"""Reward functions as composable, registered objects, and the `RewardWrapper`.

A reward function is any callable `fn(obs, action, next_obs, reward, terminated,
info) -> float`. The ready ones below are *terms*, so they add up:

- `EnvReward()`: the environment's own reward.
- `PotentialShaping(potential, gamma)`: `gamma * phi(next_obs) - phi(obs)`
  (Ng, Harada & Russell 1999), with `phi = 0` after termination; adding it to
  the env reward keeps the optimal policy.
- `StepPenalty(penalty)`: `-penalty` every step (a negative penalty is a bonus).
- `ClipReward(low, high, inner)` and `NormalizeReward(inner)`: transform
  another reward function (the env reward by default).

They compose with `+` and scalar `*`: `EnvReward() + 0.1 * PotentialShaping(...)`.
Configs name them instead of holding code: `reward_from_config(fn.get_config())`
rebuilds one, and a plain function or potential is named through
`register_reward_function(name)`, never a lambda.

`RewardWrapper(env, fn)` makes the env return `fn(...)` as its reward, checks that
it is a finite scalar, and records the env's own reward as `info["original_reward"]`
(and, at the end of an episode, `info["episode_original_return"]` beside
`info["episode_shaped_return"]`), so training logs keep the original return.

Example:

>>> import gymnasium as gym
>>> fn = EnvReward() + StepPenalty(0.5)
>>> env = RewardWrapper(gym.make("CartPole-v1"), fn)
>>> _ = env.reset(seed=0)
>>> _, reward, *_, info = env.step(0)
>>> reward, info["original_reward"]
(0.5, 1.0)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from tfcraft._validation import check_float_in_range, check_positive_float

__all__ = [
    "ClipReward",
    "EnvReward",
    "NormalizeReward",
    "PotentialShaping",
    "RewardFunction",
    "RewardWrapper",
    "ScaledReward",
    "StepPenalty",
    "SumReward",
    "get_reward_function",
    "register_reward_function",
    "reward_from_config",
]

_FUNCTIONS: dict[str, Callable] = {}
_CLASSES: dict[str, type] = {}


def register_reward_function(name: str) -> Callable:
    """Decorator: register a plain function (reward or potential) under `name`.

    Example:

    >>> @register_reward_function("doc_upright")
    ... def upright(obs):
    ...     return -abs(float(obs[2]))
    >>> get_reward_function("doc_upright") is upright
    True
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Argument `name` must be a non-empty string. Received: name={name!r}")

    def decorator(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"Only callables can be registered. Received: {fn!r}")
        _FUNCTIONS[name] = fn
        fn.registered_name = name
        return fn

    return decorator


def get_reward_function(name: str) -> Callable:
    """The function registered under `name` (see `register_reward_function`)."""
    if name not in _FUNCTIONS:
        raise ValueError(
            f"No reward function or potential is registered as {name!r}. Registered: "
            f"{sorted(_FUNCTIONS)}. Register it with `@register_reward_function(name)`."
        )
    return _FUNCTIONS[name]


def _name_of(fn: Callable | str, argument: str) -> str:
    if isinstance(fn, str):
        get_reward_function(fn)
        return fn
    name = getattr(fn, "registered_name", None)
    if name is None or _FUNCTIONS.get(name) is not fn:
        raise ValueError(
            f"Argument `{argument}` must be a registered function or its name, so configs "
            f"can name it (no lambdas). Received: {argument}={fn!r}. Decorate it with "
            "`@tfcraft.rl.register_reward_function('my_name')`."
        )
    return name


def _register_class(cls: type) -> type:
    _CLASSES[cls.__name__] = cls
    return cls


class RewardFunction:
    """Base class: a callable reward term with `get_config`, `+` and scalar `*`."""

    def __call__(self, obs, action, next_obs, reward, terminated, info) -> float:
        """The reward for one transition."""
        raise NotImplementedError  # abstract: subclasses implement it

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable)."""
        return {}

    def __add__(self, other: RewardFunction) -> SumReward:
        if not isinstance(other, RewardFunction):
            return NotImplemented
        return SumReward([self, other])

    def __mul__(self, scale: float) -> ScaledReward:
        if not isinstance(scale, numbers.Real) or isinstance(scale, bool):
            return NotImplemented
        return ScaledReward(float(scale), self)

    __rmul__ = __mul__

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def reward_from_config(config: dict[str, Any]) -> RewardFunction:
    """Rebuild a reward function from `{"class_name": ..., "config": {...}}`.

    Example:

    >>> reward_from_config(serialize(EnvReward() + StepPenalty(0.1)))
    SumReward(terms=[EnvReward(), StepPenalty(penalty=0.1)])
    """
    if not isinstance(config, dict) or config.get("class_name") not in _CLASSES:
        raise ValueError(
            "Argument `config` must be {'class_name': one of "
            f"{sorted(_CLASSES)}, 'config': {{...}}}}. Received: config={config!r}"
        )
    return _CLASSES[config["class_name"]].from_config(config.get("config", {}))


def serialize(fn: RewardFunction) -> dict[str, Any]:
    """`{"class_name": ..., "config": ...}` of a reward function."""
    return {"class_name": type(fn).__name__, "config": fn.get_config()}


def _inner_from(value) -> RewardFunction:
    if value is None:
        return EnvReward()
    if isinstance(value, dict):
        return reward_from_config(value)
    if isinstance(value, RewardFunction):
        return value
    raise TypeError(f"Argument `inner` must be a RewardFunction. Received: inner={value!r}")


class _FromConfig:
    @classmethod
    def from_config(cls, config: dict[str, Any]):
        return cls(**config)


@_register_class
class EnvReward(_FromConfig, RewardFunction):
    """The environment's own reward."""

    def __call__(self, obs, action, next_obs, reward, terminated, info) -> float:
        """Return `reward`."""
        return float(reward)


@_register_class
class SumReward(RewardFunction):
    """The sum of reward terms (what `fn1 + fn2` builds)."""

    def __init__(self, terms: list[RewardFunction]) -> None:
        flat = []
        for term in terms:
            term = _inner_from(term)
            flat.extend(term.terms if isinstance(term, SumReward) else [term])
        self.terms = flat

    def __call__(self, obs, action, next_obs, reward, terminated, info) -> float:
        """Return the sum of the terms."""
        return sum(float(t(obs, action, next_obs, reward, terminated, info)) for t in self.terms)

    def get_config(self) -> dict[str, Any]:
        """The terms' configs."""
        return {"terms": [serialize(t) for t in self.terms]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SumReward:
        """Rebuild from `get_config()`."""
        return cls([reward_from_config(t) for t in config["terms"]])

    def __repr__(self) -> str:
        return f"SumReward(terms={self.terms!r})"


@_register_class
class ScaledReward(RewardFunction):
    """`scale * fn` (what `scale * fn` builds)."""

    def __init__(self, scale: float, fn: RewardFunction) -> None:
        if not isinstance(scale, numbers.Real) or not math.isfinite(scale):
            raise ValueError(f"Argument `scale` must be a finite number. Received: scale={scale!r}")
        self.scale = float(scale)
        self.fn = _inner_from(fn)

    def __call__(self, obs, action, next_obs, reward, terminated, info) -> float:
        """Return `scale * fn(...)`."""
        return self.scale * float(self.fn(obs, action, next_obs, reward, terminated, info))

    def get_config(self) -> dict[str, Any]:
        """Scale and the inner function's config."""
        return {"scale": self.scale, "fn": serialize(self.fn)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ScaledReward:
        """Rebuild from `get_config()`."""
        return cls(config["scale"], reward_from_config(config["fn"]))


@_register_class
class PotentialShaping(_FromConfig, RewardFunction):
    """Potential-based shaping term `gamma * phi(next_obs) - phi(obs)`.

    Ng, Harada & Russell (1999): adding this term to any reward leaves the
    optimal policies unchanged, provided `gamma` is the agent's discount and
    the potential of a terminal state is zero (here `phi(next_obs)` counts as
    0 when `terminated`; a truncated episode keeps it, since it would go on).

    Args:
        potential: Name of a registered function `phi(obs) -> float`.
        gamma: The agent's discount factor, in [0, 1].

    References:
        Ng, Harada, Russell. Policy invariance under reward transformations:
        theory and application to reward shaping. ICML 1999.
    """

    def __init__(self, potential: str | Callable, gamma: float = 0.99) -> None:
        self.potential = _name_of(potential, "potential")
        self.gamma = check_float_in_range("gamma", gamma, 0.0, 1.0, True, True)
        self._phi = get_reward_function(self.potential)

    def __call__(self, obs, action, next_obs, reward, terminated, info) -> float:
        """Return `gamma * (1 - terminated) * phi(next_obs) - phi(obs)`."""
        after = 0.0 if terminated else float(self._phi(next_obs))
        return self.gamma * after - float(self._phi(obs))

    def get_config(self) -> dict[str, Any]:
        """Potential name and gamma."""
        return {"potential": self.potential, "gamma": self.gamma}


@_register_class
class StepPenalty(_FromConfig, RewardFunction):
    """`-penalty` on every step; a negative `penalty` is a per-step bonus."""

    def __init__(self, penalty: float = 0.01) -> None:
        if not isinstance(penalty, numbers.Real) or not math.isfinite(penalty):
            raise ValueError(
                f"Argument `penalty` must be a finite number. Received: penalty={penalty!r}"
            )
        self.penalty = float(penalty)

    def __call__(self, obs, action, next_obs, reward, terminated, info) -> float:
        """Return `-penalty`."""
        return -self.penalty

    def get_config(self) -> dict[str, Any]:
        """The penalty."""
        return {"penalty": self.penalty}


@_register_class
class ClipReward(RewardFunction):
    """`clip(inner(...), low, high)`; `inner` defaults to the env reward."""

    def __init__(self, low: float = -1.0, high: float = 1.0, inner=None) -> None:
        if not (isinstance(low, numbers.Real) and isinstance(high, numbers.Real) and low < high):
            raise ValueError(
                f"Arguments `low` < `high` must be numbers. Received: low={low!r}, high={high!r}"
            )
        self.low, self.high = float(low), float(high)
        self.inner = _inner_from(inner)

    def __call__(self, obs, action, next_obs, reward, terminated, info) -> float:
        """Return the clipped inner reward."""
        inner = self.inner(obs, action, next_obs, reward, terminated, info)
        value = check_reward_value(inner, self)
        return min(max(value, self.low), self.high)  # an infinite reward is refused, not clipped

    def get_config(self) -> dict[str, Any]:
        """Bounds and the inner function's config."""
        return {"low": self.low, "high": self.high, "inner": serialize(self.inner)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ClipReward:
        """Rebuild from `get_config()`."""
        return cls(config["low"], config["high"], reward_from_config(config["inner"]))


@_register_class
class NormalizeReward(RewardFunction):
    """`inner(...) / sqrt(running variance + epsilon)`, statistics updated every call.

    Running (Welford) variance of the inner reward over all calls; a stateful
    term, so two copies of an env see different statistics.
    """

    def __init__(self, inner=None, epsilon: float = 1e-8) -> None:
        self.inner = _inner_from(inner)
        self.epsilon = check_positive_float("epsilon", epsilon)
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def __call__(self, obs, action, next_obs, reward, terminated, info) -> float:
        """Update the statistics with the inner reward and return it scaled."""
        value = float(self.inner(obs, action, next_obs, reward, terminated, info))
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)
        variance = self.m2 / self.count if self.count > 1 else 1.0
        return value / math.sqrt(variance + self.epsilon)

    def get_config(self) -> dict[str, Any]:
        """Inner function's config and epsilon."""
        return {"inner": serialize(self.inner), "epsilon": self.epsilon}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NormalizeReward:
        """Rebuild from `get_config()`."""
        return cls(reward_from_config(config["inner"]), config["epsilon"])


def check_reward_value(value: object, fn: object) -> float:
    """Return `value` as a float if it is a finite real scalar, else raise `ValueError`."""
    array = np.asarray(value)
    if array.ndim != 0 or not np.issubdtype(array.dtype, np.number) or array.dtype.kind == "c":
        raise ValueError(
            f"A reward function must return a real scalar. Received: {value!r} "
            f"(shape {array.shape}, dtype {array.dtype}) from {fn!r}"
        )
    if not np.isfinite(array):
        raise ValueError(
            f"A reward function must return a finite value. Received: {value!r} from {fn!r}"
        )
    return float(array)


class RewardWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Gymnasium wrapper that replaces the env's reward with `fn(...)`.

    `info["original_reward"]` holds the env's reward each step; at the end of an
    episode (terminated or truncated) `info["episode_original_return"]` and
    `info["episode_shaped_return"]` hold both returns.

    Args:
        env: A Gymnasium env.
        fn: A reward function `(obs, action, next_obs, reward, terminated, info)
            -> float`, e.g. `EnvReward() + PotentialShaping("my_potential")`.

    Raises:
        ValueError: at a step, `fn` returned a non-scalar or non-finite value.
    """

    def __init__(self, env: gym.Env, fn: Callable) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, fn=fn)
        gym.Wrapper.__init__(self, env)
        if not callable(fn):
            raise TypeError(f"Argument `fn` must be callable. Received: fn={fn!r}")
        self.fn = fn
        self._obs = None
        self._original_return = self._shaped_return = 0.0

    def reset(self, **kwargs):
        """Reset the env and the episode's returns."""
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        self._original_return = self._shaped_return = 0.0
        return obs, info

    def step(self, action):
        """Step the env and return the shaped reward."""
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        shaped = check_reward_value(
            self.fn(self._obs, action, next_obs, reward, terminated, info), self.fn
        )
        info = dict(info)
        info["original_reward"] = float(reward)
        self._original_return += float(reward)
        self._shaped_return += shaped
        if terminated or truncated:
            info["episode_original_return"] = self._original_return
            info["episode_shaped_return"] = self._shaped_return
        self._obs = next_obs
        return next_obs, shaped, terminated, truncated, info
