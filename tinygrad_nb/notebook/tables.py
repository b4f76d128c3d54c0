"""Tables for notebooks and terminals: HTML in a notebook (``_repr_html_``: selectable text, no wrapping), aligned
text everywhere else. The implementation lives in :mod:`tinygrad_nb.tables` (a leaf module, so ``track``,
``profiler`` and ``debug`` can use it without importing ``notebook``); this module re-exports it.
"""
from __future__ import annotations

from ..tables import CELL, NO_WRAP, Table, TextTable, cell_text, html_note, html_table, text_lines

__all__ = ["CELL", "NO_WRAP", "Table", "TextTable", "cell_text", "html_note", "html_table", "text_lines"]
