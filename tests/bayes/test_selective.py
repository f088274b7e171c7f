import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfcraft import bayes


def _brute_force_aurc(correct, confidence):
    """Mean AURC over every order of the cases, sorted by confidence (ties in any order)."""
    values = []
    for order in itertools.permutations(range(len(correct))):
        order = np.array(order)
        if np.any(np.diff(confidence[order]) > 0):  # not a descending order
            continue
        errors = ~correct[order]
        risks = np.cumsum(errors) / np.arange(1, len(order) + 1)
        values.append(risks.mean())
    return np.mean(values)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 7), st.integers(0, 10_000))
def test_aurc_equals_the_average_over_tie_orders(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    probs = rng.choice([0.1, 0.3, 0.5, 0.8, 0.95], size=n)  # many ties
    correct, confidence = bayes.top_label(y, probs)
    assert bayes.aurc(y, probs) == pytest.approx(_brute_force_aurc(correct, confidence), abs=1e-12)


def test_curve_with_custom_confidence_and_multiclass():
    y = np.array([0, 1, 2, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    curve = bayes.risk_coverage_curve(y, probs, confidence=np.array([4.0, 3.0, 2.0, 1.0]))
    np.testing.assert_allclose(curve["risk"], [0.0, 0.5, 1 / 3, 0.25])
    np.testing.assert_allclose(curve["threshold"], [4.0, 3.0, 2.0, 1.0])
    assert bayes.accuracy_at_coverage(y, probs, 1.0) == 0.75
    # The default confidence (top-label probability) ranks the error last: 0.4 < 0.5.
    assert bayes.accuracy_at_coverage(y, probs, 0.5) == 1.0


def test_accuracy_at_coverage_reads_the_curve():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=50)
    probs = rng.uniform(size=50)
    curve = bayes.risk_coverage_curve(y, probs)
    assert bayes.accuracy_at_coverage(y, probs, 0.9) == pytest.approx(1 - curve["risk"][44])


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"Received: coverage=1.5"):
        bayes.accuracy_at_coverage([0, 1], [0.2, 0.7], 1.5)
    with pytest.raises(ValueError, match=r"Received: coverage=0.0"):
        bayes.accuracy_at_coverage([0, 1], [0.2, 0.7], 0.0)
    with pytest.raises(ValueError, match=r"Received: probs.shape=\(3,\), y_true.shape=\(2,\)"):
        bayes.aurc([0, 1], [0.2, 0.7, 0.1])
    with pytest.raises(ValueError, match=r"Received: confidence.shape=\(1,\)"):
        bayes.aurc([0, 1], [0.2, 0.7], confidence=[1.0])
    with pytest.raises(ValueError, match=r"Received: min=nan"):
        bayes.aurc([0, 1], [np.nan, 0.7])
