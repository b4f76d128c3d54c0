"""read_csv on hostile input: every file either reads or raises a CSVError that names file and line, in time linear
in its size. Regression tests for the cases found by fuzzing (fields over the csv module's limit, integers over
Python's digit limit, the empty file, long digit runs, repeated header names), then a fuzzed corpus of 2,321
generated files under one (very generous) time budget. The scaling itself is measured by
benchmarks/csv_hostile.py."""
from __future__ import annotations

import contextlib
import csv
import io
import random
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_nb.data import CSVError, fastparse, read_csv
from tinygrad_nb.data import reader as reader_module

PATHS = ["careful", "numpy", "arrow"]  # the careful path alone; the numpy parser first; the pyarrow parser first


@contextlib.contextmanager
def path_set(path: str) -> Iterator[None]:
    """Read with one path: "careful" (the fast path refuses everything), or the fast path with that engine."""
    if path == "arrow":
        pytest.importorskip("pyarrow")
    saved = fastparse.ENGINE
    fastparse.ENGINE = "numpy" if path == "careful" else path
    saved_parse = fastparse.parse_numeric

    def refuse(*args, **kwargs):
        raise fastparse.NotFast("the careful path only")
    if path == "careful":
        fastparse.parse_numeric = refuse
    try:
        yield
    finally:
        fastparse.ENGINE, fastparse.parse_numeric = saved, saved_parse


def read_bytes(tmp_path: Path, source: bytes, name: str = "f.csv", **kwargs):
    path = tmp_path / name
    path.write_bytes(source)
    return read_csv(str(path), **kwargs), str(path)


def error_of(tmp_path: Path, source: bytes, name: str = "f.csv", **kwargs) -> tuple[CSVError, str]:
    path = tmp_path / name
    path.write_bytes(source)
    with pytest.raises(CSVError) as info:
        read_csv(str(path), **kwargs)
    return info.value, str(path)


# -- the empty file ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", [b"", b"\xef\xbb\xbf", b"\n", b"\r\n\r\n", b"  \t \n "])
def test_an_empty_file_names_the_file_and_says_it_is_empty(tmp_path: Path, source: bytes) -> None:
    error, path = error_of(tmp_path, source, "nothing.csv")
    assert str(error) == f"{path}: the file is empty"
    assert [(p.file, p.line, p.column, p.value) for p in error.problems] == [(path, None, None, None)]
    with pytest.raises(CSVError, match=r"^<stream>: the file is empty$"):
        read_csv(io.BytesIO(source))


# -- fields longer than the csv module's limit ----------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_fields_longer_than_the_csv_modules_limit_are_read(tmp_path: Path, path: str) -> None:
    """The csv module refuses fields over csv.field_size_limit() (131,072 characters) with a raw _csv.Error; a file
    can hold no field longer than itself, so read_csv lets it read fields up to the file's length."""
    long = "x" * 300_000
    limit = csv.field_size_limit()
    with path_set(path):
        table, _ = read_bytes(tmp_path, f'a,b\n"{long}",1\n{long},2\n'.encode())
        assert table.vocabularies["a"] == [long] and table["a"].tolist() == [0, 0] and table["b"].tolist() == [1, 2]
        table, _ = read_bytes(tmp_path, f"{long},b\n1,2\n".encode())  # a header field too (the fast path's parse)
        assert table.names == [long, "b"] and table[long].tolist() == [1]
    assert csv.field_size_limit() == limit  # the process-wide setting is put back


def test_an_unclosed_quote_in_a_big_file_is_reported_where_it_opens(tmp_path: Path) -> None:
    rows = "".join(f"{i},x\n" for i in range(100_000))
    error, path = error_of(tmp_path, f'a,b\n1,y\n2,"z\n{rows}'.encode())
    assert str(error) == f"{path}:3: a quoted field is never closed (the quote runs to the end of the file)"


def test_the_field_limit_is_put_back_after_an_error(tmp_path: Path) -> None:
    limit = csv.field_size_limit()
    error_of(tmp_path, b'a\n"' + b"x" * 200_000)
    assert csv.field_size_limit() == limit


# -- integers beyond int64 and beyond Python's digit limit ----------------------------------------------------------
HUGE = "1" * 5000  # int(HUGE) raises ValueError: more than sys.get_int_max_str_digits() (4,300) digits


