"""Joint (vectorised) ensemble training: each member gets exactly its own training."""

import keras
import numpy as np
import pytest

from tfcraft import bayes
from tfcraft.bayes._joint import joint_data, joint_model
from tfcraft.layers import DenseFlipout, NormalHead
from tfcraft.losses import NegativeLogLikelihood
from tfcraft.training import Trainer


def build_bnn(seed):
    """A member with a KL term (added through `add_loss`) and its own noise stream."""
    return keras.Sequential(
        [
            keras.Input((2,)),
            DenseFlipout(4, activation="tanh", seed=seed, posterior_scale_init=0.05),
            NormalHead(seed=seed + 1),
        ]
    )


def build_net(seed):
    return keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(
                4, activation="tanh", kernel_initializer=keras.initializers.GlorotUniform(seed)
            ),
            NormalHead(seed=seed + 1),
        ]
    )


def _data(n=24):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).astype("float32")
    return x, (x[:, :1] - x[:, 1:] + 0.1 * rng.normal(size=(n, 1))).astype("float32")


@pytest.mark.parametrize("build_model", [build_net, build_bnn])
def test_joint_training_equals_each_member_trained_alone_in_the_same_batch_order(build_model):
    x, y = _data()
    ensemble = bayes.DeepEnsemble(build_model, num_members=3, seed=7)
    histories = ensemble.fit(
        x, y, epochs=3, batch_size=8, optimizer=keras.optimizers.Adam(0.01), vectorize=True
    )
    assert len(ensemble.trainers) == 1
    for member, member_seed, history in zip(
        ensemble.members, ensemble.seeds, histories, strict=True
    ):
        alone = build_model(member_seed)
        trainer = Trainer(
            alone, keras.optimizers.Adam(0.01), loss=NegativeLogLikelihood("normal"), seed=7
        )
        order = np.random.default_rng(member_seed).permutation(len(x))  # the member's rows
        reference = trainer.fit((x[order], y[order]), epochs=3, batch_size=8, verbose=0)
        for a, b in zip(member.get_weights(), alone.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(history.history["loss"], reference.history["loss"], rtol=1e-5)


def test_auto_trains_jointly_unless_something_couples_the_members():
    x, y = _data()
    ensemble = bayes.DeepEnsemble(build_net, num_members=3, seed=0)
    histories = ensemble.fit(x, y, epochs=2, batch_size=8, validation_data=(x[:8], y[:8]))
    assert len(ensemble.trainers) == 1
    assert [sorted(h.history) for h in histories] == [["loss", "val_loss"]] * 3
    assert all(len(h.history["val_loss"]) == 2 for h in histories)
    ensemble.fit(x, y, epochs=1, batch_size=8, metrics=["mae"])
    assert len(ensemble.trainers) == 3
    ensemble.fit(x, y, epochs=1, batch_size=8, clip="global_norm:1.0")
    assert len(ensemble.trainers) == 3
    ensemble.fit(x, y, epochs=1, batch_size=8, clip="norm:1.0")  # per tensor: no coupling
    assert len(ensemble.trainers) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vectorize": True, "metrics": ["mae"]}, r"vectorize=True.*metrics"),
        ({"vectorize": True, "clip": "global_norm:1.0"}, r"global-norm clip"),
        ({"vectorize": "yes"}, r"vectorize.*'yes'"),
        (
            {"vectorize": True, "validation_data": (np.zeros((2, 2)),) * 2 + (np.ones(2),)},
            r"validation sample weights",
        ),
    ],
)
def test_vectorize_errors(kwargs, message):
    x, y = _data()
    ensemble = bayes.DeepEnsemble(build_net, num_members=2, seed=0)
    with pytest.raises(ValueError, match=message):
        ensemble.fit(x, y, epochs=1, batch_size=8, **kwargs)


def test_members_get_different_batch_orders():
    x, y = np.arange(6.0)[:, None], np.arange(6.0)[:, None]
    xs, ys = joint_data(x, y, [1, 2])
    assert not np.array_equal(xs[0], xs[1])
    for member_x, member_y in zip(xs, ys, strict=True):
        np.testing.assert_array_equal(member_x, member_y)  # rows stay paired
        np.testing.assert_array_equal(np.sort(member_x[:, 0]), x[:, 0])


class Subclassed(keras.Model):
    def __init__(self, seed):
        super().__init__()
        self.hidden = keras.layers.Dense(4, activation="tanh")
        self.head = NormalHead(seed=seed)

    def call(self, x):
        return self.head(self.hidden(x))


def test_subclassed_members_train_one_after_the_other_under_auto():
    x, y = _data()
    ensemble = bayes.DeepEnsemble(Subclassed, num_members=2, seed=0)
    histories = ensemble.fit(x, y, epochs=2, batch_size=8)
    assert len(ensemble.trainers) == 2 and len(histories[1].history["loss"]) == 2
    with pytest.raises(ValueError, match=r"exactly one symbolic input.*member 0"):
        ensemble.fit(x, y, epochs=1, batch_size=8, vectorize=True)


def test_joint_model_needs_single_input_members():
    a, b = keras.Input((2,)), keras.Input((2,))
    two_inputs = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(ValueError, match=r"exactly one symbolic input.*member 1"):
        joint_model([build_net(0), two_inputs])
