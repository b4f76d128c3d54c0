"""Batch inference at scale: a runtime :class:`~tinygrad_nb.runtime.Session` applied to a Ray Dataset.

    import tinygrad_nb as tg
    tg.runtime.map_dataset("rows/*.parquet", "model.onnx", batch_size=4096, output="scored/")   # Parquet out
    ds = tg.runtime.map_dataset(ray.data.read_csv(path), "model.onnx")                         # lazy Dataset back

``map_batches`` with an actor pool: each actor loads the model once (one :class:`~tinygrad_nb.runtime.Session` per
actor, from the ONNX file's bytes shipped with the task, so workers need no access to the path) and runs whole
batches. Input: the model's one input is the batch's ``input_columns`` (default: every column not passed through)
stacked as a ``(rows, features)`` array in the input's dtype. Output: one column per model output (``name``), or
``name_0 .. name_k`` for an output of shape ``(rows, k)``. ``passthrough`` columns (ids, labels) are copied along so
results can be joined back; rows keep their order (``preserve_order``).

On a cluster the same call reads from shared storage (``s3://``, ``gs://``, NFS) and spreads actors over the nodes;
``concurrency`` actors each take ``num_cpus`` (at most as many as leave one CPU of the cluster for reading).

Ray is imported only when :func:`map_dataset` is called: importing :mod:`tinygrad_nb.runtime` stays numpy + onnx.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


class _SessionActor:
    """One runtime session per Ray actor, made once, used for every batch that actor gets."""

    def __init__(self, model: bytes, input_columns: Sequence[str] | None, passthrough: Sequence[str],
                 max_batch: int):
        from . import load  # noqa: PLC0415

        self.session = load(model, max_batch=max_batch)
        if len(self.session.inputs) != 1:
            raise ValueError(f"map_dataset: the model has {len(self.session.inputs)} inputs; map_dataset feeds one "
                             "(a (rows, features) matrix of the input columns)")
        spec = self.session.inputs[0]
        self.input_name, self.dtype = spec.name, np.dtype(spec.dtype)
        self.input_columns = list(input_columns) if input_columns is not None else None
        self.passthrough = list(passthrough)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        columns = self.input_columns or [c for c in batch if c not in self.passthrough]
        missing = [c for c in columns if c not in batch]
        if missing:
            raise KeyError(f"map_dataset: no column {missing[0]!r} in the data; columns are {list(batch)}")
        x = np.stack([np.asarray(batch[c], dtype=self.dtype) for c in columns], axis=1)
        outputs = self.session.run({self.input_name: x})
        out = {c: batch[c] for c in self.passthrough}
        for name, value in outputs.items():
            value = np.asarray(value)
            if value.ndim == 1:
                out[name] = value
            else:
                flat = value.reshape(value.shape[0], -1)
                for k in range(flat.shape[1]):
                    out[f"{name}_{k}"] = flat[:, k]
        return out


def map_dataset(data: Any, model: str | os.PathLike[str] | bytes, *, batch_size: int = 1024,
                output: str | os.PathLike[str] | None = None, input_columns: Sequence[str] | None = None,
                passthrough: Sequence[str] = (), concurrency: int = 2, num_cpus: float = 1,
                preserve_order: bool = True) -> Any:
    """Run every row of ``data`` (a Ray Dataset, or a CSV/Parquet path, file or folder) through the ONNX ``model``
    (a path or the file's bytes) on a pool of ``concurrency`` actors. With ``output``: write Parquet files there and
    return the folder's path; else return the (lazy) Dataset."""
    if batch_size < 1:  # checked before Ray is imported (seconds) or started
        raise ValueError(f"map_dataset: batch_size must be >= 1, got {batch_size}")
    try:
        import ray  # noqa: PLC0415
        import ray.data  # noqa: PLC0415
    except ImportError:
        raise ImportError("map_dataset needs Ray Data: pip install 'ray[data]'") from None
    if isinstance(model, (bytes, bytearray)):
        model_bytes = bytes(model)
    else:
        with open(model, "rb") as f:
            model_bytes = f.read()
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = preserve_order
    # leave a CPU for the read tasks: actors holding every CPU would starve them and the pipeline would stall
    cpus = float(ray.cluster_resources().get("CPU", 1))
    concurrency = max(1, min(concurrency, int((cpus - 1) // max(num_cpus, 1e-9)) or 1))
    dataset = data if not isinstance(data, (str, os.PathLike)) else _read(ray, os.fspath(data))
    mapped = dataset.map_batches(_SessionActor, batch_size=batch_size, batch_format="numpy",
                                 fn_constructor_args=(model_bytes, input_columns, tuple(passthrough), batch_size),
                                 concurrency=concurrency, num_cpus=num_cpus)
    if output is None:
        return mapped
    mapped.write_parquet(os.fspath(output))
    return os.fspath(output)


def _read(ray: Any, path: str) -> Any:
    lower = path.lower()
    if lower.endswith((".csv", ".csv.gz")):
        return ray.data.read_csv(path)
    if lower.endswith(".parquet") or os.path.isdir(path):
        return ray.data.read_parquet(path)
    raise ValueError(f"map_dataset: {path} is neither .csv nor .parquet (or a folder of Parquet files)")
