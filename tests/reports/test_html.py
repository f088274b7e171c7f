import json

from tfcraft.reports import build_report, plots
from tfcraft.reports.html import table


def test_report_embeds_every_plot_and_the_metrics_table(tmp_path):
    (tmp_path / "plots").mkdir()
    rows = [{"epoch": 0, "loss": 1.0, "val_loss": 1.2}, {"epoch": 1, "loss": 0.5, "val_loss": 0.7}]
    plots.learning_curves(rows, tmp_path / "plots")
    plots.reliability([0, 1, 1, 0], [0.1, 0.8, 0.6, 0.4], tmp_path / "plots")
    (tmp_path / "results.json").write_text(json.dumps({"title": "t", "metrics": {"rmse": 1.25}}))
    page = build_report(tmp_path).read_text()
    assert page.count('src="data:image/png;base64,') == 2
    assert "<td>rmse</td><td>1.25</td>" in page and "http" not in page


def test_table_escapes_html():
    assert "&lt;b&gt;" in table([{"name": "<b>"}])


def test_report_shows_summary_recipe_tables_and_non_finite_values(tmp_path):
    results = {
        "title": "tfcraft recipe: finance",
        "summary": "VaR <backtest>",
        "metrics": {"coverage": float("nan")},
        "tables": {"backtest": [{"model": "student_t", "violations": 3, "rate": 0.0125}]},
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    page = build_report(tmp_path).read_text()
    assert "<title>tfcraft recipe: finance</title>" in page
    assert "<p>VaR &lt;backtest&gt;</p>" in page  # escaped, never raw HTML
    assert (
        "<h2>backtest</h2><table>" in page and "<td>student_t</td><td>3</td><td>0.0125</td>" in page
    )
    assert "<td>coverage</td><td>n/a</td>" in page
    assert "<img" not in page  # no plots folder: no images, no broken links
