"""Actor-critic policies: Keras 3 models that give a `tfd.Distribution` over actions and a value.

`CategoricalPolicy` (Discrete actions) and `GaussianPolicy` (Box actions) are
built from sizes, or from an env's spaces with `make_policy(observation_space,
action_space, **kwargs)`. Both follow CleanRL's interface:

- `get_value(obs) -> (batch,)`
- `get_action_and_value(obs, action=None, seed=None) -> (action, log_prob, entropy, value)`

and act through their own compiled function, traced once per input signature:
`policy.act(obs, seed=(0, step), deterministic=False) -> (action, log_prob, value)`
as NumPy arrays (the rollout calls it once per vector-env step).

Networks: `hidden_sizes` builds tanh MLP trunks with orthogonal initialisation
(gain sqrt 2, action head 0.01, value head 1, as in CleanRL and SB3), separate
for actor and critic unless `shared=True`. A **custom policy** passes its own
Keras models as `actor_network` (and optionally `critic_network`): any model
mapping observations to features, e.g. built from `tfcraft.layers` layers.
With `normalize_observations=True` the policy holds an `ObservationNormalizer`
whose running statistics the agent updates, so a saved policy normalises its
inputs by itself.

**Bayesian policy:** with variational layers (`tfcraft.layers.DenseFlipout`,
...) in `actor_network` and `exploration="thompson"`, `act` uses one weight
sample held fixed until `resample_exploration(seed)` (the rollout calls it once
per rollout): Thompson-style exploration driven by weight uncertainty.

Example:

>>> import gymnasium as gym, numpy as np
>>> env = gym.make("CartPole-v1")
>>> policy = make_policy(env.observation_space, env.action_space, hidden_sizes=(8,), seed=0)
>>> action, log_prob, value = policy.act(np.zeros((3, 4), "float32"), seed=(0, 0))
>>> action.shape, log_prob.shape, value.shape
((3,), (3,), (3,))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfcraft._validation import check_choice, check_positive_int
from tfcraft.layers.walk import iter_layers
from tfcraft.rl.heads import (
    categorical_distribution,
    clip_to_support,
    entropy_of,
    gaussian_distribution,
    mode_of,
)

tfd = tfp.distributions

__all__ = [
    "ActorCriticPolicy",
    "CategoricalPolicy",
    "GaussianPolicy",
    "ObservationNormalizer",
    "make_policy",
]

EXPLORATION = ("sample", "thompson")


@keras.saving.register_keras_serializable(package="tfcraft")
class ObservationNormalizer(keras.layers.Layer):
    """`clip((x - mean) / sqrt(var + 1e-8), -clip, clip)` with running statistics.

    The statistics are non-trainable weights (saved with the model and in
    checkpoints); `update(batch)` merges a batch into them (Chan et al.'s
    parallel variance), and the layer never changes them by itself.

    Args:
        clip: Positive float, the bound of normalised values. Defaults to `10.0` (SB3).
    """

    def __init__(self, clip: float = 10.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clip = float(clip)

    def build(self, input_shape) -> None:
        """Create the statistics for `input_shape[-1]` features."""
        size = (int(input_shape[-1]),)
        self.mean = self.add_weight(name="mean", shape=size, initializer="zeros", trainable=False)
        self.var = self.add_weight(name="var", shape=size, initializer="ones", trainable=False)
        self.count = self.add_weight(name="count", shape=(), initializer="zeros", trainable=False)

    def call(self, inputs):
        """Normalise `inputs`."""
        inputs = tf.cast(inputs, tf.float32)
        normalized = (inputs - self.mean) / tf.sqrt(self.var + 1e-8)
        return tf.clip_by_value(normalized, -self.clip, self.clip)

    def update(self, batch: np.ndarray) -> None:
        """Merge a `(n, features)` batch of raw observations into the statistics."""
        batch = np.asarray(batch, np.float64).reshape(-1, self.mean.shape[0])
        count, mean, var = float(self.count.numpy()), self.mean.numpy(), self.var.numpy()
        n = batch.shape[0]
        if count == 0:
            mean, var = np.zeros_like(mean, np.float64), np.ones_like(var, np.float64)
        batch_mean, batch_var = batch.mean(axis=0), batch.var(axis=0)
        total = count + n
        delta = batch_mean - mean
        new_mean = mean + delta * n / total
        m2 = var * count + batch_var * n + delta**2 * count * n / total
        self.mean.assign(new_mean.astype(np.float32))
        self.var.assign((m2 / total).astype(np.float32))
        self.count.assign(np.float32(total))

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {**super().get_config(), "clip": self.clip}


def _mlp(sizes: Sequence[int], activation: str, seed: int | None, name: str) -> keras.Sequential:
    layers = [
        keras.layers.Dense(
            units,
            activation=activation,
            kernel_initializer=keras.initializers.Orthogonal(math.sqrt(2), seed=_offset(seed, i)),
            name=f"{name}_{i}",
        )
        for i, units in enumerate(sizes)
    ]
    return keras.Sequential(layers, name=name)


def _offset(seed: int | None, k: int) -> int | None:
    return None if seed is None else seed + 1000 * (k + 1)


def _linear(units: int, gain: float, seed: int | None, name: str) -> keras.layers.Dense:
    return keras.layers.Dense(
        units, kernel_initializer=keras.initializers.Orthogonal(gain, seed=seed), name=name
    )


def _stochastic_generators(model) -> list:
    """Seed generators of the stochastic (e.g. variational) layers of `model`."""
    return [
        layer.seed_generator
        for layer in iter_layers(model)
        if getattr(layer, "stochastic", False) and getattr(layer, "seed_generator", None)
    ]


class ActorCriticPolicy(keras.Model):
    """Base class: trunks, value head, acting and the CleanRL interface.

    Subclasses add the action head in `_build_head()` and turn its output
    into a distribution in `_distribution(features)`.

    Args:
        observation_size: Positive int, the length of a (flat) observation.
        hidden_sizes: Units of the default MLP trunks. Defaults to `(64, 64)`.
        activation: Activation of the default trunks. Defaults to `"tanh"`.
        shared: One trunk for actor and critic. Defaults to `False` (separate).
        actor_network: Optional Keras model `obs -> features` replacing the
            actor trunk (a custom or Bayesian policy).
        critic_network: Optional Keras model `obs -> features` for the critic.
        normalize_observations: Hold an `ObservationNormalizer`. Defaults to `False`.
        exploration: `"sample"` (fresh randomness per step) or `"thompson"`
            (the actor's weight noise held fixed between `resample_exploration`
            calls). Defaults to `"sample"`.
        seed: Optional int seed of the initialisers.
    """

    def __init__(
        self,
        observation_size: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        shared: bool = False,
        actor_network: keras.Model | dict | None = None,
        critic_network: keras.Model | dict | None = None,
        normalize_observations: bool = False,
        exploration: str = "sample",
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.observation_size = check_positive_int("observation_size", observation_size)
        self.hidden_sizes = tuple(check_positive_int("hidden_sizes", h) for h in hidden_sizes)
        self.activation = activation
        self.shared = bool(shared)
        self.normalize_observations = bool(normalize_observations)
        self.exploration = check_choice("exploration", exploration, EXPLORATION)
        self.seed = seed
        self.normalizer = ObservationNormalizer() if self.normalize_observations else None
        self.actor_network = _deserialize(actor_network) or _mlp(
            self.hidden_sizes, activation, seed, "actor_trunk"
        )
        if critic_network is not None:
            self.critic_network = _deserialize(critic_network)
        elif self.shared:
            self.critic_network = self.actor_network
        else:
            self.critic_network = _mlp(self.hidden_sizes, activation, _offset(seed, 50), "critic")
        self.value_head = _linear(1, 1.0, _offset(seed, 90), "value_head")
        self._build_head()
        self._generators = _stochastic_generators(self.actor_network)
        self._held = [
            tf.Variable(g.state.value, trainable=False, name="held_noise_state")
            for g in self._generators
        ]
        self(tf.zeros((1, self.observation_size)))  # build every weight now
        self._act_functions: dict[bool, Any] = {}

    # -- forward pass ----------------------------------------------------------

    def _build_head(self) -> None:
        raise NotImplementedError  # abstract: subclasses implement it

    def _head_outputs(self, features):
        raise NotImplementedError  # abstract: subclasses implement it

    def _distribution(self, head_outputs) -> tfd.Distribution:
        raise NotImplementedError  # abstract: subclasses implement it

    def call(self, obs, training=None):
        """`(head outputs, value)` for a `(batch, observation_size)` tensor."""
        x = tf.cast(obs, tf.float32)
        if self.normalizer is not None:
            x = self.normalizer(x)
        head = self._head_outputs(self.actor_network(x, training=training))
        value = self.value_head(self.critic_network(x, training=training))
        return head, tf.squeeze(value, -1)

    def distribution(self, obs, training=None) -> tuple[tfd.Distribution, tf.Tensor]:
        """`(action distribution, value)` for a batch of observations."""
        head, value = self(obs, training=training)
        return self._distribution(head), value

    def get_value(self, obs, training=None) -> tf.Tensor:
        """Values `V(obs)`, shape `(batch,)`."""
        return self(obs, training=training)[1]

    def get_action_and_value(self, obs, action=None, seed=None, training=None):
        """`(action, log_prob, entropy, value)`; samples an action when `action` is None.

        Args:
            obs: Observations `(batch, observation_size)`.
            action: Optional actions to evaluate.
            seed: Optional stateless seed (shape `(2,)` ints) for the sample.
            training: Passed to the networks (variational layers add their KL).
        """
        dist, value = self.distribution(obs, training=training)
        if action is None:
            action = dist.sample(seed=seed)
        action = self._inside_support(tf.cast(action, dist.dtype))
        return action, dist.log_prob(action), entropy_of(dist, action), value

    def _inside_support(self, action):
        return action

    # -- acting ----------------------------------------------------------------

    def resample_exploration(self, seed: int) -> None:
        """Draw the weight noise that `act` holds fixed (Thompson exploration)."""
        for i, held in enumerate(self._held):
            held.assign(
                np.array([int(seed) % 2**31, i], np.int64).astype(held.dtype.as_numpy_dtype)
            )

    def _act(self, obs, seed, deterministic: bool):
        if self.exploration == "thompson":
            for generator, held in zip(self._generators, self._held, strict=True):
                generator.state.assign(held)
        dist, value = self.distribution(obs, training=False)
        action = mode_of(dist) if deterministic else dist.sample(seed=seed)
        action = self._inside_support(action)
        return action, dist.log_prob(action), value

    def act(self, obs, seed=(0, 0), deterministic: bool = False):
        """Act on a batch: `(action, log_prob, value)` as NumPy arrays.

        One compiled call per batch, traced once (fixed input signature).

        Args:
            obs: Observations `(batch, observation_size)`.
            seed: Stateless seed `(a, b)` of the action sample.
            deterministic: Take the mode instead of a sample.
        """
        deterministic = bool(deterministic)
        function = self._act_functions.get(deterministic)
        if function is None:
            signature = [
                tf.TensorSpec((None, self.observation_size), tf.float32),
                tf.TensorSpec((2,), tf.int32),
            ]
            # XLA fuses the small graph (about 2x faster per call) unless a layer draws
            # random numbers (stateful RNG under XLA differs from the graph's stream).
            function = tf.function(
                lambda o, s: self._act(o, s, deterministic),
                input_signature=signature,
                jit_compile=not _stochastic_generators(self),
            ).get_concrete_function()  # calling the concrete function skips argument binding
            self._act_functions[deterministic] = function
        obs = np.asarray(obs, np.float32).reshape(-1, self.observation_size)
        outputs = function(obs, np.asarray(seed, np.int32))
        return tuple(t.numpy() for t in outputs)

    def env_action(self, action: np.ndarray) -> np.ndarray:
        """The action to send to the env (`GaussianPolicy` clips to the box)."""
        return action

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "observation_size": self.observation_size,
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
            "shared": self.shared,
            "actor_network": keras.saving.serialize_keras_object(self.actor_network),
            "critic_network": (
                None
                if self.shared or self._default_critic
                else keras.saving.serialize_keras_object(self.critic_network)
            ),
            "normalize_observations": self.normalize_observations,
            "exploration": self.exploration,
            "seed": self.seed,
        }

    @property
    def _default_critic(self) -> bool:
        return self.critic_network.name == "critic"


def _deserialize(network):
    if isinstance(network, dict):
        return keras.saving.deserialize_keras_object(network)
    if network is not None and not isinstance(network, keras.layers.Layer):
        raise TypeError(
            "Arguments `actor_network`/`critic_network` must be Keras models. "
            f"Received: {network!r}"
        )
    return network


@keras.saving.register_keras_serializable(package="tfcraft")
class CategoricalPolicy(ActorCriticPolicy):
    """Actor-critic policy over `num_actions` discrete actions (logits head).

    Args:
        num_actions: Integer >= 2.
        observation_size: Length of an observation.
        **kwargs: `ActorCriticPolicy` arguments (`hidden_sizes`, `shared`, ...).
    """

    def __init__(self, num_actions: int, observation_size: int, **kwargs) -> None:
        self.num_actions = check_positive_int("num_actions", num_actions)
        if num_actions < 2:
            raise ValueError(
                f"Argument `num_actions` must be >= 2. Received: num_actions={num_actions!r}"
            )
        super().__init__(observation_size, **kwargs)

    def _build_head(self) -> None:
        self.action_head = _linear(self.num_actions, 0.01, _offset(self.seed, 80), "logits")

    def _head_outputs(self, features):
        return self.action_head(features)

    def _distribution(self, logits) -> tfd.Distribution:
        return categorical_distribution(logits)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {**super().get_config(), "num_actions": self.num_actions}


@keras.saving.register_keras_serializable(package="tfcraft")
class GaussianPolicy(ActorCriticPolicy):
    """Actor-critic policy with a diagonal Gaussian over Box actions.

    Args:
        action_size: Positive int, the action dimension.
        observation_size: Length of an observation.
        low: Lower action bounds (length `action_size`); needed when `squash`.
        high: Upper action bounds.
        log_std: `"state_independent"` (one learned vector, SB3/CleanRL) or
            `"state_dependent"` (a second output of the actor head).
            Defaults to `"state_independent"`.
        log_std_init: Initial log-std. Defaults to `0.0`.
        squash: tanh-squash the Gaussian into `[low, high]` with the exact
            log-prob correction; otherwise the sample is clipped to the box
            when sent to the env (SB3's default). Defaults to `False`.
        **kwargs: `ActorCriticPolicy` arguments.
    """

    def __init__(
        self,
        action_size: int,
        observation_size: int,
        low: Sequence[float] | None = None,
        high: Sequence[float] | None = None,
        log_std: str = "state_independent",
        log_std_init: float = 0.0,
        squash: bool = False,
        **kwargs,
    ) -> None:
        self.action_size = check_positive_int("action_size", action_size)
        self.low = None if low is None else [float(v) for v in np.broadcast_to(low, action_size)]
        self.high = None if high is None else [float(v) for v in np.broadcast_to(high, action_size)]
        self.log_std_mode = check_choice(
            "log_std", log_std, ("state_independent", "state_dependent")
        )
        self.log_std_init = float(log_std_init)
        self.squash = bool(squash)
        bounded = self.low is not None and self.high is not None
        if self.squash and not (bounded and np.all(np.isfinite(self.low + self.high))):
            raise ValueError(
                "`squash=True` needs finite action bounds `low` and `high`. "
                f"Received: low={low!r}, high={high!r}"
            )
        if bounded and not np.all(np.asarray(self.low) < np.asarray(self.high)):
            raise ValueError(f"Need low < high. Received: low={low!r}, high={high!r}")
        super().__init__(observation_size, **kwargs)

    def _build_head(self) -> None:
        dependent = self.log_std_mode == "state_dependent"
        units = 2 * self.action_size if dependent else self.action_size
        self.action_head = _linear(units, 0.01, _offset(self.seed, 80), "mean")
        if not dependent:
            self.log_std = self.add_weight(
                name="log_std",
                shape=(self.action_size,),
                initializer=keras.initializers.Constant(self.log_std_init),
            )

    def _head_outputs(self, features):
        out = self.action_head(features)
        if self.log_std_mode == "state_dependent":
            loc, raw = tf.split(out, 2, axis=-1)
            return tf.concat([loc, raw + self.log_std_init], axis=-1)
        return tf.concat([out, tf.zeros_like(out) + self.log_std], axis=-1)

    def _distribution(self, head) -> tfd.Distribution:
        loc, log_std = tf.split(head, 2, axis=-1)
        return gaussian_distribution(loc, log_std, low=self.low, high=self.high, squash=self.squash)

    def _inside_support(self, action):
        return clip_to_support(action, self.low, self.high) if self.squash else action

    def env_action(self, action: np.ndarray) -> np.ndarray:
        """Clip to `[low, high]` (a squashed action already lies inside)."""
        if self.low is None or self.high is None or self.squash:
            return action
        return np.clip(action, self.low, self.high)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "action_size": self.action_size,
            "low": self.low,
            "high": self.high,
            "log_std": self.log_std_mode,
            "log_std_init": self.log_std_init,
            "squash": self.squash,
        }


def observation_size(space: gym.Space) -> int:
    """Length of a flat Box observation; raises `ValueError` for other spaces."""
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(
            "tfcraft.rl policies take Box observations. Received: observation_space="
            f"{space!r}. Wrap the env (e.g. gymnasium.wrappers.FlattenObservation)."
        )
    return int(np.prod(space.shape))


def check_action_space(space: gym.Space) -> gym.Space:
    """Return `space` if a policy can act in it (Discrete, or 1-D Box), else raise."""
    if isinstance(space, gym.spaces.Discrete) and space.n >= 2:
        return space
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return space
    raise ValueError(
        "tfcraft.rl policies act in Discrete (n >= 2) or 1-D Box action spaces. "
        f"Received: action_space={space!r}"
    )


def make_policy(
    observation_space: gym.Space, action_space: gym.Space, **kwargs
) -> ActorCriticPolicy:
    """`CategoricalPolicy` or `GaussianPolicy` for an env's spaces.

    Args:
        observation_space: A Box space.
        action_space: A Discrete or 1-D Box space.
        **kwargs: Policy arguments (`hidden_sizes`, `squash`, `log_std`, ...).

    Raises:
        ValueError: a space the policies cannot handle.
    """
    size = observation_size(observation_space)
    action_space = check_action_space(action_space)
    if isinstance(action_space, gym.spaces.Discrete):
        if int(action_space.start) != 0:
            raise ValueError(
                f"Discrete action spaces must start at 0. Received: action_space={action_space!r}"
            )
        return CategoricalPolicy(int(action_space.n), size, **kwargs)
    low = [float(v) if np.isfinite(v) else None for v in action_space.low]
    high = [float(v) if np.isfinite(v) else None for v in action_space.high]
    finite = None not in low + high
    return GaussianPolicy(
        action_space.shape[0],
        size,
        low=low if finite else None,
        high=high if finite else None,
        **kwargs,
    )
