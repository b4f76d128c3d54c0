"""``read_csv``: a CSV file to a :class:`Table`, with types inferred per column and errors that say where.

Two paths read the rows. The fast path (:mod:`.fastparse`) takes plain numeric files (no quotes, no text) and parses
them with vectorized numpy, or, when pyarrow is installed, with ``pyarrow.csv`` first (:mod:`.arrowparse`, the same
results). Everything else, and every file the fast path gives up on, goes through the careful path:
Python's ``csv`` module record by record, keeping the physical line on which each record starts, so every problem
can be reported as ``file:line: column "name": "value" ...``.

Type inference looks at each column's values in file order, skipping missing ones:

* if the first value is a number, the column is numeric: ``int`` while every value is written as an integer (and fits
  int64), else ``float``. A later value that is not a number is an error (malformed data), reported with the rows the
  type was inferred from: ``"abc" is not a number (column inferred as float from rows 2-56)``;
* else if it is ``true``/``false`` (any case), the column is ``bool``, and later non-booleans are errors;
* else, with ``parse_dates``, if it looks like an ISO date (``2024-01-31``, ``2024-01-31 12:00:05``) the column is
  ``datetime``, and later non-dates are errors;
* otherwise the column is ``category``: the distinct strings, sorted, are the vocabulary and the values their codes.

``dtypes={"col": ...}`` skips inference for a column ("int", "float", "bool", "category", "datetime", "str", or a
numpy dtype such as ``np.float32``). Missing values (``na_values``, compared after stripping spaces) are handled per
column by ``missing``: ``"error"`` (the default), ``"drop_row"``, ``"mean"`` or ``("fill", value)``.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import fastparse
from .errors import CSVError, CSVProblem, ProblemCollector, fail, quote, unknown_column
from .registry import record_file
from .table import Table

DEFAULT_NA_VALUES = ("", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None")
SNIFF_DELIMITERS = (",", "\t", ";", "|")
BOM = b"\xef\xbb\xbf"
ASCII_COMPATIBLE = {"utf-8", "ascii", "iso8859-1", "cp1252"}

# (the number regexes never backtrack, so matching is linear in the text: see fastparse.UNSIGNED_NUMBER)
NUMBER = re.compile(rf"[+-]?+(?:{fastparse.UNSIGNED_NUMBER}|{fastparse.SPECIAL_NUMBER})", re.IGNORECASE)
PLAIN_NUMBER = re.compile(rf"[+-]?+{fastparse.UNSIGNED_NUMBER}")  # what fastparse reads directly
NUMBER_CHARS = re.compile(r"[^0-9eE+\-.\sinfINFtyTYaA]")  # a character that can never be part of a number
FLOAT_CHARS = re.compile(r"[.eEnNiI]")  # a number without these is written as an integer
INTEGER = re.compile(r"[+-]?+\d++")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?")
BOOL_WORDS = {"true": True, "false": False}
BOOL_WORDS_DECLARED = {**BOOL_WORDS, "1": True, "0": False, "yes": True, "no": False, "t": True, "f": False,
                       "y": True, "n": False}

Policy = Any  # "error" | "drop_row" | "mean" | ("fill", value)


def read_csv(path: str | os.PathLike[str] | Any, target: str | None = None,
             dtypes: Mapping[str, Any] | None = None, na_values: Iterable[str] = DEFAULT_NA_VALUES,
             missing: Policy | Mapping[str, Policy] = "error", fill: Any = None, delimiter: str | None = None,
             header: bool = True, parse_dates: bool | Sequence[str] = False, errors: str = "raise",
             max_errors: int = 20, encoding: str = "utf-8") -> Table:
    """Read a CSV file into a :class:`Table` (see the module docstring for how types are inferred).

    Args:
        path: a file path (recorded in :func:`files_read` for run fingerprints) or an open file object.
        target: the column to predict; checked now, and the default for ``Table.to_tensors``.
        dtypes: column name -> type, overriding inference.
        na_values: strings that mean "missing" (compared after stripping surrounding spaces).
        missing: what to do with missing values: one policy for all columns or a dict column -> policy
            (columns not in the dict use "error").
        fill: shorthand for ``missing=("fill", fill)``; a dict gives a fill value per column.
        delimiter: the field separator; sniffed from the first lines among ``, \\t ; |`` when None.
        header: whether the first line holds the column names (else they are column_1, column_2, ...).
        parse_dates: True to infer datetime columns, or the names of the columns to parse as dates.
        errors: "raise" stops at the first problem; "collect" reports all of them (up to ``max_errors``) together.
        encoding: the text encoding (a UTF-8 byte-order mark is always skipped).

    Raises:
        CSVError: naming file, line, column and value of each problem (``.problems`` holds them as records).
    """
    name, raw = _read_source(path)
    collector = ProblemCollector(name, errors, max_errors)
    data = raw.removeprefix(BOM)
    if not data or data.isspace():
        raise fail(name, None, "the file is empty")
    encoding = codecs.lookup(encoding).name
    head = data[:1 << 16].decode(encoding, errors="replace")
    if delimiter is None:
        delimiter = sniff_delimiter(head if len(data) <= 1 << 16 else head[:head.rfind("\n") + 1] or head)
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"read_csv: delimiter must be a single character, got {delimiter!r}")
    na = frozenset(v.strip() for v in na_values)
    options = _Options(name, target, dict(dtypes or {}), na, missing, fill, parse_dates, collector)

    with _csv_fields_up_to(len(data)):  # a field may be as long as the file
        block = None
        if _fast_path_allowed(options, encoding, head):
            block = _read_fast(data, delimiter, header, encoding, options)
        if block is None:
            block = _read_careful(data, delimiter, header, encoding, options)
    return _finish(block, options)


# -- shared pieces ---------------------------------------------------------------------------------------------------
@dataclass
class _Options:
    file: str
    target: str | None
    dtypes: dict[str, Any]
    na: frozenset[str]
    missing: Any
    fill: Any
    parse_dates: bool | Sequence[str]
    collector: ProblemCollector


@dataclass
class _Column:
    """A converted column before the missing-value policies: values at missing rows are placeholders."""

    kind: str
    data: np.ndarray
    missing: np.ndarray | None  # bool mask, or None when nothing is missing
    raw_missing: Callable[[int], str]  # the text of the missing value in row i
    vocabulary: list[str] | None = None


@dataclass
class _Block:
    """What one reading path produced: column names, converted columns, and each row's physical line."""

    names: list[str]
    columns: dict[str, _Column]
    line_of: Callable[[int], int]
    header_line: int | None


