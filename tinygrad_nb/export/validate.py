"""Validation of an exported file: the ONNX checker (full check, strict shape inference), then the file run in
onnxruntime (when installed) and in tinygrad_nb's own runtime at several batch sizes, compared with the eager model.

A checker pass is not enough (runtimes refuse files the checker accepts), so every runtime really runs the file.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ExportValidationError

RTOL = {np.dtype(np.float32): 1.3e-6, np.dtype(np.float64): 1e-12, np.dtype(np.float16): 1e-3}
ATOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10, np.dtype(np.float16): 1e-3}


@dataclass
class Row:
    """One output of one runtime at one batch size, compared with the eager model."""

    runtime: str
    batch: int
    output: str
    max_abs: float
    max_rel: float
    max_ulp: int
    ok: bool
    note: str = ""


@dataclass
class ValidationReport:
    """What validation checked; ``str()`` is the per-output table, ``ok`` is True when every row passed."""

    checker: str = "not run"
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def table(self, values: bool = True) -> str:
        """The table as text; ``values=False`` leaves out the numbers (they depend on the BLAS kernel)."""
        head = ["runtime", "batch", "output"] + (["max abs", "max rel", "max ULP"] if values else []) + ["ok"]
        lines = [head]
        for r in self.rows:
            nums = [f"{r.max_abs:.2e}", f"{r.max_rel:.2e}", str(r.max_ulp)] if values else []
            lines.append([r.runtime, str(r.batch), r.output] + nums + ["yes" if r.ok else "NO " + r.note])
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        extra = [f"checker: {self.checker}"] + [f"skipped: {s}" for s in self.skipped]
        return "\n".join(extra + text)

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(self.table()) + "</pre>"


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many representable floats lie between a and b (elementwise; float32 or float64)."""
    kind = {4: (np.int32, np.int64), 8: (np.int64, np.int64), 2: (np.int16, np.int64)}[a.dtype.itemsize]
    ia = a.view(kind[0]).astype(np.int64)
    ib = b.astype(a.dtype).view(kind[0]).astype(np.int64)
    low = np.iinfo(kind[0]).min
    ia = np.where(ia < 0, low - ia, ia)
    ib = np.where(ib < 0, low - ib, ib)
    return np.abs(ia - ib)


def compare(got: np.ndarray, ref: np.ndarray) -> tuple[float, float, int, bool, str]:
    """max abs, max rel, max ULP, within tolerance, and why not."""
    got = np.asarray(got)
    if got.shape != ref.shape:
        return float("inf"), float("inf"), 0, False, f"shape {got.shape} != {ref.shape}"
    if got.dtype != ref.dtype:
        return float("inf"), float("inf"), 0, False, f"dtype {got.dtype} != {ref.dtype}"
    if ref.dtype.kind != "f":
        same = bool(np.array_equal(got, ref))
        return (0.0 if same else float("inf")), (0.0 if same else float("inf")), 0, same, "" if same else "values"
    if got.size == 0:
        return 0.0, 0.0, 0, True, ""
    nan_same = bool(np.array_equal(np.isnan(got), np.isnan(ref)))
    finite = np.isfinite(ref) & np.isfinite(got)
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    inf_same = bool(np.array_equal(got[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)]))
    d = np.where(finite, diff, 0.0)
    scale = np.abs(ref.astype(np.float64))
    rel = np.where(finite & (scale > 0), d / np.where(scale > 0, scale, 1.0), 0.0)
    ulp = int(ulp_distance(np.where(finite, got, 0).astype(ref.dtype), np.where(finite, ref, 0)).max())
    ok = nan_same and inf_same and bool((d <= ATOL[ref.dtype] + RTOL[ref.dtype] * scale).all())
    return float(d.max()), float(rel.max()), ulp, ok, "" if ok else ("NaN/inf positions" if not (nan_same and
                                                                                                inf_same) else "tol")


def check_file(proto: Any) -> str:
    """onnx.checker with full check, then strict shape inference; raises ExportValidationError."""
    import onnx  # noqa: PLC0415

    try:
        onnx.checker.check_model(proto, full_check=True)
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:  # noqa: BLE001 - the checker raises several types; all mean "refused"
        raise ExportValidationError(f"onnx.checker refused the exported file: {type(e).__name__}: {e}") from e
    return "onnx.checker full_check + strict shape inference passed"


def batch_rows(arrays: list[np.ndarray], batch: int, dynamic: list[bool]) -> list[np.ndarray]:
    """The example inputs at another batch size: their rows repeated cyclically."""
    return [np.ascontiguousarray(a[np.arange(batch) % a.shape[0]]) if dyn else a for a, dyn in zip(arrays, dynamic)]


def eager_outputs(model: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
    from ..autograd import no_grad  # noqa: PLC0415
    from ..tensor import Tensor  # noqa: PLC0415

    with no_grad():
        result = model(*[Tensor(np.array(a, copy=True)) for a in arrays])
    outs = result if isinstance(result, (tuple, list)) else (result,)
    return [np.asarray(o.data) for o in outs]


def run_onnxruntime(data: bytes) -> Any:
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, feed)


def validate(proto: Any, model: Any, arrays: list[np.ndarray], input_names: list[str], output_names: list[str], *,
             batches: list[int], dynamic: list[bool], runtimes: tuple[str, ...] = ("onnxruntime", "tinygrad_nb"),
             check: bool = True) -> ValidationReport:
    """Check the file and compare every runtime with the eager model at each batch size."""
    report = ValidationReport()
    if check:
        report.checker = check_file(proto)
    data = proto.SerializeToString()
    runners: dict[str, Any] = {}
    for name in runtimes:
        try:
            if name == "onnxruntime":
                custom = sorted({op.domain for op in proto.opset_import} - {"", "ai.onnx"})
                if custom:  # its kernels live in tinygrad_nb.library, which onnxruntime cannot call
                    report.skipped.append(f"onnxruntime (custom-op domain {', '.join(custom)})")
                    continue
                try:
                    import onnxruntime  # noqa: F401, PLC0415
                except ImportError:
                    report.skipped.append("onnxruntime (not installed)")
                    continue
                runners[name] = run_onnxruntime(data)
            else:
                from ..runtime import load_model  # noqa: PLC0415 - the runtime sits above export

                session = load_model(proto)
                # twice: the first call at a shape runs the reference kernels, the second the planned program
                runners[name] = lambda feed, s=session: (s.run(feed), list(s.run(feed).values()))[1]
        except Exception as e:  # noqa: BLE001
            raise ExportValidationError(f"{name} refused the exported file (the checker accepted it): "
                                        f"{type(e).__name__}: {e}") from e
    for batch in batches:
        inputs = batch_rows(arrays, batch, dynamic)
        expected = eager_outputs(model, inputs)
        feed = dict(zip(input_names, inputs))
        for name, run in runners.items():
            try:
                got = run(feed)
            except Exception as e:  # noqa: BLE001
                raise ExportValidationError(f"{name} failed to run the exported file at batch {batch}: "
                                            f"{type(e).__name__}: {e}") from e
            for out_name, g, ref in zip(output_names, got, expected):
                max_abs, max_rel, ulp, ok, note = compare(g, ref)
                report.rows.append(Row(name, batch, out_name, max_abs, max_rel, ulp, ok, note))
    if not report.ok:
        raise ExportValidationError("the exported file's outputs differ from the eager model's (fp32: rtol 1.3e-6, "
                                    "atol 1e-5):\n" + report.table())
    return report
