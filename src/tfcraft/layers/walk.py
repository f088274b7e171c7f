"""Walking a model: its layers, variational and random-drawing layers, seeds, metrics.

This is the one module of tfcraft that touches private Keras/TensorFlow
internals; every other module walks models through the functions below. Each
private call has its reason written beside it, and each is needed because
Keras 3 or TensorFlow has no public equivalent:

- `Layer._flatten_layers`: the sublayers of a plain `keras.layers.Layer`
  (`Model.layers` lists only the direct children, and only on models).
- `Layer._seed_generators`: every `keras.random.SeedGenerator` a layer owns,
  whatever attribute holds it (`seed_generator` in `Dropout`, `generator` in
  `RandomFlip`, ...).
- `KerasTensor._keras_history`: which layer produced a functional model's output.
- `tf.Module._flatten`: the Keras layers held by a plain `tf.Module` (its public
  `submodules` lists only `tf.Module`s, and Keras 3 layers are not `tf.Module`s).
- `Trackable._trackable_children`: TensorFlow's checkpoint hook, the only way to
  put a variable that is not a layer weight into a `tf.train.Checkpoint`.
- `Metric._direction`: Keras' built-in metrics record "up"/"down" there only.

Models can be `keras.Model`s (Sequential, functional, subclassed, nested) or
plain `tf.Module`s holding Keras layers (the `Trainer` accepts both).

Protocol read here:

- `stochastic = True` on a layer whose *prediction* is random (variational
  layers, `MCDropout`); `is_stochastic(model)`.
- `is_variational = True` on the variational layers; `variational_layers(model)`
  and `set_num_train_examples(model, n)`.
- a layer *draws random numbers in training* if it is stochastic or owns a seed
  generator (`Dropout`, `GaussianNoise`, ...); `draws_random_numbers(model)`.
- metrics declare `direction = "up"` (higher is better) or `"down"`;
  `metric_direction(metric)`.

Example:

>>> import keras
>>> inner = keras.Sequential([keras.layers.Dropout(0.5, name="drop")], name="inner")
>>> inputs = keras.Input((2,))
>>> model = keras.Model(inputs, keras.layers.Dense(1, name="out")(inner(inputs)), name="m")
>>> sorted(layer.name for layer in iter_layers(model) if not layer.name.startswith("input"))
['drop', 'inner', 'm', 'out']
>>> draws_random_numbers(model), is_stochastic(model), len(seed_generators(model))
(True, False, 1)
"""

from __future__ import annotations

from collections.abc import Iterator

import keras
import tensorflow as tf

from tfcraft._validation import check_positive_int

__all__ = [
    "SEED_STATE_KEY",
    "CheckpointSeedState",
    "draws_random_numbers",
    "is_stochastic",
    "iter_layers",
    "metric_direction",
    "model_losses",
    "output_layer",
    "seed_generators",
    "set_num_train_examples",
    "variational_layers",
]

DIRECTIONS = ("up", "down")
# Name of a layer's seed-generator state in `.keras` files and `tf.train.Checkpoint`s.
SEED_STATE_KEY = "seed_generator_state"


def _is_layer(value: object) -> bool:
    return isinstance(value, keras.layers.Layer)


def _module_leaves(module: tf.Module, kind: type, recursive: bool) -> list:
    """Objects of type `kind` held in the attributes of a `tf.Module` (not a Keras layer)."""
    # Private: `tf.Module._flatten` is the attribute walk behind the public
    # `tf.Module.submodules`/`variables`; there is no public way to ask a
    # `tf.Module` for the (non-`tf.Module`) Keras layers or seed generators it holds.
    return list(module._flatten(recursive=recursive, predicate=lambda leaf: isinstance(leaf, kind)))


def _keras_sublayers(layer: keras.layers.Layer) -> list:
    """`layer` and all its sublayers, depth-first, each once."""
    # Private: Keras 3 has no public API for the sublayers of a `keras.layers.Layer`
    # (`Model.layers` lists only the direct children, and only on models).
    return layer._flatten_layers(include_self=True, recursive=True)


