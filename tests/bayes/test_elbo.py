import keras
import numpy as np
import pytest

from tfcraft import bayes
from tfcraft.layers import DenseFlipout, NormalHead
from tfcraft.losses import NegativeLogLikelihood
from tfcraft.training.callbacks_base import Callback
from tfcraft.training.trainer import Trainer


def _numpy_normal_kl(loc_q, scale_q, loc_p, scale_p):
    """KL(N(loc_q, scale_q) || N(loc_p, scale_p)), summed over elements."""
    return np.sum(
        np.log(scale_p / scale_q) + (scale_q**2 + (loc_q - loc_p) ** 2) / (2 * scale_p**2) - 0.5
    )


def _posterior_prior(seed):
    rng = np.random.default_rng(seed)
    loc_q = rng.normal(size=(4, 3))
    scale_q = rng.uniform(0.1, 2.0, size=(4, 3))
    return loc_q, scale_q, 0.0, rng.uniform(0.3, 2.0)


def _layer_with_posterior(loc_q, scale_q, prior_scale, **kwargs):
    """A tfcraft DenseFlipout whose posterior is N(loc_q, scale_q) and prior N(0, prior_scale)."""
    prior = {"class_name": "NormalPrior", "config": {"scale": float(prior_scale)}}
    layer = DenseFlipout(loc_q.shape[1], prior=prior, seed=0, **kwargs)
    layer.build((None, loc_q.shape[0]))
    layer.kernel_loc.assign(loc_q.astype("float32"))
    layer.kernel_scale_raw.assign(np.log(np.expm1(scale_q)).astype("float32"))  # softplus^-1
    return layer


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layer_kl_matches_numpy_closed_form(seed):
    loc_q, scale_q, loc_p, scale_p = _posterior_prior(seed)
    layer = _layer_with_posterior(loc_q, scale_q, scale_p)
    np.testing.assert_allclose(
        float(layer.kl_divergence()),
        _numpy_normal_kl(loc_q, scale_q, loc_p, scale_p),
        rtol=1e-5,
    )


@pytest.mark.parametrize(("num_train_examples", "kl_weight"), [(10, 1.0), (1000, 0.3), (1, 0.0)])
def test_elbo_loss_matches_numpy_for_normal_pair(num_train_examples, kl_weight):
    loc_q, scale_q, loc_p, scale_p = _posterior_prior(3)
    kl = _layer_with_posterior(loc_q, scale_q, scale_p).kl_divergence()
    rng = np.random.default_rng(0)
    y, mu = rng.normal(size=(2, 16))
    nll = 0.5 * np.log(2 * np.pi) + 0.5 * (y - mu) ** 2  # unit-variance Gaussian NLL
    expected = nll.mean() + kl_weight * _numpy_normal_kl(loc_q, scale_q, loc_p, scale_p) / (
        num_train_examples
    )
    loss = bayes.elbo_loss(nll, kl, num_train_examples, kl_weight=kl_weight)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)


def test_epoch_sum_of_per_example_losses_is_the_full_negative_elbo():
    # N / batch steps of (mean NLL + KL / N) add up to (sum NLL + KL) / batch.
    rng = np.random.default_rng(1)
    nll = rng.uniform(size=12)
    kl = 7.5
    per_step = [bayes.elbo_loss(chunk, kl, num_train_examples=12) for chunk in np.split(nll, 3)]
    np.testing.assert_allclose(float(np.sum(per_step)), (nll.sum() + kl) / 4, rtol=1e-12)


def test_scaled_kl_accepts_tensor_weight():
    weight = keras.Variable(0.25)
    np.testing.assert_allclose(float(bayes.scaled_kl(8.0, 2, kl_weight=weight.value)), 1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_train_examples": 0}, "Received: num_train_examples=0"),
        ({"num_train_examples": 5, "kl_weight": -1.0}, "Received: kl_weight=-1.0"),
    ],
)
def test_elbo_loss_errors_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bayes.elbo_loss([1.0], 1.0, **kwargs)


def test_linear_warmup_closed_form():
    schedule = bayes.LinearWarmup(10, start=0.1, end=0.9)
    expected = [0.1 + 0.8 * min(step / 10, 1.0) for step in range(15)]
    np.testing.assert_allclose([schedule(step) for step in range(15)], expected)


