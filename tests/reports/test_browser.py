import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from tfcraft.reports import build_report, plots


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _flags(profile):
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",
    ]


@pytest.mark.timeout(180)
def test_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium installed (.ci/run installs Debian's `chromium` when missing)")
    run = tmp_path / "run"
    folder = run / "plots"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = [{"epoch": e, "loss": 1.0 / (e + 1), "kl": 0.1, "grad_norm": 1.0} for e in range(5)]
    y = rng.normal(size=40)
    made = [  # every kind of plot a report can hold
        plots.learning_curves(rows, folder),
        plots.reliability([0, 1, 1, 0, 1], [0.2, 0.7, 0.9, 0.4, 0.6], folder),
        plots.prediction_bands(y, y + 0.1, y - 1.0, y + 1.2, folder, 0.9),
        plots.interval_calibration([0.5, 0.9], [0.45, 0.92], folder),
        plots.detector_curves(np.r_[np.zeros(30), np.ones(10)], rng.normal(size=40), folder),
    ]
    (run / "results.json").write_text(json.dumps({"title": "browser", "metrics": {"rmse": 1.0}}))
    report = build_report(run)
    loaded = subprocess.run(
        [
            browser,
            *_flags(tmp_path / "p1"),
            "--enable-logging=stderr",  # console messages show up as `:CONSOLE` lines
            "--v=0",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = loaded.stdout
    console = [line for line in loaded.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # the page logs nothing: no errors, no warnings
    widths = re.search(r'data-image-widths="([^"]*)"', dom)
    assert widths is not None, dom[:500]
    assert [int(w) for w in widths.group(1).split(",")] and all(
        int(w) > 0 for w in widths.group(1).split(",")
    )
    assert len(widths.group(1).split(",")) == len(made) == 5
    assert "data-errors" not in dom  # no script error was recorded
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            *_flags(tmp_path / "p2"),
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
