"""The fast path of ``read_csv``: all-numeric CSV bytes to arrays, vectorized with numpy.

A number like ``-12.5e-3`` is up to three runs of digits: the integer part ``12``, the fraction ``5`` and the
exponent ``3``. So the parser

1. finds every delimiter, newline, ``.``, ``e`` and ``E`` with one vectorized comparison pass; the text between two
   of them is a *token* (a run of digits with maybe a sign), and the character before a token says what it is
   (integer part after a delimiter or newline, fraction after ``.``, exponent after ``e``);
2. reads each token's last 8 bytes as one little-endian uint64 and turns its digits into an integer with three
   multiply-shift steps (the "SWAR" trick: eight digits in one machine word; longer tokens take a second word);
3. combines the tokens of each field: ``M = integer * 10**len(fraction) + fraction`` and ``value = M * 10**t`` with
   ``t = exponent - len(fraction)``. When ``M <= 2**53`` and ``|t| <= 22`` both factors are exact doubles, so the
   one multiplication or division rounds once: the result is the correctly rounded value, bit for bit what
   ``float(text)`` gives (Clinger's fast path). Other fields (more digits, ``.5``, spaces, ``inf``) go through
   Python's ``float`` one by one.

It works through the file in chunks of about 256 KB so the temporary arrays stay in the CPU cache. Empty fields and
``na_values`` are recorded as missing. Anything else it does not expect (quotes, text, ragged rows, blank lines)
raises :class:`NotFast`, and ``read_csv`` re-reads the file with the careful path, which finds the exact line and
column of each problem.

When pyarrow is installed, :func:`parse_numeric` first tries :mod:`.arrowparse` (``pyarrow.csv``, multi-threaded),
which gives the same results and gives up on the same files; ``ENGINE = "numpy"`` turns it off.
"""
from __future__ import annotations

import re
from collections.abc import Collection
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np

U64 = np.uint64
CHUNK_BYTES = 1 << 18
PAD = 24  # bytes needed before the first row, so the 8-byte words ending at any token end start inside the data

# KEEP[n]: a mask keeping the top n bytes of a little-endian word (the last n characters of a token)
KEEP = np.array([0] + [(1 << 64) - (1 << (8 * (8 - n))) for n in range(1, 9)], dtype=np.uint64)
KEEP_DIGITS = KEEP & U64(0x0F0F0F0F0F0F0F0F)  # the same, keeping only the low nibble ('7' = 0x37 -> 7)
POW10_INT = np.array([10 ** k for k in range(20)], dtype=np.uint64)
POW10_FLOAT = np.array([10.0 ** k for k in range(23)])  # exactly representable up to 10**22
EXACT_MANTISSA = U64(2 ** 53)
POW10_LONG = np.array([np.longdouble(10) ** k for k in range(28)])  # exact long doubles up to 10**27
LONG_DOUBLE_IS_X87 = np.finfo(np.longdouble).nmant == 63 and np.dtype(np.longdouble).itemsize == 16 \
    and np.little_endian

# The number syntax, for the regexes here and in reader/arrowparse. Each character can be matched one way only and
# the quantifiers are possessive, so a match never backtracks: the time is linear in the text. (The earlier
# r"\d+\.?\d*" let the engine try every split of a digit run between the two quantifiers: quadratic time on a long
# run of digits that does not end a number, over 100 s for a 100 KB field.)
UNSIGNED_NUMBER = r"(?:\d++(?:\.\d*+)?+|\.\d++)(?:[eE][+-]?+\d++)?+"  # 12  12.  12.5  .5  each maybe with e-3
SPECIAL_NUMBER = r"inf(?:inity)?|nan"  # (with re.IGNORECASE)
NUMBER = re.compile(rf"\s*+[+-]?+(?:{UNSIGNED_NUMBER}|{SPECIAL_NUMBER})\s*+", re.IGNORECASE)
INTEGER = re.compile(r"\s*+[+-]?+\d++\s*+")
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
INT64_DIGITS = 19  # an integer with more significant digits does not fit in int64


class NotFast(Exception):
    """The bytes are not a plain numeric table; the careful path has to read them."""


@dataclass
class NumericBlock:
    """The parsed rows: ``floats`` (rows, ncols) float64; ``ints`` int64 of the same shape, valid in the
    ``int_columns`` (where every present field is written as an integer); ``missing`` marks fields that were empty or
    in ``na_values`` (None if there are none) and ``missing_text`` maps (row, column) to their text."""

    floats: np.ndarray
    ints: np.ndarray
    int_columns: np.ndarray
    missing: np.ndarray | None
    missing_text: dict[tuple[int, int], str]