def _read_source(path: Any) -> tuple[str, bytes]:
    """The display name and the full bytes of a path or an open file; real files go into the registry."""
    if hasattr(path, "read"):
        content = path.read()
        if isinstance(content, str):
            content = content.encode("utf-8")
        return str(getattr(path, "name", "<stream>")), content
    name = os.fspath(path)
    stat = os.stat(name)
    with open(name, "rb") as f:
        content = f.read()
    record_file(name, content, stat)
    return name, content


_field_limit_lock = threading.Lock()
_field_limit_users = 0  # read_csv calls in _csv_fields_up_to now
_field_limit_saved = 0  # the limit before the first of them


@contextlib.contextmanager
def _csv_fields_up_to(length: int) -> Iterator[None]:
    """Let the ``csv`` module read fields of up to ``length`` characters inside the block.

    Its limit (``csv.field_size_limit()``, 131,072 by default) is one setting for the whole process, so it is raised
    (never lowered) while any ``read_csv`` runs and put back when the last one ends. A file cannot hold a field
    longer than itself, so no field of a file read whole is refused: a long text field is read like any other, and a
    quote that is never closed is reported as that, at the line where it opens.
    """
    global _field_limit_users, _field_limit_saved
    with _field_limit_lock:
        if _field_limit_users == 0:
            _field_limit_saved = csv.field_size_limit()
        _field_limit_users += 1
        csv.field_size_limit(max(csv.field_size_limit(), min(length + 1, 2 ** 31 - 1)))  # (a C long may be 32 bits)
    try:
        yield
    finally:
        with _field_limit_lock:
            _field_limit_users -= 1
            if _field_limit_users == 0:
                csv.field_size_limit(_field_limit_saved)


