"""The pyarrow fast path of ``read_csv``: plain numeric CSV bytes to arrays with ``pyarrow.csv``, multi-threaded.

:func:`.fastparse.parse_numeric` tries this first when pyarrow is installed (it is optional). It returns exactly the
:class:`~.fastparse.NumericBlock` the numpy parser would -- the same float64 bits, the same int columns, the same
missing fields and their text -- and raises :class:`~.fastparse.NotFast` for everything else, so the numpy parser and
then the careful path run as they do without pyarrow, with the same results and the same error messages.

Arrow reads more than Python's number syntax and a few things differently; each difference is ruled out or undone:

* values: Arrow's float parser (fast_float) rounds correctly, like Python's ``float``, and spells ``inf``,
  ``infinity`` and ``nan`` the same way. It also accepts ``nan(...)`` payloads, and its int64 parser reads
  hexadecimal ``0x1F``: files with a ``(``, ``x`` or ``X`` are left to the numpy parser, as are non-ASCII digits
  and spaces other than `` `` and ``\t`` (Arrow does not read them as numbers) and a byte-order mark.
* int columns: Arrow infers int64 for a column only when every present field is ``-?digits`` (spaces and tabs
  around allowed) within int64 -- the numpy parser's rule, except that it also counts ``+5`` as an integer. So when
  the file has a ``+``, a float64 column whose values are all whole numbers is checked against its text.
* ``-0`` in an int column is the int 0 but the float -0.0 (the floats of int columns are used for ``dtypes`` float):
  when such a column (``float_columns``) has zeros and the file has a ``-0`` field, its floats are read again.
* missing values: the ``na_values`` are Arrow's ``null_values``, matched against the whole field (the numpy parser
  strips spaces first, so ``" NA"`` makes Arrow fail and the numpy parser run). When more than one na string could
  occur, the text of each missing field is read back from the file.
* rows: no quoting (``quote_char=False``; a file with ``"`` is left to the others), ragged rows raise, and a blank
  line, which Arrow reads as a row of empty fields, is caught as a row where every field is missing and empty (such
  files go to the numpy parser). ``\\n``, ``\\r\\n`` and ``\\r`` end lines, and line ends at the end of the file are dropped, as in the
  numpy parser, so row ``i`` is still line ``first_line + i``.
"""
from __future__ import annotations

import re
from collections.abc import Collection
from collections.abc import Set as AbstractSet
from itertools import repeat
from typing import Any

import numpy as np

from .fastparse import UNSIGNED_NUMBER, NotFast, NumericBlock

try:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv
except ImportError:  # optional: without it the numpy parser does the work
    pa = pc = pa_csv = None

BLOCK_BYTES = 1 << 20  # Arrow's unit of parallel work; 1 MB was fastest on 50 MB (256 KB - 16 MB tried)
SAMPLE_BYTES = 1 << 16  # a file with text in its first 64 KB is refused after reading just those
BOM = b"\xef\xbb\xbf"
PLAIN_NUMBER = re.compile(rf"\s*+[+-]?+{UNSIGNED_NUMBER}\s*+")  # (never backtracks: see fastparse)
INTEGER_TEXT = r"^[ \t]*[+-]?[0-9]+[ \t]*$"  # what the numpy parser calls an integer, among fields Arrow accepts
REFUSED = b'"(xX'  # quotes; nan(...) payloads; hexadecimal integers


def available() -> bool:
    """Whether pyarrow is importable."""
    return pa is not None


