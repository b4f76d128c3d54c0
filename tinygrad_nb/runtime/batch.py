"""``Session.map``: single samples in, one result per sample out, batched in between.

    for probs in sess.map(samples, batch_size=64):    # any iterable, even one larger than memory
        ...

Samples are collated like ``data.default_collate`` (stacked along a new first dimension); variable-length
sequences are padded at the end of their first axis to the longest in the batch, with ``padding_value``, as
``data.pad_sequence(..., batch_first=True)`` does (or to the model's fixed length when the input has one). A sample
is one array for a one-input model, a tuple/list (by position) or a dict (by name) otherwise. Results come back in
order: an array per sample (a tuple when the model has several outputs). Only one batch is held at a time.

Progress: a widget inside Jupyter, a text line (stderr) in a terminal, nothing in pipes and logs unless asked
(``progress=True``).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .session import InputError, Session


def _in_jupyter() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:  # noqa: BLE001
        return False
    return ip is not None and getattr(ip, "kernel", None) is not None


class _TextBar:
    """``predict  640/1000 samples  (64%)``, redrawn in place at most ten times a second."""

    def __init__(self, total: int | None, stream: Any):
        self.total, self.stream, self.done, self._next = total, stream, 0, 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now >= self._next:
            self._next = now + 0.1
            self._draw("\r")

    def _draw(self, prefix: str) -> None:
        of = f"/{self.total}" if self.total else ""
        pct = f"  ({self.done / self.total:.0%})" if self.total else ""
        self.stream.write(f"{prefix}predict  {self.done}{of} samples{pct}")
        self.stream.flush()

    def close(self) -> None:
        self._draw("\r")
        self.stream.write("\n")
        self.stream.flush()


class _WidgetBar:
    """An ipywidgets progress bar (imported only inside Jupyter)."""

    def __init__(self, total: int | None):
        import ipywidgets  # noqa: PLC0415
        from IPython.display import display  # noqa: PLC0415

        self.total, self.done = total, 0
        self.bar = ipywidgets.IntProgress(min=0, max=total or 1, description="predict")
        self.label = ipywidgets.Label()
        self._next = 0.0
        display(ipywidgets.HBox([self.bar, self.label]))

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now >= self._next:
            self._next = now + 0.1
            self._draw()

    def _draw(self) -> None:
        if self.total:
            self.bar.value = min(self.done, self.total)
        self.label.value = f"{self.done}" + (f"/{self.total}" if self.total else "") + " samples"

    def close(self) -> None:
        self._draw()
        self.bar.bar_style = "success"


def _progress(progress: bool | None, total: int | None) -> Any:
    if progress is False:
        return None
    if _in_jupyter():
        return _WidgetBar(total)
    if progress or bool(getattr(sys.stderr, "isatty", lambda: False)()):
        return _TextBar(total, sys.stderr)
    return None


def collate(session: Session, samples: list[Any], padding_value: float = 0.0) -> list[np.ndarray]:
    """Stack one batch of samples into the model's inputs (padding ragged sequences)."""
    specs = session.inputs
    columns: list[list[Any]] = [[] for _ in specs]
    for k, sample in enumerate(samples):
        if isinstance(sample, dict):
            parts = [sample[s.name] for s in specs]
        elif len(specs) > 1:
            if not isinstance(sample, (tuple, list)) or len(sample) != len(specs):
                raise InputError(f"sample {k}: the model has {len(specs)} inputs {[s.name for s in specs]}; pass a "
                                 "tuple or a dict per sample")
            parts = list(sample)
        else:
            parts = [sample]
        for column, part in zip(columns, parts):
            column.append(part)
    batch = []
    for spec, column in zip(specs, columns):
        arrays = [np.asarray(p.numpy() if hasattr(p, "numpy") and not isinstance(p, np.ndarray) else p)
                  for p in column]
        arrays = [a if isinstance(p, np.ndarray) or a.dtype == spec.dtype else a.astype(spec.dtype)
                  for a, p in zip(arrays, column)]
        shapes = {a.shape for a in arrays}
        fixed = spec.shape[1] if len(spec.shape) > 1 and isinstance(spec.shape[1], int) else None
        if len(shapes) == 1 and (fixed is None or arrays[0].ndim == 0 or arrays[0].shape[0] == fixed):
            batch.append(np.stack(arrays))
            continue
        trailing = {a.shape[1:] for a in arrays}
        if any(a.ndim == 0 for a in arrays) or len(trailing) > 1:
            raise InputError(f"input {spec.name!r}: samples have shapes {sorted(shapes)[:2]}; only the first axis "
                             f"(a sequence length) may differ between samples")
        longest = max(a.shape[0] for a in arrays)
        length = fixed if fixed is not None else longest
        if longest > length:
            raise InputError(f"input {spec.name!r}: a sample of length {longest} is longer than the model's fixed "
                             f"length {length}")
        out = np.full((len(arrays), length) + arrays[0].shape[1:], padding_value, dtype=arrays[0].dtype)
        for i, a in enumerate(arrays):
            out[i, :a.shape[0]] = a
        batch.append(out)
    return batch


def map_samples(session: Session, samples: Iterable[Any], *, batch_size: int = 64, progress: bool | None = None,
                total: int | None = None, padding_value: float = 0.0) -> Iterator[Any]:
    """See the module docstring (``Session.map`` calls this)."""
    if batch_size < 1:
        raise ValueError(f"map: batch_size must be at least 1, got {batch_size}")
    if total is None and hasattr(samples, "__len__"):
        total = len(samples)  # type: ignore[arg-type]
    return _generate(session, iter(samples), batch_size, progress, total, padding_value)


def _generate(session: Session, it: Iterator[Any], batch_size: int, progress: bool | None, total: int | None,
              padding_value: float) -> Iterator[Any]:
    bar = _progress(progress, total)
    single = len(session.output_names) == 1
    try:
        while True:
            chunk = []
            for sample in it:
                chunk.append(sample)
                if len(chunk) == batch_size:
                    break
            if not chunk:
                break
            outputs = list(session.run(collate(session, chunk, padding_value)).values())
            for i in range(len(chunk)):
                yield outputs[0][i] if single else tuple(o[i] for o in outputs)
            if bar is not None:
                bar.update(len(chunk))
            if len(chunk) < batch_size:
                break
    finally:
        if bar is not None:
            bar.close()
