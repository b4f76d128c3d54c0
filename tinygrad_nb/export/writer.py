"""Trace -> ONNX ModelProto: converters, graph inputs/outputs with a symbolic batch dimension, initializers and the
metadata every file carries (producer, export format version, the weights' content hash, the model class)."""
from __future__ import annotations

from typing import Any

import numpy as np
import xxhash

from .. import library
from .errors import ExportError
from .mapping import CONVERTERS, Emitter
from .trace import Trace, Value, _values

FORMAT_VERSION = 1  # bump when files change in a way older loaders cannot read
MIN_OPSET, MAX_OPSET = 13, 21  # the default-domain opsets the exporter writes and the runtime reads
META_PRODUCER = "tinygrad_nb.producer"
META_FORMAT = "tinygrad_nb.export_format_version"
META_HASH = "tinygrad_nb.weights_hash"
META_CLASS = "tinygrad_nb.model_class"
BATCH = "batch"


def weights_hash(initializers: dict[str, np.ndarray]) -> str:
    """``xxh3-128:<hex>`` over every initializer's name, dtype, shape and bytes, in name order."""
    h = xxhash.xxh3_128()
    for name in sorted(initializers):
        array = np.asarray(initializers[name])
        array = array if array.flags.c_contiguous else array.copy(order="C")
        h.update(f"{name}\0{array.dtype.str}\0{tuple(array.shape)}\0".encode())
        h.update(array.tobytes())
    return "xxh3-128:" + h.hexdigest()


def _library_version() -> str:
    import tinygrad_nb  # noqa: PLC0415 - the package imports this module lazily

    return getattr(tinygrad_nb, "__version__", "unknown")


def _live_nodes(trace: Trace) -> list[Any]:
    """The nodes the outputs depend on (dead code of the forward, e.g. a debug statistic, is dropped)."""
    needed = {id(v) for v in trace.outputs}
    live = []
    for node in reversed(trace.nodes):
        if id(node.output) in needed:
            live.append(node)
            needed.update(id(v) for v in _values(node.args))
    return live[::-1]


def build_model(trace: Trace, *, opset: int, input_names: list[str], output_names: list[str], model_class: str
                ) -> Any:
    """The ModelProto of a reconciled trace."""
    from onnx import helper, numpy_helper  # noqa: PLC0415

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: the exporter writes opsets {MIN_OPSET}..{MAX_OPSET}")
    em = Emitter(opset)
    for value, name in zip(trace.inputs, input_names):
        em.reserve(value, name)
    output_slots: list[tuple[Value, str]] = []
    for value, name in zip(trace.outputs, output_names):
        if value.kind == "op" and id(value) not in em._names:
            em.reserve(value, name)
        output_slots.append((value, name))
    custom_domains: dict[str, int] = {}
    for node in _live_nodes(trace):
        entry = CONVERTERS.get(node.op)
        if entry is None and library.is_custom_op(node.op):
            _custom_node(em, node, custom_domains)
            continue
        if entry is None:
            raise ExportError(f"{node.op} has no ONNX mapping (see the table in docs/export.md)", node.op,
                              node.module, node.location)
        entry[0](em, node, em.name(node.output))
    for value, name in output_slots:
        if em.name(value) != name:
            em.node("Identity", [em.name(value)], name)

    def info(value: Value, name: str) -> Any:
        shape = [BATCH if axis in value.dynamic else n for axis, n in enumerate(value.shape)]
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), shape)

    nodes = []
    for op_type, inputs, outputs, attrs in em.nodes:
        while inputs and inputs[-1] == "":
            inputs = inputs[:-1]
        nodes.append(helper.make_node(op_type, inputs, outputs, **attrs))
    initializers = [numpy_helper.from_array(array, name) for name, array in em.initializers.items()]
    graph = helper.make_graph(nodes, "tinygrad_nb", [info(v, n) for v, n in zip(trace.inputs, input_names)],
                              [info(v, n) for v, n in output_slots], initializer=initializers)
    opsets = [helper.make_opsetid("", opset)]
    ir_version = helper.find_min_ir_version_for(opsets)  # custom domains do not raise it (onnx knows none of them)
    opsets += [helper.make_opsetid(domain, version) for domain, version in sorted(custom_domains.items())]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tinygrad_nb",
                              producer_version=_library_version(), ir_version=ir_version)
    helper.set_model_props(model, {META_PRODUCER: f"tinygrad_nb {_library_version()}",
                                   META_FORMAT: str(FORMAT_VERSION),
                                   META_HASH: weights_hash(em.initializers),
                                   META_CLASS: model_class})
    return model


def _custom_node(em: Emitter, node: Any, domains: dict[str, int]) -> None:
    """A registered custom op (tinygrad_nb.library) as a node of its own ONNX domain: the namespace is the domain,
    the op's name the op type, its keyword arguments the attributes. tinygrad_nb.runtime runs it through the same
    registered kernel."""
    try:
        info = library.export_info(node.op, node.kwargs)
    except library.LibraryError as e:
        raise ExportError(str(e), node.op, node.module, node.location) from e
    if domains.setdefault(info.domain, info.domain_version) != info.domain_version:
        raise ExportError(f"custom-op domain {info.domain!r} used at opset versions {domains[info.domain]} and "
                          f"{info.domain_version}", node.op, node.module, node.location)
    inputs = [em.name(a) for a in node.args if isinstance(a, Value)]
    em.node(info.op_type, inputs, em.name(node.output), domain=info.domain, **info.attributes)
