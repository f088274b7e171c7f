import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfcraft.layers import (
    Conv2DFlipout,
    DenseFlipout,
    DenseLocalReparameterization,
    DenseReparameterization,
    Linear,
    MCDropout,
    NormalHead,
    ScaleMixturePrior,
    is_stochastic,
    set_num_train_examples,
    variational_layers,
)
from tfcraft.losses import NegativeLogLikelihood

tfd = tfp.distributions

DENSE = [DenseReparameterization, DenseFlipout, DenseLocalReparameterization]


def _x(shape=(8, 4), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _layer_and_input(cls, **kwargs):
    if cls is Conv2DFlipout:
        return cls(3, 2, **kwargs), _x((2, 5, 5, 2))
    return cls(3, **kwargs), _x()


def _numpy_kl_normal(loc, scale, prior_scale):
    """Closed-form KL(N(loc, scale) || N(0, prior_scale)), summed over entries."""
    loc, scale = np.float64(loc), np.float64(scale)
    return np.sum(np.log(prior_scale / scale) + (scale**2 + loc**2) / (2 * prior_scale**2) - 0.5)


@pytest.mark.parametrize("cls", [*DENSE, Conv2DFlipout])
def test_every_trainable_weight_gets_a_gradient(cls):
    layer, x = _layer_and_input(cls, num_train_examples=50, seed=0)
    with tf.GradientTape() as tape:
        outputs = layer(x, training=True)
        loss = tf.reduce_sum(outputs**2) + tf.add_n(layer.losses)
    assert len(layer.trainable_weights) >= 2
    names = sorted(w.name for w in layer.trainable_weights)
    assert names == ["bias_loc", "kernel_loc", "kernel_scale_raw"]
    grads = tape.gradient(loss, layer.trainable_weights)
    for weight, grad in zip(layer.trainable_weights, grads, strict=True):
        assert grad is not None, weight.name
        assert np.any(np.asarray(grad) != 0), weight.name
    # kl_weight is state, not a parameter.
    assert [w.name for w in layer.non_trainable_weights] == ["kl_weight"]


@pytest.mark.parametrize("cls", [*DENSE, Conv2DFlipout])
def test_one_analytic_kl_term_per_layer_equals_closed_form(cls):
    prior_scale, n = 0.7, 40
    layer, x = _layer_and_input(
        cls, num_train_examples=n, prior={"class_name": "NormalPrior", "config": {"scale": 0.7}}
    )
    layer.build(x.shape)
    layer.kernel_scale_raw.assign(np.random.default_rng(1).normal(size=layer.kernel_loc.shape))
    layer.kl_weight.assign(0.25)
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    model(x, training=True)
    assert len(model.losses) == 1
    loc = layer.kernel_loc.numpy()
    scale = np.log1p(np.exp(layer.kernel_scale_raw.numpy()))
    expected = 0.25 * _numpy_kl_normal(loc, scale, prior_scale) / n
    np.testing.assert_allclose(float(model.losses[0]), expected, rtol=1e-5)
    reference = tfd.kl_divergence(layer.kernel_posterior(), layer.kernel_prior())
    np.testing.assert_allclose(float(reference) * 0.25 / n, expected, rtol=1e-5)


def test_kl_gradient_does_not_depend_on_batch_size():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), DenseFlipout(6, activation="relu", seed=1), DenseFlipout(2, seed=2)]
    )
    set_num_train_examples(model, 128)
    data = _x((128, 4))
    # bias_loc has no KL term; every kernel parameter does.
    kernel_weights = [w for w in model.trainable_weights if w.name.startswith("kernel")]
    grads = []
    for batch_size in (8, 32, 128):
        per_batch = []
        for start in range(0, 128, batch_size):
            with tf.GradientTape() as tape:
                model(data[start : start + batch_size], training=True)
                kl = tf.add_n(model.losses)
            per_batch.append(tape.gradient(kl, kernel_weights))
        # Average over the batches of an epoch, as the optimizer sees it.
        grads.append([np.mean([g[i] for g in per_batch], axis=0) for i in range(len(per_batch[0]))])
    for reference, other in [(grads[0], grads[1]), (grads[0], grads[2])]:
        for a, b in zip(reference, other, strict=True):
            assert np.any(a != 0)
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_mc_kl_matches_analytic_for_normal_prior():
    layer = DenseFlipout(3, posterior_scale_init=0.5, kl="mc", seed=0)
    layer.build((None, 4))
    analytic = float(tfd.kl_divergence(layer.kernel_posterior(), layer.kernel_prior()))
    estimate = tf.function(layer.kl_divergence)
    samples = np.array([float(estimate()) for _ in range(400)])
    assert abs(samples.mean() - analytic) < 4 * samples.std() / np.sqrt(len(samples))
    assert samples.std() > 0  # it really is a Monte Carlo estimate