def iter_layers(model, include_self: bool = True) -> Iterator:
    """Every layer of `model`, each once (for Keras models in Keras' own order).

    For a Keras layer or model: itself (if `include_self`) and all its
    sublayers, nested models and their layers included. For a plain
    `tf.Module`: itself (if `include_self`), its `tf.Module` submodules, and
    every Keras layer they hold (with its sublayers).

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.layers.Dense(1, name="d")], name="m")
    >>> [layer.name for layer in iter_layers(model)]
    ['m', 'd']

    Args:
        model: A `keras.layers.Layer` (a `keras.Model` included) or a `tf.Module`.
        include_self: Whether to yield `model` itself first. Defaults to `True`.

    Yields:
        Keras layers, and for `tf.Module` models also the `tf.Module`s.
    """
    if include_self:
        yield model
    if _is_layer(model):
        yield from _keras_sublayers(model)[1:]
        return
    if not isinstance(model, tf.Module):
        return
    seen = {id(model)}
    keras_layers = _module_leaves(model, keras.layers.Layer, recursive=True)
    sublayers = [sub for layer in keras_layers for sub in _keras_sublayers(layer)]
    for layer in [*model.submodules, *sublayers]:
        if id(layer) not in seen:
            seen.add(id(layer))
            yield layer


def is_stochastic(model) -> bool:
    """Whether `model` (or any layer inside it) gives random *predictions*.

    True when a layer declares `stochastic = True` (variational layers,
    `MCDropout`); plain `Dropout` is off at prediction time and does not count.

    Example:

    >>> import keras
    >>> from tfcraft.layers import DenseFlipout
    >>> is_stochastic(keras.Sequential([keras.Input((2,)), DenseFlipout(1)]))
    True
    """
    return any(getattr(layer, "stochastic", False) for layer in iter_layers(model))


def variational_layers(model) -> list:
    """All layers of `model` (itself included) with `is_variational = True`.

    Example:

    >>> import keras
    >>> variational_layers(keras.Sequential([keras.layers.Dense(1)]))
    []
    """
    return [layer for layer in iter_layers(model) if getattr(layer, "is_variational", False)]


def set_num_train_examples(model, n: int, overwrite: bool = False) -> int:
    """Set `num_train_examples = n` on the variational layers of `model`.

    Layers that already have a value keep it unless `overwrite=True`. Call it
    before the training step is compiled: the value is read when `call` is traced.

    Example:

    >>> import keras
    >>> from tfcraft.layers import DenseFlipout
    >>> set_num_train_examples(keras.Sequential([keras.Input((2,)), DenseFlipout(1)]), 100)
    1

    Returns:
        How many layers were set.

    Raises:
        TypeError, ValueError: `n` is not a positive integer.
    """
    n = check_positive_int("n", n)
    count = 0
    for layer in variational_layers(model):
        if overwrite or layer.num_train_examples is None:
            layer.num_train_examples = n
            count += 1
    return count


def seed_generators(model) -> list:
    """Every `keras.random.SeedGenerator` owned by `model` or its layers, each once.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.GaussianNoise(0.1)])
    >>> len(seed_generators(model))
    1
    """
    generators, seen = [], set()
    for layer in iter_layers(model):
        if _is_layer(layer):
            # Private: Keras tracks every SeedGenerator assigned to a layer attribute
            # (any attribute name) in this list; no public accessor exists.
            owned = list(getattr(layer, "_seed_generators", ()))
        elif isinstance(layer, tf.Module):
            owned = _module_leaves(layer, keras.random.SeedGenerator, recursive=False)
        else:
            owned = []
        for generator in owned:
            if id(generator) not in seen:
                seen.add(id(generator))
                generators.append(generator)
    return generators


def draws_random_numbers(model) -> bool:
    """Whether `model` draws random numbers in training (dropout, noise, BNN layers).

    True when a layer is stochastic or owns a `keras.random.SeedGenerator`.
    Random ops called directly (`tf.random.*`) in a `tf.Module` are not seen.

    Example:

    >>> import keras
    >>> draws_random_numbers(keras.Sequential([keras.Input((2,)), keras.layers.Dropout(0.5)]))
    True
    """
    return is_stochastic(model) or bool(seed_generators(model))