def sniff_delimiter(sample: str) -> str:
    """The delimiter among ``, \\t ; |`` that splits the sample's first lines into the same number (> 1) of
    fields; the most fields wins, ties go in that order. ``,`` when nothing fits."""
    lines = sample.splitlines(keepends=True)[:30]
    best, best_fields = ",", 1
    for candidate in SNIFF_DELIMITERS:
        rows = [r for r in csv.reader(lines, delimiter=candidate) if r]
        counts = {len(r) for r in rows}
        if len(counts) == 1 and (fields := counts.pop()) > best_fields:
            best, best_fields = candidate, fields
    if best_fields == 1:  # nothing consistent: take the delimiter that splits the header most
        first = next((r for r in csv.reader(lines[:1], delimiter=",") if r), None)
        for candidate in SNIFF_DELIMITERS:
            fields = len(next(csv.reader(lines[:1], delimiter=candidate), [""]))
            if first is not None and fields > best_fields:
                best, best_fields = candidate, fields
    return best


def _declared(options: _Options, name: str) -> tuple[str, np.dtype | None] | None:
    """The type asked for a column with ``dtypes`` or ``parse_dates``: (kind, numpy dtype or None), or None."""
    if name in options.dtypes:
        return normalize_dtype(options.dtypes[name], name)
    if not isinstance(options.parse_dates, bool) and name in options.parse_dates:
        return "datetime", None
    return None


def normalize_dtype(spec: Any, name: str = "?") -> tuple[str, np.dtype | None]:
    """``"float"``, ``float``, ``np.float32``, ``"category"``... -> (kind, numpy dtype or None)."""
    if isinstance(spec, str) and spec in ("int", "float", "bool", "category", "datetime", "str"):
        return spec, {"int": np.dtype(np.int64), "float": np.dtype(np.float64), "bool": np.dtype(bool)}.get(spec)
    if spec is str:
        return "str", None
    try:
        dtype = np.dtype(spec)
    except TypeError:
        raise ValueError(f"dtypes: column {name!r}: unknown type {spec!r}; use 'int', 'float', 'bool', 'category', "
                         "'datetime', 'str' or a numpy dtype") from None
    kinds = {"i": "int", "u": "int", "f": "float", "b": "bool", "M": "datetime", "U": "str", "S": "str", "O": "str"}
    if dtype.kind not in kinds:
        raise ValueError(f"dtypes: column {name!r}: unsupported dtype {dtype}")
    return kinds[dtype.kind], dtype if dtype.kind in "iufb" else None


def _check_names(names: list[str], header_line: int | None, options: _Options) -> None:
    """Every column named in the arguments must exist (the message suggests the closest name)."""
    wanted: list[tuple[str, str]] = []
    if options.target is not None:
        wanted.append(("target column", options.target))
    wanted += [("dtypes column", c) for c in options.dtypes]
    if not isinstance(options.parse_dates, bool):
        wanted += [("parse_dates column", c) for c in options.parse_dates]
    for argument, value in (("missing", options.missing), ("fill", options.fill)):
        if isinstance(value, Mapping):
            wanted += [(f"{argument} column", c) for c in value]
    for kind, column in wanted:
        if column not in names:
            raise CSVError([CSVProblem(options.file, header_line, None, None, unknown_column(kind, column, names))])