def test_auto_kl_uses_mc_for_scale_mixture_and_analytic_raises():
    layer = DenseReparameterization(3, prior="scale_mixture", num_train_examples=10, seed=0)
    layer(_x(), training=True)
    first = float(layer.losses[0])
    layer(_x(), training=True)
    assert first != float(layer.losses[0])  # sampled, so it changes
    analytic = DenseReparameterization(3, prior=ScaleMixturePrior(), kl="analytic")
    analytic.build((None, 4))
    with pytest.raises(ValueError, match="kl='mc'"):
        analytic.kl_divergence()


@pytest.mark.parametrize("cls", [*DENSE, Conv2DFlipout])
def test_outputs_vary_between_calls_and_seed_reproduces(cls):
    layer, x = _layer_and_input(cls, posterior_scale_init=0.1, seed=5)
    assert not np.allclose(layer(x), layer(x))
    twin, _ = _layer_and_input(cls, posterior_scale_init=0.1, seed=5)
    fresh, _ = _layer_and_input(cls, posterior_scale_init=0.1, seed=5)
    np.testing.assert_array_equal(twin(x), fresh(x))


def _statistics(layer, x, num_calls):
    call = tf.function(lambda: layer(x))
    samples = np.concatenate([call().numpy()[None] for _ in range(num_calls)])
    return samples


def test_flipout_matches_reparameterization_statistics():
    scale, num_distinct, repeats = 0.3, 4, 64
    base = _x((num_distinct, 4), seed=3)
    x = np.repeat(base, repeats, axis=0)
    flipout = DenseFlipout(2, posterior_scale_init=scale, seed=0)
    reparam = DenseReparameterization(2, posterior_scale_init=scale, seed=1)
    flipout.build(x.shape)
    reparam.build(x.shape)
    reparam.set_weights(flipout.get_weights())
    loc = flipout.kernel_loc.numpy()
    expected_mean, expected_var = base @ loc, base**2 @ np.full_like(loc, scale**2)
    for layer, num_calls in [(flipout, 200), (reparam, 1500)]:
        samples = _statistics(layer, x, num_calls).reshape(num_calls, num_distinct, repeats, 2)
        if layer is reparam:
            samples = samples[:, :, 0]  # rows share one kernel sample within a call
        else:
            samples = samples.transpose(0, 2, 1, 3).reshape(-1, num_distinct, 2)
        mean, var = samples.mean(axis=0), samples.var(axis=0)
        np.testing.assert_allclose(mean, expected_mean, atol=4 * np.sqrt(expected_var.max() / 200))
        np.testing.assert_allclose(var, expected_var, rtol=0.2)


def test_local_reparameterization_preactivation_closed_form():
    layer = DenseLocalReparameterization(3, posterior_scale_init=0.2, seed=0)
    layer.build((None, 4))
    layer.kernel_scale_raw.assign(np.random.default_rng(2).normal(-1.5, 0.5, size=(4, 3)))
    base = _x((1, 4), seed=4)
    samples = layer(np.repeat(base, 20000, axis=0)).numpy()
    scale = np.log1p(np.exp(layer.kernel_scale_raw.numpy()))
    expected_mean = (base @ layer.kernel_loc.numpy())[0]
    expected_var = (base**2 @ scale**2)[0]
    np.testing.assert_allclose(
        samples.mean(axis=0), expected_mean, atol=0.05 * np.sqrt(expected_var.max())
    )
    np.testing.assert_allclose(samples.var(axis=0), expected_var, rtol=0.05)


