"""read_csv: the malformed-file corpus (exact messages), collect mode, inference, dtypes, missing values, the fast
path against the careful one, the files registry, and round-trip property tests."""
from __future__ import annotations

import contextlib
import csv
import io
import math
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygrad_nb import data
from tinygrad_nb.data import CSVError, fastparse, read_csv

CORPUS = Path(__file__).parent / "data"
MISSING_HINT = '(use missing="drop_row", "mean" or ("fill", value) to accept missing values)'


def corpus(name: str) -> str:
    return str(CORPUS / name)


def error_of(path: str, **kwargs) -> CSVError:
    with pytest.raises(CSVError) as info:
        read_csv(path, **kwargs)
    return info.value


# -- the malformed corpus: each file's exact message and location ---------------------------------------------------
@pytest.mark.parametrize("name, message", [
    ("bad_number.csv", ':7: column "y": "abc" is not a number (column inferred as float from rows 2-6)'),
    ("bad_int.csv", ':5: column "count": "12x" is not a number (column inferred as int from rows 2-4)'),
    ("bad_bool.csv", ':5: column "flag": "maybe" is not a boolean (column inferred as bool from rows 2-4)'),
    ("ragged_rows.csv", ":4: expected 3 fields like the header, found 2"),
    ("empty.csv", ": the file is empty"),
    ("blank.csv", ": the file is empty"),
    ("header_only.csv", ":1: the file has a header but no data rows"),
    ("bom_crlf.csv", ':4: column "value": "n/a?" is not a number (column inferred as float from rows 2-3)'),
    ("mixed_line_endings.csv", ':4: column "b": "x" is not a number (column inferred as int from rows 2-3)'),
    ("quoted_delimiters.csv", ':4: column "score": "eighty" is not a number (column inferred as int from rows 2-3)'),
    ("quoted_newlines.csv", ':8: column "rating": "bad" is not a number (column inferred as float from rows 2-7)'),
    ("unclosed_quote.csv", ":3: a quoted field is never closed (the quote runs to the end of the file)"),
    ("latin1.csv", (':3: byte 0xe9 at position 4 is not valid utf-8 text; pass encoding=... (e.g. '
                    'encoding="latin-1") if the file uses another encoding')),
    ("missing_values.csv", f':3: column "age": missing value "" {MISSING_HINT}'),
])
def test_corpus_error_message(name: str, message: str) -> None:
    error = error_of(corpus(name))
    assert str(error) == corpus(name) + message
    assert isinstance(error, ValueError)
    problem = error.problems[0]
    assert problem.file == corpus(name)
    assert str(problem) == str(error)


def test_problem_records_are_structured() -> None:
    problem = error_of(corpus("bad_number.csv")).problems[0]
    assert (problem.line, problem.column, problem.value) == (7, "y", "abc")
    assert problem.message == '"abc" is not a number (column inferred as float from rows 2-6)'
    ragged = error_of(corpus("ragged_rows.csv")).problems[0]
    assert (ragged.line, ragged.column, ragged.value) == (4, None, None)


def test_missing_target_column_suggests_the_closest_name() -> None:
    error = error_of(corpus("species.csv"), target="specie")
    assert str(error) == (corpus("species.csv") + ':1: target column "specie" not found; did you mean "species"? '
                          "(columns: sepal_length, species)")
    error = error_of(corpus("species.csv"), target="zzz")
    assert str(error).endswith(':1: target column "zzz" not found (columns: sepal_length, species)')


def test_unknown_dtypes_column_is_reported() -> None:
    error = error_of(corpus("species.csv"), dtypes={"speces": "category"})
    assert 'dtypes column "speces" not found; did you mean "species"?' in str(error)


def test_bom_is_not_part_of_the_first_name_and_crlf_lines_count() -> None:
    table = read_csv(corpus("bom_crlf.csv"), na_values=["n/a?"], missing="drop_row")
    assert table.names == ["id", "value"]
    assert table["id"].tolist() == [1, 2, 4]
    assert table["value"].tolist() == [0.5, 1.5, 2.5]


def test_quoted_delimiters_and_newlines_are_values() -> None:
    table = read_csv(corpus("quoted_newlines.csv"), dtypes={"rating": "str"})
    assert table.decode("comment", table["comment"]) == ["first line\nsecond line", "one\r\ntwo\r\nthree", "plain",
                                                         "x"]
    names = read_csv(corpus("quoted_delimiters.csv"), dtypes={"score": "str"})
    assert names.vocabularies["name"] == ["Doe, Jane", "Roe, Richard", "Smith, John"]


