"""Gradient clipping: pure functions and small spec objects the Trainer applies.

Every clipper is a callable `clip(grads, variables) -> grads` that works on a
list of gradient tensors (entries may be `None`) and does not touch any state,
so it runs unchanged inside `tf.function` and under XLA. `get(spec)` turns a
user spec (an object, a float, a string such as `"global_norm:1.0"` or `None`)
into a clipper.

Example:

>>> import tensorflow as tf
>>> clip = get("global_norm:1.0")
>>> [round(float(tf.norm(g)), 3) for g in clip([tf.constant([3.0, 4.0])], [None])]
[1.0]
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import tensorflow as tf

from tfcraft._validation import check_positive_float

__all__ = [
    "Adaptive",
    "ByGlobalNorm",
    "ByNorm",
    "ByValue",
    "Clipper",
    "adaptive_clip",
    "get",
    "global_norm",
]

_VALID_FORMS = (
    "None, a positive float (global norm), a clipper object "
    "(ByValue, ByNorm, ByGlobalNorm, Adaptive), or a string "
    "'value:V', 'norm:N', 'global_norm:N', 'adaptive:C'"
)


def global_norm(grads: Sequence[tf.Tensor | None]) -> tf.Tensor:
    """Global L2 norm of a list of gradients, skipping `None` entries.

    Example:

    >>> float(global_norm([tf.constant([3.0]), None, tf.constant([4.0])]))
    5.0
    """
    present = [tf.cast(g, tf.float32) for g in grads if g is not None]
    if not present:
        return tf.constant(0.0)
    return tf.linalg.global_norm(present)


def _unit_norm(tensor: tf.Tensor, eps_floor: float | None = None) -> tf.Tensor:
    """L2 norm per output unit (last axis), broadcastable to `tensor`.

    Scalars and vectors (biases, scales) count as one unit per entry, as in the
    reference implementation of AGC.
    """
    if tensor.shape.rank is not None and tensor.shape.rank <= 1:
        norm = tf.abs(tensor)
    else:
        axes = list(range(tensor.shape.rank - 1))
        norm = tf.sqrt(tf.reduce_sum(tf.square(tensor), axis=axes, keepdims=True))
    return norm if eps_floor is None else tf.maximum(norm, eps_floor)


def adaptive_clip(
    grads: Sequence[tf.Tensor | None],
    variables: Sequence[tf.Variable],
    clipping: float = 0.01,
    eps: float = 1e-3,
) -> list[tf.Tensor | None]:
    """Unit-wise adaptive gradient clipping (AGC).

    For every output unit `i` (a slice along the last axis) the gradient is
    rescaled to norm at most `clipping * max(||W_i||, eps)`. From Brock et al.
    (2021), "High-Performance Large-Scale Image Recognition Without
    Normalization", https://arxiv.org/abs/2102.06171, section 4.1.

    Example:

    >>> w = tf.Variable([[1.0], [0.0]])
    >>> [g] = adaptive_clip([tf.constant([[3.0], [4.0]])], [w], clipping=0.5)
    >>> [round(float(v), 3) for v in tf.reshape(g, [-1])]
    [0.3, 0.4]
    """
    clipped = []
    for grad, variable in zip(grads, variables, strict=True):
        if grad is None:
            clipped.append(None)
            continue
        max_norm = clipping * _unit_norm(tf.convert_to_tensor(variable), eps_floor=eps)
        grad_norm = _unit_norm(grad)
        # Divide by the larger of the two so units below the threshold keep scale 1
        # and a zero gradient never divides by zero.
        scale = max_norm / tf.maximum(grad_norm, max_norm)
        clipped.append(grad * tf.cast(scale, grad.dtype))
    return clipped


class Clipper:
    """Base class: a pure `__call__(grads, variables) -> grads`."""

    def __call__(self, grads, variables):  # pragma: no cover - abstract
        """Return the clipped gradients."""
        raise NotImplementedError  # abstract: subclasses implement it

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class ByValue(Clipper):
    """Clip every gradient entry to `[-value, value]` (as `tf.clip_by_value`).

    Example:

    >>> [g] = ByValue(0.5)([tf.constant([-2.0, 0.1])], [None])
    >>> [round(float(v), 2) for v in g]
    [-0.5, 0.1]

    Args:
        value: Positive float; the largest absolute entry kept.
    """

    def __init__(self, value: float) -> None:
        self.value = check_positive_float("value", value)

    def __call__(self, grads, variables):
        """Return the clipped gradients."""
        return [None if g is None else tf.clip_by_value(g, -self.value, self.value) for g in grads]


class ByNorm(Clipper):
    """Rescale each gradient tensor to L2 norm at most `norm` (as `tf.clip_by_norm`).

    Example:

    >>> [g] = ByNorm(1.0)([tf.constant([3.0, 4.0])], [None])
    >>> [round(float(v), 2) for v in g]
    [0.6, 0.8]

    Args:
        norm: Positive float; the largest norm of each tensor.
    """

    def __init__(self, norm: float) -> None:
        self.norm = check_positive_float("norm", norm)

    def __call__(self, grads, variables):
        """Return the clipped gradients."""
        return [None if g is None else tf.clip_by_norm(g, self.norm) for g in grads]


class ByGlobalNorm(Clipper):
    """Rescale all gradients together to global norm at most `norm`.

    Same as `tf.clip_by_global_norm` and Keras' `global_clipnorm`.

    Example:

    >>> g1, g2 = ByGlobalNorm(1.0)([tf.constant([3.0]), tf.constant([4.0])], [None, None])
    >>> round(float(g1[0]), 2), round(float(g2[0]), 2)
    (0.6, 0.8)

    Args:
        norm: Positive float; the largest global norm.
    """

    def __init__(self, norm: float) -> None:
        self.norm = check_positive_float("norm", norm)

    def __call__(self, grads, variables):
        """Return the clipped gradients."""
        present = [g for g in grads if g is not None]
        if not present:
            return list(grads)
        clipped, _ = tf.clip_by_global_norm(present, self.norm)
        it = iter(clipped)
        return [None if g is None else next(it) for g in grads]


class Adaptive(Clipper):
    """Unit-wise adaptive gradient clipping; see `adaptive_clip`.

    Example:

    >>> w = tf.Variable([[1.0], [0.0]])
    >>> [g] = Adaptive(clipping=0.5)([tf.constant([[3.0], [4.0]])], [w])
    >>> round(float(tf.norm(g)), 3)
    0.5

    Args:
        clipping: Positive float; the largest ratio of gradient to weight norm
            per unit. Defaults to `0.01`.
        eps: Positive float; floor of the weight norm, so zero-initialised
            weights can still move. Defaults to `1e-3`.
    """

    def __init__(self, clipping: float = 0.01, eps: float = 1e-3) -> None:
        self.clipping = check_positive_float("clipping", clipping)
        self.eps = check_positive_float("eps", eps)

    def __call__(self, grads, variables):
        """Return the clipped gradients."""
        return adaptive_clip(grads, variables, self.clipping, self.eps)


_BY_NAME: dict[str, Callable[[float], Clipper]] = {
    "value": ByValue,
    "norm": ByNorm,
    "global_norm": ByGlobalNorm,
    "adaptive": Adaptive,
}


def get(spec: object) -> Clipper | None:
    """Turn a clip spec into a clipper (or `None` for no clipping).

    Example:

    >>> get("value:0.5")
    ByValue(value=0.5)
    >>> get(1.0)
    ByGlobalNorm(norm=1.0)

    Args:
        spec: `None`, a `Clipper`, any callable `(grads, variables) -> grads`,
            a positive float (global norm) or a string `"kind:number"` with
            kind one of `value`, `norm`, `global_norm`, `adaptive`.

    Raises:
        ValueError: the spec is not one of the valid forms.
    """
    if spec is None or isinstance(spec, Clipper):
        return spec
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        return ByGlobalNorm(float(spec))
    if isinstance(spec, str):
        kind, _, number = spec.partition(":")
        kind = kind.strip().lower()
        if kind in _BY_NAME:
            try:
                value = float(number)
            except ValueError:
                value = None
            if value is not None:
                return _BY_NAME[kind](value)
    elif callable(spec):
        return spec
    raise ValueError(f"Argument `clip` must be {_VALID_FORMS}. Received: clip={spec!r}")