@pytest.mark.parametrize("cls", [*DENSE, Conv2DFlipout])
def test_default_posterior_is_tfps_default(cls):
    # Means ~ N(0, 0.1^2), scales softplus(-3): the defaults chosen by
    # benchmarks/bnn_defaults_study.py. Seeded: the same seed, the same means.
    def built(seed):
        if cls is Conv2DFlipout:
            layer, input_shape = cls(64, 3, seed=seed), (None, 8, 8, 16)
        else:
            layer, input_shape = cls(64, seed=seed), (None, 200)
        layer.build(input_shape)
        return layer

    layer = built(0)
    loc = layer.kernel_loc.numpy()
    assert loc.size >= 9000
    assert abs(loc.mean()) < 0.005
    assert loc.std() == pytest.approx(0.1, rel=0.03)
    scale = np.log1p(np.exp(layer.kernel_scale_raw.numpy()))
    np.testing.assert_allclose(scale, np.log1p(np.exp(-3.0)), rtol=1e-6)
    np.testing.assert_array_equal(built(0).kernel_loc.numpy(), loc)
    assert not np.array_equal(built(1).kernel_loc.numpy(), loc)


def test_keras_roundtrip_keeps_config_and_posterior(tmp_path):
    prior = ScaleMixturePrior(pi=0.3, sigma1=2.0, sigma2=0.1)
    layer = DenseFlipout(
        4,
        activation="tanh",
        posterior_scale_init=0.01,
        prior=prior,
        kl="mc",
        num_train_examples=123,
        seed=9,
    )
    model = keras.Sequential([keras.Input((3,)), layer, NormalHead(seed=1)])
    layer.kl_weight.assign(0.3)
    path = tmp_path / "bnn.keras"
    model.save(path)
    restored = keras.saving.load_model(path)  # safe mode, no custom_objects
    restored_layer = restored.layers[0]
    assert restored_layer.get_config() == layer.get_config()
    assert restored_layer.num_train_examples == 123
    assert restored_layer.prior.get_config() == prior.get_config()
    assert float(restored_layer.kl_weight) == pytest.approx(0.3)
    for a, b in zip(model.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The seed generator state is saved too, so the next forward pass is the same.
    x = _x((5, 3))
    model(x)
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(model(x), restored(x))


def test_conv_roundtrip(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            Conv2DFlipout(3, (3, 2), strides=2, padding="same", num_train_examples=7, seed=3),
        ]
    )
    path = tmp_path / "conv.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.layers[0].get_config() == model.layers[0].get_config()
    x = _x((2, 6, 6, 2))
    outputs = restored(x)
    assert outputs.shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(model(x), outputs)


