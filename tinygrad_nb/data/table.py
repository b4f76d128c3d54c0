"""``Table``: the named columns ``read_csv`` returns, their types, and the way to tensors.

Column types:

* ``int``, ``float`` -- int64 / float64 arrays (or the numpy dtype asked for with ``dtypes=``);
* ``bool`` -- bool arrays (from ``true``/``false`` in any case);
* ``category`` -- int64 codes into ``table.vocabularies[name]``, the sorted list of the distinct strings, so the
  codes do not depend on row order and the vocabulary can be saved with a checkpoint;
* ``datetime`` -- datetime64 arrays (only when asked for with ``parse_dates=`` or ``dtypes=``);
* ``str`` -- the raw strings as an object array (only when asked for with ``dtypes={"col": "str"}``).
"""
from __future__ import annotations

import os

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..tensor import Tensor, tensor
from .errors import CSVError, CSVProblem, unknown_column

TYPES = ("int", "float", "bool", "category", "datetime", "str")
MAX_CLASSES = 20  # an int target with at most this many distinct values is taken as class labels


@dataclass(frozen=True)
class ColumnInfo:
    """One row of a table's schema."""

    name: str
    type: str
    dtype: str
    missing: int
    vocab_size: int | None


class Schema(Sequence[ColumnInfo]):
    """The schema view of a table: name, type, numpy dtype, missing-value count and vocabulary size per column."""

    def __init__(self, columns: list[ColumnInfo], rows: int, source: str):
        self.columns = columns
        self.rows = rows
        self.source = source

    def __len__(self) -> int:
        return len(self.columns)

    def __getitem__(self, index: Any) -> Any:
        return self.columns[index]

    def __repr__(self) -> str:
        header = ("column", "type", "dtype", "missing", "vocab")
        cells = [header] + [(c.name, c.type, c.dtype, str(c.missing), "" if c.vocab_size is None else str(c.vocab_size))
                            for c in self.columns]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells]
        # the file name only: a full path would make notebook outputs differ from machine to machine
        name = os.path.basename(self.source) or self.source
        return f"{self.rows} rows x {len(self.columns)} columns from {name}\n" + "\n".join(lines)