# -- collect mode ---------------------------------------------------------------------------------------------------
def test_collect_reports_every_problem_in_file_order() -> None:
    error = error_of(corpus("bad_number.csv"), errors="collect")
    assert [(p.line, p.column, p.value) for p in error.problems] == [(7, "y", "abc"), (9, "y", "oops")]
    assert str(error).splitlines() == [
        corpus("bad_number.csv") + ": 2 problems",
        "  " + corpus("bad_number.csv") + ':7: column "y": "abc" is not a number (column inferred as float from '
                                          "rows 2-6)",
        "  " + corpus("bad_number.csv") + ':9: column "y": "oops" is not a number (column inferred as float from '
                                          "rows 2-6)"]


def test_collect_mixes_row_and_value_problems(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("a,b\n1,2\n3,x\n4\n5,6\n,7\n")
    error = error_of(str(path), errors="collect")
    assert [(p.line, p.column) for p in error.problems] == [(3, "b"), (4, None), (6, "a")]
    assert error.problems[2].message.startswith('missing value ""')
    first = error_of(str(path))  # raise mode reports the earliest problem, whichever scan found it
    assert first.problems[0].line == 3 and len(first.problems) == 1


def test_collect_stops_at_max_errors(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text("v\n1.5\n" + "".join(f"bad{i}\n" for i in range(30)))
    error = error_of(str(path), errors="collect", max_errors=5)
    assert len(error.problems) == 5 and error.truncated
    assert [p.line for p in error.problems] == [3, 4, 5, 6, 7]
    assert str(error).splitlines()[0] == f"{path}: 5+ problems (showing the first 5; raise max_errors to see more)"
    everything = error_of(str(path), errors="collect", max_errors=100)
    assert len(everything.problems) == 30 and not everything.truncated


def test_ragged_rows_with_collect_and_no_header(tmp_path: Path) -> None:
    path = tmp_path / "noheader.csv"
    path.write_text("1,2\n3,4,5\n6,7\n")
    error = error_of(str(path), header=False)
    assert str(error) == f"{path}:2: expected 2 fields like line 1, found 3"


# -- inference, dtypes, delimiters ----------------------------------------------------------------------------------
def test_type_inference(tmp_path: Path) -> None:
    path = tmp_path / "types.csv"
    path.write_text("i,f,b,c,e,big\n1,1.5,true,red,1e3,99999999999999999999\n-2,-0.25,False,blue,2.5E-3,1\n"
                    "+3,7,TRUE,red,-4,2\n")
    table = read_csv(str(path))
    assert table.types == {"i": "int", "f": "float", "b": "bool", "c": "category", "e": "float", "big": "float"}
    assert table["i"].tolist() == [1, -2, 3] and table["i"].dtype == np.int64
    assert table["f"].tolist() == [1.5, -0.25, 7.0]
    assert table["b"].tolist() == [True, False, True]
    assert table.vocabularies["c"] == ["blue", "red"] and table["c"].tolist() == [1, 0, 1]
    assert table["e"].tolist() == [1000.0, 0.0025, -4.0]


def test_datetime_parsing(tmp_path: Path) -> None:
    path = tmp_path / "dates.csv"
    path.write_text("when,v\n2024-01-31,1\n2024-02-01 12:30,2\n")
    assert read_csv(str(path)).types["when"] == "category"
    table = read_csv(str(path), parse_dates=True)
    assert table.types["when"] == "datetime"
    assert table["when"].tolist()[1] == np.datetime64("2024-02-01T12:30").astype(object)
    assert read_csv(str(path), parse_dates=["when"]).types["when"] == "datetime"
    path.write_text("when,v\n2024-01-31,1\n2024-02-30,2\n")
    assert str(error_of(str(path), parse_dates=True)).endswith(
        ':3: column "when": "2024-02-30" is not a date (column inferred as datetime from row 2)')


def test_dtypes_override(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,c,d\n1,2,0,x\n3,4,1,y\n")
    table = read_csv(str(path), dtypes={"a": "float", "b": np.float32, "c": "bool", "d": "str"})
    assert table["a"].dtype == np.float64 and table["b"].dtype == np.float32 and table["c"].dtype == bool
    assert table.types == {"a": "float", "b": "float", "c": "bool", "d": "str"}
    assert table["d"].tolist() == ["x", "y"]
    assert read_csv(str(path), dtypes={"a": "category"}).vocabularies["a"] == ["1", "3"]
    assert read_csv(str(path), dtypes={"a": np.int32})["a"].dtype == np.int32
    path.write_text("a\n1\n2.5\n")
    assert str(error_of(str(path), dtypes={"a": "int"})).endswith(
        ':3: column "a": "2.5" is not an integer (column declared as int in dtypes)')
    with pytest.raises(ValueError, match="unknown type"):
        read_csv(str(path), dtypes={"a": "decimal"})


@pytest.mark.parametrize("delimiter", [",", "\t", ";", "|"])
def test_delimiter_sniffing(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(delimiter.join(["a", "b", "c"]) + "\n" + delimiter.join(["1", "2.5", "x,y" if delimiter != ","
                                                                              else "z"]) + "\n")
    table = read_csv(str(path))
    assert table.names == ["a", "b", "c"] and table["b"].tolist() == [2.5]


def test_semicolons_are_sniffed_even_with_decimal_commas() -> None:
    table = read_csv(corpus("semicolon.csv"))
    assert table.names == ["a", "b", "c"] and table["b"].tolist() == [2, 4]
    assert table.vocabularies["a"] == ["1,5", "3,5"]  # decimal commas are not numbers: use dtypes or convert


def test_file_objects_and_header_false() -> None:
    table = read_csv(io.StringIO("1,2\n3,4\n"), header=False)
    assert table.names == ["column_1", "column_2"] and table["column_2"].tolist() == [2, 4]
    assert table.source == "<stream>"


def test_duplicate_and_empty_header_names(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("x,,x\n1,2,3\n")
    with pytest.warns(UserWarning, match='column name "x" appears more than once'):
        table = read_csv(str(path))
    assert table.names == ["x", "column_2", "x_2"]


# -- missing values -------------------------------------------------------------------------------------------------
def test_missing_value_policies() -> None:
    path = corpus("missing_values.csv")
    dropped = read_csv(path, missing="drop_row")
    assert dropped["age"].tolist() == [30] and dropped.vocabularies["city"] == ["Paris"]
    assert dropped.missing == {"age": 1, "height": 1, "city": 1}
    table = read_csv(path, missing={"age": "mean", "height": ("fill", 0.0), "city": ("fill", "unknown")})
    assert table["age"].tolist() == [30.0, 40.0, 40.0, 50.0] and table.types["age"] == "float"
    assert table["height"].tolist() == [1.8, 1.65, 0.0, 1.7]
    assert table.decode("city", table["city"]) == ["Paris", "Rome", "Paris", "unknown"]
    filled = read_csv(path, fill={"age": -1, "height": float("nan"), "city": "?"})
    assert filled["age"].tolist() == [30, -1, 40, 50] and filled.types["age"] == "int"
    assert math.isnan(filled["height"][2])
    mixed = read_csv(path, missing={"city": "drop_row"}, fill={"age": 0, "height": 0.0})
    assert mixed["age"].tolist() == [30, 0, 40]
    with pytest.raises(ValueError, match='missing="mean" needs numbers'):
        read_csv(path, missing="mean")
    with pytest.raises(ValueError, match="must be"):
        read_csv(path, missing="ignore")


def test_missing_values_on_the_fast_path_report_physical_lines(tmp_path: Path) -> None:
    path = tmp_path / "num.csv"
    path.write_bytes(b"a,b\r\n1,2\r\n3,NA\r\n5,6\r\n,8\r\n")
    error = error_of(str(path), errors="collect")
    assert [(p.line, p.column, p.value) for p in error.problems] == [(3, "b", "NA"), (5, "a", "")]
    table = read_csv(str(path), missing="mean")
    assert table["a"].tolist() == [1.0, 3.0, 5.0, 3.0] and table["b"].tolist() == [2.0, 16 / 3, 6.0, 8.0]
    assert read_csv(str(path), missing="drop_row")["a"].tolist() == [1, 5]


# -- the fast path agrees with the careful one ----------------------------------------------------------------------
def careful_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise fastparse.NotFast("disabled by the test")
    monkeypatch.setattr(fastparse, "parse_numeric", refuse)


NUMBERS = ["0", "-0", "+5", "007", ".5", "5.", "-.25", "1E5", "1e-400", "inf", "-Infinity", "9223372036854775807",
           "-9223372036854775808", "99999999999999999999", "0.000", "1e+22", "1e23", "123456789012345678",
           "12345678901234567.5", "9007199254740993", "0.1e1", "1.5E-3", "3.141592653589793", "2.2250738585072014e-308"]


def test_fast_and_careful_paths_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    cols = [rng.integers(-10 ** 6, 10 ** 6, 300).astype(str), np.char.mod("%.6f", rng.normal(size=300) * 100),
            np.array([repr(float(v)) for v in rng.normal(size=300) * 10.0 ** rng.integers(-30, 30, 300)]),
            rng.choice(NUMBERS, 300)]
    path = tmp_path / "n.csv"
    path.write_text("a,b,c,d\n" + "\n".join(",".join(row) for row in zip(*cols)) + "\n")
    fast = read_csv(str(path))
    careful_only(monkeypatch)
    slow = read_csv(str(path))
    assert fast.types == slow.types == {"a": "int", "b": "float", "c": "float", "d": "float"}
    for name in fast.names:
        assert np.array_equal(fast[name], slow[name]) and fast[name].dtype == slow[name].dtype
    assert np.array_equal(fast["d"], np.array([float(v) for v in cols[3]]))


def test_plain_numeric_files_take_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tinygrad_nb.data import reader

    def no_careful_path(*args, **kwargs):
        raise AssertionError("the careful path was used")
    monkeypatch.setattr(reader, "_read_careful", no_careful_path)
    path = tmp_path / "fast.csv"
    path.write_bytes(b"a,b,c\r\n1,-2.5,3e-2\r\n4,,+1E+3\r\n-7,0.125,NA\r\n")
    table = read_csv(str(path), missing="mean")
    assert table.types == {"a": "int", "b": "float", "c": "float"}
    assert table["b"].tolist() == [-2.5, -1.1875, 0.125] and table["c"].tolist() == [0.03, 1000.0, 500.015]
    read_csv(str(CORPUS.parent.parent / "tinygrad_nb" / "datasets" / "digits.csv"))


def test_fast_path_matches_python_float_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(size=2000) * 10.0 ** rng.integers(-20, 20, 2000), rng.random(2000)])
    texts = [repr(float(v)) for v in values] + [f"{v:.{k}f}" for v, k in zip(values, rng.integers(0, 10, 4000))]
    path = tmp_path / "f.csv"
    path.write_text("x\n" + "\n".join(texts) + "\n")
    parsed = read_csv(str(path))["x"]
    assert parsed.view(np.uint64).tolist() == np.array([float(t) for t in texts]).view(np.uint64).tolist()


# -- the files registry -----------------------------------------------------------------------------------------
def test_files_read_records_hash_size_and_mtime(tmp_path: Path) -> None:
    import xxhash
    path = tmp_path / "r.csv"
    path.write_text("a\n1\n")
    read_csv(str(path))
    record = next(r for r in data.files_read() if r["path"] == str(path.resolve()))
    assert record["size"] == 4 and record["mtime_ns"] == path.stat().st_mtime_ns
    assert record["xxh3_128"] == xxhash.xxh3_128(b"a\n1\n").hexdigest()
    path.write_text("a\n22\n")
    read_csv(str(path))
    record = next(r for r in data.files_read() if r["path"] == str(path.resolve()))
    assert record["xxh3_128"] == xxhash.xxh3_128(b"a\n22\n").hexdigest()
    assert sum(r["path"] == str(path.resolve()) for r in data.files_read()) == 1


# -- to_tensors and the schema ----------------------------------------------------------------------------------
def test_to_tensors_and_schema() -> None:
    from tinygrad_nb import datasets
    iris = datasets.load("iris")
    X, y = iris.to_tensors()
    assert X.shape == (150, 4) and X.dtype == np.float32 and y.dtype == np.int64
    assert sorted(set(y.tolist())) == [0, 1, 2]
    assert iris.decode("species", y[:1]) == ["setosa"]
    Xh, _ = iris.to_tensors(features=["species"], target="petal_width", one_hot=True)
    assert Xh.shape == (150, 3) and Xh.numpy().sum() == 150
    _, yr = datasets.load("diabetes").to_tensors()
    assert yr.dtype == np.float32
    text = repr(iris.schema)
    assert "species       category  int64    0        3" in text
    assert iris.state_dict()["vocabularies"] == {"species": ["setosa", "versicolor", "virginica"]}
    with pytest.raises(KeyError, match='did you mean "species"'):
        iris["specis"]


# -- property tests: random tables written with csv.writer read back identically ------------------------------------
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
floats = st.floats(allow_nan=False, allow_infinity=True, width=64)
KINDS = {"int": st.integers(-2 ** 63, 2 ** 63 - 1), "float": floats, "bool": st.booleans(), "str": text}


@st.composite
def tables(draw):
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=5))
    rows = draw(st.integers(1, 12))
    columns = [draw(st.lists(KINDS[k], min_size=rows, max_size=rows)) for k in kinds]
    return kinds, columns


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.sampled_from(["\r\n", "\n"]), st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_NONNUMERIC]))
def test_random_tables_round_trip(table, terminator, quoting) -> None:
    kinds, columns = table
    if quoting == csv.QUOTE_NONNUMERIC and "bool" in kinds:
        quoting = csv.QUOTE_MINIMAL  # QUOTE_NONNUMERIC writes bools as numbers
    if terminator == "\n" and any("\r" in v for k, c in zip(kinds, columns) if k == "str" for v in c):
        quoting = csv.QUOTE_ALL  # csv.writer leaves a lone \r unquoted unless it is in the line terminator
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=terminator, quoting=quoting)
    names = [f"c{i}" for i in range(len(kinds))]
    writer.writerow(names)
    writer.writerows(zip(*columns))
    dtypes = {n: "category" for n, k in zip(names, kinds) if k == "str"}
    result = read_csv(io.StringIO(buffer.getvalue()), dtypes=dtypes, na_values=(), delimiter=",")
    for name, kind, values in zip(names, kinds, columns):
        column = result[name]
        if kind == "str":
            assert result.decode(name, column) == values
        elif kind == "float":
            assert result.types[name] == "float"
            assert column.tolist() == values and np.array_equal(np.signbit(column), np.signbit(values))
        else:
            assert result.types[name] == kind and column.tolist() == values


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.integers(-10 ** 12, 10 ** 12), floats), min_size=3, max_size=3),
                min_size=1, max_size=40))
