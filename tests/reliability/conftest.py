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
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent
DOC = HERE.parents[1] / "docs" / "reliability.md"
BEGIN, END = "<!-- reliability-table -->", "<!-- /reliability-table -->"

# Rows of the table, in order, with the wording of the fault class.
FAULT_CLASSES = {
    "sigkill": "SIGKILL mid-run, then resume (Trainer, checkpoint writes, ensemble, PPO)",
    "nan": "NaN / Inf in training (poisoned batch, exploding lr, NaN inside the model)",
    "failed-write": "Failed writes (disk full, permission denied, read-only folder)",
    "corrupt": "Corrupt or malformed inputs (model, checkpoint, folders, YAML, CSV)",
    "concurrent": "Two processes on one run or checkpoint folder",
    "crafted": "Crafted model files and code in configs (safe mode, no pickle)",
    "fuzz": "Fuzzed arguments (hypothesis: shapes, dtypes, NaN, empty)",
}

_RESULTS: dict[str, list[bool]] = {}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fault(kind, cases=1): a reliability test injecting `cases` faults of `kind`"
    )


def fault_of(item) -> tuple[str, int] | None:
    """`(kind, cases)` of a test item's `fault` marker, or `None`."""
    marker = item.get_closest_marker("fault")
    if marker is None:
        return None
    kind = marker.args[0]
    if kind not in FAULT_CLASSES:
        raise ValueError(f"Unknown fault class {kind!r}; known: {sorted(FAULT_CLASSES)}")
    return kind, int(marker.kwargs.get("cases", 1))


def count_cases(items) -> Counter:
    """Cases injected per fault class, from the markers of `items`."""
    counts: Counter = Counter()
    for item in items:
        fault = fault_of(item)
        if fault is not None:
            counts[fault[0]] += fault[1]
    return counts


def render_table(cases: Counter, survived: Counter) -> str:
    """The Markdown table: fault class | cases injected | nothing lost."""
    lines = ["| Fault class | Cases injected | Nothing lost |", "|---|---:|---:|"]
    for kind, label in FAULT_CLASSES.items():
        lines.append(f"| {label} | {cases[kind]} | {survived[kind]} |")
    lines.append(f"| **Total** | **{sum(cases.values())}** | **{sum(survived.values())}** |")
    return "\n".join(lines)


def read_table(text: str) -> str:
    """The table between the markers of a document."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip()


def write_table(table: str) -> None:
    from tfcraft._io import write_text_atomic

    text = DOC.read_text() if DOC.exists() else f"{BEGIN}\n{END}\n"
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    write_text_atomic(DOC, f"{text[:start]}\n{table}\n{text[end:]}")


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