def _unique_names(fields: list[str]) -> tuple[list[str], list[tuple[int, str, str]]]:
    """Header fields as names, and the renamed ones as (field number, name in the header, new name).

    Empty fields become column_<n>; a repeated name gets the first suffix ``_2``, ``_3``, ... that makes a name
    neither taken by an earlier field nor written in the header. Linear in the number of fields: the names are kept
    in sets, and each repeated name remembers the next suffix to try (a suffix found taken stays taken, since names
    are only ever added), so over the whole header every name is passed over at most once.
    """
    wanted = [field.strip() or f"column_{i}" for i, field in enumerate(fields, start=1)]
    in_header = set(wanted)
    taken: set[str] = set()
    next_suffix: dict[str, int] = {}
    names: list[str] = []
    renamed: list[tuple[int, str, str]] = []  # (field number, name in the header, new name)
    for i, name in enumerate(wanted, start=1):
        if name in taken:
            k = next_suffix.get(name, 2)
            while f"{name}_{k}" in taken or f"{name}_{k}" in in_header:
                k += 1
            next_suffix[name] = k + 1
            renamed.append((i, name, f"{name}_{k}"))
            name = f"{name}_{k}"
        taken.add(name)
        names.append(name)
    return names, renamed


def _warn_renamed(file: str, renamed: list[tuple[int, str, str]]) -> None:
    """One warning for all the renamed header fields, naming the first (a header of 20,000 "a" gives one line)."""
    if renamed:
        i, name, new = renamed[0]
        more = f" ({len(renamed) - 1} more repeated names get suffixes the same way)" if len(renamed) > 1 else ""
        warnings.warn(f"{file}: column name {quote(name)} appears more than once; field {i} is called {quote(new)}"
                      f"{more}", stacklevel=4)  # (the caller of read_csv)


# -- the fast path ------------------------------------------------------------------------------------------------
def _fast_path_allowed(options: _Options, encoding: str, head: str) -> bool:
    if encoding not in ASCII_COMPATIBLE or options.parse_dates is True:
        return False
    if not isinstance(options.parse_dates, bool) and options.parse_dates:
        return False
    if any(normalize_dtype(spec, col)[0] not in ("int", "float") for col, spec in options.dtypes.items()):
        return False
    # a number meaning "missing" (-999) needs the careful path; fastparse checks na_values only for other text
    return not any(PLAIN_NUMBER.fullmatch(v) for v in options.na)


def _read_fast(data: bytes, delimiter: str, header: bool, encoding: str, options: _Options) -> _Block | None:
    """The vectorized path for plain numeric files; None when the careful path has to read the file."""
    body_start, names, header_line = 0, None, None
    if header:
        end = min((i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0), default=len(data))
        line = data[:end]
        if b'"' in line or not line.strip():
            return None
        try:
            fields = next(csv.reader([line.decode(encoding)], delimiter=delimiter))
        except UnicodeDecodeError:
            return None
        names, renamed = _unique_names(fields)
        body_start = end + (2 if data[end:end + 2] == b"\r\n" else 1)
        header_line = 1
    if body_start >= len(data) or data[body_start:body_start + 4096].isspace():
        return None  # (nearly) header only: the careful path reports it
    if names is None:
        first_end = data.find(b"\n")
        ncols = data.count(delimiter.encode(), 0, first_end if first_end >= 0 else len(data)) + 1
        names = [f"column_{i}" for i in range(1, ncols + 1)]
    _check_names(names, header_line, options)
    # columns declared float use the floats even of integer text (an int "-0" is -0.0 there)
    float_columns = [j for j, name in enumerate(names) if (_declared(options, name) or ("",))[0] == "float"]
    try:
        result = fastparse.parse_numeric(data, body_start, len(names), delimiter, options.na, encoding,
                                         float_columns=float_columns)
    except fastparse.NotFast:
        return None
    if header:
        _warn_renamed(options.file, renamed)  # (only now: the careful path warns itself)
    first_line = 2 if header else 1
    columns = {}
    for j, name in enumerate(names):
        declared = _declared(options, name)
        is_int = bool(result.int_columns[j])
        if declared is not None and declared[0] == "int" and not is_int:
            return None  # the careful path names the value that is not an integer
        if (declared is None and is_int) or (declared is not None and declared[0] == "int"):
            data_j, kind = np.ascontiguousarray(result.ints[:, j]), "int"
        else:
            data_j, kind = result.floats[:, j], "float"
        if declared is not None and declared[1] is not None:
            data_j = data_j.astype(declared[1])
        mask = None if result.missing is None else result.missing[:, j]
        if mask is not None and not mask.any():
            mask = None
        columns[name] = _Column(kind, data_j, mask, lambda i, j=j: result.missing_text.get((i, j), ""))
    return _Block(names, columns, lambda i: first_line + i, header_line)


