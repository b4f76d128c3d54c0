"""Errors of the exporter: every one names the op, the module path and the user's line (or notebook cell)."""
from __future__ import annotations

from ..debug.provenance import Location, format_location


class ExportError(RuntimeError):
    """A model that cannot be exported as it is: an op without an ONNX mapping, a trace that depends on the data, a
    file that fails validation. ``op``, ``module`` and ``location`` say where; the message says what to do."""

    def __init__(self, message: str, op: str = "", module: str = "", location: Location | None = None):
        self.op = op
        self.module = module
        self.location = location
        where = describe(op, module, location)
        super().__init__(f"{message}{' [' + where + ']' if where else ''}")


class ExportValidationError(ExportError):
    """The exported file was written but a checker or a runtime refused it, or its outputs differ from eager."""


def describe(op: str, module: str, location: Location | None) -> str:
    """``op relu in model.layers[3] at train.py:12:  x = self.act(x)`` (the parts that are known)."""
    parts = []
    if op:
        parts.append(f"op {op}")
    if module:
        parts.append(f"in {module}")
    if location is not None:
        parts.append(f"at {format_location(location)}")
    return " ".join(parts)
