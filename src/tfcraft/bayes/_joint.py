"""Train an ensemble's members as one Keras model: one graph, one step for all.

A small member (the UCI nets of the deep-ensembles paper) spends much of a
training step on per-step overhead, so training five of them one after the
other pays it five times. `joint_model` wires the members side by side, each on
its own input; `member_sum_loss_fn` adds their losses. The members share no
weights, so the gradient of the sum with respect to a member's weights is that
member's own gradient, and an element-wise optimizer (SGD, Adam, ...) makes the
same update as it would for the member alone.

`joint_data` gives member `i` the rows in its own fixed order `sigma_i` (drawn
from its seed). The Trainer's per-epoch shuffle `pi` then hands member `i` the
rows `sigma_i(pi(j))`: a uniformly random order that differs between members,
as when each is trained alone with its own shuffling seed.

Example:

>>> import keras, numpy as np
>>> members = [keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]) for _ in range(3)]
>>> joint = joint_model(members)
>>> xs, ys = joint_data(np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32"), [1, 2, 3])
>>> [tuple(o.shape) for o in joint(xs)]
[(4, 1), (4, 1), (4, 1)]
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfcraft.training.steps import call_model, unpack_batch

__all__ = [
    "joint_data",
    "joint_model",
    "member_loss_key",
    "member_sum_loss_fn",
    "single_input",
]


def member_loss_key(index: int) -> str:
    """The log name of member `index`'s loss in a joint run, e.g. `member_0_loss`."""
    return f"member_{index}_loss"


def single_input(member: keras.Model):
    """The member's one symbolic input, or `None` (several inputs, or a subclassed model)."""
    inputs = getattr(member, "inputs", None) or ()
    return inputs[0] if len(inputs) == 1 else None


def joint_model(members: Sequence[keras.Model]) -> keras.Model:
    """A functional model: input `i` goes to member `i`, output `i` is its output.

    Raises:
        ValueError: if a member does not have exactly one symbolic input.
    """
    inputs = []
    for index, member in enumerate(members):
        spec = single_input(member)
        if spec is None:
            raise ValueError(
                "Joint training needs members with exactly one symbolic input "
                "(Sequential or functional models). Received: member "
                f"{index} with inputs {getattr(member, 'inputs', None)}"
            )
        inputs.append(keras.Input(spec.shape[1:], dtype=spec.dtype, name=f"member_{index}"))
    outputs = [member(x) for member, x in zip(members, inputs, strict=True)]
    return keras.Model(inputs, outputs, name="joint_members")


def joint_data(x, y, seeds: Sequence[int] | None, num_members: int | None = None):
    """`(xs, ys)`: member `i`'s copy of the rows, in its own order drawn from `seeds[i]`.

    With `seeds=None` every member gets the rows as they are (validation data).
    """
    x, y = np.asarray(x), np.asarray(y)
    if seeds is None:
        orders = [np.arange(len(x))] * num_members
    else:
        orders = [np.random.default_rng(seed).permutation(len(x)) for seed in seeds]
    return tuple(x[order] for order in orders), tuple(y[order] for order in orders)


def member_sum_loss_fn(loss: keras.losses.Loss, members: Sequence[keras.Model]):
    """`loss_fn(model, batch, training)` for a `joint_model`: the sum of the members' losses.

    `batch` is `(xs, ys)` as made by `joint_data`. Each member's loss is its
    data loss plus its own `losses` (KL terms, regularisers), logged (averaged
    over the epoch) as `member_<i>_loss`.
    """

    def loss_fn(model, batch, training):
        xs, ys, _ = unpack_batch(batch)
        outputs = call_model(model, list(xs), training)
        total, logs = 0.0, {}
        for index, (member, y, y_pred) in enumerate(zip(members, ys, outputs, strict=True)):
            member_loss = tf.cast(loss(y, y_pred), tf.float32)
            if member.losses:
                member_loss += tf.add_n([tf.cast(t, tf.float32) for t in member.losses])
            logs[member_loss_key(index)] = member_loss
            total += member_loss
        return total, logs

    loss_fn.mean_logs = tuple(member_loss_key(i) for i in range(len(members)))
    return loss_fn