class Table:
    """Named columns of equal length (numpy arrays) with their types, as read from a CSV file.

    ``table["species"]`` is a column, ``table.schema`` prints the schema, ``table.to_tensors(target="species")``
    gives ``(X, y)`` tensors. ``vocabularies`` maps each category column to its list of strings (code i is
    ``vocabularies[name][i]``); ``missing`` counts the missing values each column had in the file.
    """

    def __init__(self, columns: dict[str, np.ndarray], types: dict[str, str],
                 vocabularies: dict[str, list[str]] | None = None, missing: dict[str, int] | None = None,
                 source: str = "<table>", target: str | None = None):
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"Table: columns have different lengths {sorted(lengths)}")
        for name in columns:
            if types.get(name) not in TYPES:
                raise ValueError(f"Table: column {name!r} has type {types.get(name)!r}; expected one of {TYPES}")
        self.columns = dict(columns)
        self.types = {name: types[name] for name in columns}
        self.vocabularies = {k: list(v) for k, v in (vocabularies or {}).items()}
        self.missing = {name: (missing or {}).get(name, 0) for name in columns}
        self.source = source
        self.target = target
        if target is not None:
            self._check_columns([target], "target column")

    # -- basic access -----------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.columns)

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise ColumnNotFoundError(unknown_column("column", name, self.names))
        return self.columns[name]

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    @property
    def schema(self) -> Schema:
        infos = [ColumnInfo(name, self.types[name], self.columns[name].dtype.name, self.missing[name],
                            len(self.vocabularies[name]) if name in self.vocabularies else None)
                 for name in self.columns]
        return Schema(infos, self.num_rows, self.source)

    def __repr__(self) -> str:
        return f"Table({self.schema!r})".replace("\n", "\n      ")

    def head(self, n: int = 5) -> str:
        """The first ``n`` rows as text, with category codes shown as their strings."""
        rows = [self.names] + [[self._cell(name, i) for name in self.columns] for i in range(min(n, self.num_rows))]
        widths = [max(len(r[j]) for r in rows) for j in range(len(self.columns))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def _cell(self, name: str, i: int) -> str:
        value = self.columns[name][i]
        text = self.vocabularies[name][int(value)] if name in self.vocabularies else str(value)
        return text.replace("\r", "\\r").replace("\n", "\\n")

    def take(self, indices: Any) -> Table:
        """A new table with the rows at ``indices`` (an int array or a bool mask), same types and vocabularies."""
        index = np.asarray(indices)
        return Table({k: v[index] for k, v in self.columns.items()}, self.types, self.vocabularies,
                     self.missing, self.source, self.target)

    # -- categories ---------------------------------------------------------------------------------------------
    def decode(self, name: str, codes: Any) -> list[str]:
        """The strings of a category column's ``codes`` (a list, array or tensor)."""
        vocabulary = self._vocabulary(name)
        return [vocabulary[int(c)] for c in np.asarray(codes).reshape(-1)]

    def encode(self, name: str, labels: Sequence[str]) -> np.ndarray:
        """The codes of ``labels`` in a category column (e.g. to encode new data like the training data)."""
        index = {v: i for i, v in enumerate(self._vocabulary(name))}
        unknown = [label for label in labels if label not in index]
        if unknown:
            raise KeyError(f"encode: {unknown[0]!r} is not in the vocabulary of column {name!r} "
                           f"({len(index)} values)")
        return np.array([index[label] for label in labels], dtype=np.int64)

    def _vocabulary(self, name: str) -> list[str]:
        self[name]  # raises the helpful error for a name that does not exist
        if name not in self.vocabularies:
            raise TypeError(f"column {name!r} is {self.types[name]}, not category; it has no vocabulary")
        return self.vocabularies[name]

    def state_dict(self) -> dict[str, Any]:
        """What a model trained on this table needs to encode new data, as plain JSON-able data."""
        return {"source": self.source, "target": self.target, "types": dict(self.types),
                "vocabularies": {k: list(v) for k, v in self.vocabularies.items()}}

    # -- to tensors ---------------------------------------------------------------------------------------------
    def task(self, target: str | None = None) -> str:
        """``"classification"`` for a category or bool target, or an int target with at most 20 distinct values;
        ``"regression"`` otherwise."""
        name = self._target(target)
        kind = self.types[name]
        if kind in ("category", "bool"):
            return "classification"
        if kind == "int" and len(np.unique(self.columns[name])) <= MAX_CLASSES:
            return "classification"
        if kind in ("int", "float"):
            return "regression"
        raise TypeError(f"target column {name!r} is {kind}; it cannot be predicted")

    def feature_names(self, target: str | None = None) -> list[str]:
        """The default features: every column except the target and the datetime and str columns."""
        name = self._target(target, required=False)
        return [c for c in self.columns if c != name and self.types[c] not in ("datetime", "str")]

    def to_tensors(self, target: str | None = None, features: Sequence[str] | None = None, one_hot: bool = False,
                   task: str | None = None, device: Any = None) -> tuple[Tensor, Tensor]:
        """``(X, y)``: X float32 of shape (rows, features), y the target column.

        y is int64 for classification (category codes, bool as 0/1, int labels as they are) and float32 for
        regression; ``task`` overrides :meth:`task`'s choice. ``features`` defaults to :meth:`feature_names`.
        Category features become their codes, or one 0/1 column per value with ``one_hot=True``; datetime features
        become days since 1970-01-01.
        """
        name = self._target(target)
        task = task or self.task(name)
        if task not in ("classification", "regression"):
            raise ValueError(f'to_tensors: task must be "classification" or "regression", got {task!r}')
        features = self.feature_names(name) if features is None else list(features)
        self._check_columns(features, "feature column")
        if name in features:
            raise ValueError(f"to_tensors: the target {name!r} is also listed as a feature")
        X = np.column_stack([self._feature_matrix(f, one_hot) for f in features]) if features else \
            np.zeros((self.num_rows, 0), dtype=np.float32)
        y = self.columns[name]
        if task == "classification":
            if self.types[name] == "float":
                raise TypeError(f"target column {name!r} is float; classification needs class labels "
                                "(pass task='regression' or read it with dtypes={...: 'category'})")
            y = y.astype(np.int64)
        else:
            if self.types[name] not in ("int", "float", "bool"):
                raise TypeError(f"target column {name!r} is {self.types[name]}; regression needs numbers")
            y = y.astype(np.float32)
        return tensor(X.astype(np.float32), device=device), tensor(y, device=device)

    def _feature_matrix(self, name: str, one_hot: bool) -> np.ndarray:
        column, kind = self.columns[name], self.types[name]
        if kind == "str":
            raise TypeError(f"feature column {name!r} holds raw strings (type str); it cannot be a feature")
        if kind == "category" and one_hot:
            return (column[:, None] == np.arange(len(self.vocabularies[name]))[None, :]).astype(np.float32)
        if kind == "datetime":
            return (column - np.datetime64("1970-01-01")) / np.timedelta64(1, "D")
        return column.astype(np.float32).reshape(-1, 1)

    def _target(self, target: str | None, required: bool = True) -> str | None:
        name = target if target is not None else self.target
        if name is None:
            if required:
                raise ValueError(f"no target column: pass target=... (columns: {', '.join(self.names)})")
            return None
        self._check_columns([name], "target column")
        return name

    def _check_columns(self, names: Sequence[str], kind: str) -> None:
        for name in names:
            if name not in self.columns:
                raise CSVError([CSVProblem(self.source, None, None, None, unknown_column(kind, name, self.names))])


class ColumnNotFoundError(KeyError):
    """``table[name]`` for a name that is not a column (the message suggests the closest one)."""

    def __str__(self) -> str:
        return str(self.args[0])