def parse_numeric(data: bytes, start: int, ncols: int, delimiter: str, na_values: AbstractSet[str] = frozenset(),
                  encoding: str = "utf-8", float_columns: Collection[int] | None = None) -> NumericBlock:
    """Parse the rows in ``data[start:]`` (no header) of ``ncols`` numbers each with pyarrow, or raise NotFast.

    The same contract as :func:`.fastparse.parse_numeric_numpy` and the same block whenever both succeed, except
    that the arrays are column-major (each column contiguous) and that ``float_columns`` (None: all) names the
    columns whose floats are wanted even where they are int columns: in the others a ``-0`` may read as 0.0 instead
    of -0.0 (finding ``-0`` fields costs a scan of the whole text).
    """
    if pa is None:
        raise NotFast("pyarrow is not installed")
    if len(delimiter) != 1 or delimiter in "0123456789.eE+-\r\n\"" or ord(delimiter) > 127:
        raise NotFast("an unusual delimiter")
    if any(PLAIN_NUMBER.fullmatch(v) for v in na_values):
        raise NotFast("a number among na_values")  # (the numpy parser reads those as numbers; read_csv never asks)
    end = len(data)
    while end > start and data[end - 1] in b"\r\n":  # line ends at the end of the file end the last row
        end -= 1
    if end == start:
        raise NotFast("no rows")
    if data.startswith(BOM, start):
        raise NotFast("a byte-order mark (Arrow would skip it)")
    for char in REFUSED:
        if char != ord(delimiter) and data.find(char, start, end) >= 0:
            raise NotFast("quotes, or text Arrow reads differently from Python (nan(...), 0x1F)")
    # null_values are compared with the whole field as UTF-8 bytes: na strings spelled otherwise in the file's
    # encoding, or with spaces around (the numpy parser strips the field first), are left out
    nulls = sorted(v for v in na_values if (v.isascii() or encoding == "utf-8") and v == v.strip())
    reader = _Reader(pa.py_buffer(data).slice(start, end - start), ncols, delimiter, nulls)
    if end - start > 2 * SAMPLE_BYTES:  # a quick look at the start, so a file with text costs little here
        cut = data.rfind(b"\n", start, start + SAMPLE_BYTES)
        cut = cut if cut > start else data.rfind(b"\r", start, start + SAMPLE_BYTES)
        if cut > start:
            reader.read(reader.body.slice(0, cut - start), types=dict.fromkeys(range(ncols), pa.float64()),
                        threads=False)
    explicit = False
    try:
        table = reader.read(reader.body)  # types inferred from all the values
    except NotFast as e:  # older pyarrow infers from the first block only and fails when a later one differs
        cause = str(e.__cause__)
        if "conversion error to int64" not in cause and "conversion error to null" not in cause:
            raise
        table = reader.read(reader.body, types=dict.fromkeys(range(ncols), pa.float64()))
        explicit = True
    try:
        return _block(table, reader, data, start, end, encoding, explicit,
                      range(ncols) if float_columns is None else float_columns)
    except pa.ArrowException as e:  # (not expected) the other paths read the file
        raise NotFast(f"pyarrow: {e}") from e


class _Reader:
    """``pyarrow.csv.read_csv`` with the options the numeric fast path needs; any pyarrow error becomes NotFast."""

    def __init__(self, body: Any, ncols: int, delimiter: str, nulls: list[str]) -> None:
        self.body = body
        self.delimiter = delimiter
        self.names = [f"c{j}" for j in range(ncols)]
        self.parse_options = pa_csv.ParseOptions(delimiter=delimiter, quote_char=False, double_quote=False,
                                                 escape_char=False, newlines_in_values=False,
                                                 ignore_empty_lines=False)
        self.nulls = nulls

    def read(self, body: Any, types: dict[int, Any] | None = None, columns: list[int] | None = None,
             threads: bool = True) -> Any:
        """Read ``body`` (a pyarrow buffer): ``types`` maps column index to a pyarrow type (others are inferred),
        ``columns`` limits the columns converted."""
        try:
            read_options = pa_csv.ReadOptions(column_names=self.names, use_threads=threads, block_size=BLOCK_BYTES)
            convert_options = pa_csv.ConvertOptions(
                column_types=None if types is None else {self.names[j]: t for j, t in types.items()},
                include_columns=None if columns is None else [self.names[j] for j in columns],
                null_values=self.nulls, strings_can_be_null=False, quoted_strings_can_be_null=False,
                check_utf8=False, auto_dict_encode=False)
            return pa_csv.read_csv(pa.BufferReader(body), read_options, self.parse_options, convert_options)
        except Exception as e:  # ragged rows, text in a number column, ...: the other paths say what and where
            raise NotFast(f"pyarrow: {e}") from e


