"""Listing and comparing runs: ``track.runs()`` and ``track.compare(...)``."""
from __future__ import annotations

import csv
import io
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..io import atomic_write
from ..tables import Table, cell_text
from .store import RunRecord, RunStore

_LOWER_IS_BETTER = re.compile(r"loss|err|ppl|perplexity|mse|mae|rmse|nll|time|latency", re.IGNORECASE)
_RUN_FIELDS = ("project", "status", "name")


def _store(store: RunStore | str | os.PathLike[str] | None) -> RunStore:
    return store if isinstance(store, RunStore) else RunStore(store)


def runs(store: RunStore | str | os.PathLike[str] | None = None, limit: int | None = None,
         **filters: Any) -> list[RunRecord]:
    """Runs in the store, newest first. Filters: ``project=``, ``status=``, ``name=``, ``config={...}``, or any other
    keyword as a config value (``runs(lr=0.1)``)."""
    return _filtered(_store(store), filters, limit)


def _filtered(store: RunStore, filters: dict[str, Any], limit: int | None = None) -> list[RunRecord]:
    fields = {k: filters[k] for k in _RUN_FIELDS if k in filters}
    config = dict(filters.get("config") or {})
    config.update({k: v for k, v in filters.items() if k not in _RUN_FIELDS and k != "config"})
    return store.runs(config=config or None, limit=limit, **fields)


def best_direction(metric: str, best: dict[str, str] | None = None) -> str:
    """"min" for loss-like names (loss, error, perplexity, mse, ...), "max" otherwise, unless ``best`` says."""
    if best and metric in best:
        return best[metric]
    return "min" if _LOWER_IS_BETTER.search(metric) else "max"


@dataclass
class Comparison:
    """A comparison table: ``rows`` (one dict per run), ``columns``; ``str()`` renders it, ``to_csv`` saves it."""

    # What a replayed notebook cell cannot make again (see docs/cell_checkpoints.md, "Run-bound values")
    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {("rows", "*", "id"): "a random run id", ("rows", "*", "duration s"): "wall-clock time"}

    columns: list[str]
    rows: list[dict[str, Any]]
    config_keys: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return str(self.as_table())

    __repr__ = __str__

    def as_table(self) -> Table:
        """The same columns and rows as a :class:`~tinygrad_nb.tables.Table` (text and non-wrapping HTML)."""
        return Table(self.columns, self.rows)

    def _repr_html_(self) -> str:
        """In a notebook: an HTML table whose cells never wrap (a wide table scrolls sideways instead)."""
        return self.as_table()._repr_html_()

    def select(self, *columns: str) -> Comparison:
        """The same runs with only ``columns``, in that order (``table.select("name", "val_acc best")``)."""
        self._check_columns("select", columns)
        return Comparison(list(columns), self.rows, self.config_keys, self.metrics)

    def without(self, *columns: str) -> Comparison:
        """The same runs without ``columns`` (``table.without("id", "duration s")`` for a printout that stays the
        same from run to run)."""
        self._check_columns("without", columns)
        return self.select(*[c for c in self.columns if c not in columns])

    def _check_columns(self, method: str, columns: Sequence[str]) -> None:
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise KeyError(f"Comparison.{method}: no column {', '.join(map(repr, unknown))}; the columns are "
                           f"{', '.join(map(repr, self.columns))}")

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({c: row.get(c, "") for c in self.columns})
        atomic_write(path, buffer.getvalue())


_cell = cell_text  # the cell formatting shared with the sweep view and notebook tables


def compare(runs_or_filter: Sequence[str] | dict[str, Any] | None = None,
            store: RunStore | str | os.PathLike[str] | None = None, metrics: Sequence[str] | None = None,
            best: dict[str, str] | None = None, all_config: bool = False) -> Comparison:
    """Compare runs given by ids (or id prefixes / names) or by a filter dict (see :func:`runs`).

    Columns: id, name, status, the config keys whose values differ between the runs (all keys with
    ``all_config=True`` or a single run), then ``<metric> final`` and ``<metric> best`` for each metric (``best`` is
    the min for loss-like names and the max otherwise; override per metric with ``best={"acc": "max"}``).
    ``metrics`` picks metrics; by default every metric except the ``*/epoch_*`` aggregates.
    """
    st = _store(store)
    if runs_or_filter is None or isinstance(runs_or_filter, dict):
        records = _filtered(st, dict(runs_or_filter or {}))
    elif isinstance(runs_or_filter, str):
        records = st.resolve([runs_or_filter])
    else:
        records = st.resolve(list(runs_or_filter))
    keys = sorted({k for r in records for k in r.config})
    if not all_config and len(records) > 1:
        keys = [k for k in keys if len({repr(r.config.get(k)) for r in records}) > 1]
    summaries = {r.id: st.summary(r.id) for r in records}
    names = sorted({n for s in summaries.values() for n in s})
    if metrics is not None:
        names = list(metrics)
    else:
        names = [n for n in names if "/epoch_" not in n]
    columns = ["id", "name", "status", "duration s"] + [f"config.{k}" for k in keys]
    for n in names:
        columns += [f"{n} final", f"{n} best"]
    rows = []
    for r in records:
        duration = r.duration if r.duration is not None else \
            (time.time() - r.start_time if r.start_time is not None and r.status == "running" else None)
        row: dict[str, Any] = {"id": r.id, "name": r.name, "status": r.status,
                               "duration s": None if duration is None else round(duration, 2)}
        for k in keys:
            row[f"config.{k}"] = r.config.get(k)
        for n in names:
            s = summaries[r.id].get(n)
            if s is not None:
                row[f"{n} final"] = s["final"]
                row[f"{n} best"] = s[best_direction(n, best)]
        rows.append(row)
    return Comparison(columns, rows, keys, names)