def test_numeric_tables_read_like_python_floats(rows) -> None:
    body = "\n".join(",".join(repr(v) for v in row) for row in rows)
    result = read_csv(io.StringIO("a,b,c\n" + body + "\n"))
    expected = np.array([[float(v) for v in row] for row in rows])
    got = np.column_stack([result[n].astype(np.float64) for n in "abc"])
    assert np.array_equal(got, expected)


# -- the optional pyarrow parser: the same tables, the same errors, and actually used --------------------------------
ENGINES = ["numpy", "arrow"]


@contextlib.contextmanager
def engine_set(engine: str | None):
    """``fastparse.ENGINE`` = engine inside (None: no fast path at all, only the careful path)."""
    saved, fastparse.ENGINE = fastparse.ENGINE, "numpy" if engine is None else engine
    refuse = mock.patch.object(fastparse, "parse_numeric", side_effect=fastparse.NotFast("disabled by the test"))
    try:
        with refuse if engine is None else contextlib.nullcontext():
            yield
    finally:
        fastparse.ENGINE = saved


def need(engine: str) -> None:
    if engine == "arrow":
        pytest.importorskip("pyarrow")


def read_outcome(source: bytes, engine: str | None, **kwargs) -> tuple:
    """What read_csv makes of the bytes with one engine: the table bit for bit, or the error message."""
    with engine_set(engine):
        try:
            table = read_csv(io.BytesIO(source), **kwargs)
        except ValueError as e:  # a CSVError, or e.g. nothing to average for missing="mean"
            return ("error", type(e).__name__, str(e))
    return ("table", table.names, table.types, table.missing,
            [(table[n].dtype.str, table[n].tobytes()) for n in table.names])


