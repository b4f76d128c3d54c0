"""Errors raised while reading CSV files: one structured record per problem, one exception for all of them.

Every message names the file and the physical line (1-based, the header is line 1), then the column and the raw
value, then what was expected::

    iris.csv:57: column "petal_width": "abc" is not a number (column inferred as float from rows 2-56)
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CSVProblem:
    """One problem found in a CSV file.

    ``line`` is the physical line number (None for problems with the whole file), ``column`` the column name and
    ``value`` the raw text (None when the problem is not about one value). ``message`` is the explanation without
    the location; ``str(problem)`` gives the full one-line report.
    """

    file: str
    line: int | None
    column: str | None
    value: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        column = "" if self.column is None else f"column {quote(self.column)}: "
        return f"{where}: {column}{self.message}"


class CSVError(ValueError):
    """A CSV file could not be read. ``problems`` lists every problem found (one unless ``errors="collect"``)."""

    def __init__(self, problems: Sequence[CSVProblem], truncated: bool = False):
        self.problems = list(problems)
        self.truncated = truncated
        super().__init__(self._format())

    def _format(self) -> str:
        if len(self.problems) == 1 and not self.truncated:
            return str(self.problems[0])
        count = f"{len(self.problems)}+" if self.truncated else str(len(self.problems))
        head = f"{self.problems[0].file}: {count} problems"
        if self.truncated:
            head += f" (showing the first {len(self.problems)}; raise max_errors to see more)"
        return "\n".join([head] + [f"  {p}" for p in self.problems])


class ProblemCollector:
    """Gathers the problems of one file.

    Each scan (the row scan, each column's scan) reports at most ``scan_limit`` problems: 1 for ``errors="raise"``
    (only the earliest problem of a scan can be the earliest of the file), ``max_errors + 1`` for
    ``errors="collect"``. :meth:`error` keeps the earliest ``cap`` of them in file order.
    """

    def __init__(self, file: str, errors: str, max_errors: int):
        if errors not in ("raise", "collect"):
            raise ValueError(f'read_csv: errors must be "raise" or "collect", got {errors!r}')
        if max_errors < 1:
            raise ValueError(f"read_csv: max_errors must be at least 1, got {max_errors}")
        self.file = file
        self.cap = 1 if errors == "raise" else max_errors
        # each scan looks for one more than it reports, so that "more problems exist" is known
        self.scan_limit = 1 if errors == "raise" else max_errors + 1
        self.problems: list[CSVProblem] = []

    def add(self, line: int | None, column: str | None, value: str | None, message: str) -> None:
        self.problems.append(CSVProblem(self.file, line, column, value, message))

    def __bool__(self) -> bool:
        return bool(self.problems)

    def error(self) -> CSVError:
        """The exception reporting the earliest ``cap`` problems in file order."""
        ordered = sorted(self.problems, key=lambda p: p.line if p.line is not None else 0)
        return CSVError(ordered[:self.cap], truncated=self.cap > 1 and len(ordered) > self.cap)


def fail(file: str, line: int | None, message: str, column: str | None = None, value: str | None = None) -> CSVError:
    """A CSVError with a single problem (for problems that stop reading at once, e.g. an empty file)."""
    return CSVError([CSVProblem(file, line, column, value, message)])


def quote(text: str, limit: int = 60) -> str:
    """``"text"`` as JSON writes it (so quotes and newlines inside are visible), shortened past ``limit`` chars."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return json.dumps(text, ensure_ascii=False)


COLUMNS_LISTED = 30  # a wide file's message names this many columns, not 100,000


def unknown_column(kind: str, name: str, available: Sequence[str]) -> str:
    """'target column "spcies" not found; did you mean "species"? (columns: a, b, species)'."""
    message = f"{kind} {quote(name)} not found"
    close = difflib.get_close_matches(name, list(available), n=1, cutoff=0.6)
    if not close:
        close = [c for c in available if c.lower() == name.lower()]
    if close:
        message += f"; did you mean {quote(close[0])}?"
    shown = ", ".join(available[:COLUMNS_LISTED])
    more = f", ... ({len(available) - COLUMNS_LISTED} more)" if len(available) > COLUMNS_LISTED else ""
    return message + f" (columns: {shown}{more})"
