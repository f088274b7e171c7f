import numpy as np
import pytest

from tfcraft import datasets


@pytest.mark.parametrize(
    ("name", "shape", "positives"),
    [("wdbc", (569, 30), 212), ("pima", (768, 8), 268), ("cleveland", (297, 13), 137)],
)
def test_clinical_sets(name, shape, positives):
    X, y, names = datasets.load_clinical(name)
    assert X.shape == shape and X.dtype == np.float32 and y.dtype == np.int32
    assert int(y.sum()) == positives and set(np.unique(y)) == {0, 1}
    assert len(names) == shape[1] and np.all(np.isfinite(X))


def test_wdbc_labels_malignant_as_one():
    from sklearn.datasets import load_breast_cancer

    _, y, _ = datasets.load_clinical("wdbc")
    bunch = load_breast_cancer()
    assert list(bunch.target_names) == ["malignant", "benign"]
    np.testing.assert_array_equal(y, bunch.target == 0)


def test_cleveland_first_rows():
    X, y, names = datasets.load_clinical("cleveland")
    assert X[0, :3].tolist() == [63.0, 1.0, 1.0] and y[:2].tolist() == [0, 1]
    assert names[-1] == "Thal"


def test_sp500_returns():
    dates, returns = datasets.load_sp500()
    assert returns.shape == (17345,)
    # 1950-01-04: 16.85 after 16.66.
    assert returns[0] == pytest.approx(100 * np.log(16.85 / 16.66))
    start = np.searchsorted(dates, np.datetime64("2002-12-02"))
    stop = np.searchsorted(dates, np.datetime64("2018-12-08"))
    assert stop - start == 4033
    assert returns.min() == pytest.approx(-22.9, abs=0.1)  # 1987-10-19


def test_sp500_stocks():
    dates, returns, tickers = datasets.load_sp500_stocks()
    assert returns.shape == (1257, 10) and tickers == list(datasets.SP500_TICKERS)
    assert str(dates[0]) == "2013-02-11"
    assert returns[0, 0] == pytest.approx(1.042235)


def test_unknown_names():
    with pytest.raises(ValueError, match=r"Received: name='heart'"):
        datasets.load_clinical("heart")
    with pytest.raises(ValueError, match=r"Received: tickers='GOOG'"):
        datasets.load_sp500_stocks(["KO", "GOOG"])