@pytest.mark.parametrize("path", PATHS)
def test_integers_beyond_int64_make_the_column_float_even_past_pythons_digit_limit(tmp_path: Path,
                                                                                  path: str) -> None:
    """Inferred columns: an integer beyond int64 makes the column float64 (as pandas does when it does not fit
    uint64 either); beyond float64's range the value is inf, as float() reads it. Never a raw ValueError."""
    with path_set(path):
        table, _ = read_bytes(tmp_path, f"a,b\n{HUGE},1\n-{HUGE},2\n12345678901234567890123,3\n5,4\n".encode())
        assert table.types == {"a": "float", "b": "int"}
        assert table["a"].tolist() == [np.inf, -np.inf, 1.2345678901234568e22, 5.0]
        # leading zeros do not count: still an int64 column
        zeros = "0" * 5000
        table, _ = read_bytes(tmp_path, f"a,b\n{zeros}5,1\n-{zeros}9223372036854775807,2\n+{zeros},3\n".encode())
        assert table.types == {"a": "int", "b": "int"} and table["a"].tolist() == [5, -(2 ** 63 - 1), 0]
        table, _ = read_bytes(tmp_path, f"a,b\n{HUGE},x\n".encode())  # the careful path whatever the engine
        assert table.types == {"a": "float", "b": "category"} and table["a"].tolist() == [np.inf]


@pytest.mark.parametrize("path", PATHS)
def test_a_declared_int_column_reports_integers_beyond_int64(tmp_path: Path, path: str) -> None:
    with path_set(path):
        error, file = error_of(tmp_path, f"a,b\n1,1\n{HUGE},2\n".encode(), dtypes={"a": "int"})
    assert str(error) == (f'{file}:3: column "a": "{"1" * 60}..." is not an integer that fits in 64 bits '
                          "(column declared as int in dtypes)")
    problem = error.problems[0]
    assert (problem.line, problem.column, problem.value) == (3, "a", HUGE)


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("-0", 0), ("+17", 17), (" 42 ", 42), ("9223372036854775807", 2 ** 63 - 1),
    ("-9223372036854775808", -2 ** 63), ("9223372036854775808", None), ("-9223372036854775809", None),
    ("0" * 10_000 + "12", 12), ("-" + "0" * 10_000, 0), (HUGE, None), ("9" * 19, None), ("1" + "0" * 19, None),
])
def test_int64_value_decides_by_length_before_int(text: str, value: int | None) -> None:
    assert fastparse.int64_value(text) == value


# -- the number regexes: the same language as before, without backtracking ---------------------------------------
OLD_REGEXES = {  # before the rewrite (quadratic time on a long digit run that does not end a number)
    "reader.NUMBER": r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)",
    "reader.PLAIN_NUMBER": r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)",
    "fastparse.NUMBER": r"\s*[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)\s*",
    "fastparse.INTEGER": r"\s*[+-]?\d+\s*",
    "arrowparse.PLAIN_NUMBER": r"\s*[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)\s*",
}


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789.eE+-infatyINFATY x\t\u0661", max_size=14))
def test_the_number_regexes_accept_what_they_accepted_before(text: str) -> None:
    """The regexes were rewritten so that they never backtrack; the language each accepts did not change."""
    from tinygrad_nb.data import arrowparse
    modules = {"reader": reader_module, "fastparse": fastparse, "arrowparse": arrowparse}
    for name, old in OLD_REGEXES.items():
        module, attribute = name.split(".")
        new = getattr(modules[module], attribute)
        old_match = re.fullmatch(old, text, new.flags & re.IGNORECASE) is not None
        assert (new.fullmatch(text) is not None) == old_match, name


@pytest.mark.parametrize("path", PATHS)
def test_long_digit_runs_read_like_short_ones(tmp_path: Path, path: str) -> None:
    """A 1 MB run of digits: a number (inf), or with a letter after it a category (the regex that took quadratic
    time on these now takes linear time)."""
    digits = "7" * 1_000_000
    with path_set(path):
        table, _ = read_bytes(tmp_path, f"a,b\n{digits},1\n".encode())
        assert table.types == {"a": "float", "b": "int"} and table["a"].tolist() == [np.inf]
        table, _ = read_bytes(tmp_path, f"a,b\n{digits}x,1\n{digits}.5e,2\n".encode())
        assert table.types == {"a": "category", "b": "int"} and table.vocabularies["a"] == [digits + ".5e",
                                                                                            digits + "x"]
        error, file = error_of(tmp_path, f"a\n1\n{digits}x\n".encode())
        assert str(error) == (f'{file}:3: column "a": "{"7" * 60}..." is not a number '
                              "(column inferred as int from row 2)")


