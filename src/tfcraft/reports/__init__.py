"""Reports of a run: matplotlib (Agg) plots and one self-contained `report.html`.

Example:

>>> from tfcraft.reports import html
>>> "<table>" in html.table([{"metric": "loss", "value": 0.5}])
True
"""

from tfcraft.reports import html, plots
from tfcraft.reports.html import build_report

__all__ = ["build_report", "html", "plots"]
