import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfcraft.losses
import tfcraft.metrics
from tfcraft.layers import (
    DenseFlipout,
    DenseReparameterization,
    MCDropout,
    NormalHead,
    draws_random_numbers,
    find_head,
    is_stochastic,
    iter_layers,
    metric_direction,
    model_losses,
    output_layer,
    seed_generators,
    set_num_train_examples,
    variational_layers,
)

# -- metric directions ----------------------------------------------------------------

EXPECTED_DIRECTIONS = {
    "Precision": "up",
    "Recall": "up",
    "FBeta": "up",
    "ExpectedCalibrationError": "down",
    "BrierScore": "down",
    "MeanNLL": "down",
    "CRPS": "down",
    "MeanIntervalWidth": "down",
    "IntervalCoverage": None,  # the target is the nominal level: no better side
}


def _tfcraft_metric_classes():
    exported = (getattr(tfcraft.metrics, name) for name in tfcraft.metrics.__all__)
    return [
        obj for obj in exported if inspect.isclass(obj) and issubclass(obj, keras.metrics.Metric)
    ]


def test_every_exported_metric_declares_its_direction():
    classes = _tfcraft_metric_classes()
    # A new metric must be added here, with the direction it declares.
    assert sorted(cls.__name__ for cls in classes) == sorted(EXPECTED_DIRECTIONS)
    for cls in classes:
        assert "direction" in vars(cls), f"{cls.__name__} declares no `direction`"
        expected = EXPECTED_DIRECTIONS[cls.__name__]
        assert cls.direction == expected
        assert metric_direction(cls) == expected
        assert metric_direction(cls()) == expected, cls.__name__


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        (keras.metrics.Accuracy(), "up"),
        (keras.metrics.BinaryAccuracy(), "up"),
        (keras.metrics.AUC(), "up"),
        (keras.metrics.Precision(), "up"),
        (keras.metrics.MeanSquaredError(), "down"),
        (keras.metrics.MeanAbsoluteError(), "down"),
        (keras.metrics.BinaryCrossentropy(), "down"),
        (keras.metrics.Mean(), None),  # a plain mean has no direction
    ],
)
def test_keras_metric_directions(metric, expected):
    assert metric_direction(metric) == expected


@pytest.mark.parametrize(
    "loss",
    [
        keras.losses.MeanSquaredError(),
        keras.losses.SparseCategoricalCrossentropy,
        tfcraft.losses.Huber(),
        tfcraft.losses.NegativeLogLikelihood("normal"),
        "loss",
        "val_loss",
        "val_kl_loss",
    ],
)
def test_losses_and_loss_names_go_down(loss):
    assert metric_direction(loss) == "down"


class _Sideways:
    direction = "sideways"


@pytest.mark.parametrize(
    "unknown",
    [object(), None, 3, "accuracy", "val_brier_score", "lossy", lambda y, p: y, _Sideways()],
)
def test_unknown_objects_have_no_direction(unknown):
    assert metric_direction(unknown) is None


# -- walking models ---------------------------------------------------------------


def _nested_model():
    """A Sequential (with a BNN layer and dropout) inside a functional model."""
    inner = keras.Sequential(
        [DenseFlipout(4, seed=0, name="flip"), keras.layers.Dropout(0.5, name="drop")],
        name="inner",
    )
    shared = keras.layers.Dense(4, name="shared")
    inputs = keras.Input((3,))
    hidden = shared(shared(inner(inputs)))  # a layer called twice is listed once
    outputs = NormalHead(seed=0, name="head")(MCDropout(0.1, seed=1, name="mc")(hidden))
    return keras.Model(inputs, outputs, name="outer"), inner


def _names(layers):
    return [layer.name for layer in layers]


def test_nested_functional_model():
    model, inner = _nested_model()
    layers = list(iter_layers(model))
    names = [name for name in _names(layers) if not name.startswith("input")]
    assert sorted(names) == ["drop", "flip", "head", "inner", "mc", "outer", "shared"]
    assert len({id(layer) for layer in layers}) == len(layers)
    assert layers[0] is model
    assert model not in list(iter_layers(model, include_self=False))

    assert [layer.name for layer in variational_layers(model)] == ["flip"]
    assert is_stochastic(model) and draws_random_numbers(model)
    expected = {id(model.get_layer("mc").seed_generator)}
    expected |= {id(layer.seed_generator) for layer in inner.layers}
    assert {id(g) for g in seed_generators(model)} == expected
    assert len(seed_generators(model)) == 3
    assert output_layer(model) is model.get_layer("head")
    assert find_head(model) is model.get_layer("head")