# -- the careful path ---------------------------------------------------------------------------------------------
def _read_careful(data: bytes, delimiter: str, header: bool, encoding: str, options: _Options) -> _Block:
    """Record by record with the csv module, keeping the physical line each record starts on."""
    file, collector = options.file, options.collector
    text = _decode(data, encoding, file)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    names: list[str] | None = None
    header_line = None
    rows: list[list[str]] = []
    lines: list[int] = []
    row_problems = 0
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            collector.add(start, None, None, _csv_message(str(e)))
            row_problems += 1
            if row_problems >= collector.scan_limit:
                break
            continue
        if not row or (len(row) == 1 and not row[0].strip() and (names is None or len(names) > 1)):
            continue  # a blank line
        if names is None:
            if header:
                (names, renamed), header_line = _unique_names(row), start
                _warn_renamed(file, renamed)
                _check_names(names, header_line, options)
                continue
            names = [f"column_{i}" for i in range(1, len(row) + 1)]
            _check_names(names, None, options)
        if len(row) != len(names):
            like = "the header" if header else f"line {lines[0] if lines else start}"
            collector.add(start, None, None, f"expected {len(names)} fields like {like}, found {len(row)}")
            row_problems += 1
            if row_problems >= collector.scan_limit:
                break
            continue
        rows.append(row)
        lines.append(start)
    if names is None:
        if collector:
            raise collector.error()
        raise fail(file, None, "the file is empty")
    if not rows and not collector:
        raise fail(file, header_line, "the file has a header but no data rows")
    line_array = np.array(lines, dtype=np.int64)
    values_by_column = list(zip(*rows)) if rows else [() for _ in names]
    columns: dict[str, _Column] = {}
    for name, values in zip(names, values_by_column):
        column = _convert_column(name, values, line_array, options)
        if column is not None:
            columns[name] = column
    return _Block(names, columns, lambda i: int(line_array[i]), header_line)


