"""Loading an ONNX file and running it with numpy: ``Session``.

    sess = tg.runtime.load("model.onnx")
    probs = sess(x)                      # one input, one output
    outs = sess.run({"input": x})        # {output name: array}

Loading checks the file before anything runs: the default-domain opset must be one this runtime reads, a file from a
newer tinygrad_nb export format is refused, and the weights' content hash recorded by the exporter is verified.
Nodes whose inputs are all constants are folded once. The first call at a new input shape runs the reference kernels
(allocating) and binds a planned program for that shape (see :mod:`tinygrad_nb.runtime.plan`); every later call at
that shape runs the bound program, whose kernels write into the bucket's arena with ``out=``.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .kernels import KERNELS, Kernel, KernelError
from .plan import Plan, Root

FORMAT_VERSION = 1  # the newest tinygrad_nb export format this runtime reads (export.writer.FORMAT_VERSION)
MIN_OPSET, MAX_OPSET = 7, 25  # default-domain ONNX opsets this runtime reads
META_FORMAT = "tinygrad_nb.export_format_version"
META_HASH = "tinygrad_nb.weights_hash"


class ModelFormatError(ValueError):
    """A file this runtime refuses: an opset or export format it does not read, a weights hash that does not match,
    an op it does not implement. The message names the file and the versions involved."""


class InputError(ValueError):
    """An input that does not fit the model: unknown or missing name, wrong dtype or shape."""


@dataclass
class InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]  # ints are fixed; str/None are symbolic

    def describe(self) -> str:
        dims = ", ".join(str(d) if d is not None else "?" for d in self.shape)
        return f"({dims}{',' if len(self.shape) == 1 else ''}) {self.dtype}"


@dataclass
class _Node:
    kernel: Kernel
    inputs: list[str]  # "" for a missing optional input
    outputs: list[str]


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper, numpy_helper  # noqa: PLC0415

    attrs = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if a.type == a.TENSOR:
            value = numpy_helper.to_array(value)
        attrs[a.name] = value
    return attrs


class CustomKernel(Kernel):
    """A node of a custom-op domain, run by the kernel registered for it in tinygrad_nb.library (the same function
    the eager op runs). It allocates its result on every call (the plan lists it)."""

    allocates = True

    def __init__(self, fn: Any, node: Any):
        self.fn = fn
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in _attributes(node).items()}
        super().__init__(f"{node.domain}.{node.op_type}", attrs, 0, node.name, len(node.output))

    def ref(self, inputs: list[Any]) -> list[np.ndarray]:
        return [np.asarray(self.fn(*inputs, **self.attrs))]


def _custom_kernel(node: Any, source: str) -> Kernel:
    """The kernel for a node outside the default ONNX domain: a registered custom op, else a clear refusal."""
    from .. import library  # noqa: PLC0415 - only files with custom-op nodes need the registry

    try:
        fn = library.kernel_for(node.domain, node.op_type)
    except library.LibraryError as e:
        raise ModelFormatError(f"{source}: node {node.name!r} uses op {node.domain}.{node.op_type}, which is not a "
                               f"registered custom op ({e}); only the default ONNX domain and tinygrad_nb.library "
                               "ops are supported") from e
    return CustomKernel(fn, node)


def _constant_value(node: Any) -> np.ndarray:
    attrs = _attributes(node)
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    raise ModelFormatError(f"Constant node {node.name!r}: unsupported attribute {list(attrs)}")


def _symbolic(dim: Any) -> int | str | None:
    if dim.HasField("dim_value"):
        return int(dim.dim_value)
    return dim.dim_param or None


class Session:
    """A loaded model, ready to run. Build it with :func:`load`, :func:`load_model` or :func:`compile`.

    Not thread-safe: calls write into the same planned buffers (use one session per thread, or a lock)."""

    def __init__(self, proto: Any, *, source: str = "<model>", max_batch: int = 128, verify: bool = True,
                 fuse: bool = True):
        from onnx import helper, numpy_helper  # noqa: PLC0415

        self.source = source
        self.max_batch = int(max_batch)
        self.metadata = {p.key: p.value for p in proto.metadata_props}
        self.opset = _check_versions(proto, source)
        graph = proto.graph
        self.consts: dict[str, np.ndarray] = {}
        for init in graph.initializer:
            if init.data_location == init.EXTERNAL:
                raise ModelFormatError(f"{source}: initializer {init.name!r} is stored in an external file; "
                                       "only self-contained files are loaded")
            self.consts[init.name] = numpy_helper.to_array(init)
        if verify:
            _verify_hash(self.metadata, self.consts, source)
        self.inputs = []
        for vi in graph.input:
            if vi.name in self.consts:
                continue
            t = vi.type.tensor_type
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))
            self.inputs.append(InputSpec(vi.name, dtype, tuple(_symbolic(d) for d in t.shape.dim)))
        self.output_names = [vi.name for vi in graph.output]
        self.nodes: list[_Node] = []
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                k = _custom_kernel(node, source)
                self.nodes.append(_Node(k, list(node.input), list(node.output)))
                continue
            if node.op_type == "Constant":
                self.consts[node.output[0]] = _constant_value(node)
                continue
            cls = KERNELS.get(node.op_type)
            if cls is None:
                raise ModelFormatError(f"{source}: op {node.op_type} (node {node.name!r}) is not implemented by "
                                       f"tinygrad_nb.runtime; see docs/runtime.md for the supported ops")
            try:
                k = cls(node.op_type, _attributes(node), self.opset, node.name, len(node.output))
            except KernelError as e:
                raise ModelFormatError(f"{source}: {e}") from e
            self.nodes.append(_Node(k, list(node.input), list(node.output)))
        self._fold_constants()
        if fuse:  # Conv -> Relu -> MaxPool chains run as one kernel (exact; see runtime.fusion)
            from .fusion import fuse as fuse_chains  # noqa: PLC0415

            self.nodes = fuse_chains(self.nodes, self.output_names)
        static = _is_static(self)
        for node in self.nodes:
            node.kernel.static_inputs = [n == "" or n in static for n in node.inputs]
        # a shape computed from input *values* (not shapes) cannot be planned per input shape: run unplanned
        self.data_dependent_shapes = [f"{n.kernel.op_type} (node {n.kernel.name!r})" for n in self.nodes
                                      if any(i < len(n.inputs) and n.inputs[i] and n.inputs[i] not in static
                                             for i in n.kernel.shape_inputs)]
        self.batched = [bool(s.shape) and not isinstance(s.shape[0], int) for s in self.inputs]
        self._single_dtype = self.inputs[0].dtype if len(self.inputs) == 1 else None  # the hot path's check
        self._plans: dict[tuple[tuple[int, ...], ...], _Bucket] = {}
        self._programs: dict[tuple[tuple[int, ...], ...], _Program] = {}

    # -- loading ------------------------------------------------------------------------------------------------
    def _fold_constants(self) -> None:
        """Run every node whose inputs are all constants now; keep the rest."""
        kept = []
        for node in self.nodes:
            if all(n == "" or n in self.consts for n in node.inputs) and not node.kernel.static:
                results = node.kernel.ref([self.consts[n] if n else None for n in node.inputs])
                for name, value in zip(node.outputs, results):
                    self.consts[name] = np.array(value, copy=True)
            else:
                kept.append(node)
        self.nodes = kept

    # -- inputs -------------------------------------------------------------------------------------------------
    def _arrays(self, inputs: Any) -> list[np.ndarray]:
        """Inputs by name (dict), position (list/tuple) or, for one input, alone; checked against the model."""
        names = [s.name for s in self.inputs]
        if isinstance(inputs, dict):
            unknown = [k for k in inputs if k not in names]
            if unknown:
                raise InputError(f"unknown input {unknown[0]!r}; the model's inputs are {names}")
            missing = [n for n in names if n not in inputs]
            if missing:
                spec = self.inputs[names.index(missing[0])]
                raise InputError(f"missing input {missing[0]!r}: expected {spec.describe()}")
            values = [inputs[n] for n in names]
        elif isinstance(inputs, (list, tuple)):
            if len(inputs) != len(names):
                raise InputError(f"expected {len(names)} inputs {names}, got {len(inputs)}")
            values = list(inputs)
        else:
            if len(names) != 1:
                raise InputError(f"the model has {len(names)} inputs {names}: pass a dict or a list")
            values = [inputs]
        arrays = []
        for spec, value in zip(self.inputs, values):
            array = value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else value
            array = np.asarray(array)
            if array.dtype != spec.dtype:
                raise InputError(f"input {spec.name!r}: expected dtype {spec.dtype} with shape {spec.describe()}, "
                                 f"got {array.dtype} of shape {tuple(array.shape)}")
            if array.ndim != len(spec.shape) or any(isinstance(d, int) and d != n
                                                    for d, n in zip(spec.shape, array.shape)):
                raise InputError(f"input {spec.name!r}: expected shape {spec.describe()}, got "
                                 f"{tuple(array.shape)}")
            arrays.append(array)
        sizes = {a.shape[0] for a, b in zip(arrays, self.batched) if b}
        if len(sizes) > 1:
            raise InputError(f"inputs have different batch sizes {sorted(sizes)}")
        return arrays

    # -- running ------------------------------------------------------------------------------------------------
    def run(self, inputs: Any, copy: bool = True) -> dict[str, np.ndarray]:
        """Run the model: ``{output name: array}``. ``copy=False`` returns views of the plan's buffers (valid until
        the next call; no allocation at all in the steady state)."""
        if type(inputs) is np.ndarray and inputs.dtype == self._single_dtype:  # the hot path (see _outputs)
            program = self._programs.get((inputs.shape,))
            if program is not None and program.single_output is not None:
                return {program.single_output: program.run_single(inputs, copy)}
        outputs = self._outputs(inputs, copy)
        names = self.output_names
        return {names[0]: outputs[0]} if len(outputs) == 1 else dict(zip(names, outputs))

    def __call__(self, *inputs: Any) -> Any:
        outs = self._outputs(inputs[0] if len(inputs) == 1 else list(inputs), True)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _outputs(self, inputs: Any, copy: bool) -> list[np.ndarray]:
        # the hot path: one ndarray for a one-input model, at a shape that already has a program (its shape was
        # checked when the program was made, so only the dtype is left to check)
        if type(inputs) is np.ndarray and inputs.dtype == self._single_dtype:
            program = self._programs.get((inputs.shape,))
            if program is not None:
                return program.run((inputs,), copy)
        return list(self._run_checked(inputs, copy).values())

    def _run_checked(self, inputs: Any, copy: bool) -> dict[str, np.ndarray]:
        arrays = self._arrays(inputs)
        batch = next((a.shape[0] for a, b in zip(arrays, self.batched) if b), None)
        if batch is not None and batch > self.max_batch:
            return self._run_chunked(arrays, batch)
        if self.data_dependent_shapes:
            env = self.reference(arrays, keep=False)
            return {n: np.array(env[n], copy=True) for n in self.output_names}
        key = tuple(a.shape for a in arrays)
        program = self._programs.get(key)
        if program is None:
            outputs = self._warm_up(key, arrays)
            return dict(zip(self.output_names, outputs))
        return dict(zip(self.output_names, program.run(arrays, copy)))

    def _run_chunked(self, arrays: list[np.ndarray], batch: int) -> dict[str, np.ndarray]:
        pieces: list[list[np.ndarray]] = []
        for start in range(0, batch, self.max_batch):
            chunk = [a[start:start + self.max_batch] if b else a for a, b in zip(arrays, self.batched)]
            pieces.append(list(self._run_checked(chunk, True).values()))
        return {name: np.concatenate([p[i] for p in pieces]) for i, name in enumerate(self.output_names)}

    def bucket_of(self, shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
        """The input shapes with the batch dimension rounded up to a power of two (at most max_batch)."""
        batch = next((s[0] for s, b in zip(shapes, self.batched) if b), None)
        if batch is None:
            return shapes
        size = 1
        while size < batch:
            size *= 2
        size = max(min(size, self.max_batch), batch)
        return tuple((size,) + s[1:] if b else s for s, b in zip(shapes, self.batched))

    def reference(self, arrays: list[np.ndarray], keep: bool = True) -> dict[str, Any]:
        """Run every node with the allocating reference kernels; return all values (``keep=False``: free each
        intermediate after its last use, as an unplanned runtime would, and return only the outputs)."""
        env: dict[str, Any] = dict(self.consts)
        env.update({s.name: a for s, a in zip(self.inputs, arrays)})
        last = {}
        if not keep:
            for i, node in enumerate(self.nodes):
                for n in node.inputs:
                    last[n] = i
        outputs = set(self.output_names)
        for i, node in enumerate(self.nodes):
            # a fused node runs as its parts at shapes without its fused path (see runtime.fusion): their values
            # are in env, and the plan then has their steps (and their buffers' shorter lifetimes)
            parts = getattr(node.kernel, "unfused", None)
            if parts is not None and node.kernel.fast([env[n] if n else None for n in node.inputs]):
                parts = None
            for m, part in enumerate(parts or [node]):
                try:
                    results = part.kernel.ref([env[n] if n else None for n in part.inputs])
                except KernelError:
                    raise
                except Exception as e:  # noqa: BLE001 - name the node whatever numpy raised
                    shapes = [tuple(np.shape(env[n])) if n else None for n in part.inputs]
                    raise type(e)(f"{part.kernel.op_type} (node {part.kernel.name!r}) on input shapes {shapes}: "
                                  f"{e}") from e
                for name, value in zip(part.outputs, results):
                    env[name] = np.asarray(value)
                if m and not keep:  # the fused chain's own intermediate, read only by this part
                    env.pop(parts[m - 1].outputs[0], None)  # type: ignore[index]
            if not keep:
                for n in node.inputs:
                    if last.get(n) == i and n not in outputs and n not in self.consts:
                        env.pop(n, None)
        return env

    def _warm_up(self, key: tuple[tuple[int, ...], ...], arrays: list[np.ndarray]) -> list[np.ndarray]:
        """First call at these shapes: run the reference kernels, then bind the planned program for next time."""
        env = self.reference(arrays)
        bucket_key = self.bucket_of(key)
        bucket = self._plans.get(bucket_key)
        if bucket is None:
            bucket = self._plans[bucket_key] = _Bucket(self, bucket_key, arrays)
        self._programs[key] = _Program(self, bucket, env)
        return [np.array(env[n], copy=True) for n in self.output_names]

    # -- the plan -----------------------------------------------------------------------------------------------
    def memory_plan(self, batch_sizes: Iterable[int] | None = None) -> MemoryPlanReport:
        """Per-bucket planned peak bytes (and the liveness lower bound); draws the buffer lifetimes in notebooks.

        Buckets already used are shown; ``batch_sizes`` plans those buckets too (default, when nothing ran yet:
        the max_batch bucket)."""
        wanted = list(batch_sizes) if batch_sizes is not None else ([] if self._plans else [self.max_batch])
        for b in wanted:
            shapes = tuple(tuple(b if (i == 0 and batched) else (d if isinstance(d, int) else 1)
                                 for i, d in enumerate(s.shape)) for s, batched in zip(self.inputs, self.batched))
            key = self.bucket_of(shapes)
            if key not in self._plans:
                self._plans[key] = _Bucket(self, key)
        return MemoryPlanReport([b.plan for _, b in sorted(self._plans.items())],
                                sorted({n.kernel.op_type for n in self.nodes if n.kernel.allocates}),
                                self.outside_arena_bytes())

    def outside_arena_bytes(self) -> int:
        """Bytes the bound programs hold outside the arenas: constants broadcast along the batch (one array per
        constant for the largest batch so far) and the shared read-only zeros Relu compares with."""
        from .kernels import _ZEROS  # noqa: PLC0415

        kernels = [n.kernel for n in self.nodes]  # and the parts of fused nodes (runtime.fusion), which bind them
        kernels += [p.kernel for n in self.nodes for p in getattr(n.kernel, "unfused", None) or []]
        buffers = [big for k in kernels for _, big in getattr(k, "_expanded", {}).values()]
        buffers += list(_ZEROS.values())
        return sum(int(b.nbytes) for b in buffers)

    def allocation_count(self) -> int:
        """Buffers allocated by plans so far (arenas): stays constant once every bucket in use is warm."""
        return sum(1 for b in self._plans.values() if b.arena is not None)

    def map(self, samples: Iterable[Any], batch_size: int = 64, *, progress: bool | None = None,
            total: int | None = None, padding_value: float = 0.0) -> Iterator[Any]:
        """Run single samples in batches and yield one result per sample, in order (see runtime.batch)."""
        from .batch import map_samples  # noqa: PLC0415

        return map_samples(self, samples, batch_size=batch_size, progress=progress, total=total,
                           padding_value=padding_value)

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}: {s.describe()}" for s in self.inputs)
        return f"Session({os.path.basename(self.source)}: {len(self.nodes)} nodes, inputs {ins}, outputs " \
               f"{self.output_names})"


class _Bucket:
    """The plan and the arena of one bucket."""

    def __init__(self, session: Session, shapes: tuple[tuple[int, ...], ...], example: list[np.ndarray] | None = None):
        self.session = session
        self.shapes = shapes
        if example is None:
            example = [np.zeros(s, spec.dtype) for s, spec in zip(shapes, session.inputs)]
        # the example's rows repeated up to the bucket's batch size (values matter only for shape-like inputs)
        arrays = [a if a.shape == s else a[np.arange(s[0]) % a.shape[0]] for a, s in zip(example, shapes)]
        # the reference run's values give the plan its shapes; they are not kept (they would double what a bucket holds)
        self.plan, self.layout = _make_plan(session, shapes, session.reference(arrays))
        self.arena: np.ndarray | None = None
        self.owner: _Program | None = None

    def view(self, root: int, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
        if self.arena is None:
            self.arena = np.empty(max(self.plan.arena_bytes, 1), dtype=np.uint8)
        r = self.plan.roots[root]
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if nbytes > r.size:
            raise RuntimeError(f"memory plan: {what} needs {nbytes} bytes at shape {shape} but its buffer has "
                               f"{r.size} (planned for {self.shapes})")
        return self.arena[r.offset:r.offset + nbytes].view(dtype).reshape(shape)


@dataclass
class _Layout:
    """How the plan maps values: dynamic nodes in order, which are views/in place, static (per-shape) values."""

    steps: list[_Node]
    views: set[int]  # step indices whose outputs are views of input 0 (no buffer)
    inplace: set[int]  # step indices that write over input 0
    static: set[str]  # values that depend only on input shapes


def _is_static(session: Session) -> set[str]:
    static = set(session.consts)
    for node in session.nodes:
        if node.kernel.static or all(n == "" or n in static for n in node.inputs):
            static.update(node.outputs)
    return static


def _make_plan(session: Session, shapes: tuple[tuple[int, ...], ...], env: dict[str, Any]) -> tuple[Plan, _Layout]:
    static = _is_static(session)
    nodes: list[_Node] = []
    for n in session.nodes:  # a fused node that ran as its parts at these shapes (see reference) is planned so
        parts = getattr(n.kernel, "unfused", None)
        nodes += parts if parts is not None and parts[0].outputs[0] in env else [n]
    steps = [n for n in nodes if not all(o in static for o in n.outputs)]
    n_steps = len(steps)
    last: dict[str, int] = {}
    for i, node in enumerate(steps):
        for name in node.inputs:
            if name and name not in static:
                last[name] = i
    for name in session.output_names:
        last[name] = n_steps
    plan = Plan(bucket=shapes, steps=n_steps, step_labels=[n.kernel.op_type for n in steps])
    root_index: dict[str, int] = {}

    def new_root(label: str, array: np.ndarray, start: int, persistent: bool = False) -> int:
        plan.roots.append(Root(label, max(int(array.nbytes), 1), start, start, persistent=persistent))
        return len(plan.roots) - 1

    def touch(name: str) -> None:
        r = plan.roots[root_index[name]]
        r.end = max(r.end, last.get(name, r.start))

    for spec in session.inputs:
        root_index[spec.name] = new_root(f"input {spec.name}", env[spec.name], -1)
        touch(spec.name)
    views, inplace = set(), set()
    for i, node in enumerate(steps):
        k = node.kernel
        first = node.inputs[0] if node.inputs else ""
        out0 = env[node.outputs[0]]
        if k.view and first in root_index and all(np.shares_memory(env[o], env[first]) for o in node.outputs
                                                 if o in env and env[o].size):
            views.add(i)
            for o in node.outputs:
                root_index[o] = root_index[first]
                touch(o)
            continue
        if (k.inplace and first in root_index and plan.roots[root_index[first]].end == i
                and first not in session.output_names and env[first].shape == out0.shape
                and env[first].dtype == out0.dtype
                and not any(n and root_index.get(n) == root_index[first] for n in node.inputs[1:])):
            # (not when another input is a view of the same memory, e.g. x + x.T: numpy would copy it first)
            inplace.add(i)
            root_index[node.outputs[0]] = root_index[first]
            touch(node.outputs[0])
        else:
            for o in node.outputs:
                if o:
                    root_index[o] = new_root(f"{k.op_type} -> {o}", env[o], i)
                    touch(o)
        specs = k.scratch([env[n] if n else None for n in node.inputs], [env[o] for o in node.outputs if o])
        plan.scratch_of[i] = []
        for shape, dtype, persistent in specs:
            r = new_root(f"{k.op_type} scratch", np.empty(0, dtype), -1 if persistent else i, persistent)
            plan.roots[r].size = max(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize, 1)
            plan.roots[r].end = n_steps if persistent else i
            plan.scratch_of[i].append(r)
    plan.root_of = root_index
    plan.place()
    return plan, _Layout(steps, views, inplace, static)


class _Program:
    """The bound program of one exact input shape: fixed views into the bucket's arena and one closure per step."""

    def __init__(self, session: Session, bucket: _Bucket, env: dict[str, Any]):
        self.bucket = bucket
        plan, layout = bucket.plan, bucket.layout
        bound: dict[str, Any] = {n: env[n] for n in layout.static if n in env}
        self.input_views = []
        for spec in session.inputs:
            a = env[spec.name]
            bound[spec.name] = bucket.view(plan.root_of[spec.name], a.shape, a.dtype, f"input {spec.name!r}")
            self.input_views.append(bound[spec.name])
        self.steps = []
        self.init_steps = []
        scratch_of: dict[int, tuple[list[Any], list[np.ndarray]]] = {}
        for i, node in enumerate(layout.steps):
            if i in layout.views:
                continue
            k = node.kernel
            specs = k.scratch([env[n] if n else None for n in node.inputs], [env[o] for o in node.outputs])
            scratch_of[i] = (specs, [bucket.view(r, shape, dtype, f"{k.op_type} scratch")
                                     for r, (shape, dtype, _) in zip(plan.scratch_of.get(i, []), specs)])
        borders: dict[str, np.ndarray] = {}
        aliases = _input_targets(session, layout, plan, env, scratch_of, borders)
        for index, spec in enumerate(session.inputs):
            target = _program_input_target(session, layout, env, scratch_of, spec.name)
            if target is not None:  # the input is copied straight to where its only reader wants it
                bound[spec.name] = self.input_views[index] = target
        for i, node in enumerate(layout.steps):
            k = node.kernel
            ins = [bound[n] if n else None for n in node.inputs]
            if i in layout.views:
                for name, value in zip(node.outputs, k.ref(ins)):
                    bound[name] = value
                continue
            if i in layout.inplace:
                outs = [ins[0]]
                bound[node.outputs[0]] = ins[0]
            else:
                outs = []
                for name in node.outputs:
                    want = env[name]
                    bound[name] = aliases[name] if name in aliases else bucket.view(
                        plan.root_of[name], want.shape, want.dtype, f"{k.op_type} -> {name}")
                    outs.append(bound[name])
            specs, scratch = scratch_of[i]
            if k.view:  # a view op whose result is not a view here (e.g. reshaping a transposed array): copy
                self.steps.append(_copy_step(k, ins, outs))
            elif node.outputs[0] in borders and hasattr(k, "bind_zero_bordered"):
                self.steps.append(k.bind_zero_bordered(ins, outs, scratch, borders[node.outputs[0]]))
            else:
                self.steps.append(k.bind(ins, outs, scratch))
            if not k.view:
                for index, (buffer, (_, _, persistent)) in enumerate(zip(scratch, specs)):
                    if persistent:  # e.g. a padded input: bind filled its border; another program may overwrite it
                        self.init_steps.append(k.persistent_init(index, buffer))
        self.outputs = [bound[n] for n in session.output_names]
        # one input and one output: Session.run's hot path calls run_single
        self.single_output = session.output_names[0] if len(self.outputs) == len(self.input_views) == 1 else None
        bucket.owner = self

    def run(self, arrays: Any, copy: bool) -> list[np.ndarray]:
        # (the batch-1 latency of a small model is a few dozen numpy calls: this loop is kept to the bare minimum,
        # one input and one output without a zip or a comprehension)
        if self.bucket.owner is not self:
            for init in self.init_steps:
                init()
            self.bucket.owner = self
        views = self.input_views
        if len(views) == 1:
            np.copyto(views[0], arrays[0])
        else:
            for view, a in zip(views, arrays):
                np.copyto(view, a)
        for step in self.steps:
            step()
        outputs = self.outputs
        if not copy:
            return outputs
        return [outputs[0].copy()] if len(outputs) == 1 else [o.copy() for o in outputs]

    def run_single(self, x: np.ndarray, copy: bool) -> np.ndarray:
        """:meth:`run` for one input and one output, with no list in or out (~0.1 us of a ~20 us batch-1 call)."""
        if self.bucket.owner is not self:
            for init in self.init_steps:
                init()
            self.bucket.owner = self
        self.input_views[0][...] = x  # (the same copy as np.copyto: the dtype is the input's, checked before)
        for step in self.steps:
            step()
        out = self.outputs[0]
        return out.copy() if copy else out


