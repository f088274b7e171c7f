"""Classification uncertainty from predictive samples: entropy and mutual information.

Given `S` sampled class-probability vectors per input (forward passes of a
Bayesian net, MC-dropout passes or ensemble members, as in
`tfcraft.bayes.predict(...).samples`), the *predictive entropy* `H[mean_s p_s]`
splits into the *expected entropy* `mean_s H[p_s]` (aleatoric: noise in the
labels) and the *mutual information* between label and model, their
difference (epistemic: disagreement between passes; Houlsby et al. 2011,
Depeweg et al. 2018). Entropies are in nats.

Example:

>>> samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two passes that disagree fully
>>> round(float(predictive_entropy(samples)[0]), 4), float(expected_entropy(samples)[0])
(0.6931, 0.0)
>>> round(float(mutual_information(samples)[0]), 4)
0.6931
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "class_probability_samples",
    "expected_entropy",
    "mutual_information",
    "predictive_entropy",
]


def class_probability_samples(samples) -> np.ndarray:
    """`(S, n, k)` float64 class probabilities from samples, a `Predictive` or binary `p`.

    `(S, n)` or `(S, n, 1)` arrays are read as positive-class probabilities and
    become `[1 - p, p]`.

    Example:

    >>> class_probability_samples(np.array([[0.25]])).tolist()
    [[[0.75, 0.25]]]
    """
    samples = np.asarray(getattr(samples, "samples", samples), dtype=np.float64)
    if samples.ndim == 3 and samples.shape[-1] == 1:
        samples = samples[..., 0]
    if samples.ndim == 2:
        samples = np.stack([1.0 - samples, samples], axis=-1)
    if samples.ndim != 3:
        raise ValueError(
            "`samples` must have shape (num_samples, n, num_classes) or (num_samples, n). "
            f"Received: samples.shape={samples.shape}"
        )
    if samples.size and (
        not np.all(np.isfinite(samples)) or samples.min() < 0.0 or samples.max() > 1.0
    ):
        raise ValueError(
            "`samples` must be probabilities in [0, 1]; pass probabilities, not logits. "
            f"Received: min={float(np.min(samples))!r}, max={float(np.max(samples))!r}"
        )
    return samples


def _entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy over the last axis, with `0 log 0 = 0`."""
    logs = np.log(np.where(probs > 0.0, probs, 1.0))
    return -np.sum(probs * logs, axis=-1)


def predictive_entropy(samples) -> np.ndarray:
    """Entropy of the mean class probabilities, `(n,)` (total uncertainty).

    Args:
        samples: `(num_samples, n, num_classes)` probabilities, a
            `tfcraft.bayes.Predictive` of a categorical model, or `(num_samples, n)`
            positive-class probabilities.
    """
    return _entropy(class_probability_samples(samples).mean(axis=0))


def expected_entropy(samples) -> np.ndarray:
    """Mean over samples of each sample's entropy, `(n,)` (aleatoric part)."""
    return _entropy(class_probability_samples(samples)).mean(axis=0)


def mutual_information(samples) -> np.ndarray:
    """Predictive minus expected entropy, `(n,)` (epistemic part, never negative)."""
    probs = class_probability_samples(samples)
    # Entropy is concave, so the difference is >= 0; clip float rounding below zero.
    return np.maximum(_entropy(probs.mean(axis=0)) - _entropy(probs).mean(axis=0), 0.0)
