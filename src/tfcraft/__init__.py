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

__all__ = [
    "__version__",
    "datasets",
    "distributions",
    "enable_determinism",
    "layers",
    "losses",
    "metrics",
]