def _input_targets(session: Session, layout: _Layout, plan: Plan, env: dict[str, Any],
                   scratch_of: dict[int, tuple[list[Any], list[np.ndarray]]],
                   borders: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Values written straight into the buffer their only reader copies them into: a padded convolution's
    persistent padded input, whose interior would otherwise be a copy of the value on every call. Only when the
    writer writes strided outputs without allocating (MaxPool's last step is a copy), the value has a buffer of its
    own (not a view, not written in place, not an output) and nothing else reads it. ``borders`` receives, for such
    a value, the whole flat buffer when the reader keeps every other element of it +0 (``input_target_buffer``: a
    convolution's zero padding), which a writer ending with relu may run its relu over (``bind_zero_bordered``)."""
    readers: dict[str, int] = {}
    producer: dict[str, int] = {}
    for i, node in enumerate(layout.steps):
        for n in node.inputs:
            if n:
                readers[n] = readers.get(n, 0) + 1
        for n in node.outputs:
            producer[n] = i
    sharing: dict[int, int] = {}
    for root in plan.root_of.values():
        sharing[root] = sharing.get(root, 0) + 1
    aliases = {}
    for j, node in enumerate(layout.steps):
        if j in layout.views or not node.inputs or not node.inputs[0]:
            continue
        v = node.inputs[0]
        i = producer.get(v)
        if (i is None or readers.get(v) != 1 or v in session.output_names or i in layout.views
                or i in layout.inplace or v not in plan.root_of or sharing[plan.root_of[v]] != 1):
            continue
        writer = layout.steps[i]
        if len(writer.outputs) != 1 or not writer.kernel.writes_strided(
                [env[n] if n else None for n in writer.inputs], [env[v]]):
            continue
        target = node.kernel.input_target([env[n] if n else None for n in node.inputs], scratch_of[j][1])
        if target is not None and target.shape == env[v].shape and target.dtype == env[v].dtype:
            aliases[v] = target
            buffer_of = getattr(node.kernel, "input_target_buffer", None)
            border = buffer_of([env[n] if n else None for n in node.inputs], scratch_of[j][1]) if buffer_of else None
            if borders is not None and border is not None and border.dtype == target.dtype:
                borders[v] = border
    return aliases


def _program_input_target(session: Session, layout: _Layout, env: dict[str, Any],
                          scratch_of: dict[int, tuple[list[Any], list[np.ndarray]]], name: str
                          ) -> np.ndarray | None:
    """Where the program may copy model input ``name`` instead of its arena buffer.
    When the input's only reader reads it as its first input and copies it on every call into a persistent buffer
    (``Kernel.input_target``: a padded convolution's interior), the program's own input copy (a ``np.copyto``, which
    writes any strides) writes there directly and the reader skips its copy. Not for an input that is also an
    output."""
    if name in session.output_names:
        return None
    readers = [(i, node) for i, node in enumerate(layout.steps) if name in node.inputs]
    if len(readers) != 1:
        return None
    i, node = readers[0]
    if i in layout.views or i in layout.inplace or node.inputs[0] != name or node.inputs.count(name) != 1:
        return None
    ins = [env[n] if n else None for n in node.inputs]
    scratch = scratch_of[i][1]
    target = node.kernel.input_target(ins, scratch)
    if target is None or target.shape != env[name].shape or target.dtype != env[name].dtype:
        return None
    return target


def _copy_step(k: Kernel, ins: list[Any], outs: list[np.ndarray]) -> Any:
    src, (o,) = ins[0], outs
    if k.op_type in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"):
        target = o.reshape(src.shape)
        return lambda: np.copyto(target, src)
    ref = k.ref
    return lambda: np.copyto(o, ref(ins)[0])


# -- versions and hashes --------------------------------------------------------------------------------------------
def _check_versions(proto: Any, source: str) -> int:
    import onnx  # noqa: PLC0415

    if proto.ir_version > onnx.IR_VERSION:
        raise ModelFormatError(f"{source}: ONNX IR version {proto.ir_version} is newer than this onnx package reads "
                               f"({onnx.IR_VERSION}); upgrade onnx")
    opset = None
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            opset = int(entry.version)
    if opset is None:
        raise ModelFormatError(f"{source}: the file imports no default-domain ONNX opset")
    from .. import __version__ as ours  # noqa: PLC0415

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelFormatError(f"{source}: the file uses ONNX opset {opset}; tinygrad_nb {ours}'s runtime reads "
                               f"opsets {MIN_OPSET} to {MAX_OPSET}")
    meta = {p.key: p.value for p in proto.metadata_props}
    fmt = meta.get(META_FORMAT)
    if fmt is not None:
        try:
            version = int(fmt)
        except ValueError:
            raise ModelFormatError(f"{source}: export format version {fmt!r} is not a number") from None
        if version > FORMAT_VERSION:
            raise ModelFormatError(f"{source}: written with tinygrad_nb export format version {version} (by "
                                   f"{meta.get('tinygrad_nb.producer', 'a newer tinygrad_nb')}); tinygrad_nb {ours} "
                                   f"reads format versions up to {FORMAT_VERSION}: upgrade tinygrad_nb")
    return opset


def _verify_hash(meta: dict[str, str], consts: dict[str, np.ndarray], source: str) -> None:
    recorded = meta.get(META_HASH)
    if recorded is None:
        return  # files from other exporters carry no hash
    from ..export.writer import weights_hash  # noqa: PLC0415

    actual = weights_hash(consts)
    if actual != recorded:
        raise ModelFormatError(f"{source}: the weights do not match the hash recorded at export ({recorded}, the "
                               f"file's initializers hash to {actual}): the file was modified or is corrupt")


class MemoryPlanReport:
    """``sess.memory_plan()``: per bucket the planned arena (peak) bytes, the liveness lower bound, the buffers;
    ``str()`` is a table, and in a notebook the buffer lifetimes are drawn (step on x, arena offset on y)."""

    def __init__(self, plans: list[Plan], allocating_ops: list[str], outside_bytes: int = 0):
        self.plans = plans
        self.allocating_ops = allocating_ops
        self.outside_bytes = outside_bytes  # held by the programs outside the arenas (see Session.outside_arena_bytes)

    def table(self) -> str:
        lines = ["bucket (input shapes)        planned peak   lower bound   buffers  steps"]
        for p in self.plans:
            shapes = " ".join("x".join(map(str, s)) for s in p.bucket)
            lines.append(f"{shapes:<28} {_kib(p.arena_bytes):>12}   {_kib(p.lower_bound):>11}   {len(p.roots):>7}  "
                         f"{p.steps:>5}")
        lines.append("ops without an out= kernel (allocate per call): " + (", ".join(self.allocating_ops) or "none"))
        lines.append(f"held outside the arenas (batch-broadcast constants, Relu's zeros): {_kib(self.outside_bytes)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()

    def figure(self, plan: Plan | None = None) -> Any:
        """A matplotlib figure of one bucket's buffers (default: the largest bucket)."""
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415

        plan = plan or max(self.plans, key=lambda p: p.arena_bytes)
        fig = Figure(figsize=(8, 3.2), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
        colors = plt.get_cmap("tab20").colors
        for i, r in enumerate(plan.roots):
            # step i is drawn at x = i + 1 ("in" at 0, "out" at steps + 1); a root covers [start, end] inclusive
            ax.add_patch(matplotlib.patches.Rectangle((r.start + 0.5, r.offset / 1024), r.end - r.start + 1,
                                                      r.size / 1024, facecolor=colors[i % len(colors)],
                                                      edgecolor="black", linewidth=0.5))
        ax.set_xlim(-0.5, plan.steps + 1.5)
        ax.set_ylim(0, max(plan.arena_bytes / 1024, 1) * 1.05)
        ax.set_xticks(range(plan.steps + 2))
        ax.set_xticklabels(["in"] + plan.step_labels + ["out"], rotation=60, fontsize=7)
        ax.set_xlabel("step")
        ax.set_ylabel("arena offset (KiB)")
        shapes = " ".join("x".join(map(str, s)) for s in plan.bucket)
        ax.set_title(f"buffer lifetimes, bucket {shapes}: planned {_kib(plan.arena_bytes)}, "
                     f"lower bound {_kib(plan.lower_bound)}", fontsize=9)
        fig.tight_layout()
        return fig

    def _repr_png_(self) -> bytes:
        import io  # noqa: PLC0415

        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png")
        return buffer.getvalue()


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"
