"""Argument checks shared by every public constructor.

Each check names the argument, shows the value received and says what was
expected, so a user sees at once what to fix.

Example:

>>> check_positive_int("units", 3)
3
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

__all__ = [
    "check_choice",
    "check_float_in_range",
    "check_positive_float",
    "check_positive_int",
    "check_probability",
    "check_same_shape",
    "check_seed",
]


def _is_real_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive_int(name: str, value: object) -> int:
    """Return `value` if it is a positive integer, else raise.

    Raises:
        TypeError: `value` is not an integer.
        ValueError: `value <= 0`.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Argument `{name}` must be a positive integer. Received: {name}={value!r}")
    if value <= 0:
        raise ValueError(
            f"Argument `{name}` must be a positive integer. Received: {name}={value!r}"
        )
    return int(value)


def check_seed(name: str, value: object, allow_none: bool = True) -> int | None:
    """Return `value` if it is an integer seed (or None when allowed), else raise.

    Example:

    >>> check_seed("seed", 7), check_seed("seed", None)
    (7, None)

    Raises:
        TypeError: `value` is not an integer (a bool is not), or None while not allowed.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        expected = "an integer or None" if allow_none else "an integer"
        raise TypeError(f"Argument `{name}` must be {expected}. Received: {name}={value!r}")
    return int(value)


def check_positive_float(name: str, value: object, allow_zero: bool = False) -> float:
    """Return `value` as a float if it is positive (or zero when allowed), else raise."""
    if not _is_real_number(value):
        raise TypeError(f"Argument `{name}` must be a number. Received: {name}={value!r}")
    bound_ok = value >= 0 if allow_zero else value > 0
    if not bound_ok or value != value or value == float("inf"):
        kind = "a non-negative" if allow_zero else "a positive"
        raise ValueError(
            f"Argument `{name}` must be {kind} finite float. Received: {name}={value!r}"
        )
    return float(value)


def check_float_in_range(
    name: str,
    value: object,
    low: float,
    high: float,
    low_inclusive: bool = False,
    high_inclusive: bool = False,
) -> float:
    """Return `value` as a float if it lies in the interval, else raise.

    Example:

    >>> check_float_in_range("level", 0.9, 0.0, 1.0)
    0.9
    """
    if not _is_real_number(value):
        raise TypeError(f"Argument `{name}` must be a number. Received: {name}={value!r}")
    above = value >= low if low_inclusive else value > low
    below = value <= high if high_inclusive else value < high
    if not (above and below):
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        raise ValueError(
            f"Argument `{name}` must be a float in {left}{low}, {high}{right}. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_probability(name: str, value: object) -> float:
    """Return `value` if it is a float in [0, 1], else raise."""
    return check_float_in_range(name, value, 0.0, 1.0, low_inclusive=True, high_inclusive=True)


def check_choice(name: str, value: object, choices: Sequence[object]) -> object:
    """Return `value` if it is one of `choices`, else raise naming the valid ones."""
    if value not in choices:
        raise ValueError(
            f"Argument `{name}` must be one of {list(choices)}. Received: {name}={value!r}"
        )
    return value


def check_same_shape(y_true_shape: Sequence, y_pred_shape: Sequence) -> None:
    """Raise if two static shapes are known and differ (`None` dims are compatible)."""
    y_true_shape, y_pred_shape = tuple(y_true_shape), tuple(y_pred_shape)
    mismatch = len(y_true_shape) != len(y_pred_shape) or any(
        a is not None and b is not None and a != b
        for a, b in zip(y_true_shape, y_pred_shape, strict=False)
    )
    if mismatch:
        raise ValueError(
            "`y_true` and `y_pred` must have the same shape. "
            f"Received: y_true.shape={y_true_shape}, y_pred.shape={y_pred_shape}"
        )


def check_numeric(name: str, value: object) -> object:
    """Raise `TypeError` if an array or tensor holds text, objects or complex numbers.

    Example:

    >>> check_numeric("y_true", [1.0, 2.0])
    [1.0, 2.0]
    """
    import numpy as np

    dtype = getattr(value, "dtype", None)
    if dtype is None:
        dtype = np.asarray(value).dtype
    dtype = getattr(dtype, "as_numpy_dtype", dtype)  # a tf.DType
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        kind = "O"
    if kind not in "biuf":
        raise TypeError(
            f"Argument `{name}` must hold real numbers. Received: {name} of dtype {dtype}"
        )
    return value