INT_TEXT = st.one_of(st.integers(-10 ** 6, 10 ** 6).map(str), st.integers(-2 ** 63, 2 ** 63 - 1).map(str),
                     st.integers(0, 99).map(lambda v: f"+{v}"), st.sampled_from(["-0", "007", "-00", "+0"]),
                     st.integers(2 ** 63 - 3, 2 ** 64).map(lambda v: str(v) if v % 2 else f"-{v}"))
FLOAT_TEXT = st.one_of(
    st.floats(allow_nan=False, width=64).map(repr),  # shortest round trip: up to 17 digits, exponents
    st.tuples(st.floats(-1e6, 1e6), st.integers(0, 8)).map(lambda t: f"{t[0]:.{t[1]}f}"),
    st.tuples(st.floats(allow_nan=False, allow_infinity=False), st.integers(0, 20), st.sampled_from("eE")).map(
        lambda t: f"{t[0]:.{t[1]}{t[2]}}"),
    st.tuples(st.integers(0, 10 ** 20), st.integers(0, 10 ** 6), st.integers(-330, 310)).map(
        lambda t: f"{t[0]}.{t[1]}e{t[2]:+d}"),
    st.sampled_from([".5", "5.", "-.25", "1E5", "1e-400", "1e400", "inf", "-Infinity", "NAN", "-nan", "+inf",
                     "0.000", "9007199254740993", "2.2250738585072014e-308", "4.9e-324", " 1.5", "2.5\t"]))
