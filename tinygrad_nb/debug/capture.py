"""``capture(model)``: per-layer statistics of activations and gradients, every N forward calls.

It registers a forward pre-hook on the model (to count calls) and a forward hook on every leaf layer. On a sampled
call (call index divisible by ``every``) each layer's output statistics are computed, and a gradient hook is put on
that output, so the statistics of the gradient flowing back into the layer (``grad_output``) are computed during
backward. Other calls cost one counter increment and one modulo per layer.

Each record is a dict: ``step`` (the model's call index), ``layer`` (the module's name), ``kind`` ("activation" or
"grad") and the fields of :func:`~tinygrad_nb.debug.stats.array_stats` (mean, std, min, max, zero_frac, nonfinite,
hist, hist_edges). Records go to ``handle.records`` and, when ``sink`` is a :class:`~tinygrad_nb.track.Run`, into its
metrics stream (``act/<layer>/mean`` ... scalars and an ``act/<layer>`` histogram; ``grad/...`` likewise); any other
``sink`` with a ``write(record)`` method or a callable gets each record.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..tables import TextTable, html_table, text_lines
from .stats import array_stats

KINDS = ("activations", "grads")
_PREFIX = {"activation": "act", "grad": "grad"}
_SCALARS = ("mean", "std", "min", "max", "zero_frac", "nonfinite")


class Capture:
    """The handle returned by :func:`capture`: ``records``, ``remove()``, and a ``with`` form that removes itself."""

    def __init__(self, model: Any, what: Sequence[str], every: int, sink: Any, layers: Sequence[str] | None,
                 keep: bool):
        unknown = [w for w in what if w not in KINDS]
        if unknown:
            raise ValueError(f"capture: what={tuple(what)!r} has unknown kinds {unknown}; choose from {KINDS}")
        if not hasattr(model, "named_modules") or not hasattr(model, "register_forward_hook"):
            raise TypeError(f"capture: expected a tinygrad_nb.nn.Module, got {type(model).__name__}")
        self.model = model
        self.every = max(1, int(every))
        self.sink = sink
        self.keep = keep
        self.records: list[dict[str, Any]] = []
        self.step = -1  # index of the current model call
        self.activations = "activations" in what
        self.grads = "grads" in what
        self._handles: list[Any] = [model.register_forward_pre_hook(self._count)]
        for name, module in _leaf_modules(model, layers):
            self._handles.append(module.register_forward_hook(self._forward_hook(name)))

    # -- hooks ----------------------------------------------------------------------------------------------------
    def _count(self, module: Any, args: Any) -> None:
        self.step += 1

    @property
    def sampling(self) -> bool:
        """Is the current model call one whose statistics are recorded?"""
        return self.step % self.every == 0

    def _forward_hook(self, name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: Any) -> None:
            if self.step % self.every:
                return
            out = output[0] if isinstance(output, (tuple, list)) and output else output
            if not hasattr(out, "data") or not hasattr(out, "device"):
                return
            step = self.step
            if self.activations:
                self._record(step, name, "activation", out.data, out.device.xp)
            if self.grads and getattr(out, "requires_grad", False):
                out.register_hook(lambda g: self._record(step, name, "grad", g.data, g.device.xp))
        return hook

    def _record(self, step: int, layer: str, kind: str, array: Any, xp: Any) -> None:
        record = {"step": step, "layer": layer, "kind": kind, **array_stats(array, xp)}
        if self.keep:
            self.records.append(record)
        sink = self.sink
        if sink is None:
            return
        if hasattr(sink, "log") and hasattr(sink, "log_hist_counts"):  # a track.Run
            prefix = f"{_PREFIX[kind]}/{layer}"
            sink.log({f"{prefix}/{k}": record[k] for k in _SCALARS}, step=step)
            sink.log_hist_counts(prefix, record["hist"], record["hist_edges"], step=step, stats=record)
        elif hasattr(sink, "write"):
            sink.write(record)
        else:
            sink(record)

    # -- results and removal --------------------------------------------------------------------------------------
    def table(self, kind: str = "activation") -> TextTable:
        """The latest record of each layer as a text table: a ``str`` (print it, search it) that a notebook shows as a
        non-wrapping HTML table when it is the cell's value."""
        latest: dict[str, dict[str, Any]] = {}
        for r in self.records:
            if r["kind"] == kind:
                latest[r["layer"]] = r
        header = ("layer", "step", "mean", "std", "min", "max", "zeros", "nonfinite")
        rows = [(layer, str(r["step"]), f"{r['mean']:.4g}", f"{r['std']:.4g}", f"{r['min']:.4g}",
                 f"{r['max']:.4g}", f"{r['zero_frac']:.1%}", str(r["nonfinite"])) for layer, r in latest.items()]
        right = [i > 0 for i in range(len(header))]
        text = "\n".join(text_lines([header, *rows], right, rule=False))
        return TextTable(text, html_table(header, rows, title=f"{kind}s, latest step", right=right))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _leaf_modules(model: Any, layers: Sequence[str] | None) -> list[tuple[str, Any]]:
    named = [(name or type(model).__name__, m) for name, m in model.named_modules()]
    if layers is not None:
        chosen = [(n, m) for n, m in named if n in set(layers)]
        missing = set(layers) - {n for n, _ in chosen}
        if missing:
            raise ValueError(f"capture: no layers named {sorted(missing)}; the model has {[n for n, _ in named]}")
        return chosen
    names = [n for n, _ in named]
    leaves = [(n, m) for n, m in named if not any(o.startswith(n + ".") for o in names if o != n)
              and m is not model]
    return leaves or [(named[0][0], model)]


def capture(model: Any, what: Sequence[str] = KINDS, every: int = 1, sink: Any = None,
            layers: Sequence[str] | None = None, keep: bool = True) -> Capture:
    """Record per-layer statistics of ``model`` (see the module docstring). Returns a handle; ``with`` works.

    ``what``: "activations" and/or "grads". ``every``: compute statistics on one model call in ``every``.
    ``sink``: a :class:`~tinygrad_nb.track.Run` (or an object with ``write(record)``, or a callable).
    ``layers``: module names to watch (default: every leaf module). ``keep=False`` skips ``handle.records``.
    """
    if isinstance(what, str):
        what = (what,)
    return Capture(model, tuple(what), every, sink, layers, keep)
