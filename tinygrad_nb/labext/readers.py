"""What the REST handlers serve, as plain JSON-ready data: runs of a run store, metric series for a comparison, the
commits of a cell checkpoint store. No tornado here (the handlers in :mod:`.handlers` are thin), so this is tested
directly as well as through a real server.

Everything here only reads. Paths come from the browser and are confined to the server's root directory by
:func:`resolve_inside` (``..``, absolute paths and symlinks leading out are refused). The run store is read through
:class:`~tinygrad_nb.track.RunStore`, which tolerates damaged rows (they come back with status "damaged" and their
reasons); a cell checkpoint manifest is JSON (gzip) and is only parsed: skeletons, the only pickled part of a cell
checkpoint, are never opened here, and nothing on the server unpickles anything.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

RUNS_DB = Path(".tinygrad_nb") / "runs.db"  # the run store next to a notebook (track.store's default location)
CHECKPOINTS = Path(".tinygrad_nb") / "checkpoints"  # the cell checkpoint stores next to a notebook
MAX_RUNS = 500  # runs listed at most (newest first)
MAX_POINTS = 2000  # points per metric curve sent to the browser at most
MAX_COMPARED = 16  # runs in one comparison at most
CACHE_SECONDS = 5.0  # a listing is reused while the store file is unchanged, at most this long (crashed-run check)


class PathRefused(ValueError):
    """A path parameter that leaves the server's root directory (or is not a relative path at all)."""


def resolve_inside(root: str | os.PathLike[str], relative: str, what: str = "path") -> Path:
    """``root / relative`` resolved (symlinks followed), refusing anything that ends up outside ``root``.

    ``relative`` is a path as the browser names files (``"dir/nb.ipynb"``, ``""`` for the root itself). Absolute
    paths, NUL bytes and backslashes are refused outright; ``..`` is refused when it leads out.
    """
    if not isinstance(relative, str):
        raise PathRefused(f"{what}: expected a relative path, got {type(relative).__name__}")
    if "\x00" in relative or "\\" in relative:
        raise PathRefused(f"{what} {relative!r}: NUL bytes and backslashes are not allowed")
    if relative.startswith("/") or (len(relative) > 1 and relative[1] == ":"):
        raise PathRefused(f"{what} {relative!r}: must be relative to the server's root directory")
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise PathRefused(f"{what} {relative!r} leads outside the server's root directory")
    return target


def _finite(value: Any) -> float | None:
    """A float for JSON: NaN and inf become None (JSON has neither); callers say non-finite separately."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _jsonable(value: Any) -> Any:
    """Config and fingerprint values as strict JSON (non-finite floats as their text)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


# -- runs -----------------------------------------------------------------------------------------------------------
_cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
_cache_lock = threading.Lock()


def _stamp(db: Path) -> tuple[Any, ...]:
    """What changes whenever the store is written: size and mtime of the file and its WAL."""
    out: list[Any] = []
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            st = path.stat()
            out += [st.st_size, st.st_mtime_ns]
        except OSError:
            out += [None, None]
    return tuple(out)


def list_runs(db: Path, limit: int = MAX_RUNS) -> list[dict[str, Any]]:
    """The runs of the store at ``db``, newest first: id, name, project, status, times, config, fingerprint digest and
    fingerprint, the last value of each metric (``last``; None for non-finite, named in ``nonfinite``), damage.
    An absent file is an empty store."""
    if not db.is_file():
        return []
    key = ("runs", str(db), limit, _stamp(db))
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
    from ..track.store import RunStore  # noqa: PLC0415

    store = RunStore(db)
    out = []
    for record in store.runs(limit=limit):
        try:
            summary = store.summary(record.id, skip_damaged=True)
        except Exception as e:  # noqa: BLE001 - one unreadable run must not hide the others
            summary = {}
            record.damage.append(f"metrics unreadable: {type(e).__name__}: {e}")
        last = {name: _finite(s["final"]) for name, s in summary.items()}
        fingerprint = record.fingerprint if isinstance(record.fingerprint, dict) else None
        out.append({"id": record.id, "name": record.name, "project": record.project, "status": record.status,
                    "start_time": _finite(record.start_time), "end_time": _finite(record.end_time),
                    "config": _jsonable(record.config), "last": last,
                    "last_step": max((int(s["last_step"]) for s in summary.values()), default=None),
                    "nonfinite": sorted(n for n, v in last.items() if v is None),
                    "fingerprint": _jsonable(fingerprint) if fingerprint else None,
                    "digest": fingerprint.get("digest") if fingerprint else None, "damage": list(record.damage)})
    with _cache_lock:
        for stale in [k for k, (t, _) in _cache.items() if now - t >= CACHE_SECONDS]:
            del _cache[stale]
        _cache[key] = (now, out)
    return out


