import keras
import numpy as np
import pytest

from tfcraft.layers import Linear, MCDropout, is_stochastic


def _model(rate=0.3, seed=0):
    return keras.Sequential(
        [
            keras.Input((4,)),
            Linear(16, activation="relu", seed=1),
            MCDropout(rate, seed=seed),
            Linear(1, seed=2),
        ]
    )


def test_predictions_differ_between_calls():
    model = _model()
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    first, second = model.predict(x, verbose=0), model.predict(x, verbose=0)
    assert not np.allclose(first, second)
    assert is_stochastic(model)


def test_mean_over_passes_matches_deterministic_output():
    rate = 0.4
    layer = MCDropout(rate, seed=0)
    x = np.linspace(0.5, 2.0, 50, dtype="float32")[None, :]
    # Every row of a batch gets its own mask, so one call gives 2000 passes.
    samples = layer(np.repeat(x, 2000, axis=0), training=False).numpy()
    kept = samples[samples != 0]
    # Kept units are scaled by 1 / (1 - rate), so the mean equals the input.
    np.testing.assert_allclose(
        kept / np.broadcast_to(x, samples.shape)[samples != 0], 1 / (1 - rate)
    )
    np.testing.assert_allclose(samples.mean(axis=0), x[0], rtol=0.1)
    assert abs((samples == 0).mean() - rate) < 0.02


def test_same_seed_same_masks_and_rate_zero_is_identity():
    x = np.ones((2, 32), "float32")
    a, b = MCDropout(0.5, seed=7), MCDropout(0.5, seed=7)
    np.testing.assert_array_equal(a(x), b(x))
    np.testing.assert_array_equal(MCDropout(0.0)(x), x)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_rate_outside_unit_interval_raises(rate):
    with pytest.raises(ValueError, match=rf"Received: rate={rate}"):
        MCDropout(rate)


def test_roundtrip_keeps_rate_and_seed(tmp_path):
    model = _model(rate=0.25, seed=11)
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    layer = restored.layers[1]
    assert isinstance(layer, MCDropout)
    assert (layer.rate, layer.seed) == (0.25, 11)
    assert layer.stochastic


def test_saved_model_continues_the_noise_stream(tmp_path):
    model = _model(rate=0.5, seed=3)
    x = np.ones((4, 4), "float32")
    model(x)  # advance the stream before saving
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(model(x), restored(x))
