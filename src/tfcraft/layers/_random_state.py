"""Seeds and random-number state shared by the layers of this package."""

from __future__ import annotations

import keras
import numpy as np

from tfcraft.layers.walk import SEED_STATE_KEY, CheckpointSeedState


def seeded_initializer(initializer, seed: int | None):
    """`keras.initializers.get(initializer)`, seeded with `seed` when it is random."""
    initializer = keras.initializers.get(initializer)
    if seed is not None and hasattr(initializer, "seed"):
        initializer.seed = seed
    return initializer


class SeedStateMixin(CheckpointSeedState):
    """Save the layer's `seed_generator` state with its weights.

    A `keras.random.SeedGenerator` state is neither a weight (so `.keras` files
    skip it) nor a TF trackable attribute (so `tf.train.Checkpoint` skips it).
    Without it a restored model restarts its noise stream from the seed instead
    of continuing it, and a resumed run differs from an uninterrupted one. The
    `.keras` side is done here with Keras' public `save_own_variables` and
    `load_own_variables`; the checkpoint side needs TensorFlow's private
    checkpoint hook, so it lives in `tfcraft.layers.walk.CheckpointSeedState`
    (the one module allowed to touch Keras/TF internals).
    """

    def _seed_state(self):
        generator = getattr(self, "seed_generator", None)
        return generator.state if generator is not None else None

    def save_own_variables(self, store) -> None:
        """Save the weights and the random-number state."""
        super().save_own_variables(store)
        state = self._seed_state()
        if state is not None:
            store[SEED_STATE_KEY] = state

    def load_own_variables(self, store) -> None:
        """Load the weights and, if present, the random-number state."""
        keys = [key for key in store.keys() if key != SEED_STATE_KEY]  # noqa: SIM118
        super().load_own_variables({key: np.asarray(store[key]) for key in keys})
        state = self._seed_state()
        if state is not None and SEED_STATE_KEY in store.keys():  # noqa: SIM118
            state.assign(np.asarray(store[SEED_STATE_KEY]))