ENGINES = ("auto", "arrow", "numpy")
ENGINE = "auto"  # the default for parse_numeric: "auto" (pyarrow when installed, else numpy), "arrow" or "numpy"
# pyarrow costs about 30 us per column whatever the rows (3 s for 100,000 columns), the numpy parser about 10 ns per
# byte: "auto" leaves wide files with few bytes per column to the numpy parser
ARROW_MIN_BYTES_PER_COLUMN = 4096
ARROW_ANY_SIZE_COLUMNS = 64  # up to this many columns pyarrow's overhead (a few ms) does not matter


def parse_numeric(data: bytes, start: int, ncols: int, delimiter: str, na_values: AbstractSet[str] = frozenset(),
                  encoding: str = "utf-8", engine: str | None = None,
                  float_columns: Collection[int] | None = None) -> NumericBlock:
    """Parse the rows in ``data[start:]`` (no header) of ``ncols`` numbers each; raises NotFast for anything else.

    ``engine`` (default: the module's ``ENGINE``): "auto" tries the pyarrow parser when pyarrow is installed (and the
    file has at most 64 columns or 4 KB of rows per column) and the numpy parser when that one gives up or is not
    tried; "arrow" only the pyarrow parser; "numpy" only the numpy parser. Both
    give the same block for every file they both read (the pyarrow parser's arrays are column-major).
    ``float_columns`` (None: all) are the columns whose floats the caller uses even if they are int columns; in the
    others the pyarrow parser may read an int ``-0`` as 0.0 rather than -0.0 (the ints are the same).
    """
    engine = ENGINE if engine is None else engine
    if engine not in ENGINES:
        raise ValueError(f"parse_numeric: engine must be one of {ENGINES}, got {engine!r}")
    wide = ncols > ARROW_ANY_SIZE_COLUMNS and len(data) - start < ncols * ARROW_MIN_BYTES_PER_COLUMN
    if engine == "arrow" or (engine == "auto" and not wide):
        from . import arrowparse  # (imports this module: not at the top)
        if arrowparse.available():
            try:
                return arrowparse.parse_numeric(data, start, ncols, delimiter, na_values, encoding, float_columns)
            except NotFast:
                if engine == "arrow":
                    raise
        elif engine == "arrow":
            raise NotFast("pyarrow is not installed")
    return parse_numeric_numpy(data, start, ncols, delimiter, na_values, encoding)


def parse_numeric_numpy(data: bytes, start: int, ncols: int, delimiter: str,
                        na_values: AbstractSet[str] = frozenset(), encoding: str = "utf-8") -> NumericBlock:
    """The numpy parser (see the module docstring): the rows in ``data[start:]`` (no header) of ``ncols`` numbers
    each; raises NotFast for anything else.

    The bytes are read in place (no copy) unless they have carriage returns or start too close to the beginning.
    """
    if len(delimiter) != 1 or delimiter in "0123456789.eE+-\r\n\"" or ord(delimiter) > 127:
        raise NotFast("an unusual delimiter")
    if data.find(b'"', start) >= 0 or data.find(b".-", start) >= 0 or data.find(b".+", start) >= 0:
        raise NotFast("quotes, or a sign after a decimal point")
    if data.find(b"\r", start) >= 0:
        data, start = b"0" * PAD + data[start:].replace(b"\r\n", b"\n").replace(b"\r", b"\n"), PAD
    elif start < PAD:
        data, start = b"0" * PAD + data[start:], PAD
    end = len(data)
    while end > start and data[end - 1] == ord("\n"):  # trailing newlines end the last row
        end -= 1
    if end == start:
        raise NotFast("no rows")
    buffer = np.frombuffer(data, dtype=np.uint8)
    words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # the 8 bytes at each offset
    has_exponent = data.find(b"e", start, end) >= 0 or data.find(b"E", start, end) >= 0
    has_plus = data.find(b"+", start, end) >= 0
    rows = data.count(b"\n", start, end) + 1
    floats = np.empty(rows * ncols, dtype=np.float64)
    ints = np.empty(rows * ncols, dtype=np.int64)
    is_float, missing_text = np.zeros(ncols, dtype=bool), {}
    row = 0
    while start < end:  # chunks of whole rows
        stop = data.find(b"\n", start + CHUNK_BYTES, end)
        stop = end if stop < 0 else stop
        chunk = Chunk(data, buffer, words, start, stop, ncols, ord(delimiter), has_exponent, has_plus, na_values,
                      encoding)
        n = _parse_chunk(chunk, floats[row * ncols:], ints[row * ncols:], is_float, missing_text, row)
        row += n
        start = stop + 1
    if row != rows:
        raise NotFast("ragged rows")
    floats, ints = floats.reshape(rows, ncols), ints.reshape(rows, ncols)
    for column in np.flatnonzero(~is_float):  # integer magnitudes get their sign from the float values
        np.negative(ints[:, column], out=ints[:, column], where=np.signbit(floats[:, column]))
    mask = None
    if missing_text:
        mask = np.zeros(floats.shape, dtype=bool)
        mask[tuple(np.array(list(missing_text)).T)] = True
    return NumericBlock(floats, ints, ~is_float, mask, missing_text)


