"""%%tg_precision: the precision check around a notebook cell, run in an in-process IPython shell."""
from __future__ import annotations

from typing import Any

import pytest

import tinygrad_nb as tg
from tinygrad_nb import dispatch
from tinygrad_nb.amp import PrecisionError
from tinygrad_nb.notebook import extension, ownership

IPython = pytest.importorskip("IPython")
from IPython.core.error import UsageError  # noqa: E402


@pytest.fixture
def shell(ipython: Any) -> Any:
    extension.load_ipython_extension(ipython)
    ipython.user_ns["tg"] = tg
    yield ipython
    ownership.registry.release_all()
    extension.unload_ipython_extension(ipython)
    assert dispatch.observers == [] and dispatch.autocast_hooks == []


CELL = ("%%tg_precision {opts}\nh = x @ w\nbig = h * 1e4\nloss = big.mean()\n")


def test_precision_magic_reports_each_op(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    tg.manual_seed(0)
    shell.user_ns["x"], shell.user_ns["w"] = tg.randn(4, 8), tg.randn(8, 3)
    capsys.readouterr()
    result = shell.run_cell(CELL.format(opts="--text --out report"), store_history=True)
    out = capsys.readouterr().out
    assert result.success, result.error_in_exec
    report = shell.user_ns["report"]
    ops_seen = [r.op for r in report.rows]
    assert ops_seen[:3] == ["Cast", "Cast", "Matmul"] and "Sum" in ops_seen
    matmul = report.rows[2]
    assert matmul.dtype == "float16" and matmul.ulp <= 0.5 and matmul.source == "storage"  # one rounding
    assert matmul.location[1] == 2  # the cell's line 2
    assert shell.user_ns["h"].dtype == tg.float16 and shell.user_ns["loss"].dtype == tg.float32
    assert "Matmul" in out and "op(s) in float16" in out


def test_precision_magic_strict_names_the_cell_line(shell: Any) -> None:
    shell.user_ns["x"], shell.user_ns["w"] = tg.randn(4, 8) * 300, tg.randn(8, 3) * 300
    number = shell.execution_count
    result = shell.run_cell(CELL.format(opts="--strict"), store_history=True)
    error = result.error_in_exec
    assert isinstance(error, PrecisionError), repr(error)
    assert error.op == "Matmul" and "overflowed float16" in str(error)
    assert f"cell [{number}], line 2:  h = x @ w" in str(error)
    bad = shell.run_cell("%%tg_precision --dtype float8\nx", store_history=True).error_in_exec
    assert isinstance(bad, UsageError) and "invalid choice: 'float8'" in str(bad)
