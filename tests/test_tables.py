"""tinygrad_nb.tables: the text form stays what terminals and the CLI printed before, the HTML form never wraps, and
track/profiler/debug tables get it without importing notebook/ (DESIGN.md's dependency direction)."""
from __future__ import annotations

import ast
import copy
import math
import pickle
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import tinygrad_nb as tg
from tinygrad_nb import nn, track
from tinygrad_nb import tables as base_tables
from tinygrad_nb.debug import capture
from tinygrad_nb.notebook import tables as notebook_tables
from tinygrad_nb.profiler import Summary, SummaryRow
from tinygrad_nb.tables import Table, TextTable, html_table, text_lines

PACKAGE = Path(tg.__file__).parent


class _Cells(HTMLParser):
    """Collects the text of every <th>/<td> per row and the style of each cell."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.styles: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._in_cell = True
            self.rows[-1].append("")
            self.styles.append(dict(attrs).get("style") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data


def cells(html: str) -> _Cells:
    parser = _Cells()
    parser.feed(html)
    return parser


def test_lower_module_is_a_leaf_and_notebook_re_exports_it() -> None:
    imported = {node.module for node in ast.walk(ast.parse((PACKAGE / "tables.py").read_text()))
                if isinstance(node, ast.ImportFrom)} | {alias.name for node in ast.walk(ast.parse(
                    (PACKAGE / "tables.py").read_text())) if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {"__future__", "html", "math", "collections.abc", "typing"}
    assert notebook_tables.Table is base_tables.Table and notebook_tables.cell_text is base_tables.cell_text
    for module in ("track/compare.py", "profiler.py", "debug/capture.py"):
        assert "notebook" not in (PACKAGE / module).read_text().split('"""', 2)[2].split("\nclass ")[0], module


def test_text_lines_alignment_and_rule() -> None:
    assert text_lines([("a", "nn"), ("long", "1")], right=[False, True]) == ["a     nn", "----  --", "long   1"]
    assert text_lines([("a", "b"), ("xyz", "")], rule=False) == ["a    b", "xyz"]


def test_html_escapes_and_never_wraps_and_aligns_right() -> None:
    html = html_table(["name", "n"], [["<b>&", "12"]], title="t<1>", right=[False, True])
    parsed = cells(html)
    assert parsed.rows == [["name", "n"], ["<b>&", "12"]]
    assert all("white-space:nowrap" in s for s in parsed.styles)
    assert [("text-align:right" in s) for s in parsed.styles] == [False, True, False, True]
    assert "t&lt;1&gt;" in html and "<b>" not in html and "overflow-x:auto" in html


def test_table_right_aligned_columns_and_unknown_column_error() -> None:
    table = Table(["op", "count"], [("MatMul", 12), ("Add", 4000)], right=["count"])
    assert str(table).splitlines() == ["op      count", "------  -----", "MatMul     12", "Add      4000"]
    with pytest.raises(KeyError, match=r"right-aligned column 'cnt' is not one of the columns 'op', 'count'"):
        Table(["op", "count"], [], right=["cnt"])


def test_comparison_text_unchanged_and_html_has_the_same_cells() -> None:
    comparison = track.Comparison(["name", "lr", "loss final", "note"],
                                  [{"name": "a", "lr": 0.1, "loss final": 0.123456789, "note": None},
                                   {"name": "wider name", "lr": 0.01, "loss final": math.inf, "note": "x y z"}])
    expected = ["name        lr    loss final  note", "----------  ----  ----------  -----",
                "a           0.1   0.12346     -", "wider name  0.01  inf         x y z"]
    assert str(comparison).splitlines() == expected and repr(comparison) == str(comparison)
    parsed = cells(comparison._repr_html_())
    assert parsed.rows == [["name", "lr", "loss final", "note"], ["a", "0.1", "0.12346", "-"],
                           ["wider name", "0.01", "inf", "x y z"]]
    assert all("white-space:nowrap" in s for s in parsed.styles)
    assert cells(comparison.select("name")._repr_html_()).rows == [["name"], ["a"], ["wider name"]]


def test_comparison_from_a_store_renders_html(tmp_path: Path) -> None:
    store = track.RunStore(tmp_path / "runs.db")
    for lr, loss in ((0.1, 0.5), (0.01, 0.25)):
        with track.Run(config={"lr": lr}, store=store, name=f"lr{lr}") as run:
            run.log({"loss": loss}, step=0)
    table = track.compare(store=store).select("name", "config.lr", "loss final")
    rows = cells(table._repr_html_()).rows
    assert rows[0] == ["name", "config.lr", "loss final"]
    assert sorted(rows[1:]) == [["lr0.01", "0.01", "0.25"], ["lr0.1", "0.1", "0.5"]]


def test_profiler_summary_text_unchanged_and_html() -> None:
    summary = Summary(rows=[SummaryRow("MatMul", 3, 3, 1.5, 500.0, 75.0, 2048), SummaryRow("Add", 10, 10, 0.5, 50.0,
                                                                                             25.0, 0)],
                      every=2, total_ms=2.0, total_calls=13, regions=[("forward", 1, 1.75)])
    assert str(summary).splitlines() == [
        "op      calls  total ms  mean us  % time  KB out",
        "------  -----  --------  -------  ------  ------",
        "MatMul      3     1.500   500.00    75.0     2.0",
        "Add        10     0.500    50.00    25.0     0.0",
        "total 2.000 ms in 13 op calls (timed 1 call in 2 of each op; totals estimated)",
        "",
        "region   calls  total ms",
        "-------  -----  --------",
        "forward      1     1.750"]
    html = summary._repr_html_()
    assert cells(html).rows == [["op", "calls", "total ms", "mean us", "% time", "KB out"],
                                ["MatMul", "3", "1.500", "500.00", "75.0", "2.0"],
                                ["Add", "10", "0.500", "50.00", "25.0", "0.0"],
                                ["region", "calls", "total ms"], ["forward", "1", "1.750"]]
    assert "total 2.000 ms in 13 op calls (timed 1 call in 2 of each op; totals estimated)" in html
    assert html.count("white-space:nowrap") == 2 + 1 + 18 + 6  # two tables, the note, every cell


def test_profiler_summary_of_a_real_profile_has_html() -> None:
    with tg.profiler.profile() as prof:
        (tg.tensor([[1.0, 2.0]]) @ tg.tensor([[3.0], [4.0]])).sum()
    rows = cells(prof.summary()._repr_html_()).rows
    assert rows[0][0] == "op" and {r[0] for r in rows[1:]} >= {"Matmul", "Sum"}


def test_capture_table_is_a_str_with_html() -> None:
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    with capture(model, what=("activations",)) as cap:
        model(tg.tensor(np.array([[1.0, -2.0, 0.5]], dtype=np.float32)))
    table = cap.table()
    assert isinstance(table, str) and isinstance(table, TextTable)
    lines = table.splitlines()
    assert lines[0].split() == ["layer", "step", "mean", "std", "min", "max", "zeros", "nonfinite"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "1"]
    assert repr(table) == str(table) and "\\n" not in repr(table)
    parsed = cells(table._repr_html_())
    assert parsed.rows == [line.split() for line in lines]
    assert "activations, latest step" in table._repr_html_()
    relu = cap.records[-1]["max"]
    assert re.fullmatch(r"[0-9.e+-]+", lines[2].split()[5]) and float(lines[2].split()[5]) == pytest.approx(relu,
                                                                                                               rel=1e-3)
    for clone in (pickle.loads(pickle.dumps(table)), copy.deepcopy(table)):
        assert type(clone) is TextTable and clone == table and clone._repr_html_() == table._repr_html_()
