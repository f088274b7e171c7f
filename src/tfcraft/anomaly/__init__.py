"""Anomaly detection with probabilistic models: density detectors with a scikit-learn API.

Each detector fits the density of the normal data with `tfp.distributions`
and scores rows by their log-likelihood; see `docs/anomaly.md`.

Example:

>>> import numpy as np
>>> from tfcraft.anomaly import GaussianMixtureDetector
>>> X = np.random.default_rng(0).normal(size=(200, 2))
>>> GaussianMixtureDetector(seed=0).fit(X).predict(np.array([[0.0, 0.0], [8.0, 8.0]])).tolist()
[1, -1]
"""

from tfcraft.anomaly.base import Detector, check_contamination, load_detector
from tfcraft.anomaly.ensemble import EnsembleDetector
from tfcraft.anomaly.flow import FlowDetector
from tfcraft.anomaly.mixture import GaussianMixtureDetector
from tfcraft.anomaly.networks import MaskedAutoregressiveNetwork
from tfcraft.anomaly.vae import VAEDetector

__all__ = [
    "Detector",
    "EnsembleDetector",
    "FlowDetector",
    "GaussianMixtureDetector",
    "MaskedAutoregressiveNetwork",
    "VAEDetector",
    "check_contamination",
    "load_detector",
]
