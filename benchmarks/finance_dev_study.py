"""Development study for the finance recipe's adaptive VaR level on S&P 500 pre-benchmark days.

The benchmark evaluates 2002-12-02 .. 2018-12-07; this study evaluates 1990-01-02 ..
2002-11-29 only (same protocol: refit every 20 days on the previous 1,000 returns),
for the Student-t model at adaptation rates None (fixed level), 0.001, 0.002, 0.005
(the current default), beside historical simulation and GARCH(1,1)-t. Writes
benchmarks/results/finance_dev_study.md.

Run: /tmp/light .venv/bin/python benchmarks/finance_dev_study.py
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from _common import RESULTS_DIR, machine_summary, markdown_table, write_text_atomic
from finance import LEVELS, REFIT, WINDOW, garch_t

from tfcraft import datasets
from tfcraft.recipes import finance
from tfcraft.recipes.backtest import backtest

RATES = (None, 0.001, 0.002, 0.005)


def main(argv):
    started = time.perf_counter()
    dates, sp = datasets.load_sp500()
    start = int(np.searchsorted(dates, np.datetime64("1990-01-01")))
    stop = int(np.searchsorted(dates, np.datetime64("2002-12-02")))
    forecasts = {}
    for rate in RATES:
        out = finance.walk_forward(
            sp, start, stop, window=WINDOW, refit_every=REFIT, seed=0, adaptation_rate=rate
        )
        forecasts[f"tfcraft student_t, rate {rate}"] = (out["var"], out["es"])
        print(rate, f"{time.perf_counter() - started:.0f} s", flush=True)
    forecasts["historical simulation"] = finance.historical_simulation(sp, start, stop)
    forecasts["GARCH(1,1)-t (arch)"] = garch_t(sp, start, stop)
    rows = []
    for model, (var, es) in forecasts.items():
        for column, level in enumerate(LEVELS):
            r = backtest(sp[start:stop], var[:, column], es[:, column], level)
            rows.append(
                [model, f"{level:.0%}"]
                + [f"{r[k]:.4g}" for k in ("rate", "kupiec_p", "christoffersen_p")]
                + [f"{r['pinball']:.4f}", f"{r['fz0']:.4f}"]
            )
    text = "\n".join(
        [
            "# Finance development study: S&P 500 before the benchmark days",
            "",
            f"Command: `/tmp/light .venv/bin/python benchmarks/finance_dev_study.py`. "
            f"{machine_summary()}. {time.perf_counter() - started:.0f} s.",
            f"Evaluated {dates[start]} .. {dates[stop - 1]} ({stop - start} days).",
            "",
            markdown_table(
                ["model", "level", "rate", "Kupiec p", "Christ. cc p", "pinball", "FZ0"], rows
            ),
            "",
        ]
    )
    write_text_atomic(RESULTS_DIR / "finance_dev_study.md", text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
