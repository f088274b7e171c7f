"""The Reliability table in docs/reliability.md (and README.md) agrees with the tests.

The case counts are recomputed from the reliability tests' `fault` markers by
collecting them in a fresh process (`pytest --collect-only`), independently of
the doc; the doc's "cases injected" must equal them, and its "nothing lost"
must equal its cases (the doc is rewritten from the outcomes of every full
run, so a failing fault test shows up there and here).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from fault_table import BEGIN, DOC, END, FAULT_CLASSES, read_table, render_table

HERE = Path(__file__).parent
README = HERE.parents[1] / "README.md"


def parse(table: str) -> dict[str, tuple[int, int]]:
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")]
        rows[cells[0]] = (int(cells[1]), int(cells[2]))
    return rows


@pytest.fixture(scope="module")
def marker_counts(tmp_path_factory):
    out = tmp_path_factory.mktemp("counts") / "counts.json"
    env = {**os.environ, "TFCRAFT_FAULT_COUNTS": str(out), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            str(HERE),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return Counter(json.loads(out.read_text()))


def test_doc_table_counts_the_injected_cases(marker_counts):
    rows = parse(read_table(DOC.read_text()))
    assert list(rows) == [*FAULT_CLASSES.values(), "Total"]
    for kind, label in FAULT_CLASSES.items():
        cases, survived = rows[label]
        assert cases == marker_counts[kind], (label, cases, marker_counts[kind])
        assert survived == cases, f"{label}: {survived} of {cases} cases lost nothing"
    assert rows["Total"] == (sum(marker_counts.values()),) * 2
    assert sum(marker_counts.values()) >= 60
    assert marker_counts["sigkill"] >= 10


def test_readme_copy_of_the_table_is_the_doc_table():
    text = README.read_text() if README.exists() else ""
    if BEGIN not in text:
        pytest.skip("README.md has no Reliability table yet (the lead merges docs/reliability.md)")
    assert read_table(text) == read_table(DOC.read_text())


def test_render_and_parse_round_trip():
    cases = Counter({"sigkill": 3, "nan": 2})
    table = render_table(cases, Counter({"sigkill": 3, "nan": 1}))
    rows = parse(table)
    assert rows[FAULT_CLASSES["nan"]] == (2, 1) and rows["Total"] == (5, 4)
    assert re.search(rf"{re.escape(BEGIN)}[\s\S]*{re.escape(END)}", DOC.read_text())
