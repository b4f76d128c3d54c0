"""Summary statistics of an array: what the tracer reports and what ``capture`` records per layer."""
from __future__ import annotations

from typing import Any

import numpy as np

HIST_BINS = 30


def to_numpy(array: Any) -> np.ndarray:
    """A numpy view/copy of a numpy or cupy array (or anything array-like)."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "get") and hasattr(array, "__cuda_array_interface__"):
        return array.get()
    return np.asarray(array)


def nonfinite_counts(array: Any) -> tuple[int, int]:
    """(number of NaNs, number of infs) in ``array`` (0, 0 for integer and bool arrays)."""
    a = to_numpy(array)
    if a.dtype.kind not in "fc":
        return 0, 0
    return int(np.isnan(a).sum()), int(np.isinf(a).sum())


def describe(array: Any) -> str:
    """One line: shape, dtype, min/max of the finite values, NaN/inf counts."""
    a = to_numpy(array)
    text = f"shape {tuple(a.shape)} {a.dtype.name}"
    if a.size == 0:
        return text + ", empty"
    if a.dtype.kind not in "fc":
        return text + f", min {a.min()}, max {a.max()}"
    finite = a[np.isfinite(a)]
    nan, inf = nonfinite_counts(a)
    if finite.size:
        text += f", min {float(finite.min()):.6g}, max {float(finite.max()):.6g}"
    else:
        text += ", no finite values"
    if nan or inf:
        return text + f", {nan} NaN, {inf} inf"
    return text + ", all finite"


def array_stats(array: Any, xp: Any = None, bins: int = HIST_BINS) -> dict[str, Any]:
    """mean, std, min, max (of the finite values), zero fraction, non-finite count and a ``bins``-bucket histogram.

    Computed with ``xp`` (numpy or cupy) on the array's device; the result holds plain Python floats/ints and lists,
    so it is JSON-ready. ``hist`` has ``bins`` counts and ``hist_edges`` ``bins + 1`` edges.
    """
    xp = xp if xp is not None else np
    a = array.astype(xp.float64) if array.dtype.kind != "f" or array.dtype.itemsize < 4 else array
    a = a.reshape(-1)
    n = int(a.size)
    if n == 0:
        return {"count": 0, "mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0, "zero_frac": 0.0, "nonfinite": 0,
                "hist": [0] * bins, "hist_edges": [0.0] * (bins + 1)}
    finite_mask = xp.isfinite(a)
    nonfinite = n - int(finite_mask.sum())
    finite = a[finite_mask] if nonfinite else a
    zero_frac = float((a == 0).sum()) / n
    if finite.size == 0:
        return {"count": n, "mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan"),
                "zero_frac": zero_frac, "nonfinite": nonfinite, "hist": [0] * bins, "hist_edges": [0.0] * (bins + 1)}
    lo, hi = float(finite.min()), float(finite.max())
    counts, edges = histogram(finite, lo, hi, xp, bins)
    return {"count": n, "mean": float(finite.mean()), "std": float(finite.std()), "min": lo, "max": hi,
            "zero_frac": zero_frac, "nonfinite": nonfinite, "hist": counts, "hist_edges": edges}


def histogram(finite: Any, lo: float, hi: float, xp: Any = None,
              bins: int = HIST_BINS) -> tuple[list[int], list[float]]:
    """Counts and edges of ``bins`` equal buckets over [lo, hi] (widened by 0.5 each side when lo == hi)."""
    xp = xp if xp is not None else np
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = xp.histogram(finite, bins=bins, range=(lo, hi))
    return [int(c) for c in to_numpy(counts)], [float(e) for e in to_numpy(edges)]
