"""Records every injected fault and its outcome; writes the table in docs/reliability.md.

Each reliability test carries `@pytest.mark.fault("<class>", cases=k)` (`k`
defaults to 1; a parametrized test counts once per parameter). A case ends with
"nothing lost" when its test passes: each test asserts that the previous state
is intact and loadable, that a resumed run equals the uninterrupted one, or that
the error is the clear one expected.

At the end of a session that ran every reliability test (no `-k`/`-m`
selection, nothing deselected), the table between the `<!-- reliability-table -->`
markers of docs/reliability.md is rewritten from the recorded outcomes.
`pytest --collect-only` with `TFCRAFT_FAULT_COUNTS=<file>` writes the case
counts from the markers alone (what `test_table.py` compares the doc with).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: no sibling imports

from fault_table import HERE, count_cases, fault_of, render_table, write_table

_RESULTS: dict[str, list[bool]] = {}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fault(kind, cases=1): a reliability test injecting `cases` faults of `kind`"
    )


def _reliability_items(session) -> list:
    return [item for item in session.items if Path(str(item.fspath)).is_relative_to(HERE)]


def pytest_collection_finish(session):
    path = os.environ.get("TFCRAFT_FAULT_COUNTS")
    if path:
        Path(path).write_text(json.dumps(count_cases(_reliability_items(session))))


def pytest_runtest_logreport(report):
    # A case survives if setup, call and teardown all pass; a skip does not count.
    if report.when == "call" or report.outcome != "passed":
        _RESULTS.setdefault(report.nodeid, []).append(report.passed)


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if config.option.collectonly or config.option.keyword or config.option.markexpr:
        return
    items = [item for item in _reliability_items(session) if fault_of(item)]
    if not items or any(item.nodeid not in _RESULTS for item in items):
        return  # not a full run of tests/reliability (deselected, or stopped by -x)
    every_file = {p.name for p in HERE.glob("test_*.py")}
    if every_file - {Path(str(item.fspath)).name for item in _reliability_items(session)}:
        return
    survived: Counter = Counter()
    for item in items:
        kind, cases = fault_of(item)
        if all(_RESULTS[item.nodeid]):
            survived[kind] += cases
    write_table(render_table(count_cases(items), survived))
