"""Conformance: onnx's own backend node test cases (``onnx.backend.test``, shipped in the onnx wheel as the Python
generators under ``onnx/backend/test/case/node``) run through :class:`~tinygrad_nb.runtime.Session`.

Each case is one small model with inputs and expected outputs. A case counts for an op when the op appears in its
graph and every other op there is implemented too. Each case runs twice: the first call (reference kernels) and the
second (the planned program), both compared with onnx's tolerances (rtol 1e-3, atol 1e-7) and exact for integers.

    python -m tinygrad_nb.runtime.conformance      # prints the coverage table of docs/runtime.md
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import CLAIMED_OPS, load_model, supported_ops


class _AnyOf:
    """Makes onnx's case collector keep the cases of several op types (it compares ``op_type != target``)."""

    def __init__(self, ops: set[str]):
        self.ops = ops

    def __bool__(self) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return other not in self.ops

    def __eq__(self, other: object) -> bool:
        return other in self.ops

    __hash__ = None  # type: ignore[assignment]


@dataclass
class OpResult:
    op: str
    passed: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)


def _array(x: Any) -> np.ndarray:
    from onnx import numpy_helper  # noqa: PLC0415

    return np.asarray(x) if isinstance(x, (np.ndarray, np.generic)) else numpy_helper.to_array(x)


def run_case(case: Any) -> None:
    """Run one backend case through the runtime (twice); raise AssertionError (or the runtime's error) on failure."""
    sess = load_model(case.model, source=case.name)
    for inputs, outputs in case.data_sets:
        arrays = [_array(x) for x in inputs]
        for attempt in ("first call", "planned call"):
            got = list(sess.run(arrays).values())
            if len(got) != len(outputs):
                raise AssertionError(f"{attempt}: {len(got)} outputs, expected {len(outputs)}")
            for g, e in zip(got, outputs):
                e = _array(e)
                if e.dtype == object:
                    raise AssertionError("non-numeric outputs are not supported")
                if g.shape != e.shape or g.dtype != e.dtype:
                    raise AssertionError(f"{attempt}: got {g.dtype}{g.shape}, expected {e.dtype}{e.shape}")
                if e.dtype.kind in "fc":
                    np.testing.assert_allclose(g, e, rtol=case.rtol, atol=case.atol, err_msg=attempt)
                else:
                    np.testing.assert_array_equal(g, e, err_msg=attempt)


def run_conformance(ops: list[str] | None = None) -> dict[str, OpResult]:
    """Every backend node case of the given op types (default: every implemented op), by op."""
    from onnx.backend.test.case import node  # noqa: PLC0415

    implemented = set(supported_ops())
    wanted = set(ops) if ops is not None else implemented
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            cases = node.collect_testcases(_AnyOf(wanted))  # type: ignore[arg-type]
            results = {op: OpResult(op) for op in sorted(wanted)}
            for case in cases:
                types = {n.op_type for n in case.model.graph.node}
                if not types <= implemented | {"Constant"}:
                    continue
                for op in sorted(types & wanted):
                    r = results[op]
                    r.total += 1
                    try:
                        run_case(case)
                        r.passed += 1
                    except Exception as e:  # noqa: BLE001 - every failure is recorded with its reason
                        r.failures.append(f"{case.name}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    return results


def coverage_table(results: dict[str, OpResult]) -> str:
    """The markdown table of docs/runtime.md: op, cases passed, claimed, and why not when it is not."""
    lines = ["| op | backend cases passed | claimed | not covered |", "|---|---|---|---|"]
    for op, r in sorted(results.items()):
        claimed = "yes" if op in CLAIMED_OPS else "no"
        why = "; ".join(sorted({_reason(f) for f in r.failures}))
        lines.append(f"| {op} | {r.passed}/{r.total} | {claimed} | {why} |")
    return "\n".join(lines)


_REASONS = {"opset": "opset outside the runtime's range", "training_mode": "training mode",
            "mask output": "Dropout's mask output", "Indices output": "MaxPool's Indices output",
            "storage_order": "storage_order=1", "string": "string tensors", "data-type": "string tensors",
            "KeyError: 0": "sequence/optional types", "cast to": "8-bit float / 4-bit types",
            "cast from": "8-bit float / 4-bit types"}


def _reason(failure: str) -> str:
    """A short reason for one failure (``case: Type: message``)."""
    for marker, reason in _REASONS.items():
        if marker in failure:
            return reason
    return failure.split(": ", 1)[-1][:70]


if __name__ == "__main__":
    print(coverage_table(run_conformance()))
