"""Seeds and random-number state shared by the layers of this package."""

from __future__ import annotations

import keras
import numpy as np

_SEED_STATE_KEY = "seed_generator_state"


def check_seed(seed: object) -> int | None:
    """Return `seed` if it is an integer or None, else raise a `TypeError`."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"Argument `seed` must be an integer or None. Received: seed={seed!r}")
    return seed


def seeded_initializer(initializer, seed: int | None):
    """`keras.initializers.get(initializer)`, seeded with `seed` when it is random."""
    initializer = keras.initializers.get(initializer)
    if seed is not None and hasattr(initializer, "seed"):
        initializer.seed = seed
    return initializer


class SeedStateMixin:
    """Save the layer's `seed_generator` state with its weights.

    A `keras.random.SeedGenerator` state is neither a weight (so `.keras` files
    skip it) nor a TF trackable attribute (so `tf.train.Checkpoint` skips it).
    Without it a restored model restarts its noise stream from the seed instead
    of continuing it, and a resumed run differs from an uninterrupted one.
    """

    def _seed_state(self):
        generator = getattr(self, "seed_generator", None)
        return generator.state if generator is not None else None

    def save_own_variables(self, store) -> None:
        """Save the weights and the random-number state."""
        super().save_own_variables(store)
        state = self._seed_state()
        if state is not None:
            store[_SEED_STATE_KEY] = state

    def load_own_variables(self, store) -> None:
        """Load the weights and, if present, the random-number state."""
        keys = [key for key in store.keys() if key != _SEED_STATE_KEY]  # noqa: SIM118
        super().load_own_variables({key: np.asarray(store[key]) for key in keys})
        state = self._seed_state()
        if state is not None and _SEED_STATE_KEY in store.keys():  # noqa: SIM118
            state.assign(np.asarray(store[_SEED_STATE_KEY]))

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        children = super()._trackable_children(save_type, **kwargs)
        state = self._seed_state()
        if state is not None and save_type == "checkpoint":
            children[_SEED_STATE_KEY] = state
        return children