def _block(table: Any, reader: _Reader, data: bytes, start: int, end: int, encoding: str, explicit: bool,
           float_columns: Collection[int]) -> NumericBlock:
    """The NumericBlock of an Arrow table read with inferred types (or all float64 when ``explicit``)."""
    ncols, rows = table.num_columns, table.num_rows
    kinds = []
    for column in table.columns:
        if pa.types.is_int64(column.type):
            kinds.append("int")
        elif pa.types.is_float64(column.type):
            kinds.append("float")
        elif pa.types.is_null(column.type):
            kinds.append("null")  # every field missing: an int column, as in the numpy parser
        else:
            raise NotFast(f"a column of {column.type}")
    if rows == 0:
        raise NotFast("no rows")
    masks: list[np.ndarray | None] = [None] * ncols
    for j, column in enumerate(table.columns):
        if column.null_count:
            masks[j] = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    # a blank line is a row of empty fields to Arrow: every field missing, if "" is an na string
    blank = np.logical_and.reduce(masks) if all(m is not None for m in masks) else None
    missing_columns = [j for j in range(ncols) if masks[j] is not None]
    known_text = _only_missing_text(reader.nulls, data, start, end) if missing_columns else None
    if blank is not None and blank.any() and known_text == "":
        raise NotFast("a row with every field empty (maybe a blank line)")

    # column-major (every column contiguous), in Arrow's memory pool: its pages are reused from read to read, where
    # fresh ones from numpy would cost a page fault each
    floats = np.frombuffer(pa.allocate_buffer(rows * ncols * 8), dtype=np.float64).reshape(ncols, rows).T
    ints = np.zeros((ncols, rows), dtype=np.int64).T
    int_columns = np.array([kind != "float" for kind in kinds])
    for j, (column, kind) in enumerate(zip(table.columns, kinds)):
        if kind == "int":
            _copy_values(column, ints[:, j])
            floats[:, j] = ints[:, j]
        elif kind == "float":
            _copy_values(column, floats[:, j])
        if masks[j] is not None:
            floats[masks[j], j] = np.nan
            ints[masks[j], j] = 0

    # the columns that need another look at the file: float64 columns of whole numbers when the file has a "+"
    # (integers written "+5" are not int64 to Arrow) or nothing was inferred; int columns with zeros whose floats
    # are wanted, when the file has a "-0" field; the missing fields' text when more than one na string can occur
    whole = [j for j in range(ncols) if kinds[j] == "float" and _all_whole(floats[:, j], masks[j])]
    if whole and not explicit and data.find(b"+", start, end) < 0:
        whole = []
    zeros = [j for j in sorted(set(float_columns)) if kinds[j] == "int" and _has_zero(ints[:, j], masks[j])]
    if zeros and not _has_negative_zero_field(reader.body, reader.delimiter):
        zeros = []
    text_columns = sorted(set(whole) | (set(missing_columns) if known_text is None else set()))
    float_again = [j for j in zeros if j not in text_columns]
    texts: dict[int, Any] = {}
    if text_columns or float_again:
        types = {**dict.fromkeys(text_columns, pa.binary()), **dict.fromkeys(float_again, pa.float64())}
        again = reader.read(reader.body, types=types, columns=sorted(types))
        for j in text_columns:
            texts[j] = again.column(reader.names[j])
        for j in float_again:
            _copy_values(again.column(reader.names[j]), floats[:, j])
            if masks[j] is not None:
                floats[masks[j], j] = np.nan
    if blank is not None and known_text is None:
        rows_blank = np.flatnonzero(blank)
        for j in range(ncols):  # rows where every field is the empty string
            rows_blank = rows_blank[pc.equal(texts[j].take(pa.array(rows_blank)), b"").to_numpy(zero_copy_only=False)]
        if len(rows_blank):
            raise NotFast("a row with every field empty (maybe a blank line)")
    for j in zeros:
        if j in texts:  # the floats from the text (its missing fields' text was needed too)
            present = pc.utf8_trim(pc.cast(_present(texts[j], masks[j]), pa.string()), " \t")
            floats[_present_rows(masks[j]), j] = pc.cast(present, pa.float64()).to_numpy(zero_copy_only=False)
    for j in whole:
        values = _integers(_present(texts[j], masks[j]))
        if values is not None:
            ints[_present_rows(masks[j]), j] = values
            int_columns[j] = True

    mask, missing_text = None, {}
    if missing_columns:
        mask = np.zeros((ncols, rows), dtype=bool).T
        for j in missing_columns:
            mask[:, j] = masks[j]
            where = np.flatnonzero(masks[j])
            keys = zip(where.tolist(), repeat(j))
            if known_text is not None:
                missing_text.update(zip(keys, repeat(known_text)))
            else:
                raw = texts[j].take(pa.array(where)).to_pylist()
                missing_text.update(zip(keys, (t.decode(encoding, errors="replace") for t in raw)))
    return NumericBlock(floats, ints, int_columns, mask, missing_text)