def test_bnn_fits_regression_toy_better_than_the_mean():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(256, 1)).astype("float32")
    y = (np.sin(3 * x) + 0.1 * rng.normal(size=x.shape)).astype("float32")
    head = NormalHead(seed=2)
    model = keras.Sequential(
        [
            keras.Input((1,)),
            DenseFlipout(32, activation="relu", num_train_examples=len(x), seed=1),
            head,
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=NegativeLogLikelihood(head.family))
    history = model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    nll = NegativeLogLikelihood("normal")
    samples = np.stack([model(x) for _ in range(20)])
    model_nll = np.mean([float(nll(y, p)) for p in samples])
    baseline = float(-tfd.Normal(y.mean(), y.std()).log_prob(y).numpy().mean())
    assert model_nll < baseline - 0.5
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_training_without_num_train_examples_raises_clearly():
    layer = DenseFlipout(2)
    layer(_x())  # prediction: fine, no KL term
    assert layer.losses == []
    with pytest.raises(ValueError, match=r"num_train_examples=.*Trainer"):
        layer(_x(), training=True)
    model = keras.Sequential([keras.Input((4,)), DenseFlipout(2), NormalHead()])
    model.compile(optimizer="adam", loss=NegativeLogLikelihood("normal"))
    with pytest.raises(ValueError, match="Received: num_train_examples=None"):
        model.fit(_x(), _x((8, 1)), verbose=0)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: DenseFlipout(2, prior={"class_name": "NormalPrior", "config": {"scale": 0.0}}),
            ValueError,
            r"Received: scale=0.0",
        ),
        (
            lambda: DenseReparameterization(2, prior=ScaleMixturePrior(sigma2=-1.0)),
            ValueError,
            r"Received: sigma2=-1.0",
        ),
        (lambda: DenseFlipout(0), ValueError, r"Received: units=0"),
        (lambda: DenseFlipout(2, kl="exact"), ValueError, r"Received: kl='exact'"),
        (lambda: DenseFlipout(2, prior="laplace"), ValueError, r"Received: prior='laplace'"),
        (
            lambda: DenseFlipout(2, num_train_examples=0),
            ValueError,
            r"Received: num_train_examples=0",
        ),
        (
            lambda: DenseFlipout(2, posterior_scale_init=0.0),
            ValueError,
            r"Received: posterior_scale_init=0.0",
        ),
        (lambda: DenseFlipout(2, seed=1.5), TypeError, r"Received: seed=1.5"),
        (lambda: Conv2DFlipout(2, 0), ValueError, r"Received: kernel_size=0"),
        (lambda: Conv2DFlipout(2, 3, padding="full"), ValueError, r"Received: padding='full'"),
    ],
)
def test_bad_arguments_raise(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_unknown_last_dimension_raises():
    with pytest.raises(ValueError, match="DenseFlipout needs a known last input dimension"):
        DenseFlipout(2).build((None, None))


def test_protocol_functions():
    inner = keras.Sequential([keras.Input((4,)), DenseFlipout(3, num_train_examples=5)])
    model = keras.Sequential([keras.Input((4,)), inner, DenseLocalReparameterization(2), Linear(1)])
    layers = variational_layers(model)
    assert [type(layer) for layer in layers] == [DenseFlipout, DenseLocalReparameterization]
    assert all(layer.is_variational and layer.stochastic for layer in layers)
    assert is_stochastic(model)
    assert set_num_train_examples(model, 100) == 1
    assert [layer.num_train_examples for layer in layers] == [5, 100]
    assert set_num_train_examples(model, 200, overwrite=True) == 2
    assert [layer.num_train_examples for layer in layers] == [200, 200]
    with pytest.raises(ValueError, match=r"Received: n=0"):
        set_num_train_examples(model, 0)
    deterministic = keras.Sequential([keras.Input((4,)), Linear(2), keras.layers.Dropout(0.5)])
    assert not is_stochastic(deterministic)
    assert variational_layers(deterministic) == []
    assert is_stochastic(keras.Sequential([keras.Input((4,)), MCDropout(0.1)]))


@pytest.mark.parametrize("cls", [DenseFlipout, Conv2DFlipout])
def test_tf_checkpoint_restores_weights_and_noise_stream(cls, tmp_path):
    layer, x = _layer_and_input(cls, posterior_scale_init=0.1, seed=4)
    layer(x)
    checkpoint = tf.train.Checkpoint(layer=layer)
    path = checkpoint.write(str(tmp_path / "ckpt"))
    expected = layer(x)
    layer.kernel_loc.assign(np.zeros(layer.kernel_loc.shape))
    checkpoint.read(path).assert_consumed()
    np.testing.assert_array_equal(layer(x), expected)


@pytest.mark.parametrize("cls", [*DENSE, Conv2DFlipout])
def test_mixed_precision_outputs_float16_and_kl_float32(cls):
    layer, x = _layer_and_input(cls, num_train_examples=10, dtype="mixed_float16", seed=0)
    outputs = layer(x, training=True)
    assert outputs.dtype == "float16"
    assert layer.kernel_loc.dtype == "float32"
    assert layer.losses[0].dtype == "float32"
    assert np.isfinite(float(layer.losses[0]))


def test_kl_weight_assignment_reaches_a_compiled_step():
    model = keras.Sequential([keras.Input((4,)), DenseFlipout(3, num_train_examples=20, seed=0)])
    layer = model.layers[0]

    @tf.function
    def kl_term(x):
        model(x, training=True)
        return tf.add_n(model.losses)

    full = float(kl_term(_x()))
    layer.kl_weight.assign(0.5)  # what a KL-annealing schedule does between steps
    np.testing.assert_allclose(float(kl_term(_x())), 0.5 * full, rtol=1e-6)