@dataclass
class Chunk:
    """Whole rows ``data[start:stop]`` and what parsing them needs to know about the file."""

    data: bytes
    buffer: np.ndarray  # data as uint8
    words: np.ndarray  # the 8 bytes at every offset of data, as little-endian uint64
    start: int
    stop: int
    ncols: int
    delimiter: int
    has_exponent: bool
    has_plus: bool
    na_values: AbstractSet[str]
    encoding: str


def _parse_chunk(chunk: Chunk, float_out: np.ndarray, int_out: np.ndarray, is_float: np.ndarray,
                 missing_text: dict[tuple[int, int], str], first_row: int) -> int:
    """Parse one chunk into ``float_out`` / ``int_out`` (flat, from its first field); returns its number of rows.

    Marks columns with a non-integer field in ``is_float`` and records missing fields in ``missing_text``. Checks
    that cannot fail for the chunk at hand (e.g. overflow when no token is longer than 7 digits) are skipped.
    """
    ncols = chunk.ncols
    text = chunk.buffer[chunk.start:chunk.stop]
    # 1. token boundaries and what each token is: 0 = integer part (starts a field), 1 = fraction, 2 = exponent
    boundary = text == chunk.delimiter
    boundary |= text == ord("\n")
    boundary |= text == ord(".")
    if chunk.has_exponent:
        boundary |= (text | 0x20) == ord("e")  # "e" or "E"
    cut = np.flatnonzero(boundary)
    cut_char = text[cut]
    ntok = len(cut) + 1
    tok_end = np.empty(ntok, dtype=np.int64)
    tok_end[:-1] = cut
    tok_end[-1] = len(text)
    tok_end += chunk.start
    tok_start = np.empty(ntok, dtype=np.int64)
    tok_start[0] = chunk.start
    np.add(tok_end[:-1], 1, out=tok_start[1:])
    kind = np.zeros(ntok + 2, dtype=np.int8)  # two sentinel "integer part" entries past the end
    kind[1:ntok] = cut_char == ord(".")
    if chunk.has_exponent:
        after_e = (cut_char | 0x20) == ord("e")
        kind[1:ntok] += after_e
        kind[1:ntok] += after_e

    # 2. the digits of every token, after a sign ("-" or "+"; parse_numeric rules out signs after a ".")
    first = np.take(chunk.buffer, tok_start, mode="clip")  # (an empty last token may start at the very end)
    negative = first == ord("-")
    signed = negative | (first == ord("+")) if chunk.has_plus else negative
    length = tok_end - tok_start
    length -= signed
    shortest, longest = length.min(), length.max()
    # every byte must be a boundary, a sign in front of a token or a digit; if one is not, look for it token by token
    digit_count = np.count_nonzero(np.subtract(text, ord("0"), dtype=np.uint8) < 10)
    all_digits = digit_count + len(cut) + np.count_nonzero(signed) == len(text)
    value, bad = _token_digits(chunk.words, tok_end, length, check=not all_digits, longest=int(longest))
    if bad is None and (shortest == 0 or longest > 19):
        bad = (length == 0) | (length > 19)

    # 3. fields: every field starts with an integer-part token, maybe followed by a fraction and an exponent
    first_tok = np.flatnonzero(kind[:ntok] == 0)
    nfields = len(first_tok)
    after = first_tok + 1
    has_fraction = kind[after] == 1
    exp_tok = after + has_fraction if chunk.has_exponent else after
    has_exp = kind[exp_tok] == 2 if chunk.has_exponent else np.zeros(nfields, dtype=bool)
    if ntok != nfields + np.count_nonzero(has_fraction) + np.count_nonzero(has_exp):
        raise NotFast("malformed number (two dots or exponents)")
    if nfields % ncols or nfields > len(float_out):
        raise NotFast("ragged rows")
    # one newline per row, each in front of a row's first field: then every row has ncols fields
    if (np.count_nonzero(cut_char == ord("\n")) != nfields // ncols - 1
            or not np.all(cut_char[first_tok[ncols::ncols] - 1] == ord("\n"))):
        raise NotFast("ragged rows")

    integer = value[first_tok]
    frac_len = np.take(length, after, mode="clip")
    frac_len *= has_fraction
    fraction = np.take(value, after, mode="clip")
    fraction *= has_fraction
    if bad is None:
        slow = np.zeros(nfields, dtype=bool)
    else:
        slow = bad[first_tok] | (np.take(bad, after, mode="clip") & has_fraction)
    scale = -frac_len
    if has_exp.any():
        with_exp = np.flatnonzero(has_exp)
        tok = exp_tok[with_exp]
        exponent = value[tok].astype(np.int64)
        exponent[negative[tok]] *= -1
        scale[with_exp] += exponent
        if bad is not None:
            slow[with_exp] |= bad[tok]
    if longest > 7:  # 8+ digit tokens: the mantissa may overflow uint64 (more than 19 digits) or int64
        digit_count = length[first_tok]
        digit_count += frac_len
        slow |= digit_count > 19
        if longest > 18:
            slow |= (integer > U64(INT64_MAX)) & ~has_fraction & ~has_exp
    mantissa = np.take(POW10_INT, frac_len, mode="clip")
    mantissa *= integer
    mantissa += fraction

    floats = np.divide(mantissa, np.take(POW10_FLOAT, -scale, mode="clip"), out=float_out[:nfields])
    if chunk.has_exponent:  # scale > 0: one exact multiplication (scale <= 0 was one exact division)
        up = np.flatnonzero(scale > 0)
        floats[up] = mantissa[up].astype(np.float64) * POW10_FLOAT[np.minimum(scale[up], 22)]
    if longest > 7 or has_exp.any():  # redo the fields where the double-precision factors were not exact
        inexact = mantissa > EXACT_MANTISSA
        if has_exp.any():
            inexact |= (scale > 22) | (scale < -22)
        inexact &= ~slow
        if inexact.any():
            redo = np.flatnonzero(inexact)
            floats[redo], ambiguous = _extended_precision(mantissa[redo], scale[redo])
            slow[redo] |= ambiguous
    sign = negative[first_tok].astype(np.uint64)
    sign <<= U64(63)
    floats.view(np.uint64)[:] |= sign  # set the sign bit of the negative fields
    non_integer = has_fraction | has_exp
    for k in np.flatnonzero(slow):
        a, b = tok_start[first_tok[k]], _field_end(tok_end, first_tok, k, ntok)
        if a == b and ncols == 1:
            raise NotFast("a blank line")  # (with more columns a blank line is a ragged row)
        field = chunk.data[a:b].decode(chunk.encoding, errors="replace")
        if field.strip() in chunk.na_values:
            floats[k], as_int = np.nan, 0
            missing_text[(first_row + int(k) // ncols, int(k) % ncols)] = field
        else:
            floats[k], as_int = _parse_text(field)
        non_integer[k] = as_int is None
        integer[k] = 0 if as_int is None else abs(as_int)  # (the uint64 view holds 2**63 too)
    int_out[:nfields] = integer.view(np.int64)
    is_float |= non_integer.reshape(-1, ncols).any(axis=0)
    return nfields // ncols


def _extended_precision(mantissa: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mantissa * 10**scale`` correctly rounded to float64 for mantissas above 2**53 (up to 19 digits) or
    |scale| up to 27, using x87 80-bit long doubles; returns (values, ambiguous).

    A uint64 mantissa and 10**27 are exact long doubles, so the one division (or multiplication) is rounded once,
    to 64 bits. Rounding that to 53 bits gives the correctly rounded double unless the 64-bit result lies exactly
    halfway between two doubles (its low 11 bits are 10000000000): those few, and everything on platforms without
    80-bit long doubles, are marked ambiguous for Python's ``float`` to settle.
    """
    if not LONG_DOUBLE_IS_X87:
        return np.zeros(len(mantissa)), np.ones(len(mantissa), dtype=bool)
    ambiguous = (scale > 27) | (scale < -27)
    power = np.take(POW10_LONG, np.abs(scale), mode="clip")
    value = mantissa.astype(np.longdouble)
    np.divide(value, power, out=value, where=scale < 0)
    np.multiply(value, power, out=value, where=scale > 0)
    low_bits = value.view(np.uint64)[::2] & U64(0x7FF)  # the x87 format keeps the 64-bit mantissa in bytes 0-7
    ambiguous |= low_bits == 0x400
    return value.astype(np.float64), ambiguous


def _token_digits(words: np.ndarray, tok_end: np.ndarray, length: np.ndarray, check: bool, longest: int
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """The integer value of each token's last ``length`` bytes, and (only when ``check``) whether each token is
    bad: empty, longer than 19 digits, or holding a byte that is not a digit. Without ``check``, ``bad`` is None."""
    value, bad = _digits8(words[tok_end - 8], length, check)
    for k in (1, 2):  # tokens longer than 8 (16) characters: add the next word to the left
        if longest <= 8 * k:
            break
        longer = np.flatnonzero(length > 8 * k)
        high, high_bad = _digits8(words[tok_end[longer] - 8 * (k + 1)], length[longer] - 8 * k, check)
        high *= U64(10 ** (8 * k))
        value[longer] += high
        if check:
            bad[longer] |= high_bad
    if check:
        bad = (bad != 0) | (length == 0) | (length > 19)
    return value, bad


def _digits8(word: np.ndarray, n: np.ndarray, check: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The last ``n`` characters of each 8-byte word as an integer (Lemire's SWAR digit parsing), in place.

    With ``check``, ``bad`` has a high bit set in every kept byte that is not an ASCII digit (else it is None).
    """
    bad = None
    if check:
        bad = word ^ U64(0x3030303030303030)  # '0'..'9' -> 0..9
        bad &= np.take(KEEP, n, mode="clip")
        high = bad & U64(0x7F7F7F7F7F7F7F7F)
        high += U64(0x7676767676767676)  # a byte >= 10 carries into its high bit
        bad |= high
        bad &= U64(0x8080808080808080)
    word &= np.take(KEEP_DIGITS, n, mode="clip")  # the low nibble of the last n bytes; the rest becomes 0
    word *= U64((10 << 8) + 1)  # pairs of digits: 10 * a + b in every other byte
    word >>= U64(8)
    word &= U64(0x00FF00FF00FF00FF)
    word *= U64((100 << 16) + 1)  # groups of four: 100 * ab + cd
    word >>= U64(16)
    word &= U64(0x0000FFFF0000FFFF)
    word *= U64((10000 << 32) + 1)  # all eight: 10000 * abcd + efgh
    word >>= U64(32)
    return word, bad


def _field_end(tok_end: np.ndarray, first_tok: np.ndarray, k: int, ntok: int) -> int:
    """Where field ``k`` ends: the end of the token before the next field's first token."""
    last = first_tok[k + 1] - 1 if k + 1 < len(first_tok) else ntok - 1
    return int(tok_end[last])


def _parse_text(s: str) -> tuple[float, int | None]:
    """A field the vectorized path could not do: its float value and, if written as an integer that fits in int64,
    its int value (an integer beyond int64 makes its column float, as in the careful path)."""
    if INTEGER.fullmatch(s):
        return float(s), int64_value(s)  # (float(s), not float(int): a huge integer is inf, not an OverflowError)
    if NUMBER.fullmatch(s):
        return float(s), None
    raise NotFast(f"not a number: {s!r}")


def int64_value(text: str) -> int | None:
    """The value of ``text``, written as an integer (``[+-]?digits``, spaces around allowed), if it fits in int64,
    else None.

    Texts of more than 19 significant digits are ruled out by their length: ``int()`` never sees them, as it refuses
    more than 4,300 digits (``ValueError``) and takes time quadratic in the length below that.
    """
    text = text.strip()
    digits = text.lstrip("+-").lstrip("0")
    if len(digits) > INT64_DIGITS:
        return None
    value = -int(digits or "0") if text.startswith("-") else int(digits or "0")
    return value if INT64_MIN <= value <= INT64_MAX else None
