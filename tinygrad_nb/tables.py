"""Tables that read well in a notebook and in a terminal: HTML that never wraps a cell (``_repr_html_``: selectable
text, a scroll bar rather than a wrapped last column when it is wider than the output) and aligned text everywhere else
(``str``/``repr``: terminals, logs, the CLI, nbval's ``text/plain``).

This module is a leaf (standard library only), so ``track``, ``profiler`` and ``debug`` can give their tables an HTML
form without importing ``notebook`` (DESIGN.md's dependency direction); ``tinygrad_nb.notebook.tables`` re-exports it.

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


def text_lines(rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None, rule: bool = True) -> list[str]:
    """``rows`` (the first is the header) as aligned text lines, columns two spaces apart; ``right[i]`` right-aligns
    column ``i`` (numbers); ``rule`` puts a line of dashes under the header. Trailing spaces are stripped."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = list(right) if right is not None else [False] * len(widths)
    lines = ["  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)).rstrip() for row in rows]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def html_table(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str = "",
               right: Sequence[bool] | None = None) -> str:
    """An HTML table of already formatted cells that never wraps a cell; text is escaped, colours come from the page
    (JupyterLab's theme), and a table wider than the output scrolls sideways instead of wrapping."""
    right = list(right) if right is not None else [False] * len(columns)

    def style(i: int) -> str:
        return CELL.replace("text-align:left", "text-align:right") if right[i] else CELL

    head = "".join(f"<th style='{style(i)}'>{html.escape(c)}</th>" for i, c in enumerate(columns))
    body = "".join("<tr>" + "".join(f"<td style='{style(i)}'>{html.escape(v)}</td>" for i, v in enumerate(row))
                   + "</tr>" for row in rows)
    title_html = (f"<div style='font-weight:bold;margin-bottom:2px'>{html.escape(title)}</div>" if title else "")
    return (f"<div style='overflow-x:auto'>{title_html}<table style='border-collapse:collapse;{NO_WRAP}'>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def html_note(text: str) -> str:
    """A line of text under a table (totals, footnotes), escaped and not wrapped."""
    return f"<div style='{NO_WRAP};margin:2px 0 6px 0'>{html.escape(text)}</div>"


class Table:
    """``columns`` (names) and ``rows`` (dicts, or sequences in column order); ``title`` above the table; ``right``
    names the columns to right-align (numbers), the rest are left-aligned."""

    def __init__(self, columns: Sequence[str], rows: Sequence[dict[str, Any] | Sequence[Any]], title: str = "",
                 right: Sequence[str] = ()):
        self.columns = list(columns)
        self.rows = [row if isinstance(row, dict) else dict(zip(self.columns, row)) for row in rows]
        self.title = title
        unknown = [c for c in right if c not in self.columns]
        if unknown:
            raise KeyError(f"Table: right-aligned column {', '.join(map(repr, unknown))} is not one of the columns "
                           f"{', '.join(map(repr, self.columns))}")
        self.right = [c in set(right) for c in self.columns]

    def cells(self) -> list[list[str]]:
        return [[cell_text(row.get(c)) for c in self.columns] for row in self.rows]

    def __str__(self) -> str:
        lines = text_lines([self.columns] + self.cells(), self.right)
        return "\n".join(([self.title] if self.title else []) + lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        """An HTML table that never wraps a cell; colours come from the page (JupyterLab's theme)."""
        return html_table(self.columns, self.cells(), self.title, self.right)


class TextTable(str):
    """A text table that is still a ``str`` (for code that prints, compares or searches it) and shows as a
    non-wrapping HTML table when it is a cell's value in a notebook. Its ``repr`` is the text itself, so the
    ``text/plain`` form is the aligned table rather than a quoted string with ``\\n`` escapes."""

    _html: str

    def __new__(cls, text: str, html_form: str) -> TextTable:
        self = super().__new__(cls, text)
        self._html = html_form
        return self

    def __repr__(self) -> str:
        return str.__str__(self)

    def __reduce__(self) -> tuple[Any, ...]:  # pickle/copy (cell checkpoints) keep both forms
        return (TextTable, (str.__str__(self), self._html))

    def _repr_html_(self) -> str:
        return self._html