def _downsample(steps: Any, values: Any, max_points: int) -> tuple[list[int], list[float | None]]:
    """At most ``max_points`` evenly spaced points, always keeping the first and the last."""
    n = len(steps)
    if n > max_points >= 2:
        picks = sorted({round(i * (n - 1) / (max_points - 1)) for i in range(max_points)})
    else:
        picks = range(n)
    return [int(steps[i]) for i in picks], [_finite(values[i]) for i in picks]


def run_series(db: Path, run_ids: list[str], max_points: int = MAX_POINTS) -> list[dict[str, Any]]:
    """For a comparison: per run its record (as :func:`list_runs`) and every metric's curve ``{"steps", "values"}``
    (non-finite values as None), downsampled to ``max_points``. Unknown ids raise
    :class:`~tinygrad_nb.track.UnknownRunError` naming them."""
    from ..track.store import RunStore  # noqa: PLC0415

    store = RunStore(db)
    records = store.resolve(run_ids)
    listed = {r["id"]: r for r in list_runs(db)}
    out = []
    for record in records:
        curves = {}
        for name in store.metric_names(record.id):
            steps, values, _ = store.series(record.id, name, skip_damaged=True)
            order = steps.argsort(kind="stable")
            curves[name] = dict(zip(("steps", "values"), _downsample(steps[order], values[order], max_points)))
        entry = dict(listed.get(record.id) or {"id": record.id, "name": record.name, "status": record.status,
                                               "config": _jsonable(record.config)})
        entry["metrics"] = curves
        out.append(entry)
    return out


# -- cell checkpoints -----------------------------------------------------------------------------------------------
def checkpoint_dir(notebook: Path) -> Path:
    """Where the kernel of ``notebook`` records its cell checkpoints by default (the store's own naming rule)."""
    from ..notebook.cellckpt.store import notebook_name  # noqa: PLC0415

    return notebook.parent / CHECKPOINTS / notebook_name({"__session__": notebook.name})


def list_commits(store_dir: Path) -> dict[str, Any]:
    """The commits of a cell checkpoint store, oldest first (seq, parent, cell id and In[N], ok, error line, first
    source line, lost variables and the cell they need, variable count, bytes it added, time), the manifests that
    could not be read (``damaged``: file name and why), and the bytes of its packs. Only manifests are read: they are
    gzip-compressed JSON; the pickled skeletons in the packs are never opened."""
    from ..notebook.cellckpt.store import FORMAT_NAME  # noqa: PLC0415

    commits: list[dict[str, Any]] = []
    damaged: list[dict[str, str]] = []
    folder = store_dir / "commits"
    paths = sorted(list(folder.glob("c*.json")) + list(folder.glob("c*.json.gz"))) if folder.is_dir() else []
    for path in paths:
        try:
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            manifest = json.loads(data.strip().partition(b"\n")[0])  # line 1: the manifest; line 2: its signature
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
                raise ValueError("not a tinygrad_nb cell checkpoint manifest")
            cell = manifest["cell"]
            source = str(cell.get("source") or "")
            lost = manifest.get("lost") or {}
            commits.append({
                "seq": int(manifest["seq"]), "parent": manifest.get("parent"), "cell_id": cell.get("id"),
                "execution_count": cell.get("execution_count"), "ok": bool(cell.get("success")),
                "error": cell.get("error"),
                "source": next((line.strip() for line in source.splitlines() if line.strip()), "")[:120],
                "lost": {str(k): (v.get("cell") if isinstance(v, dict) else None) for k, v in lost.items()},
                "variables": len(manifest.get("variables") or {}), "bytes": int(manifest.get("pack_bytes", 0)),
                "created": manifest.get("created")})
        except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as e:
            damaged.append({"file": path.name, "why": f"{type(e).__name__}: {e}"})
    commits.sort(key=lambda c: c["seq"])
    packs = store_dir / "packs"
    size = sum(p.stat().st_size for p in packs.glob("p*.safetensors")) if packs.is_dir() else 0
    return {"commits": commits, "damaged": damaged, "bytes": size}