# -- repeated header names --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_a_name_repeated_20000_times_gets_suffixes_and_one_warning(tmp_path: Path, path: str) -> None:
    n = 20_000
    with path_set(path), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table, file = read_bytes(tmp_path, (",".join(["a"] * n) + "\n" + ",".join(map(str, range(n))) + "\n").encode())
    assert table.names == ["a"] + [f"a_{k}" for k in range(2, n + 1)]
    assert table["a_20000"].tolist() == [n - 1]
    assert [str(w.message) for w in caught] == [
        f'{file}: column name "a" appears more than once; field 2 is called "a_2" (19998 more repeated names get '
        "suffixes the same way)"]
    assert caught[0].filename == __file__  # pointing at the caller of read_csv


def test_suffixes_skip_names_written_in_the_header(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match='column name "a" appears more than once; field 2 is called "a_3" '
                                         r"\(3 more repeated names"):
        table, _ = read_bytes(tmp_path, b"a,a,a_2,a, a ,,column_6\n1,2,3,4,5,6,7\n")
    assert table.names == ["a", "a_3", "a_2", "a_4", "a_5", "column_6", "column_6_2"]
    assert [int(table[n][0]) for n in table.names] == [1, 2, 3, 4, 5, 6, 7]


# -- wide files ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_30000_distinct_columns(tmp_path: Path, path: str) -> None:
    n = 30_000
    source = (",".join(f"c{j}" for j in range(n)) + "\n" + ",".join(str(j) for j in range(n)) + "\n").encode()
    with path_set(path):
        table, _ = read_bytes(tmp_path, source)
    assert table.num_rows == 1 and len(table.names) == n and table.names[-1] == "c29999"
    assert set(table.types.values()) == {"int"} and table["c12345"].tolist() == [12345]


# -- the fuzzed corpus ------------------------------------------------------------------------------------------
DIGITS = b"0123456789"
JUNK = [b"", b"x", b".", b".5", b"e", b"e+", b"e5", b".e", b"..", b"-", b" ", b"E-3", b"_1", b"\x00", b"\xff"]
EXPONENTS = [b"e5", b"E-3", b"1e", b"1e+", b"1e99999", b"-1e-99999", b".e1", b"1.e5", b"1e5.5", b"1ee5", b"e",
             b"+e1", b"1E+308", b"2e-324", b"1e309", b"-0e0", b".5E5"]
SPECIALS = [b"nan", b"NaN", b"-nan", b"+NAN", b"inf", b"-inf", b"+Inf", b"Infinity", b"-INFINITY", b"infinit",
            b"nan(1)", b"iNf", b"in", b"na", b"N/A", b"NA", b"null", b"None", b"1.#INF", b"-1.#IND"]
TINY = [b"", b"\n", b"\r", b"\r\n", b" ", b",", b'"', b'""', b'"\n', b"\x00", b"a", b"a\n", b"a\n1", b"a,b\n",
        b"\xef\xbb\xbf", b"\xef\xbb\xbfa\n1\n", b"\xff\xfe", b"\xfe\xff\x00a", b"a\n\n\n", b"a\r\r\r1\r", b",,,\n,,,\n",
        b'a\n"', b'a\n"1', b'a\n1"', b"\t\n\t\n", b"a;b\n;\n", b"a|b\n1|2\n3\n", b"\xc3", b"a\n\xc3\xa9\n"]
SOUP = [b"1", b"0", b"-", b"+", b".", b"e", b"E", b"nan", b"inf", b"x", b'"', b",", b";", b"\t", b"|", b"\n", b"\r",
        b"\r\n", b" ", b"\x00", b"\xff", b"\xc3\xa9", b"\xef\xbb\xbf", b"true", b"2024-01-31", b"NA", b'""', b"1e5",
        b"123456789012345678901234567890"]


