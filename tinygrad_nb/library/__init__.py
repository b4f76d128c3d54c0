"""Custom ops: a registry with per-device kernels, opcheck, op packages, and C plugins (see docs/custom_ops.md).

    import tinygrad_nb as tg

    @tg.library.custom_op("mylib::softsign")
    def softsign(x):                       # the kernel: arrays in, array out
        return x / (1 + abs(x))

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (1 + abs(x)) ** 2

    softsign.register_autograd(backward, setup_context=lambda ctx, inputs, out: ctx.save_for_backward(*inputs))
    tg.library.opcheck(softsign, [tg.randn(3, 4)])
    y = tg.library.ops.mylib.softsign(x)   # also tg.ops.mylib.softsign once the core's hook is in

C plugins (``extensions/c_abi/tgnb_plugin.h``): :func:`load_plugin` (ctypes, no compiler), :func:`build` (the system
C compiler, into a private cache) and the ``%%tg_kernel`` cell magic. Export hooks for ONNX: :func:`export_info`
(domain, op type, attributes of a traced custom op) and :func:`kernel_for` (the kernel the runtime runs).
"""
from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Any

from .builder import CacheError, CompileError, build
from .opcheck import CHECKS, OpCheckError, OpCheckReport, Sample, opcheck
from .plugin import HOST_ABI_MAJOR, HOST_ABI_MINOR, ABIError, Plugin, PluginError, load_plugin
from .registry import (ENTRY_POINT_GROUP, CustomOp, LibraryError, Origin, TensorSpec, all_ops, custom_op, find,
                       load_entry_points, lookup, namespace, op_listeners, ops, register_autograd, register_kernel,
                       register_shape)

ABI_VERSION = (HOST_ABI_MAJOR, HOST_ABI_MINOR)


def _install_core_hook() -> None:
    """``tg.ops.<namespace>.<op>``: the core's ops package resolves unknown attributes through
    ``ops.namespace_resolvers`` (when it has that hook); this adds the registry's namespace lookup to it."""
    from .. import ops as core_ops  # noqa: PLC0415

    resolvers = getattr(core_ops, "namespace_resolvers", None)
    if isinstance(resolvers, builtins.list) and namespace not in resolvers:
        resolvers.append(namespace)


_install_core_hook()


class OpList(builtins.list):  # type: ignore[type-arg]
    """The ops :func:`list` returns; prints as a table (text, or HTML in a notebook)."""

    COLUMNS = ("op", "origin", "devices", "autograd", "doc")

    def rows(self) -> list[dict[str, str]]:
        return [{"op": op.name, "origin": str(op.origin), "devices": ", ".join(op.devices) or "-",
                 "autograd": "yes" if op.backward_fn is not None else "no", "doc": _shorten(op.doc, 50)}
                for op in self]

    def __str__(self) -> str:
        rows = self.rows()
        if not rows:
            return "no custom ops registered"
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in self.COLUMNS}
        lines = ["  ".join(c.ljust(widths[c]) for c in self.COLUMNS).rstrip(),
                 "  ".join("-" * widths[c] for c in self.COLUMNS)]
        lines += ["  ".join(r[c].ljust(widths[c]) for c in self.COLUMNS).rstrip() for r in rows]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from html import escape  # noqa: PLC0415

        head = "".join(f"<th>{c}</th>" for c in self.COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{escape(r[c])}</td>" for c in self.COLUMNS) + "</tr>"
                       for r in self.rows())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def list(namespace: str | None = None) -> OpList:  # noqa: A001 - tg.library.list(), as the issue names it
    """Every registered op (installed op packages are loaded first) with its origin and devices."""
    found = all_ops()
    return OpList(op for op in found if namespace is None or op.namespace == namespace)


# -- export / runtime hooks ---------------------------------------------------------------------------------------------
ATTRIBUTE_TYPES = (int, float, str, bool)
RESERVED_ATTRIBUTES = ("domain", "name", "doc_string", "overload")  # onnx.helper.make_node's own keywords


@dataclass(frozen=True)
class ExportInfo:
    """How a custom op appears in ONNX: a node ``op_type`` in ``domain`` (opset ``domain_version``) with
    ``attributes`` (ints, floats, strings and lists of them, from the call's keyword arguments)."""

    domain: str
    op_type: str
    domain_version: int = 1
    attributes: dict[str, Any] = field(default_factory=dict)


def is_custom_op(op_name: str) -> bool:
    """True when ``op_name`` (a traced op's name, i.e. the Function's ``__name__``) is a registered custom op."""
    return "::" in op_name and find(op_name) is not None


def export_info(op: CustomOp | str, attributes: dict[str, Any] | None = None) -> ExportInfo:
    """The ONNX node for a traced call of ``op`` with keyword ``attributes``: domain = the op's namespace, op_type =
    its name. Raises :class:`LibraryError` for an attribute ONNX cannot hold."""
    custom = lookup(op) if isinstance(op, str) else op
    attrs = dict(attributes or {})
    for key, value in attrs.items():
        if key in RESERVED_ATTRIBUTES:
            raise LibraryError(f"{custom.name}: keyword argument {key!r} cannot be exported: ONNX nodes reserve the "
                               f"names {', '.join(RESERVED_ATTRIBUTES)}; rename it")
        items = value if isinstance(value, (tuple, builtins.list)) else (value,)
        if not all(isinstance(v, ATTRIBUTE_TYPES) for v in items):
            raise LibraryError(f"{custom.name}: keyword argument {key}={value!r} cannot be an ONNX attribute "
                               f"(ints, floats, strings or lists of them)")
    return ExportInfo(custom.namespace, custom.op_name, 1, attrs)


def kernel_for(domain: str, op_type: str, device_type: str = "cpu") -> Any:
    """The kernel a runtime calls for an ONNX node ``domain``/``op_type``: ``kernel(*input_arrays, **attributes)``
    returns the output array. The same function the eager op runs (no autograd). Raises :class:`LibraryError`."""
    op = lookup(f"{domain}::{op_type}")
    kernel = op.kernel(device_type)
    if kernel is None:
        raise LibraryError(f"{op.name} has no kernel for {device_type!r} (it has: {', '.join(op.devices) or 'none'})")
    return kernel


def dispatch_table(namespace: str | None = None) -> str:
    """Custom ops (of one namespace, or all) and which implementation runs on each device type (the built-ins:
    ``tg.dispatch.dispatch_table()``)."""
    rows = [("op", "cpu", "cuda")]
    for op in list(namespace):
        rows.append((op.name, *(_impl(op, d) for d in ("cpu", "cuda"))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _impl(op: CustomOp, device_type: str) -> str:
    if device_type in op.kernels:
        return f"{op.name}[{device_type}]" + (" (C plugin)" if op.plugin is not None else "")
    return "generic (xp)" if op.generic is not None else "-"


__all__ = ["ABIError", "ABI_VERSION", "CHECKS", "CacheError", "CompileError", "CustomOp", "ENTRY_POINT_GROUP",
           "ExportInfo", "LibraryError", "OpCheckError", "OpCheckReport", "OpList", "Origin", "Plugin", "PluginError",
           "Sample", "TensorSpec", "build", "custom_op", "dispatch_table", "export_info", "find", "is_custom_op",
           "kernel_for", "list", "load_entry_points", "load_plugin", "lookup", "namespace", "op_listeners", "opcheck",
           "ops", "register_autograd", "register_kernel", "register_shape"]


def _shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis where it was cut."""
    return text if len(text) <= width else text[:width - 1] + "…"
