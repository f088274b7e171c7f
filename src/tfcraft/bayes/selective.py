"""Selective prediction: answer the confident cases, refer the rest.

A classifier that may abstain ranks inputs by a confidence score and answers
only the most confident fraction (the *coverage*). The *selective risk* at a
coverage is the error rate on the answered cases; the risk-coverage curve
traces it from the single most confident case to all of them, and its area
(AURC, Geifman & El-Yaniv 2017; Geifman et al. 2019) summarises how well the
confidence ranks errors last. Lower is better; a perfect ranking gives
`AURC ~ e + (1 - e) log(1 - e)` for an error rate `e`.

Cases with equal confidence cannot be told apart, so the curve does not depend
on their order: within a group of ties the risk is its *expectation* over all
orders of the group (errors are spread evenly over the group).

Example:

>>> y = np.array([1, 1, 0, 0])
>>> probs = np.array([0.9, 0.8, 0.7, 0.4])  # the 0.7 case is wrong
>>> curve = risk_coverage_curve(y, probs)
>>> curve["coverage"].tolist(), curve["risk"].round(3).tolist()
([0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.333, 0.25])
>>> round(aurc(y, probs), 4), accuracy_at_coverage(y, probs, 0.5)
(0.1458, 1.0)
"""

from __future__ import annotations

import math

import numpy as np

from tfcraft._validation import check_float_in_range

__all__ = ["accuracy_at_coverage", "aurc", "risk_coverage_curve", "top_label"]


def top_label(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    """Whether the top-label prediction is correct, and its probability (the confidence).

    `probs` is `(n,)` positive-class probabilities (predicted label 1 when
    `p >= 0.5`) or `(n, k)` class probabilities (argmax).

    Example:

    >>> correct, confidence = top_label([0, 1], [0.2, 0.4])
    >>> correct.tolist(), confidence.tolist()
    ([True, False], [0.8, 0.6])
    """
    y_true = np.asarray(y_true).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 2 and probs.shape[1] == 1:
        probs = probs[:, 0]
    if probs.ndim not in (1, 2) or len(probs) != len(y_true) or len(y_true) == 0:
        raise ValueError(
            "`probs` must have shape (n,) or (n, num_classes) with n = len(y_true) > 0. "
            f"Received: probs.shape={probs.shape}, y_true.shape={y_true.shape}"
        )
    if not np.all(np.isfinite(probs)) or probs.min() < 0.0 or probs.max() > 1.0:
        raise ValueError(
            "`probs` must be finite probabilities in [0, 1]. "
            f"Received: min={float(np.min(probs))!r}, max={float(np.max(probs))!r}"
        )
    if probs.ndim == 1:
        predicted = (probs >= 0.5).astype(int)
        confidence = np.where(predicted == 1, probs, 1.0 - probs)
    else:
        predicted = probs.argmax(axis=1)
        confidence = probs.max(axis=1)
    return predicted == y_true, confidence


def _correct_and_confidence(y_true, probs, confidence) -> tuple[np.ndarray, np.ndarray]:
    correct, top_confidence = top_label(y_true, probs)
    if confidence is None:
        return correct, top_confidence
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if confidence.shape != correct.shape or not np.all(np.isfinite(confidence)):
        raise ValueError(
            "`confidence` must hold one finite score per example (higher = more "
            f"confident). Received: confidence.shape={confidence.shape}, "
            f"n={correct.size}"
        )
    return correct, confidence


def risk_coverage_curve(y_true, probs, confidence=None) -> dict[str, np.ndarray]:
    """Expected selective risk (error rate) when answering the `k` most confident cases.

    Args:
        y_true: Labels, `(n,)`.
        probs: `(n,)` positive-class or `(n, k)` class probabilities; they give
            the predictions (and the default confidence).
        confidence: Optional `(n,)` scores, higher = more confident (e.g.
            `-mutual_information(samples)`). Defaults to the top-label probability.

    Returns:
        A dict with `coverage` `k / n` and `risk` (expected error rate among
        the `k` most confident, ties averaged over their orders), for
        `k = 1..n`, and `threshold`, the confidence of the `k`-th case.
    """
    correct, confidence = _correct_and_confidence(y_true, probs, confidence)
    n = correct.size
    order = np.argsort(-confidence, kind="stable")
    sorted_confidence = confidence[order]
    errors = (~correct[order]).astype(np.float64)
    # Group ties: group g spans [start_g, end_g) in the sorted order.
    _, starts = np.unique(-sorted_confidence, return_index=True)
    ends = np.append(starts[1:], n)
    group_errors = np.add.reduceat(errors, starts)
    errors_before = np.concatenate([[0.0], np.cumsum(group_errors)[:-1]])
    group_of = np.repeat(np.arange(starts.size), ends - starts)
    k = np.arange(1, n + 1)
    taken_in_group = k - starts[group_of]
    # Hypergeometric mean: j of the group's m cases hold j * e / m of its e errors.
    expected_errors = errors_before[group_of] + taken_in_group * (
        group_errors[group_of] / (ends - starts)[group_of]
    )
    return {"coverage": k / n, "risk": expected_errors / k, "threshold": sorted_confidence}


def aurc(y_true, probs, confidence=None) -> float:
    """Area under the risk-coverage curve: mean selective risk over `k = 1..n`.

    Example:

    >>> aurc([0, 1], [0.5, 0.5])  # a tie: either order, one error in two
    0.5

    Args:
        y_true: Labels, as in `risk_coverage_curve`.
        probs: Probabilities, as in `risk_coverage_curve`.
        confidence: Optional scores, as in `risk_coverage_curve`.

    Returns:
        A float in [0, 1]; lower is better.
    """
    return float(np.mean(risk_coverage_curve(y_true, probs, confidence)["risk"]))


def accuracy_at_coverage(y_true, probs, coverage: float, confidence=None) -> float:
    """Expected accuracy on the `ceil(coverage * n)` most confident cases.

    Example:

    >>> accuracy_at_coverage([1, 0, 1, 1], [0.9, 0.6, 0.7, 0.8], coverage=0.75)
    1.0

    Args:
        y_true: Labels, as in `risk_coverage_curve`.
        probs: Probabilities, as in `risk_coverage_curve`.
        coverage: Float in (0, 1]; the fraction of cases answered.
        confidence: Optional scores, as in `risk_coverage_curve`.
    """
    coverage = check_float_in_range("coverage", coverage, 0.0, 1.0, high_inclusive=True)
    curve = risk_coverage_curve(y_true, probs, confidence)
    n = curve["risk"].size
    k = min(n, max(1, math.ceil(coverage * n - 1e-9)))
    return float(1.0 - curve["risk"][k - 1])