def test_cyclical_closed_form_fu_et_al():
    schedule = bayes.CyclicalKLWeight(cycle_steps=10, ratio=0.4)
    values = [schedule(step) for step in range(25)]
    # Rises over 4 of every 10 steps, then holds at 1; restarts at 0 each cycle.
    np.testing.assert_allclose(values[:5], [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(values[5:10], 1.0)
    np.testing.assert_allclose(values[10:15], values[:5])
    assert values[20] == 0.0


def test_constant_schedule():
    assert bayes.ConstantKLWeight(0.2)(0) == bayes.ConstantKLWeight(0.2)(10**6) == 0.2


@pytest.mark.parametrize(
    "schedule",
    [
        bayes.ConstantKLWeight(0.3),
        bayes.LinearWarmup(7, start=0.2, end=0.5),
        bayes.CyclicalKLWeight(9, ratio=0.25),
    ],
)
def test_schedule_config_roundtrip(schedule):
    restored = type(schedule).from_config(schedule.get_config())
    assert [restored(s) for s in range(20)] == [schedule(s) for s in range(20)]
    via_keras = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert [via_keras(s) for s in range(20)] == [schedule(s) for s in range(20)]


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: bayes.LinearWarmup(0), "Received: warmup_steps=0"),
        (lambda: bayes.CyclicalKLWeight(10, ratio=0.0), "Received: ratio=0.0"),
        (lambda: bayes.CyclicalKLWeight(10, ratio=1.5), "Received: ratio=1.5"),
        (lambda: bayes.ConstantKLWeight(-0.1), "Received: value=-0.1"),
        (lambda: bayes.LinearWarmup(5)(-1), "Received: step=-1"),
        (lambda: bayes.KLWeightScheduler(bayes.LinearWarmup(5), update="step"), "update='step'"),
    ],
)
def test_schedule_errors_name_the_value(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_scheduler_rejects_non_callable():
    with pytest.raises(TypeError, match="Received: schedule=3"):
        bayes.KLWeightScheduler(3)


def _bnn():
    return keras.Sequential(
        [keras.Input((2,)), DenseFlipout(4, activation="tanh", seed=0), NormalHead(seed=0)]
    )


class _RecordKLWeight(Callback):
    def __init__(self):
        super().__init__()
        self.epoch_values, self.batch_values = [], []

    def on_epoch_end(self, epoch, logs=None):
        layer = self.trainer.model.layers[0]
        self.epoch_values.append((float(layer.kl_weight.numpy()), logs.get("kl_weight")))

    def on_train_batch_end(self, batch, logs=None):
        self.batch_values.append(float(self.trainer.model.layers[0].kl_weight.numpy()))


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 2)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")


def _trainer(scheduler, recorder, **kwargs):
    return Trainer(
        _bnn(),
        optimizer="adam",
        loss=NegativeLogLikelihood("normal"),
        seed=0,
        callbacks=[scheduler, recorder],
        jit_compile=False,
        **kwargs,
    )


def test_scheduler_epoch_mode_assigns_schedule_to_variational_layers():
    recorder = _RecordKLWeight()
    scheduler = bayes.KLWeightScheduler(bayes.LinearWarmup(4), update="epoch")
    _trainer(scheduler, recorder).fit(_data(), epochs=6, batch_size=8, verbose=0)
    expected = [min(epoch / 4, 1.0) for epoch in range(6)]
    np.testing.assert_allclose([layer for layer, _ in recorder.epoch_values], expected)
    np.testing.assert_allclose([logged for _, logged in recorder.epoch_values], expected)


def test_scheduler_batch_mode_follows_the_global_step():
    recorder = _RecordKLWeight()
    scheduler = bayes.KLWeightScheduler(bayes.CyclicalKLWeight(4, ratio=0.5), update="batch")
    trainer = _trainer(scheduler, recorder, steps_per_execution=1)
    trainer.fit(_data(), epochs=3, batch_size=8, verbose=0)
    # Value in use during step s is schedule(s): 0, .5, 1, 1, 0, .5
    np.testing.assert_allclose(recorder.batch_values, [0.0, 0.5, 1.0, 1.0, 0.0, 0.5])


def test_scheduler_needs_a_variational_layer():
    model = keras.Sequential([keras.Input((2,)), NormalHead()])
    trainer = Trainer(
        model,
        loss=NegativeLogLikelihood("normal"),
        seed=0,
        callbacks=[bayes.KLWeightScheduler(bayes.LinearWarmup(3))],
    )
    with pytest.raises(ValueError, match="no variational layer"):
        trainer.fit(_data(), epochs=1, batch_size=8, verbose=0)


def test_variational_layer_adds_exactly_the_scaled_kl():
    layer = DenseFlipout(3, num_train_examples=50, seed=0)
    model = keras.Sequential([keras.Input((2,)), layer])
    layer.kl_weight.assign(0.4)
    model(np.ones((4, 2), "float32"), training=True)
    loc, scale = layer.kernel_loc.numpy(), np.log1p(np.exp(layer.kernel_scale_raw.numpy()))
    expected = 0.4 * _numpy_normal_kl(loc, scale, 0.0, 1.0) / 50  # default prior N(0, 1)
    assert len(model.losses) == 1
    np.testing.assert_allclose(float(model.losses[0]), expected, rtol=1e-5)
