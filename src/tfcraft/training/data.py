"""Turn user data into what the Trainer runs on: in-memory tensors or a `tf.data.Dataset`.

NumPy/tensor `(x, y)` or `(x, y, sample_weight)` become `ArrayData`: the
Trainer keeps them as tensors and gathers each batch by index from a per-epoch
permutation inside the graph (`epoch_permutation`), so an epoch can be one
graph call and any epoch's order can be recomputed from `(seed, epoch)`.
A `tf.data.Dataset`, a Python generator or a callable returning an iterator
become `DatasetData` (batches as they come).

Example:

>>> import numpy as np
>>> data = adapt((np.zeros((10, 3)), np.zeros(10)))
>>> type(data).__name__, data.num_examples
('ArrayData', 10)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["ArrayData", "DatasetData", "adapt", "epoch_permutation", "features_only"]


@dataclasses.dataclass(frozen=True)
class ArrayData:
    """In-memory data: a tuple `(x, y[, sample_weight])` of tensors of equal length."""

    tensors: tuple
    num_examples: int


@dataclasses.dataclass(frozen=True)
class DatasetData:
    """Batched data from a `tf.data.Dataset`; `make_dataset()` gives a fresh pass."""

    dataset: tf.data.Dataset
    cardinality: int | None  # batches per epoch when finite and known
    single_pass: bool = False  # a generator object: only one epoch of data
    sample: Any = None  # a first batch already seen (generators), to build the model

    def first_batch(self):
        """A batch to build the model with, without consuming generator data.

        Read once per `DatasetData` (each `fit` call adapts its data anew), so
        building, planning and the loop share one pass over one batch.
        """
        if self.sample is not None:
            return self.sample
        return self._first_batch

    @functools.cached_property
    def _first_batch(self):
        for batch in self.dataset.take(1):
            return batch
        return None

    def count_examples(self) -> int | None:
        """Number of examples in one pass, counted when the dataset is finite."""
        if self.cardinality is None:
            return None

        def add(total, batch):
            x = features_only(batch)
            return total + tf.shape(tf.nest.flatten(x)[0], out_type=tf.int64)[0]

        return int(self.dataset.reduce(tf.constant(0, tf.int64), add))


def epoch_permutation(num_examples: int, seed: int, epoch: int | tf.Tensor) -> tf.Tensor:
    """The shuffled order of an epoch, a pure function of `(seed, epoch)`.

    Example:

    >>> a = epoch_permutation(5, seed=0, epoch=1)
    >>> bool(tf.reduce_all(a == epoch_permutation(5, seed=0, epoch=1)))
    True
    >>> sorted(a.numpy().tolist())
    [0, 1, 2, 3, 4]
    """
    seed_pair = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    # Sorting random 64-bit keys (ties have probability ~n**2 / 2**65) instead of
    # `stateless_shuffle`, which has no XLA kernel: the whole epoch compiles as one.
    keys = tf.random.stateless_uniform(
        [num_examples], seed=seed_pair, minval=None, maxval=None, dtype=tf.int64
    )
    return tf.argsort(keys, stable=True)


def features_only(batch) -> Any:
    """The `x` part of a batch `x`, `(x,)`, `(x, y)` or `(x, y, w)`."""
    return batch[0] if isinstance(batch, tuple | list) else batch


def _to_tensor(name: str, value) -> tf.Tensor:
    if isinstance(value, tf.Tensor):
        tensor = value
    else:
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"`{name}` must hold numbers. Received: {name} with dtype={array.dtype}"
                + (
                    " (object or string data); convert it to numbers first."
                    if array.dtype.kind in "OSU"
                    else ""
                )
            )
        if array.dtype == np.float64:
            array = array.astype(np.float32)  # Keras' floatx, as model.fit does
        tensor = tf.convert_to_tensor(array)
    if tensor.shape.rank == 0:
        raise ValueError(
            f"`{name}` must have a batch dimension. Received: {name}.shape={tensor.shape}"
        )
    if tensor.dtype == tf.float64:
        tensor = tf.cast(tensor, tf.float32)
    return tensor


def _adapt_arrays(data: tuple, name: str) -> ArrayData:
    if not 1 <= len(data) <= 3:
        raise ValueError(
            f"`{name}` must be `(x, y)` or `(x, y, sample_weight)`. "
            f"Received: a tuple of length {len(data)}"
        )
    parts = ("x", "y", "sample_weight")
    tensors = []
    lengths = {}
    for part, value in zip(parts, data, strict=False):
        converted = tf.nest.map_structure(lambda v, p=part: _to_tensor(p, v), value)
        for leaf in tf.nest.flatten(converted):
            lengths.setdefault(part, int(leaf.shape[0]))
        tensors.append(converted)
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"len({k})={v}" for k, v in lengths.items())
        raise ValueError(f"All parts of `{name}` must have the same length. Received: {shown}")
    return ArrayData(tuple(tensors), next(iter(lengths.values())))


def _from_generator(make_iterator: Callable[[], Iterator], name: str, single_pass: bool):
    first_iterator = make_iterator()
    try:
        first = next(first_iterator)
    except StopIteration:
        raise ValueError(f"`{name}` produced no batches.") from None
    first = tuple(first) if isinstance(first, list) else first
    spec = tf.nest.map_structure(
        lambda v: tf.TensorSpec(
            (None, *np.shape(v)[1:]), _to_tensor(name, v[:1] if np.ndim(v) else v).dtype
        ),
        first,
    )
    pending = [itertools.chain([first], first_iterator)]

    def generator():
        # Reuse the iterator we peeked into, then ask for fresh ones.
        iterator = pending.pop() if pending else make_iterator()
        for item in iterator:
            yield tf.nest.map_structure(
                lambda v: (
                    np.asarray(v).astype(np.float32) if np.asarray(v).dtype == np.float64 else v
                ),
                tuple(item) if isinstance(item, list) else item,
            )

    dataset = tf.data.Dataset.from_generator(generator, output_signature=spec)
    if single_pass:
        # One generator object feeds every epoch, so nothing may read ahead of
        # the steps taken: tf.data's injected prefetch lost the batches it had
        # read when an epoch was cut by `steps_per_epoch`.
        options = tf.data.Options()
        options.experimental_optimization.inject_prefetch = False
        dataset = dataset.with_options(options)
    else:
        # A fresh generator per epoch: read ahead, as Keras does, so the Python
        # code runs beside the training step instead of between steps.
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
    return DatasetData(dataset, None, single_pass, sample=first)


def adapt(data: object, name: str = "data") -> ArrayData | DatasetData:
    """Classify and validate training or evaluation data.

    Args:
        data: `(x, y)`/`(x, y, sample_weight)` of NumPy arrays or tensors
            (`x` may be a dict of arrays), a batched `tf.data.Dataset`, a
            generator of batches, or a callable returning an iterator of
            batches (called once per epoch).
        name: Argument name used in error messages.

    Raises:
        TypeError: unsupported type or non-numeric arrays.
        ValueError: parts of different lengths.
    """
    if isinstance(data, tf.data.Dataset):
        cardinality = int(data.cardinality())
        return DatasetData(data, cardinality if cardinality >= 0 else None)
    if isinstance(data, tuple | list):
        return _adapt_arrays(tuple(data), name)
    if isinstance(data, np.ndarray | tf.Tensor | dict):
        return _adapt_arrays((data,), name)
    if isinstance(data, Iterator):
        iterator = data
        return _from_generator(lambda: iterator, name, single_pass=True)
    if callable(data):
        return _from_generator(lambda: iter(data()), name, single_pass=False)
    raise TypeError(
        f"Argument `{name}` must be `(x, y)` arrays, a `tf.data.Dataset`, a generator or a "
        f"callable returning an iterator. Received: {name} of type {type(data).__name__}"
    )
