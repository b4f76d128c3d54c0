"""onnx's own backend node test cases for every op the runtime claims, and the coverage table in docs/runtime.md."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnx")

from tinygrad_nb.runtime import CLAIMED_OPS, supported_ops  # noqa: E402
from tinygrad_nb.runtime.conformance import OpResult, coverage_table, run_conformance  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs" / "runtime.md"


@pytest.fixture(scope="module")
def results() -> dict[str, OpResult]:
    return run_conformance()  # every implemented op (about 600 cases, a few seconds)


def test_every_case_of_every_claimed_op_passes(results: dict[str, OpResult]) -> None:
    assert set(CLAIMED_OPS) <= set(supported_ops())
    for op in CLAIMED_OPS:
        r = results[op]
        assert r.total > 0, f"{op}: no backend cases found"
        assert r.passed == r.total, f"{op}: {r.passed}/{r.total} passed; first failure: {r.failures[:1]}"


def test_unclaimed_ops_really_have_failing_cases(results: dict[str, OpResult]) -> None:
    # an op whose cases all pass should be claimed (and an op with no cases is not counted either way)
    for op, r in results.items():
        if op not in CLAIMED_OPS:
            assert r.total == 0 or r.passed < r.total, f"{op} passes all {r.total} cases: add it to CLAIMED_OPS"


def test_coverage_table_in_docs_is_current(results: dict[str, OpResult]) -> None:
    text = DOCS.read_text()
    table = text.split("<!-- coverage-table:begin -->\n", 1)[1].split("\n<!-- coverage-table:end -->", 1)[0]
    assert table == coverage_table(results)