def _decode(data: bytes, encoding: str, file: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        before = data[:e.start]
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        column = e.start - max(before.rfind(b"\n"), before.rfind(b"\r"))
        raise fail(file, line, f"byte 0x{data[e.start]:02x} at position {column} is not valid {e.encoding} text; "
                   "pass encoding=... (e.g. encoding=\"latin-1\") if the file uses another encoding") from None


def _csv_message(message: str) -> str:
    if "unexpected end of data" in message:
        return "a quoted field is never closed (the quote runs to the end of the file)"
    if "expected after" in message:
        return f"malformed quoting: {message.replace(chr(39), '')}"
    if "field larger than field limit" in message:
        return f"a field is longer than {csv.field_size_limit()} characters (a quote that is never closed?)"
    if "NUL" in message:
        return "the line contains a NUL byte"
    return f"malformed CSV: {message}"


def _convert_column(name: str, values: Sequence[str], lines: np.ndarray, options: _Options) -> _Column | None:
    """Infer (or apply the declared) type of one column; None when its values had problems."""
    n = len(values)
    stripped = [v.strip() for v in values]
    missing = np.fromiter((s in options.na for s in stripped), dtype=bool, count=n)
    present = np.flatnonzero(~missing)
    declared = _declared(options, name)
    if declared is not None:
        kind, dtype = declared
        reason = "(column listed in parse_dates)" if kind == "datetime" and name not in options.dtypes else \
            f"(column declared as {kind} in dtypes)"
    else:
        kind, dtype = _infer_kind(stripped[present[0]] if len(present) else None, name, options), None
        reason = None  # filled in from the rows before the first bad value
    texts = [stripped[i] for i in present]
    raw_present = [values[i] for i in present]
    if kind in ("number", "int", "float"):
        result = _numbers(texts, kind)
    elif kind == "bool":
        result = _bools(texts, BOOL_WORDS if declared is None else BOOL_WORDS_DECLARED)
    elif kind == "datetime":
        result = _dates(texts)
    elif kind == "category":
        result = _categories(raw_present)
    else:
        result = _strings(raw_present)
    if isinstance(result, _Bad):
        _report_bad(name, result, present, values, lines, kind, reason, texts, options.collector)
        return None
    data, kind, vocabulary = result
    full = _with_placeholders(data, present, n, kind)
    if dtype is not None:
        full = full.astype(dtype)
    return _Column(kind, full, missing if len(present) < n else None, lambda i: values[i], vocabulary)


def _infer_kind(first: str | None, name: str, options: _Options) -> str:
    if first is None:
        return "float" if options.fill is None else _fill_kind(options, name)
    if NUMBER.fullmatch(first):
        return "number"
    if first.lower() in BOOL_WORDS:
        return "bool"
    if options.parse_dates is True and DATE.fullmatch(first):
        return "datetime"
    return "category"


def _fill_kind(options: _Options, name: str) -> str:
    """The type of an all-missing column: the type of its fill value."""
    value = options.fill.get(name) if isinstance(options.fill, Mapping) else options.fill
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, str):
        return "category"
    return "float"


@dataclass
class _Bad:
    """Values that do not fit the column's type: their positions among the present values, and the expectation."""

    positions: np.ndarray
    expected: str  # "a number", "an integer", "a boolean", "a date"


def _numbers(texts: list[str], kind: str) -> tuple[np.ndarray, str, None] | _Bad:
    """``kind`` "number" (inferred): int64 if every value is written as an integer that fits, else float64;
    "int" or "float" (declared): that type."""
    joined = "\n".join(texts)
    pattern = INTEGER if kind == "int" else NUMBER
    floats = None
    if not NUMBER_CHARS.search(joined) and not (kind == "int" and FLOAT_CHARS.search(joined)):
        try:  # quick: float() accepts exactly our number syntax once odd characters are ruled out
            floats = np.fromiter(map(float, texts), dtype=np.float64, count=len(texts))
        except ValueError:
            pass
    if floats is None:
        good = np.fromiter((pattern.fullmatch(t) is not None for t in texts), dtype=bool, count=len(texts))
        if not good.all():
            return _Bad(np.flatnonzero(~good), "an integer" if kind == "int" else "a number")
        floats = np.fromiter(map(float, texts), dtype=np.float64, count=len(texts))
    if kind == "float" or (kind == "number" and FLOAT_CHARS.search(joined)):
        return floats, "float", None
    ints = _int64s(texts)
    if ints is not None:
        return ints, "int", None
    if kind == "int":
        big = [i for i, t in enumerate(texts) if fastparse.int64_value(t) is None]
        return _Bad(np.array(big), "an integer that fits in 64 bits")
    return floats, "float", None  # integers beyond int64 (beyond float64 too: inf, as float() reads them)


def _int64s(texts: list[str]) -> np.ndarray | None:
    """The values of texts written as integers, or None when one does not fit in int64.

    ``int()`` only sees texts of at most 19 significant digits: it refuses more than 4,300 digits (``ValueError``)
    and takes time quadratic in the length below that; longer texts are ruled out by their length.
    """
    if texts and max(map(len, texts)) > fastparse.INT64_DIGITS + 1:  # (+1: a sign) some long text: look closer
        values = [fastparse.int64_value(t) for t in texts]
        return None if None in values else np.array(values, dtype=np.int64)
    try:
        return np.fromiter(map(int, texts), dtype=np.int64, count=len(texts))
    except OverflowError:
        return None