MISSING_TEXT = st.sampled_from(["", "NA", "nan", "None", "null", "N/A"])


@st.composite
def numeric_files(draw, allow_text: bool = False):
    """A header and 1-30 rows of numbers (some columns integers, some missing values), as bytes."""
    ncols = draw(st.integers(1, 4))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    terminator = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    kinds = [draw(st.sampled_from(["int", "float", "mixed"])) for _ in range(ncols)]
    missing_rate = draw(st.sampled_from([0.0, 0.0, 0.2]))
    rows = []
    for _ in range(draw(st.integers(1, 30))):
        row = []
        for kind in kinds:
            if missing_rate and draw(st.floats(0, 1)) < missing_rate:
                row.append(draw(MISSING_TEXT))
            elif kind == "int" or (kind == "mixed" and draw(st.booleans())):
                row.append(draw(INT_TEXT))
            else:
                row.append(draw(FLOAT_TEXT))
        rows.append(row)
    if allow_text and draw(st.booleans()):
        row = draw(st.sampled_from(rows))
        row[draw(st.integers(0, ncols - 1))] = draw(st.sampled_from(["abc", '"1"', "0x1F", "nan(2)", "1_0", " NA",
                                                                    "1.-5", "\u0661", "true"]))
    lines = [delimiter.join(f"c{j}" for j in range(ncols))] + [delimiter.join(row) for row in rows]
    text = terminator.join(lines) + terminator * draw(st.integers(0, 2))
    return text.encode(), delimiter


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=numeric_files(allow_text=True), policy=st.sampled_from(["error", "fill", "mean"]),
       declared=st.booleans())