def test_set_num_train_examples_reaches_nested_layers():
    model, inner = _nested_model()
    assert set_num_train_examples(model, 50) == 1
    assert inner.get_layer("flip").num_train_examples == 50
    with pytest.raises(ValueError, match=r"Received: n=0"):
        set_num_train_examples(model, 0)


def test_dropout_draws_random_numbers_but_is_not_stochastic():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dropout(0.3)])
    assert draws_random_numbers(model) and not is_stochastic(model)
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert not draws_random_numbers(plain)
    assert seed_generators(plain) == []
    assert variational_layers(plain) == []


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.body = DenseReparameterization(3, seed=0)
        # RandomFlip keeps its SeedGenerator in `generator`, not `seed_generator`.
        self.flip = keras.layers.RandomFlip("horizontal", seed=0)
        self.head = NormalHead(seed=0)

    def call(self, x, training=None):
        return self.head(self.body(x, training=training))


def test_subclassed_model():
    model = _Subclassed()
    layers = list(iter_layers(model, include_self=False))
    assert {id(layer) for layer in layers} == {id(model.body), id(model.flip), id(model.head)}
    assert variational_layers(model) == [model.body]
    assert draws_random_numbers(model) and is_stochastic(model)
    assert {id(g) for g in seed_generators(model)} == {
        id(model.body.seed_generator),
        id(model.flip.generator),
    }
    assert output_layer(model) is None  # no known graph
    assert find_head(model) is model.head


class _Inner(tf.Module):
    def __init__(self):
        super().__init__()
        self.dropout = keras.layers.Dropout(0.2, seed=0)
        self.generator = keras.random.SeedGenerator(3)  # held by the module itself


class _ModuleModel(tf.Module):
    def __init__(self, random: bool = True):
        super().__init__()
        self.blocks = [keras.layers.Dense(3)]
        if random:
            self.blocks.append(DenseFlipout(2, seed=0))
            self.inner = _Inner()

    def __call__(self, x, training=False):
        for block in self.blocks:
            x = block(x, training=training) if isinstance(block, DenseFlipout) else block(x)
        return x


def test_plain_tf_module():
    model = _ModuleModel()
    layers = list(iter_layers(model))
    assert layers[0] is model
    ids = {id(layer) for layer in layers}
    assert {id(model.inner), id(model.inner.dropout), *map(id, model.blocks)} <= ids
    assert len(ids) == len(layers)

    flipout = model.blocks[1]
    assert variational_layers(model) == [flipout]
    assert set_num_train_examples(model, 10) == 1 and flipout.num_train_examples == 10
    assert is_stochastic(model) and draws_random_numbers(model)
    assert {id(g) for g in seed_generators(model)} == {
        id(flipout.seed_generator),
        id(model.inner.dropout.seed_generator),
        id(model.inner.generator),
    }
    model(np.ones((4, 5), "float32"), training=True)
    losses = model_losses(model)
    assert len(losses) == 1
    np.testing.assert_allclose(losses[0], flipout.losses[0])
    assert output_layer(model) is None


def test_deterministic_tf_module():
    model = _ModuleModel(random=False)
    assert not draws_random_numbers(model) and not is_stochastic(model)
    assert seed_generators(model) == [] and variational_layers(model) == []
    assert list(iter_layers(model, include_self=False)) == model.blocks


def test_objects_without_layers():
    assert list(iter_layers(object(), include_self=False)) == []
    assert not draws_random_numbers(object())
    assert model_losses(object()) == []


def test_output_layer_cases():
    inputs = keras.Input((2,))
    two = keras.Model(inputs, [keras.layers.Dense(1)(inputs), keras.layers.Dense(1)(inputs)])
    assert output_layer(two) is None
    assert output_layer(keras.Sequential()) is None
    sequential = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="last")])
    assert output_layer(sequential).name == "last"


def test_model_losses_of_keras_model_are_its_losses():
    model = keras.Sequential([keras.Input((2,)), DenseFlipout(1, num_train_examples=5, seed=0)])
    model(np.ones((2, 2), "float32"), training=True)
    assert len(model_losses(model)) == 1
    np.testing.assert_allclose(model_losses(model)[0], model.losses[0])


def test_seed_state_is_a_checkpoint_child(tmp_path):
    layer = DenseFlipout(2, seed=0)
    layer.build((None, 3))
    checkpoint = tf.train.Checkpoint(layer=layer)
    path = checkpoint.write(str(tmp_path / "ckpt"))
    saved = layer.seed_generator.state.numpy()
    layer(np.ones((1, 3), "float32"))  # advances the noise stream
    assert not np.array_equal(layer.seed_generator.state.numpy(), saved)
    checkpoint.read(path).assert_consumed()
    np.testing.assert_array_equal(layer.seed_generator.state.numpy(), saved)
