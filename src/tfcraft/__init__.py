"""tfcraft: custom models and custom training on TensorFlow 2.21 / Keras 3.

Example:

>>> import tfcraft
>>> isinstance(tfcraft.__version__, str)
True
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from tfcraft import datasets, distributions, layers, losses, metrics
from tfcraft._determinism import enable_determinism

_LAZY = ("anomaly", "bayes", "recipes", "rl", "training")


def __getattr__(name: str):
    # Applications import gymnasium, scikit-learn estimators, ...: load them on first use.
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"tfcraft.{name}")
    raise AttributeError(f"module 'tfcraft' has no attribute {name!r}")


__all__ = [
    "__version__",
    "datasets",
    "distributions",
    "enable_determinism",
    "layers",
    "losses",
    "metrics",
]