def test_fast_paths_read_random_numeric_files_like_the_careful_path(engine, file, policy, declared) -> None:
    need(engine)
    source, delimiter = file
    kwargs = {"delimiter": delimiter, "errors": "collect"}
    if policy == "fill":
        kwargs["fill"] = 0
    elif policy == "mean":
        kwargs["missing"] = "mean"
    if declared:  # the floats of int columns are used (an int "-0" is -0.0 there)
        kwargs["dtypes"] = {"c0": "float"}
    assert read_outcome(source, engine, **kwargs) == read_outcome(source, None, **kwargs)


def assert_same_blocks(a: fastparse.NumericBlock, b: fastparse.NumericBlock) -> None:
    assert a.floats.shape == b.floats.shape
    assert a.floats.view(np.uint64).tolist() == b.floats.view(np.uint64).tolist()
    assert a.int_columns.tolist() == b.int_columns.tolist()
    assert a.ints[:, a.int_columns].tolist() == b.ints[:, b.int_columns].tolist()
    assert (a.missing is None) == (b.missing is None)
    if a.missing is not None:
        assert a.missing.tolist() == b.missing.tolist()
    assert a.missing_text == b.missing_text


def parse_with(engine: str, source: bytes, delimiter: str, **kwargs) -> fastparse.NumericBlock | None:
    start = source.index(b"\r" if b"\r" in source[:source.find(b"\n") + 1 or None] else b"\n")
    start += 2 if source[start:start + 2] == b"\r\n" else 1
    ncols = source[:start].count(delimiter.encode()) + 1
    try:
        return fastparse.parse_numeric(source, start, ncols, delimiter, frozenset(data.DEFAULT_NA_VALUES),
                                       engine=engine, **kwargs)
    except fastparse.NotFast:
        return None