def _bools(texts: list[str], words: dict[str, bool]) -> tuple[np.ndarray, str, None] | _Bad:
    lowered = [t.lower() for t in texts]
    good = np.fromiter((t in words for t in lowered), dtype=bool, count=len(texts))
    if not good.all():
        return _Bad(np.flatnonzero(~good), "a boolean")
    return np.fromiter((words[t] for t in lowered), dtype=bool, count=len(texts)), "bool", None


def _dates(texts: list[str]) -> tuple[np.ndarray, str, None] | _Bad:
    good = np.fromiter((DATE.fullmatch(t) is not None and _valid_date(t) for t in texts), dtype=bool,
                       count=len(texts))
    if not good.all():
        return _Bad(np.flatnonzero(~good), "a date")
    if not texts:
        return np.array([], dtype="datetime64[s]"), "datetime", None
    return np.array([t.replace(" ", "T") for t in texts], dtype="datetime64"), "datetime", None


def _valid_date(text: str) -> bool:
    try:
        np.datetime64(text.replace(" ", "T"))
    except ValueError:
        return False
    return True


def _categories(raw: list[str]) -> tuple[np.ndarray, str, list[str]]:
    vocabulary = sorted(set(raw))
    index = {v: i for i, v in enumerate(vocabulary)}
    return np.fromiter((index[v] for v in raw), dtype=np.int64, count=len(raw)), "category", vocabulary


def _strings(raw: list[str]) -> tuple[np.ndarray, str, None]:
    array = np.empty(len(raw), dtype=object)
    array[:] = raw
    return array, "str", None


def _with_placeholders(data: np.ndarray, present: np.ndarray, n: int, kind: str) -> np.ndarray:
    """The column at full length: ``data`` at the present rows, a placeholder (NaN, 0, False, ...) elsewhere."""
    if len(present) == n:
        return data
    placeholder = {"float": np.nan, "int": 0, "bool": False, "category": -1, "str": None}.get(kind)
    if kind == "datetime":
        full = np.full(n, np.datetime64("NaT"), dtype=data.dtype if len(data) else "datetime64[s]")
    else:
        full = np.full(n, placeholder, dtype=data.dtype if kind != "float" else np.float64)
    full[present] = data
    return full


def _report_bad(name: str, bad: _Bad, present: np.ndarray, values: Sequence[str], lines: np.ndarray, kind: str,
                reason: str | None, texts: list[str], collector: ProblemCollector) -> None:
    """One problem per bad value (up to the scan limit), explaining which type was expected and why."""
    if reason is None:  # inferred from the values before the first bad one
        first_bad = int(bad.positions[0])
        prefix = texts[:first_bad]
        inferred = kind if kind != "number" else ("float" if FLOAT_CHARS.search("\n".join(prefix)) else "int")
        a, b = int(lines[present[0]]), int(lines[present[first_bad - 1]])
        reason = f"(column inferred as {inferred} from {f'row {a}' if a == b else f'rows {a}-{b}'})"
    for position in bad.positions[:collector.scan_limit]:
        row = int(present[position])
        collector.add(int(lines[row]), name, values[row], f"{quote(values[row])} is not {bad.expected} {reason}")


# -- missing values and the table ---------------------------------------------------------------------------------
def _policies(names: list[str], options: _Options) -> dict[str, Policy]:
    """Each column's missing-value policy from ``missing`` and ``fill``."""
    missing, fill = options.missing, options.fill
    if isinstance(missing, Mapping):
        policies = {name: missing.get(name, "error") for name in names}
    else:
        policies = {name: missing for name in names}
    if fill is not None:
        fills = fill if isinstance(fill, Mapping) else {name: fill for name in names}
        for name, value in fills.items():
            if isinstance(missing, Mapping) and name in missing:
                raise ValueError(f"read_csv: column {name!r} has a policy in both missing= and fill=")
            policies[name] = ("fill", value)
    for name, policy in policies.items():
        ok = policy in ("error", "drop_row", "mean") if isinstance(policy, str) else \
            isinstance(policy, tuple) and len(policy) == 2 and policy[0] == "fill"
        if not ok:
            raise ValueError(f"read_csv: missing-value policy for column {name!r} must be \"error\", \"drop_row\", "
                             f"\"mean\" or (\"fill\", value), got {policy!r}")
    return policies


