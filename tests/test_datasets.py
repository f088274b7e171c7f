import numpy as np
import pytest

from tfcraft import datasets


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("diabetes", (442, 10)),
        ("concrete", (1030, 8)),
        ("power_plant", (9568, 4)),
        ("wine_red", (1599, 11)),
    ],
)
def test_regression_sets_have_published_shapes(name, shape):
    X, y = datasets.load_regression(name)
    assert X.shape == shape
    assert y.shape == (shape[0],)
    assert X.dtype == np.float32 and y.dtype == np.float32
    assert np.isfinite(X).all() and np.isfinite(y).all()


def test_concrete_target_is_compressive_strength_in_mpa():
    _, y = datasets.load_regression("concrete")
    # UCI concrete: strength ranges from about 2.3 to 82.6 MPa, mean about 35.8.
    assert 2.0 < y.min() < 3.0 and 82.0 < y.max() < 83.0
    assert abs(y.mean() - 35.8) < 0.2


def test_digits_scaled_to_unit_interval():
    X, y = datasets.load_classification("digits")
    assert X.shape == (1797, 64) and X.max() == 1.0 and X.min() == 0.0
    assert set(np.unique(y)) == set(range(10))


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"Received: name='boston'"):
        datasets.load_regression("boston")
    with pytest.raises(ValueError, match=r"digits"):
        datasets.load_classification("mnist")


def test_load_arrays_csv_and_npz_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    csv = tmp_path / "data.csv"
    header = "a,b,target,c"
    table = np.column_stack([X[:, :2], y, X[:, 2]])
    np.savetxt(csv, table, delimiter=",", header=header, comments="")
    X_loaded, y_loaded = datasets.load_arrays(csv, target="target")
    np.testing.assert_allclose(X_loaded, X.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(y_loaded, y.astype(np.float32), rtol=1e-6)

    npz = tmp_path / "data.npz"
    np.savez(npz, x=X, y=y)
    X_loaded, y_loaded = datasets.load_arrays(npz)
    np.testing.assert_allclose(X_loaded, X.astype(np.float32))


def test_load_arrays_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        datasets.load_arrays(tmp_path / "missing.csv")
    bad = tmp_path / "data.txt"
    bad.write_text("1,2\n")
    with pytest.raises(ValueError, match=r"'.csv' or '.npz'"):
        datasets.load_arrays(bad)
    text = tmp_path / "text.csv"
    text.write_text("a,b\nx,1\ny,2\n")
    with pytest.raises(ValueError, match=r"not numeric"):
        datasets.load_arrays(text)
    npz = tmp_path / "d.npz"
    np.savez(npz, features=np.zeros(3))
    with pytest.raises(ValueError, match=r"'x' and 'y'"):
        datasets.load_arrays(npz)
    with pytest.raises(ValueError, match=r"Received: target='nope'"):
        datasets.load_arrays(tmp_path / "text.csv", target="nope")


def test_split_indices_are_disjoint_and_seeded():
    train, test = datasets.train_test_split_indices(100, 0.1, seed=3)
    assert len(test) == 10 and not set(train) & set(test)
    again, _ = datasets.train_test_split_indices(100, 0.1, seed=3)
    np.testing.assert_array_equal(train, again)