def first_block_inference(arrowparse):
    """Make the pyarrow parser meet what older pyarrow does when a later block has another type than the first:
    the read with inferred types fails, and the parser reads every column as float64 instead."""
    read = arrowparse._Reader.read

    def failing_inference(self, body, types=None, columns=None, threads=True):
        if types is None:
            try:
                raise ValueError("In CSV column #0: CSV conversion error to int64: invalid value '2.5'")
            except ValueError as e:
                raise fastparse.NotFast("pyarrow") from e
        return read(self, body, types, columns, threads)
    return mock.patch.object(arrowparse._Reader, "read", failing_inference)


@pytest.mark.parametrize("mode", ["default", "small blocks", "first-block inference"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=numeric_files(allow_text=True))
def test_arrow_and_numpy_parsers_give_the_same_blocks(mode, file) -> None:
    arrowparse = pytest.importorskip("tinygrad_nb.data.arrowparse")
    pytest.importorskip("pyarrow")
    source, delimiter = file
    numpy_block = parse_with("numpy", source, delimiter)
    with contextlib.ExitStack() as stack:
        if mode == "small blocks":  # many chunks per column, types inferred across blocks
            stack.enter_context(mock.patch.object(arrowparse, "BLOCK_BYTES", 512))
        elif mode == "first-block inference":
            stack.enter_context(first_block_inference(arrowparse))
        arrow_block = parse_with("arrow", source, delimiter)
    if numpy_block is None:
        assert arrow_block is None
        return
    if arrow_block is None:  # the files it leaves to the numpy parser: a row with nothing in it, a spaced " NA",
        missing = numpy_block.missing  # non-ASCII digits
        assert not source.isascii() or missing is not None and (
            missing.all(axis=1).any() or any(t != t.strip() for t in numpy_block.missing_text.values()))
        return
    assert_same_blocks(arrow_block, numpy_block)


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(width=64, allow_nan=False), min_size=1, max_size=50),
       style=st.sampled_from(["repr", ".17g", ".17e", ".20f"]))
def test_fast_paths_read_floats_bit_for_bit_like_python(engine, values, style) -> None:
    need(engine)
    texts = [repr(v) if style == "repr" else format(v, style) for v in values]
    block = parse_with(engine, ("x\n" + "\n".join(texts) + "\n").encode(), ",")
    assert block is not None
    assert block.floats[:, 0].view(np.uint64).tolist() == np.array([float(t) for t in texts]).view(np.uint64).tolist()


def test_the_arrow_path_is_taken_for_plain_numeric_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyarrow")
    from tinygrad_nb.data import reader

    def not_this_path(*args, **kwargs):
        raise AssertionError("the numpy parser or the careful path was used")
    monkeypatch.setattr(fastparse, "parse_numeric_numpy", not_this_path)
    monkeypatch.setattr(reader, "_read_careful", not_this_path)
    path = tmp_path / "plain.csv"
    path.write_bytes(b"a,b,c,d\r\n1,-2.5,3e-2,-0\r\n4,,+1E+3,+7\r\n-7,0.125,NA,0\r\n\r\n")
    table = read_csv(str(path), missing="mean", dtypes={"d": "float"})
    assert table.types == {"a": "int", "b": "float", "c": "float", "d": "float"}
    assert table["b"].tolist() == [-2.5, -1.1875, 0.125] and table["c"].tolist() == [0.03, 1000.0, 500.015]
    assert np.signbit(table["d"]).tolist() == [True, False, False] and table["d"].tolist() == [0.0, 7.0, 0.0]
    assert str(path.resolve()) in [r["path"] for r in data.files_read()]
    error = error_of(str(path), errors="collect")  # missing values: the same lines and texts as ever
    assert [(p.line, p.column, p.value) for p in error.problems] == [(3, "b", ""), (4, "c", "NA")]
    rng = np.random.default_rng(3)  # a file larger than Arrow's blocks, with an int and a float column
    big = tmp_path / "big.csv"
    big.write_text("i,x\n" + "\n".join(f"{i},{float(x)!r}" for i, x in zip(rng.integers(-9, 9, 60_000), rng.normal(
        size=60_000))) + "\n")
    table = read_csv(str(big))
    assert table.types == {"i": "int", "x": "float"} and table.num_rows == 60_000