def _finish(block: _Block, options: _Options) -> Table:
    """Apply the missing-value policies and build the table (raising everything collected so far)."""
    collector = options.collector
    policies = _policies(block.names, options)
    for name, column in block.columns.items():
        if column.missing is not None and policies[name] == "error":
            for row in np.flatnonzero(column.missing)[:collector.scan_limit]:
                raw = column.raw_missing(int(row))
                collector.add(block.line_of(int(row)), name, raw,
                              f'missing value {quote(raw)} (use missing="drop_row", "mean" or ("fill", value) '
                              "to accept missing values)")
    if collector:
        raise collector.error()
    n = len(next(iter(block.columns.values())).data) if block.columns else 0
    keep = np.ones(n, dtype=bool)
    for name, column in block.columns.items():
        if column.missing is not None and policies[name] == "drop_row":
            keep &= ~column.missing
    data, types, vocabularies, missing_counts = {}, {}, {}, {}
    keep_all = bool(keep.all())
    for name in block.names:
        column = block.columns[name]
        if column.missing is not None and isinstance(policies[name], tuple):
            _fill(name, column, policies[name][1])
        elif column.missing is not None and policies[name] == "mean":
            _fill_mean(name, column, keep)
        data[name] = column.data if keep_all else column.data[keep]
        if column.vocabulary is not None and not keep_all:  # only the categories of the rows kept
            used, data[name] = np.unique(data[name], return_inverse=True)
            column.vocabulary = [column.vocabulary[i] for i in used]
        types[name] = column.kind
        if column.vocabulary is not None:
            vocabularies[name] = column.vocabulary
        missing_counts[name] = 0 if column.missing is None else int(column.missing.sum())
    if not keep_all and not keep.any():
        warnings.warn(f"{options.file}: every row has a missing value in a drop_row column; the table is empty",
                      stacklevel=3)
    return Table(data, types, vocabularies, missing_counts, options.file, options.target)


def _fill(name: str, column: _Column, value: Any) -> None:
    """Put ``value`` (converted to the column's type) at the missing rows."""
    mask = column.missing
    if column.kind == "category":
        text = str(value)
        vocabulary = sorted(set(column.vocabulary or []) | {text})
        index = {v: i for i, v in enumerate(vocabulary)}
        remap = np.array([index[v] for v in column.vocabulary or []] + [0], dtype=np.int64)
        column.data = remap[column.data]  # the -1 placeholders pick the extra last entry, then get overwritten
        column.data[mask] = index[text]
        column.vocabulary = vocabulary
        return
    if column.kind == "int" and isinstance(value, (float, np.floating)) and not float(value).is_integer():
        column.data, column.kind = column.data.astype(np.float64), "float"
    if column.kind == "bool" and not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"read_csv: fill value {value!r} for bool column {name!r} must be True or False")
    if column.kind == "datetime":
        value = np.datetime64(value)
    try:
        column.data[mask] = value
    except (ValueError, TypeError) as e:
        raise ValueError(f"read_csv: fill value {value!r} does not fit column {name!r} ({column.kind})") from e


def _fill_mean(name: str, column: _Column, keep: np.ndarray) -> None:
    if column.kind not in ("int", "float"):
        raise ValueError(f'read_csv: column {name!r} is {column.kind}; missing="mean" needs numbers '
                         '(use "drop_row" or ("fill", value))')
    values = column.data[~column.missing & keep]
    if not len(values):
        raise ValueError(f'read_csv: column {name!r} has no values to average for missing="mean"')
    column.data = column.data.astype(np.float64)
    column.kind = "float"
    column.data[column.missing] = values.mean()
