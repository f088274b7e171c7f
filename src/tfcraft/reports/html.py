"""`report.html`: one self-contained page (images as data URIs, no network, no script deps).

Example:

>>> page = page_html("run", [("Metrics", table([{"metric": "rmse", "value": 1.5}]))], [])
>>> page.startswith("<!DOCTYPE html>") and "http" not in page
True
"""

from __future__ import annotations

import base64
import html as html_lib
import json
import math
from pathlib import Path

from tfcraft._io import write_text_atomic

__all__ = ["build_report", "page_html", "table"]

_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;"
    "text-align:right}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}"
    ".row{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}"
    "figure{display:inline-block;vertical-align:top;margin:0 1em 1em 0}"
)

# Plots a reader looks at first; any other plot (recipe figures, ...) follows by name.
_PLOT_ORDER = (
    "learning_curves",
    "prediction_vs_truth",
    "interval_calibration",
    "reliability",
    "detector_curves",
)


# Inline, no network: records script errors and each image's natural size in DOM
# attributes, which the browser test reads back from Chromium's `--dump-dom`.
_CHECK_SCRIPT = (
    "window.addEventListener('error',function(e){document.body.dataset.errors="
    "(document.body.dataset.errors||'')+e.message+';'});"
    "window.addEventListener('load',function(){document.body.dataset.imageWidths="
    "Array.from(document.images).map(function(i){return i.naturalWidth}).join(',')});"
)


def _cell(value) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    return html_lib.escape(str(value))


def table(rows: list[dict]) -> str:
    """An HTML table of rows (dicts with the same keys)."""
    if not rows:
        return "<p>(empty)</p>"
    keys = list(rows[0])
    head = "".join(f"<th>{html_lib.escape(str(k))}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(k, ''))}</td>" for k in keys) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html_lib.escape(Path(path).stem.replace("_", " "))
    image = f'<img alt="{alt}" src="data:image/png;base64,{data}">'
    return f"<figure>{image}<figcaption>{alt}</figcaption></figure>"


def page_html(title: str, sections: list[tuple[str, str]], images: list[Path]) -> str:
    """The whole page: title, sections of HTML, then every image embedded."""
    parts = [f"<h2>{html_lib.escape(name)}</h2>{content}" for name, content in sections]
    figures = "".join(_image(path) for path in images)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html_lib.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html_lib.escape(title)}</h1>{''.join(parts)}<h2>Plots</h2>{figures}"
        f"<script>{_CHECK_SCRIPT}</script></body></html>"
    )


def build_report(run_path: str | Path) -> Path:
    """Write `report.html` of a run directory from its files; returns its path.

    Reads `results.json` (`title`, `summary`, `metrics`, `tables`), `metrics.jsonl`
    and every `plots/*.png` (made by the command that ran, or by `make_plots`).
    """
    run_path = Path(run_path)
    results = json.loads((run_path / "results.json").read_text(encoding="utf-8"))
    sections = []
    if results.get("summary"):
        sections.append(("Summary", f"<p>{html_lib.escape(results['summary'])}</p>"))
    metrics = results.get("metrics", {})
    if metrics:
        # Held-out numbers first, the last training epoch's beside them.
        groups = {"test / evaluation": {}, "last training epoch": {}}
        for key, value in metrics.items():
            groups["last training epoch" if key.startswith("final_") else "test / evaluation"][
                key
            ] = value
        tables = "".join(
            f"<div><h3>{name}</h3>{table([{'metric': k, 'value': v} for k, v in rows.items()])}"
            "</div>"
            for name, rows in groups.items()
            if rows
        )
        sections.append(("Final metrics", f"<div class='row'>{tables}</div>"))
    for name, rows in results.get("tables", {}).items():
        sections.append((name, table(rows)))
    images = sorted((run_path / "plots").glob("*.png")) if (run_path / "plots").is_dir() else []
    images.sort(key=lambda p: (_PLOT_ORDER.index(p.stem) if p.stem in _PLOT_ORDER else 99, p.name))
    page = page_html(results.get("title", run_path.name), sections, images)
    write_text_atomic(run_path / "report.html", page)
    return run_path / "report.html"
