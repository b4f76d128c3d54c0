"""Tables for notebooks and terminals: ``Table`` renders as HTML in a notebook (``_repr_html_``: selectable text, no
wrapping, a scroll bar rather than a wrapped last column when it is wider than the output) and as aligned text
everywhere else (``str``/``repr``: terminals, logs, nbval's ``text/plain``).

    Table(["op", "count"], [{"op": "MatMul", "count": 12}, {"op": "Add", "count": 40}], title="ops")
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

NO_WRAP = "white-space:nowrap"
CELL = f"text-align:left;padding:2px 10px;{NO_WRAP};font-variant-numeric:tabular-nums"


def cell_text(value: Any) -> str:
    """What a cell shows: ``-`` for None, floats to 5 significant digits (NaN and inf as such), the rest as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return str(value) if math.isnan(value) or math.isinf(value) else f"{value:.5g}"
    return str(value)


class Table:
    """``columns`` (names) and ``rows`` (dicts, or sequences in column order); ``title`` above the table."""

    def __init__(self, columns: Sequence[str], rows: Sequence[dict[str, Any] | Sequence[Any]], title: str = ""):
        self.columns = list(columns)
        self.rows = [row if isinstance(row, dict) else dict(zip(self.columns, row)) for row in rows]
        self.title = title

    def cells(self) -> list[list[str]]:
        return [[cell_text(row.get(c)) for c in self.columns] for row in self.rows]

    def __str__(self) -> str:
        table = [self.columns] + self.cells()
        widths = [max(len(r[i]) for r in table) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(([self.title] if self.title else []) + lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        """An HTML table that never wraps a cell; colours come from the page (JupyterLab's theme)."""
        head = "".join(f"<th style='{CELL}'>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td style='{CELL}'>{html.escape(v)}</td>" for v in row) + "</tr>"
                       for row in self.cells())
        title = f"<div style='font-weight:bold;margin-bottom:2px'>{html.escape(self.title)}</div>" if self.title else ""
        return (f"<div style='overflow-x:auto'>{title}<table style='border-collapse:collapse;{NO_WRAP}'>"
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
