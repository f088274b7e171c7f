"""Conv2DFlipout against `tf.nn.conv2d` with the perturbed kernel, and its KL in closed form.

The layer's noise comes only from its `keras.random.SeedGenerator`. A twin generator
with a copy of its state, drawn through the public `keras.random` functions in the
order the layer documents (kernel noise, input signs, output signs), gives the same
noise; the expected output is then computed without the layer: per example `b`,
Flipout equals a convolution with its own kernel `loc + (s_in[b] s_out[b]^T) * delta`.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from tfcraft.layers import Conv2DFlipout

BATCH, SIZE, CHANNELS, FILTERS = 3, 6, 2, 4


def _x(shape=(BATCH, SIZE, SIZE, CHANNELS), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _layer(**kwargs):
    layer = Conv2DFlipout(FILTERS, (3, 2), bias_initializer="random_normal", seed=4, **kwargs)
    layer.build((None, SIZE, SIZE, CHANNELS))
    rng = np.random.default_rng(1)
    layer.kernel_scale_raw.assign(rng.normal(-1.0, 0.5, size=layer.kernel_loc.shape))
    return layer


def _twin_generator(layer):
    twin = keras.random.SeedGenerator(0)
    twin.state.assign(layer.seed_generator.state.numpy())
    return twin


def _replayed_noise(layer, twin, batch):
    """Kernel perturbation and signs the layer draws in its next call."""
    scale = np.log1p(np.exp(layer.kernel_scale_raw.numpy().astype(np.float64)))
    eps = keras.random.normal(layer.kernel_loc.shape, dtype="float32", seed=twin).numpy()
    signs = [
        2 * keras.random.randint((batch, 1, 1, n), 0, 2, dtype="int32", seed=twin).numpy() - 1
        for n in (CHANNELS, FILTERS)
    ]
    return scale * eps, signs[0].reshape(batch, CHANNELS), signs[1].reshape(batch, FILTERS)


def _expected_outputs(layer, x, delta, sign_in, sign_out):
    padding = layer.padding.upper()
    loc = layer.kernel_loc.numpy().astype(np.float64)
    outputs = []
    for b in range(len(x)):
        kernel = loc + sign_in[b][:, None] * sign_out[b][None, :] * delta  # (kh, kw, C, F)
        conv = tf.nn.conv2d(x[b : b + 1].astype(np.float64), kernel, layer.strides, padding)
        outputs.append(conv.numpy()[0] + layer.bias_loc.numpy())
    return np.stack(outputs)


@pytest.mark.parametrize(("strides", "padding"), [(1, "valid"), (2, "same")])
def test_output_is_conv2d_with_the_flipped_perturbed_kernel(strides, padding):
    layer = _layer(strides=strides, padding=padding)
    twin = _twin_generator(layer)
    x = _x()
    for _ in range(2):  # the second call draws fresh noise, replayed as well
        delta, sign_in, sign_out = _replayed_noise(layer, twin, BATCH)
        assert np.any(sign_in == -1) and np.any(sign_in == 1)
        outputs = layer(x).numpy()
        expected = _expected_outputs(layer, x, delta, sign_in, sign_out)
        assert outputs.shape == expected.shape
        np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)
    # The perturbation matters: the mean-kernel convolution alone is different.
    mean_only = _expected_outputs(layer, x, np.zeros_like(delta), sign_in, sign_out)
    assert np.abs(outputs - mean_only).max() > 1e-2


def test_marginal_moments_are_those_of_a_gaussian_kernel():
    # Independent of the draw order: each example sees a kernel ~ N(loc, scale^2), so
    # its output has mean conv(x, loc) + bias and variance conv(x^2, scale^2).
    layer = _layer()
    base = _x((1, SIZE, SIZE, CHANNELS), seed=2)
    x = np.repeat(base, 16, axis=0)
    call = tf.function(lambda: layer(x))
    samples = np.concatenate([call().numpy() for _ in range(150)])  # 2400 outputs
    loc = layer.kernel_loc.numpy().astype(np.float64)
    scale = np.log1p(np.exp(layer.kernel_scale_raw.numpy().astype(np.float64)))
    mean = tf.nn.conv2d(base.astype(np.float64), loc, 1, "VALID").numpy()[0]
    variance = tf.nn.conv2d(base.astype(np.float64) ** 2, scale**2, 1, "VALID").numpy()[0]
    mean += layer.bias_loc.numpy()
    # Calls share delta across the 16 copies, so the effective sample size is
    # between 150 and 2400: tolerances use the conservative 150.
    np.testing.assert_allclose(samples.mean(axis=0), mean, atol=5 * np.sqrt(variance.max() / 150))
    np.testing.assert_allclose(samples.var(axis=0), variance, rtol=0.35)
    assert np.median(np.abs(samples.var(axis=0) / variance - 1)) < 0.12


def _numpy_kl_normal(loc, scale, prior_scale):
    return np.sum(np.log(prior_scale / scale) + (scale**2 + loc**2) / (2 * prior_scale**2) - 0.5)


def test_analytic_kl_loss_is_the_closed_form():
    layer = _layer(
        strides=2,
        padding="same",
        num_train_examples=30,
        prior={"class_name": "NormalPrior", "config": {"scale": 0.6}},
    )
    layer.kl_weight.assign(0.5)
    layer(_x(), training=True)
    loc = layer.kernel_loc.numpy().astype(np.float64)
    scale = np.log1p(np.exp(layer.kernel_scale_raw.numpy().astype(np.float64)))
    assert len(layer.losses) == 1
    expected = 0.5 * _numpy_kl_normal(loc, scale, 0.6) / 30
    np.testing.assert_allclose(float(layer.losses[0]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(layer.kl_divergence()), expected * 30 / 0.5, rtol=1e-5)


def test_monte_carlo_kl_is_evaluated_at_the_kernel_used_for_the_outputs():
    # kl="mc": log q(W) - log p(W) at W = loc + delta, the call's own kernel sample.
    layer = _layer(kl="mc", num_train_examples=10)
    twin = _twin_generator(layer)
    delta, _, _ = _replayed_noise(layer, twin, BATCH)
    layer(_x(), training=True)
    loc = layer.kernel_loc.numpy().astype(np.float64)
    scale = np.log1p(np.exp(layer.kernel_scale_raw.numpy().astype(np.float64)))
    kernel = loc + delta
    log_q = stats.norm.logpdf(kernel, loc, scale).sum()
    log_p = stats.norm.logpdf(kernel, 0.0, 1.0).sum()  # default prior N(0, 1)
    np.testing.assert_allclose(float(layer.losses[0]), (log_q - log_p) / 10, rtol=1e-4)
