"""Property tests (hypothesis): random shapes, dtypes, NaN, inf and empty arrays.

Every public function that takes user arrays, and the config schema, must
either give a correct answer (checked against NumPy where one exists) or raise
`ValueError`/`TypeError` with a message. Anything else (a TensorFlow
`InvalidArgumentError`, an `IndexError`, a `ZeroDivisionError`, a crash, or a
finite answer from non-finite input) fails the property.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DTYPES = st.sampled_from(["float32", "float64", "int32", "int64", "bool", "complex64", "U3"])


@st.composite
def arrays(draw, max_dims=3, dtypes=DTYPES):
    dtype = np.dtype(draw(dtypes))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=5))
    if dtype.kind == "U":
        return np.full(shape, "ab", dtype)
    if dtype.kind == "f":
        special = st.sampled_from([np.nan, np.inf, -np.inf])
        elements = st.one_of(st.floats(-1e3, 1e3, width=32), special)
        return draw(hnp.arrays(dtype, shape, elements=elements))
    return draw(hnp.arrays(dtype, shape))


def fails_cleanly(call):
    """Run `call()`: its result, or `None` if it raised a ValueError/TypeError with a message."""
    try:
        return call()
    except (ValueError, TypeError) as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"
        return None


def finite(*arrays_) -> bool:
    return all(
        np.asarray(a).dtype.kind in "fiub" and np.all(np.isfinite(np.asarray(a, np.float64)))
        for a in arrays_
    )


@pytest.mark.fault("fuzz")
@FUZZ
@given(y_true=arrays(), y_pred=arrays(), delta=st.one_of(st.floats(-2, 3), st.just(np.nan)))
def test_huber_is_right_or_refuses(y_true, y_pred, delta):
    from tfcraft.losses import huber

    result = fails_cleanly(lambda: huber(y_true, y_pred, delta=delta))
    if result is None:
        return
    if finite(y_true, y_pred) and y_true.shape == y_pred.shape and y_true.ndim and delta > 0:
        error = np.abs(y_pred.astype(np.float64) - y_true.astype(np.float64))
        quadratic = np.minimum(error, delta)
        expected = np.mean(0.5 * quadratic**2 + delta * (error - quadratic), axis=-1)
        np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-4, atol=1e-4)
    elif not finite(y_true, y_pred) and np.size(result):
        assert not np.all(np.isfinite(np.asarray(result))), "NaN in, finite out"


@pytest.mark.fault("fuzz")
@FUZZ
@given(
    y_true=arrays(),
    y_pred=arrays(),
    quantiles=st.one_of(st.floats(-1, 2), st.lists(st.floats(-0.5, 1.5), max_size=3)),
)
def test_pinball_is_right_or_refuses(y_true, y_pred, quantiles):
    from tfcraft.losses import pinball

    result = fails_cleanly(lambda: pinball(y_true, y_pred, quantiles=quantiles))
    if result is not None and not finite(y_true, y_pred) and np.size(result):
        assert not np.all(np.isfinite(np.asarray(result))), "NaN in, finite out"


@pytest.mark.fault("fuzz")
@FUZZ
@given(y_true=arrays(), y_pred=arrays())
def test_binary_focal_is_right_or_refuses(y_true, y_pred):
    from tfcraft.losses import binary_focal

    fails_cleanly(lambda: binary_focal(y_true, y_pred))


@pytest.mark.fault("fuzz")
@FUZZ
@given(y_true=arrays(max_dims=2), probs=arrays(max_dims=2), num_bins=st.integers(-1, 20))
def test_calibration_functions_are_right_or_refuse(y_true, probs, num_bins):
    from tfcraft.bayes import calibration

    brier = fails_cleanly(lambda: calibration.brier_score(y_true, probs))
    if brier is not None and probs.ndim == 1 and finite(y_true, probs) and probs.size:
        expected = np.mean((probs.astype(np.float64) - y_true.astype(np.float64)) ** 2)
        assert brier == pytest.approx(expected, rel=1e-6, abs=1e-9)
    ece = fails_cleanly(lambda: calibration.expected_calibration_error(y_true, probs, num_bins))
    if ece is not None:
        assert 0.0 <= ece <= 1.0 or (np.isnan(ece) and not finite(probs))
    fails_cleanly(lambda: calibration.reliability_diagram(y_true, probs, num_bins))


@pytest.mark.fault("fuzz")
@FUZZ
@given(y_true=arrays(max_dims=2), y_pred=arrays(max_dims=2))
def test_streaming_calibration_metric_is_right_or_refuses(y_true, y_pred):
    from tfcraft.metrics.calibration import expected_calibration_error

    result = fails_cleanly(lambda: expected_calibration_error(y_true, y_pred))
    if result is not None and finite(y_true, y_pred):
        assert 0.0 <= float(result) <= 1.0


@pytest.mark.fault("fuzz")
@FUZZ
@given(logits=arrays(max_dims=2), y=arrays(max_dims=1))
def test_temperature_scaling_is_right_or_refuses(logits, y):
    from tfcraft.bayes import TemperatureScaling

    fitted = fails_cleanly(lambda: TemperatureScaling().fit(logits, y))
    if fitted is not None:
        assert np.isfinite(fitted.temperature_) and fitted.temperature_ > 0


@functools.cache
def _bayes_model():
    from tfcraft.layers.mc_dropout import MCDropout

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), MCDropout(0.2), keras.layers.Dense(1)])


@pytest.mark.fault("fuzz")
@settings(FUZZ, max_examples=15)
@given(x=arrays(max_dims=3))
def test_bayes_predict_is_right_or_refuses(x):
    from tfcraft.bayes import predict

    predictive = fails_cleanly(lambda: predict(_bayes_model(), x, num_samples=3, seed=0))
    if predictive is not None and finite(x):
        assert np.all(np.isfinite(np.asarray(predictive.mean())))


@functools.cache
def _detector():
    from tfcraft.anomaly import GaussianMixtureDetector

    X = np.random.default_rng(0).normal(size=(120, 3))
    return GaussianMixtureDetector(num_components=1, seed=0).fit(X)


@pytest.mark.fault("fuzz", cases=2)
@settings(FUZZ, max_examples=20)
@given(X=arrays(max_dims=3))
def test_detector_scores_and_fit_are_right_or_refuse(X):
    from tfcraft.anomaly import GaussianMixtureDetector

    scores = fails_cleanly(lambda: _detector().score_samples(X))
    if scores is not None:
        assert finite(X) and X.ndim == 2 and X.shape[1] == 3, "accepted bad X"
        assert scores.shape == (len(X),) and np.all(np.isfinite(scores))
    fitted = fails_cleanly(lambda: GaussianMixtureDetector(num_components=1, seed=0).fit(X))
    if fitted is not None:
        assert finite(X) and X.ndim == 2 and len(X) >= 2, "fitted on bad X"


@pytest.mark.fault("fuzz")
@FUZZ
@given(x=arrays(max_dims=3))
def test_layers_are_right_or_refuse(x):
    from tfcraft.layers import DenseFlipout, Linear

    for layer in (Linear(2), DenseFlipout(2, seed=0)):
        result = fails_cleanly(lambda layer=layer: layer(x))
        if result is not None and finite(x) and x.ndim >= 2:
            assert np.asarray(result).shape == (*x.shape[:-1], 2)


class _OneStep(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, reward):
        self.reward = reward

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), self.reward, True, False, {}


@pytest.mark.fault("fuzz")
@FUZZ
@given(reward=st.one_of(arrays(max_dims=2), st.floats(), st.text(max_size=3), st.none()))
def test_reward_wrappers_are_right_or_refuse(reward):
    from tfcraft.rl.rewards import ClipReward, NormalizeReward, RewardWrapper, StepPenalty

    for fn in (ClipReward(-1.0, 1.0), NormalizeReward(), ClipReward() + StepPenalty(0.1)):
        env = RewardWrapper(_OneStep(reward), fn)
        env.reset(seed=0)
        result = fails_cleanly(lambda env=env: env.step(0))
        if result is not None:
            assert np.isfinite(result[1]), "a non-finite reward got through"
            assert np.ndim(reward) == 0 and finite(reward)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats() | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
CONFIG_KEYS = ["name", "seed", "data", "model", "loss", "metrics", "optimizer", "trainer", "env"]


@pytest.mark.fault("fuzz", cases=2)
@FUZZ
@given(
    data=st.one_of(
        json_values,
        st.dictionaries(st.sampled_from(CONFIG_KEYS), json_values, max_size=5),
    ),
    kind=st.sampled_from(["train", "detect", "rl"]),
)
def test_config_schema_accepts_or_refuses_with_a_message(data, kind):
    from tfcraft.config import ConfigError, validate

    try:
        validate(data, kind)
    except ConfigError as error:
        assert str(error).strip()