def _copy_values(column: Any, out: np.ndarray) -> None:
    """Copy a chunked int64/float64 column's values (whatever is stored at its nulls) into ``out``, reading each
    chunk's data buffer in place."""
    offset = 0
    for chunk in column.chunks:
        n = len(chunk)
        if n:
            out[offset:offset + n] = np.frombuffer(chunk.buffers()[1], dtype=out.dtype, count=n,
                                                   offset=chunk.offset * out.itemsize)
        offset += n


def _all_whole(values: np.ndarray, mask: np.ndarray | None) -> bool:
    """Whether every present value is a finite whole number (looking at the first few first: usually one is not)."""
    for part in (slice(0, 1024), slice(None)):
        v = values[part]
        whole = np.isfinite(v)
        whole &= np.trunc(v) == v
        if mask is not None:
            whole |= mask[part]
        if not whole.all():
            return False
    return True


def _has_zero(ints: np.ndarray, mask: np.ndarray | None) -> bool:
    zero = ints == 0
    if mask is not None:
        zero &= ~mask
    return bool(zero.any())


def _has_negative_zero_field(body: Any, delimiter: str) -> bool:
    """Whether the text has ``-0`` (``-00``, ...) ending a field: one RE2 scan of the whole buffer, in place."""
    offsets = pa.py_buffer(np.array([0, body.size], dtype=np.int64))
    whole = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 1, [None, offsets, body])
    pattern = rf"-0+(?:[ \t\r\n\x{{{ord(delimiter):02x}}}]|$)"
    try:
        return bool(pc.match_substring_regex(whole, pattern)[0].as_py())
    except (pa.ArrowException, ValueError, TypeError):  # (should not happen) assume the worst: read again
        return True


def _only_missing_text(nulls: list[str], data: bytes, start: int, end: int) -> str | None:
    """The text of every missing field when only one na string can be in the file, else None. An na string whose
    first byte is nowhere in the rows cannot be there; the empty one always can."""
    possible = [v for v in nulls if not v or data.find(v.encode("utf-8")[0], start, end) >= 0]
    return possible[0] if len(possible) == 1 else None


def _present(column: Any, mask: np.ndarray | None) -> Any:
    return column if mask is None else column.filter(pa.array(~mask))


def _present_rows(mask: np.ndarray | None) -> Any:
    return slice(None) if mask is None else ~mask


def _integers(texts: Any) -> np.ndarray | None:
    """The int64 values of the fields if every one is written as an integer that fits in int64, else None."""
    try:
        if len(texts) and not pc.all(pc.match_substring_regex(texts, INTEGER_TEXT)).as_py():
            return None
        strings = pc.utf8_trim(pc.cast(texts, pa.string()), " \t")
        strings = pc.replace_substring_regex(strings, r"^\+", "")
        return np.asarray(pc.cast(strings, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    except (pa.ArrowException, ValueError, TypeError):  # a value beyond int64: a float column, as with numpy
        return None