def digits(rng: random.Random, n: int) -> bytes:
    return bytes(rng.choices(DIGITS, k=n))


def table_bytes(rng: random.Random, cells: list[list[bytes]], delimiter: bytes = b",",
                terminator: bytes | None = None) -> bytes:
    terminator = terminator if terminator is not None else rng.choice([b"\n", b"\r\n", b"\r"])
    return terminator.join(delimiter.join(row) for row in cells) + terminator * rng.randint(0, 2)


def number(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.5:
        return str(rng.randint(-10 ** 6, 10 ** 6)).encode()
    if kind < 0.8:
        return repr(rng.uniform(-1e6, 1e6)).encode()
    return rng.choice(EXPONENTS + SPECIALS)


def gen_digit_run(rng: random.Random) -> bytes:
    n = rng.choice([rng.randint(1, 50), rng.randint(20, 400), rng.randint(1000, 6000)])
    if rng.random() < 0.01:
        n = rng.randint(50_000, 200_000)  # the old regexes took minutes on these
    run = rng.choice([b"", b"-", b"+", b"."]) + digits(rng, n) + rng.choice(JUNK)
    rows = [[b"a", b"b"]] + [[number(rng), number(rng)] for _ in range(rng.randint(0, 5))]
    rows.insert(rng.randint(1, len(rows)), [run, rng.choice([number(rng), b"x"])])
    return table_bytes(rng, rows)


def gen_huge_field(rng: random.Random) -> bytes:
    field = bytes(rng.choices(b"xyz 12", k=rng.randint(100_000, 300_000)))
    quoted = rng.random() < 0.5
    cell = b'"' + field + (b'"' if rng.random() < 0.8 else b"") if quoted else field
    rows = [[b"a", b"b"], [b"1", b"2"], [cell, b"3"]]
    if rng.random() < 0.3:
        rows[0][0] = cell
    return table_bytes(rng, rows)


def gen_many_columns(rng: random.Random) -> bytes:
    ncols = rng.choice([rng.randint(100, 2000), rng.randint(2000, 6000)])
    if rng.random() < 0.05:
        ncols = rng.randint(20_000, 40_000)
    header = [rng.choice([b"a", b"b", b"", b"a_2"]) if rng.random() < 0.3 else b"c%d" % j for j in range(ncols)]
    numeric = rng.random() < 0.6
    rows = [header] + [[number(rng) if numeric else rng.choice([b"x", b"1", b"y"]) for _ in range(ncols)]
                       for _ in range(rng.randint(0, 3))]
    if len(rows) > 1 and rng.random() < 0.2:
        rows[-1] = rows[-1][:-1]  # ragged
    return table_bytes(rng, rows)


def gen_repeated_names(rng: random.Random) -> bytes:
    pool = [b"a", b"a", b"a", b"a_2", b"", b"a_3", b" a", b"column_2", b"b", b"a_2_2"]
    ncols = rng.choice([rng.randint(2, 50), rng.randint(50, 3000)])
    rows = [[rng.choice(pool) for _ in range(ncols)]] + [[number(rng) for _ in range(ncols)]
                                                         for _ in range(rng.randint(1, 3))]
    return table_bytes(rng, rows)


def gen_quotes(rng: random.Random) -> bytes:
    def cell() -> bytes:
        text = rng.choice([b"1", b"abc", b"2.5", b"a,b", b"x\ny", b'say ""hi""', b"", b"NA"])
        style = rng.random()
        if style < 0.4:
            return text
        if style < 0.7:
            return b'"' + text + b'"'
        return rng.choice([b'"' + text, text + b'"', b'"' + text + b'"x', b'x"' + text, b'"' + text + b'""',
                           b'"' + text + b'"' + b'"', b'""' + text])
    ncols = rng.randint(1, 5)
    return table_bytes(rng, [[b"c%d" % j for j in range(ncols)]] + [[cell() for _ in range(ncols)]
                                                                    for _ in range(rng.randint(1, 8))])


def corrupt(rng: random.Random, source: bytes, pieces: list[bytes], count: int) -> bytes:
    """``source`` with ``count`` pieces inserted at random places."""
    data = bytearray(source)
    for _ in range(count):
        at = rng.randint(0, len(data))
        data[at:at] = rng.choice(pieces)
    return bytes(data)


def plain_table(rng: random.Random) -> bytes:
    ncols = rng.randint(1, 4)
    numeric = rng.random() < 0.6
    rows = [[b"c%d" % j for j in range(ncols)]] + [[number(rng) if numeric else rng.choice([b"x", b"y", b"true"])
                                                    for _ in range(ncols)] for _ in range(rng.randint(1, 10))]
    return table_bytes(rng, rows)


def gen_nul(rng: random.Random) -> bytes:
    return corrupt(rng, plain_table(rng), [b"\x00", b"\x00\x00", b"1\x002"], rng.randint(1, 3))


def gen_bad_utf8(rng: random.Random) -> bytes:
    return corrupt(rng, plain_table(rng), [b"\xff", b"\xc3", b"\xe9", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80",
                                            b"\xc3\xa9", b"\xe2\x82"], rng.randint(1, 3))


def gen_bom(rng: random.Random) -> bytes:
    source = plain_table(rng)
    choice = rng.random()
    if choice < 0.3:
        return b"\xef\xbb\xbf" + source
    if choice < 0.5:
        return b"\xef\xbb\xbf\xef\xbb\xbf" + source
    if choice < 0.7:
        return b"\xff\xfe" + source
    return corrupt(rng, source, [b"\xef\xbb\xbf"], 1)


def gen_line_ends(rng: random.Random) -> bytes:
    source = plain_table(rng)
    choice = rng.random()
    if choice < 0.3:
        return source.replace(b"\r\n", b"\r").replace(b"\n", b"\r")  # CR only
    if choice < 0.6:
        return corrupt(rng, source, [b"\n", b"\r", b"\r\n", b"\n\n", b"\r\r"], rng.randint(1, 4))
    return corrupt(rng, source, [b" \n", b",\n", b"\n,", b"\t\r\n"], rng.randint(1, 3))


def gen_ragged(rng: random.Random) -> bytes:
    ncols = rng.randint(1, 5)
    rows = [[b"c%d" % j for j in range(ncols)]]
    rows += [[number(rng) for _ in range(max(0, ncols + rng.choice([-2, -1, 0, 0, 0, 1, 2])))]
             for _ in range(rng.randint(1, 8))]
    return table_bytes(rng, rows)


def gen_big_ints(rng: random.Random) -> bytes:
    def big() -> bytes:
        n = rng.choice([rng.randint(18, 21), rng.randint(20, 400), rng.randint(4000, 6000)])
        return rng.choice([b"", b"-", b"+"]) + b"0" * rng.choice([0, 0, 3, 5000]) + digits(rng, n)
    rows = [[b"a", b"b"]] + [[big() if rng.random() < 0.5 else number(rng), big()] for _ in range(rng.randint(1, 5))]
    return table_bytes(rng, rows)


def gen_exponents(rng: random.Random) -> bytes:
    rows = [[b"a", b"b"]] + [[rng.choice(EXPONENTS), rng.choice(EXPONENTS + [b"1", b"2.5"])]
                             for _ in range(rng.randint(1, 6))]
    return table_bytes(rng, rows)


def gen_specials(rng: random.Random) -> bytes:
    rows = [[b"a", b"b"]] + [[rng.choice(SPECIALS + [b"1", b"2.5"]), rng.choice(SPECIALS)]
                             for _ in range(rng.randint(1, 6))]
    return table_bytes(rng, rows)


def gen_tiny(rng: random.Random) -> bytes:
    return rng.choice(TINY)


def gen_soup(rng: random.Random) -> bytes:
    return b"".join(rng.choices(SOUP, k=rng.randint(1, rng.choice([20, 200, 2000]))))


GENERATORS: list[tuple[Callable[[random.Random], bytes], int]] = [  # (generator, files)
    (gen_digit_run, 300), (gen_huge_field, 12), (gen_many_columns, 60), (gen_repeated_names, 150),
    (gen_quotes, 250), (gen_nul, 150), (gen_bad_utf8, 150), (gen_bom, 120), (gen_line_ends, 200),
    (gen_ragged, 150), (gen_big_ints, 200), (gen_exponents, 150), (gen_specials, 150), (gen_tiny, len(TINY)),
    (gen_soup, 250),
]


def options(rng: random.Random) -> dict:
    """read_csv arguments for one file: mostly the defaults, sometimes others (never ones that may be wrong for
    the data, such as missing="mean" for a text column: that is a ValueError about the arguments)."""
    kwargs: dict = {}
    if rng.random() < 0.2:
        kwargs["errors"] = "collect"
    if rng.random() < 0.1:
        kwargs["header"] = False
    if rng.random() < 0.1:
        kwargs["parse_dates"] = True
    if rng.random() < 0.1:
        kwargs["dtypes"] = {"a": rng.choice(["int", "float", "bool", "category", "str", "datetime", np.float32])}
    if rng.random() < 0.1:
        kwargs["missing"] = "drop_row"
    if rng.random() < 0.05:
        kwargs["encoding"] = "latin-1"
    if rng.random() < 0.05:
        kwargs["delimiter"] = rng.choice([",", ";", "\t"])
    return kwargs


def corpus(seed: int = 19) -> Iterator[tuple[str, bytes, dict, str]]:
    """(name, bytes, read_csv arguments, engine) for every file of the corpus, the same on every run."""
    rng = random.Random(seed)
    for generate, count in GENERATORS:
        for i in range(count):
            source = TINY[i] if generate is gen_tiny else generate(rng)
            yield f"{generate.__name__[4:]}_{i}.csv", source, options(rng), rng.choice(["auto", "numpy"])


def physical_lines(source: bytes) -> int:
    return source.count(b"\n") + source.count(b"\r") - source.count(b"\r\n") + 1


WHOLE_FILE_PROBLEMS = ("the file is empty", "not found")  # the problems that have no line (with header=False)
SECONDS_PER_MB = 20.0  # measured: 11-14 s for the corpus's 13.9 MB (2 shared cores)


def test_fuzzed_files_read_or_raise_csverror_in_linear_time(tmp_path: Path) -> None:
    """2,321 generated hostile files: each reads, or raises a CSVError whose problems name the file and a line
    (there is none only for a whole-file problem); never another exception.

    The whole corpus must take less than 60 s plus 20 s per MB (338 s): about 25x what it takes on a shared 2-core
    machine, so a slow CI machine does not flake, while before the fix a single 100 KB digit run of the corpus took
    more than that (the files up to 20 KB alone took 44 s, and 64 of them raised a raw ValueError)."""
    files = list(corpus())
    assert len(files) >= 2000
    total_bytes = sum(len(source) for _, source, _, _ in files)
    budget = 60.0 + SECONDS_PER_MB * total_bytes / 1e6
    outcomes = {"table": 0, "error": 0}
    start = time.perf_counter()
    for name, source, kwargs, engine in files:
        path = tmp_path / name
        path.write_bytes(source)
        saved, fastparse.ENGINE = fastparse.ENGINE, engine
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read_csv(str(path), **kwargs)
            outcomes["table"] += 1
        except CSVError as e:
            outcomes["error"] += 1
            assert e.problems, name
            for problem in e.problems:
                assert problem.file == str(path) and str(problem).startswith(f"{path}"), (name, str(e))
                if problem.line is None:
                    assert any(text in problem.message for text in WHOLE_FILE_PROBLEMS), (name, str(e))
                else:
                    assert 1 <= problem.line <= physical_lines(source), (name, str(e))
        except Exception as e:  # noqa: BLE001 - the point of the test: say which file raised what
            pytest.fail(f"{name} ({kwargs}, engine {engine}): {type(e).__name__}: {e}\n{source[:300]!r}")
        finally:
            fastparse.ENGINE = saved
        path.unlink()
    elapsed = time.perf_counter() - start
    assert outcomes["table"] > 300 and outcomes["error"] > 300  # the corpus exercises both outcomes
    assert elapsed < budget, f"{len(files)} files, {total_bytes:,} bytes: {elapsed:.1f} s (budget {budget:.0f} s)"


def test_an_unknown_target_in_a_wide_file_lists_a_few_columns(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(1000)) + "\n" + ",".join("1" * 1000) + "\n")
    with pytest.raises(CSVError) as info:
        read_csv(path, target="nope")
    message = str(info.value)
    assert 'target column "nope" not found' in message
    assert "(columns: c0, c1, " in message and "c29, ... (970 more))" in message and "c30," not in message