def model_losses(model) -> list:
    """The tensors added with `add_loss` by the last call of `model` (e.g. KL terms).

    `model.losses` for a Keras layer or model; for a plain `tf.Module`, the
    losses of the outermost Keras layers it holds (each layer's `losses`
    already includes its sublayers').

    Example:

    >>> import numpy as np, keras
    >>> from tfcraft.layers import DenseFlipout
    >>> model = keras.Sequential([keras.Input((2,)), DenseFlipout(1, num_train_examples=10)])
    >>> _ = model(np.ones((1, 2), "float32"), training=True)
    >>> len(model_losses(model))
    1
    """
    if _is_layer(model):
        return list(model.losses)
    if not isinstance(model, tf.Module):
        return []
    outer = _module_leaves(model, keras.layers.Layer, recursive=True)
    inner = {id(sub) for layer in outer for sub in _keras_sublayers(layer)[1:]}
    seen, losses = set(), []
    for layer in outer:
        if id(layer) not in inner and id(layer) not in seen:
            seen.add(id(layer))
            losses.extend(layer.losses)
    return losses


def output_layer(model):
    """The layer producing the single output of a Sequential or functional model.

    None for models with several outputs, empty Sequentials, and models with no
    known graph (subclassed models, `tf.Module`s).

    Example:

    >>> import keras
    >>> inputs = keras.Input((2,))
    >>> model = keras.Model(inputs, keras.layers.Dense(1, name="out")(inputs))
    >>> output_layer(model).name
    'out'
    """
    if isinstance(model, keras.Sequential):
        return model.layers[-1] if model.layers else None
    outputs = getattr(model, "outputs", None)
    if not isinstance(model, keras.Model) or not outputs or len(outputs) != 1:
        return None
    # Private: a functional model exposes its output tensors but not which layer
    # produced them; `_keras_history` (operation, node, tensor index) records it
    # (`Layer.output` is ambiguous for a layer called more than once).
    history = getattr(outputs[0], "_keras_history", None)
    return history.operation if history is not None else None


def metric_direction(metric) -> str | None:
    """Whether a larger value of `metric` is better (`"up"`), worse (`"down"`), or unknown.

    Reads, in order: a public `direction` attribute (every tfcraft metric
    declares one; `None` there means "no monotone direction", as for interval
    coverage); the private `_direction` of Keras' built-in metrics; losses are
    `"down"`, and so are the names `"loss"`, `"val_loss"` and names ending in
    `"_loss"`. Anything else gives None.

    Example:

    >>> import keras
    >>> metric_direction(keras.metrics.AUC()), metric_direction("val_loss")
    ('up', 'down')
    >>> metric_direction(object()) is None
    True

    Args:
        metric: A metric or loss (instance or class), a name, or anything else.

    Returns:
        `"up"`, `"down"` or None.
    """
    if isinstance(metric, str):
        name = metric.removeprefix("val_")
        return "down" if name == "loss" or name.endswith("_loss") else None
    if hasattr(metric, "direction"):
        direction = metric.direction
        return direction if direction in DIRECTIONS else None
    if isinstance(metric, keras.losses.Loss) or (
        isinstance(metric, type) and issubclass(metric, keras.losses.Loss)
    ):
        return "down"
    if isinstance(metric, keras.metrics.Metric):
        # Private: Keras' built-in metrics record their direction only in
        # `_direction` (read the same way by Keras' own `EarlyStopping`).
        direction = getattr(metric, "_direction", None)
        return direction if direction in DIRECTIONS else None
    return None


class CheckpointSeedState:
    """Mixin: list a layer's `seed_generator` state as a `tf.train.Checkpoint` child.

    A `keras.random.SeedGenerator` state is not a TF trackable attribute of the
    layer, so `tf.train.Checkpoint` skips it; with this mixin a restored layer
    continues its noise stream. Put it before `keras.layers.Layer` in the bases.
    """

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        # Private: `_trackable_children` is TensorFlow's checkpoint-dependency hook
        # (Keras overrides it too); there is no public way to add a variable that is
        # not a layer weight to a `tf.train.Checkpoint`.
        children = super()._trackable_children(save_type, **kwargs)
        generator = getattr(self, "seed_generator", None)
        if generator is not None and save_type == "checkpoint":
            children[SEED_STATE_KEY] = generator.state
        return children
