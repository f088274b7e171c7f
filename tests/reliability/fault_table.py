"""The Reliability table: fault classes, case counts from markers, rendering, the doc.

Shared by `conftest.py` (which records outcomes and writes the table) and
`test_table.py` (which checks the doc against the markers).
"""

from __future__ import annotations

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