def big_file_with(tmp_path: Path, line: int, text: str) -> str:
    """A numeric file of 20k rows (past the pyarrow parser's first look) with ``text`` as line ``line``."""
    rows = [f"{i},{i * 0.5},{-i}" for i in range(20_000)]
    rows[line - 2] = text
    path = tmp_path / "late.csv"
    path.write_text("a,b,c\n" + "\n".join(rows) + "\n")
    return str(path)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("text, message", [
    ("5,abc,1", ':15001: column "b": "abc" is not a number (column inferred as float from rows 2-15000)'),
    ('5,"2.5",1', None),  # a quoted number is a number
    ("5,2.5", ":15001: expected 3 fields like the header, found 2"),
    ("", None),  # a blank line is skipped
    ("5,0x1F,1", ':15001: column "b": "0x1F" is not a number (column inferred as float from rows 2-15000)'),
    ("5,nan(1),1", ':15001: column "b": "nan(1)" is not a number (column inferred as float from rows 2-15000)'),
    ("5, NA,1", (':15001: column "b": missing value " NA" (use missing="drop_row", "mean" or ("fill", value) to '
                 'accept missing values)')),
])
def test_late_problems_give_the_same_errors_on_every_path(tmp_path: Path, engine: str, text: str,
                                                         message: str | None) -> None:
    need(engine)
    path = big_file_with(tmp_path, 15_001, text)
    if message is None:
        with engine_set(engine):
            table = read_csv(path)
        assert table.num_rows == 20_000 - (text == "")
        return
    with engine_set(engine):
        assert str(error_of(path)) == path + message
    with engine_set(None):
        assert str(error_of(path)) == path + message


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.csv")))
def test_corpus_reads_the_same_on_every_path(engine: str, name: str) -> None:
    need(engine)
    source = (CORPUS / name).read_bytes()
    assert read_outcome(source, engine) == read_outcome(source, None)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("source", [
    b"a,b\n1,-0\n2,3\n", b"a,b\n+5,1\n2,3\n", b"a,b\n1.0,1\n2,2\n", b"a,b\n1,\n,3\n", b"a\n1\n\n3\n", b"a,b\n,\n1,2\n",
    b"a,b\nNone,1\nNA,2\n,3\n1,null\n", b"a,b\n9223372036854775807,-9223372036854775808\n",
    b"a,b\n -0 ,1\n,2\nNA,3\n5,4\n0,5\n", b"a,b\n+5,1\nNA,2\n,3\n-0,4\n", b"a;b\n1;-0\n-0;NA\n",
    b"a,b\n9223372036854775808,1\n", b"a,b\n+9223372036854775808,1\n", b"a,b\n 5, 6\t\n7 ,8\n", b"a,b\n1,2\r3,4\r\n",
    b"a,b\n\xef\xbb\xbf1,2\n", b"a,b\nnan,inf\n-nan,-INF\n", b"a,b\n   ,1\n", b"a,b\nNA,NA\nNA,NA\n", b"a\n-0\n-00\n0\n",
])
def test_edge_cases_read_the_same_on_every_path(engine: str, source: bytes) -> None:
    need(engine)
    for kwargs in ({}, {"fill": 0}, {"missing": "mean", "dtypes": {"a": "float"}}, {"dtypes": {"a": "float"}}):
        assert read_outcome(source, engine, **kwargs) == read_outcome(source, None, **kwargs)


def test_without_pyarrow_the_numpy_parser_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from tinygrad_nb.data import arrowparse
    monkeypatch.setattr(arrowparse, "pa", None)
    assert not arrowparse.available()
    source = b"a,b\n1,2.5\n"
    assert parse_with("auto", source, ",") is not None
    assert parse_with("arrow", source, ",") is None
    assert read_csv(io.BytesIO(source))["b"].tolist() == [2.5]
    with pytest.raises(ValueError, match="engine must be one of"):
        fastparse.parse_numeric(source, 4, 2, ",", engine="pandas")
