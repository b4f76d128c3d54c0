"""Request and response bodies: JSON, one ``.npy`` array, or safetensors; each checked against the model's inputs.

    POST /v1/predict  Content-Type: application/json         {"inputs": {"input": [[0.1, ...], ...]}}
                                                             {"inputs": [[0.1, ...], ...]}     (one-input models)
                      Content-Type: application/x-npy        one array (one-input models)
                      Content-Type: application/x-safetensors  one tensor per input, by name

Every array carries the batch dimension first (``n`` samples, 1 <= n <= the server's max batch). The answer has the
request's format (or the one ``Accept`` names): ``{"outputs": {name: nested lists}}``, one ``.npy`` (one-output
models) or safetensors by output name. Nothing here reads a file or unpickles: ``.npy`` is read with
``allow_pickle=False`` and object dtypes are refused.

Every way a body can be wrong raises :class:`RequestError` with an HTTP status (4xx) and a message naming the input
and the expected shape, so a bad request never reaches the model.
"""
from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

JSON, NPY, SAFETENSORS = "application/json", "application/x-npy", "application/x-safetensors"
FORMATS = (JSON, NPY, SAFETENSORS)


class RequestError(Exception):
    """A request the server refuses: ``status`` (4xx, or 503 for load shedding), a message for the client, the
    metrics' ``reason`` label and, for 503, the ``Retry-After`` seconds."""

    def __init__(self, status: int, message: str, reason: str = "invalid", retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.reason, self.retry_after = status, message, reason, retry_after


def body_format(content_type: str | None) -> str:
    """The body format a ``Content-Type`` names (parameters such as ``; charset=utf-8`` ignored)."""
    kind = (content_type or JSON).split(";", 1)[0].strip().lower()
    if kind in ("", "application/json", "text/json"):
        return JSON
    if kind in (NPY, "application/npy"):
        return NPY
    if kind in (SAFETENSORS, "application/safetensors"):
        return SAFETENSORS
    raise RequestError(415, f"unsupported Content-Type {kind!r}: send {JSON}, {NPY} or {SAFETENSORS}", "invalid")


def reply_format(accept: str | None, request_format: str) -> str:
    """The answer's format: the first of ``Accept``'s types this server writes, else the request's format."""
    for part in (accept or "").split(","):
        kind = part.split(";", 1)[0].strip().lower()
        if kind in FORMATS:
            return kind
    return request_format


class InputChecker:
    """Turns decoded arrays into the model's inputs: names, dtypes and shapes checked, the batch size returned."""

    def __init__(self, specs: Sequence[Any], max_batch: int):
        self.specs = list(specs)
        self.names = [s.name for s in self.specs]
        self.max_batch = max_batch

    def expected(self, spec: Any) -> str:
        dims = ", ".join("batch" if i == 0 else (str(d) if isinstance(d, int) else (d or "?"))
                         for i, d in enumerate(spec.shape))
        return f"({dims}{',' if len(spec.shape) == 1 else ''}) {spec.dtype}"

    def arrays(self, named: dict[str, np.ndarray], *, exact_dtype: bool) -> tuple[list[np.ndarray], int]:
        """The inputs in the model's order and the batch size ``n`` (413 when ``n`` is beyond the plan)."""
        unknown = [k for k in named if k not in self.names]
        if unknown:
            raise RequestError(400, f"unknown input {unknown[0]!r}; the model's inputs are {self.names}")
        missing = [n for n in self.names if n not in named]
        if missing:
            spec = self.specs[self.names.index(missing[0])]
            raise RequestError(400, f"missing input {missing[0]!r}: expected shape {self.expected(spec)}")
        arrays, batch = [], None
        for spec in self.specs:
            a = named[spec.name]
            if a.dtype != spec.dtype:
                if exact_dtype or not _converts(a.dtype, spec.dtype):
                    raise RequestError(400, f"input {spec.name!r}: expected dtype {spec.dtype} with shape "
                                            f"{self.expected(spec)}, got {a.dtype} of shape {tuple(a.shape)}")
                a = a.astype(spec.dtype)
            if a.ndim != len(spec.shape) or a.ndim == 0 or any(
                    isinstance(d, int) and d != n for d, n in zip(spec.shape[1:], a.shape[1:])):
                raise RequestError(400, f"input {spec.name!r}: expected shape {self.expected(spec)}, got "
                                        f"{tuple(a.shape)}")
            if batch is not None and a.shape[0] != batch:
                raise RequestError(400, f"input {spec.name!r}: batch size {a.shape[0]} differs from the other "
                                        f"inputs' {batch}")
            batch = a.shape[0]
            arrays.append(np.ascontiguousarray(a))
        if not batch:
            raise RequestError(400, f"input {self.names[0]!r}: the batch is empty (shape "
                                    f"{tuple(arrays[0].shape)}); send at least one sample")
        if batch > self.max_batch:
            raise RequestError(413, f"the request holds {batch} samples; this server's memory plan holds at most "
                                    f"{self.max_batch} samples per batch (--max-batch {self.max_batch}): split it",
                               "too_large")
        return arrays, batch


def _converts(got: np.dtype, want: np.dtype) -> bool:
    """JSON numbers become the input's dtype: ints to floats, bools to numbers; never floats to ints."""
    if want.kind == "f":
        return got.kind in "biuf"
    if want.kind in "iu":
        return got.kind in "biu"
    if want.kind == "b":
        return got.kind == "b"
    return False


def decode(body: bytes, fmt: str, checker: InputChecker) -> tuple[list[np.ndarray], int]:
    """The model's inputs from a request body, and the batch size."""
    if fmt == JSON:
        return checker.arrays(_from_json(body, checker), exact_dtype=False)
    if fmt == NPY:
        if len(checker.names) != 1:
            raise RequestError(400, f"a .npy body holds one array but the model has {len(checker.names)} inputs "
                                    f"{checker.names}: send safetensors or JSON")
        return checker.arrays({checker.names[0]: _from_npy(body)}, exact_dtype=True)
    return checker.arrays(_from_safetensors(body), exact_dtype=True)


def _from_json(body: bytes, checker: InputChecker) -> dict[str, np.ndarray]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise RequestError(400, f"the body is not valid JSON: {e}") from None
    except RecursionError:
        raise RequestError(400, "the body is not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise RequestError(400, 'the JSON body must be an object with "inputs": {"<input name>": [[...], ...]} '
                                f"(the model's inputs are {checker.names})")
    inputs = doc["inputs"]
    if not isinstance(inputs, dict):
        if len(checker.names) != 1:
            raise RequestError(400, f'"inputs" must map names to arrays: the model has inputs {checker.names}')
        inputs = {checker.names[0]: inputs}
    named = {}
    for name, value in inputs.items():
        if name not in checker.names:
            raise RequestError(400, f"unknown input {name!r}; the model's inputs are {checker.names}")
        spec = checker.specs[checker.names.index(name)]
        try:
            array = np.array(value)
        except (ValueError, TypeError, RecursionError):
            raise RequestError(400, f"input {name!r}: not a rectangular array of numbers (expected shape "
                                    f"{checker.expected(spec)})") from None
        if array.dtype.kind not in "biuf":
            raise RequestError(400, f"input {name!r}: expected numbers of shape {checker.expected(spec)}, got "
                                    f"{'a ragged or mixed' if array.dtype.kind == 'O' else array.dtype.name} array "
                                    f"of shape {tuple(array.shape)}")
        named[name] = array
    return named


_NPY_HEADER = re.compile(rb"\{'descr': '([<>|][a-z][0-9]{1,2})', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \} *\n")


def _from_npy(body: bytes) -> np.ndarray:
    # the header numpy itself writes (version 1.0, C order), parsed with one regex: np.lib.format.read_array
    # evaluates the header with ast.literal_eval, about 0.1 ms per request; anything else takes that path
    if body[:8] == b"\x93NUMPY\x01\x00" and len(body) >= 10:
        end = 10 + int.from_bytes(body[8:10], "little")
        m = _NPY_HEADER.fullmatch(body, 10, end)
        if m is not None:
            dtype = np.dtype(m.group(1).decode())
            shape = tuple(int(d) for d in m.group(2).split(b",") if d.strip())
            count = math.prod(shape)
            if dtype.kind in "biuf" and len(body) == end + count * dtype.itemsize:
                return np.frombuffer(body, dtype, count, end).reshape(shape)
    try:
        array = np.lib.format.read_array(io.BytesIO(body), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any malformed header or short body is the client's error
        raise RequestError(400, f"the body is not a valid .npy array: {e}") from None
    if array.dtype.hasobject:
        raise RequestError(400, "the .npy array has an object dtype; only numeric arrays are accepted")
    return array


def _from_safetensors(body: bytes) -> dict[str, np.ndarray]:
    from safetensors.numpy import load  # noqa: PLC0415

    try:
        return load(body)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types (and others on garbage)
        raise RequestError(400, f"the body is not a valid safetensors file: {e}") from None


def npy_bytes(a: np.ndarray) -> bytes:
    """``np.save``'s bytes for a numeric array (format 1.0), without its per-call header machinery."""
    a = np.ascontiguousarray(a)
    shape = f"({a.shape[0]},)" if a.ndim == 1 else f"({', '.join(map(str, a.shape))})"
    header = f"{{'descr': '{a.dtype.str}', 'fortran_order': False, 'shape': {shape}, }}"
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + a.tobytes()


def encode(outputs: dict[str, np.ndarray], fmt: str) -> bytes:
    """A response body in ``fmt``."""
    if fmt == NPY and len(outputs) == 1:
        a = next(iter(outputs.values()))
        if a.dtype.kind in "biuf" and len(a.shape) < 30:
            return npy_bytes(a)
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, a, allow_pickle=False)
        return buffer.getvalue()
    if fmt in (NPY, SAFETENSORS):
        from safetensors.numpy import save  # noqa: PLC0415

        return save({k: np.ascontiguousarray(v) for k, v in outputs.items()})
    return json.dumps({"outputs": {k: _jsonable(v) for k, v in outputs.items()}}).encode()


def _jsonable(a: np.ndarray) -> Any:
    # float32 -> Python float is exact, and json writes the shortest repr that reads back to the same double, so a
    # client that casts back to float32 gets the runtime's bits (NaN and Infinity as Python's json writes them)
    return a.tolist()
