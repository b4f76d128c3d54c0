"""The recorder: one per IPython shell. Commits after cells, checkout, undo, diff, log and replay.

``pre_run_cell`` waits for the previous commit's background write and captures the RNG states (tinygrad_nb, numpy,
Python ``random``) before the cell; ``post_run_cell`` snapshots the namespace (:mod:`.snapshot`: the skeleton pickle
and which tensors changed, on the cell's thread) and hands hashing and writing to one background thread. Nothing
here may fail a cell: an unexpected error is printed as one warning line and the commit is skipped.
"""
from __future__ import annotations

import concurrent.futures
import datetime
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from ...checkpoint import _capture_rng, _restore_rng
from ...fingerprint import bit_environment
from .snapshot import Restorer, Tracker, capture, recordable, restore_values
from .store import DEFAULT_BUDGET, Commit, Store, encode_rng, notebook_name, raw_bytes
from .trust import CheckpointStoreError, skeleton_digest

OWN_MAGICS = ("tg_ckpt", "tg_log", "tg_checkout", "tg_undo", "tg_diff", "tg_replay")


class CheckpointRefError(ValueError):
    """A REF that names no commit."""


def _is_own_magic_cell(source: str) -> bool:
    """True for a cell holding only checkpoint magics (and comments): running it changes nothing worth a commit."""
    lines = [line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    return bool(lines) and all(line.lstrip("%").split()[0] in OWN_MAGICS and line.startswith("%") for line in lines)


class Recorder:
    def __init__(self, shell: Any, root: str | os.PathLike[str] | None = None, budget: int = DEFAULT_BUDGET):
        self.shell = shell
        self.enabled = os.environ.get("TINYGRAD_NB_CELL_CKPT", "on").lower() not in ("0", "off", "false", "no")
        self.every = 1
        self.budget = budget
        self._root = Path(root) if root is not None else None
        self._store: Store | None = None
        self.tracker = Tracker()
        self.unpicklable: dict[tuple[str, int], tuple[Any, str]] = {}  # see snapshot.capture
        self.lost_since: dict[tuple[str, int], int | None] = {}
        self.head: int | None = None
        self.cells_seen = 0
        self.replaying = False
        self.last_replay: list[dict[str, Any]] | None = None  # the rows of the last replay
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tg-cellckpt")
        self._pending: concurrent.futures.Future | None = None
        self._before: dict[str, Any] | None = None
        self.last_blocking_s = 0.0

    # -- store ----------------------------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = Path.cwd() / ".tinygrad_nb" / "checkpoints" / notebook_name(self.shell.user_ns)
        return self._root

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.root, self.budget)
            if self._store.commits and self.head is None:
                self.head = max(self._store.commits)
        return self._store

    def set_root(self, root: str | os.PathLike[str]) -> None:
        self.wait()
        self._root, self._store, self.head = Path(root), None, None

    def wait(self) -> None:
        """Wait for the background write of the last commit (and re-raise nothing: failures become a warning)."""
        future, self._pending = self._pending, None
        if future is not None:
            try:
                future.result()
            except Exception as e:  # noqa: BLE001
                _warn(f"the background write of a cell checkpoint failed: {type(e).__name__}: {e}")

    def close(self) -> None:
        self.wait()
        self._executor.shutdown(wait=True)
        if self._store is not None:
            self._store.close()

    # -- cell events ------------------------------------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        try:
            self.wait()
            self._before = _capture_rng() if self.enabled and not self.replaying else None
        except Exception as e:  # noqa: BLE001
            _warn(f"cell checkpoint: {type(e).__name__}: {e}")

    def post_run_cell(self, result: Any) -> None:
        info = getattr(result, "info", None)
        if not self.enabled or self.replaying or info is None or getattr(info, "silent", False) \
                or not getattr(info, "store_history", True):
            return
        source = info.raw_cell or ""
        if not source.strip() or _is_own_magic_cell(source):
            return
        self.cells_seen += 1
        if (self.cells_seen - 1) % self.every:
            return
        try:
            self.commit(source, getattr(info, "cell_id", None), result.execution_count,
                        bool(result.success), _error_text(result))
        except Exception as e:  # noqa: BLE001 - recording never fails the cell
            _warn(f"cell checkpoint skipped: {type(e).__name__}: {e}")

    # -- commit -----------------------------------------------------------------------------------------------------
    def commit(self, source: str, cell_id: str | None, execution_count: int | None, success: bool,
               error: str | None) -> int:
        import time

        start = time.perf_counter()
        store = self.store
        ns = self.shell.user_ns
        hidden = set(getattr(self.shell, "user_ns_hidden", {}) or ())
        snap = capture(ns, hidden, self.tracker, self.unpicklable)
        lost = {}
        for name, why in snap.lost.items():
            key = (name, id(ns.get(name)))
            since = self.lost_since.setdefault(key, execution_count)
            lost[name] = {"why": why, "cell": since}
        seq = store.next_seq()
        while any(s == seq for s in store.commits):
            seq += 1
        manifest: dict[str, Any] = {
            "parent": self.head,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "cell": {"id": cell_id, "execution_count": execution_count, "source": source,
                     "source_xxh3_128": xxhash.xxh3_128_hexdigest(source.encode("utf-8", "replace")),
                     "success": success, "error": error},
            "rng_before": self._before, "rng_after": _capture_rng(),
            "variables": snap.variables, "tensors": snap.tensors, "lost": lost, "code": snap.code,
            "environment": bit_environment(),  # what can change bits: %tg_replay --verify names what differs
        }
        self.head = seq
        # reserve the sequence number now so a commit queued before the write finishes gets the next one
        store.commits[seq] = Commit(seq, manifest, store.manifest_path(seq))
        self.last_blocking_s = time.perf_counter() - start
        self._pending = self._executor.submit(self._write, seq, snap, manifest)
        return seq

    def _write(self, seq: int, snap: Any, manifest: dict[str, Any]) -> None:
        blobs = snap.finish()
        manifest["skeleton"] = snap.skeleton_key
        manifest["skeleton_bytes"] = len(snap.skeleton)
        manifest["skeleton_sha256"] = skeleton_digest(snap.skeleton)  # the signed manifest vouches for the pickle
        manifest["tensors"] = dict(snap.tensors)
        for var in manifest["variables"].values():
            keys = [snap.tensors[i]["key"] for i in var["tensors"]]
            digest = xxhash.xxh3_128(snap.skeleton[var["start"]:var["end"]])
            for key in keys:
                digest.update(key.encode())
            var["fp"] = digest.hexdigest()
        needed = {r["key"] for r in snap.tensors.values()} | {snap.skeleton_key}
        for which in ("rng_before", "rng_after"):
            manifest[which], rng_blobs = encode_rng(manifest[which])
            blobs.update(rng_blobs)
            needed |= set(rng_blobs)
        manifest["blobs"] = {key: {} for key in sorted(needed)}
        store = self.store
        for index, data in snap.cached.items():  # unchanged tensors whose blob this store lacks (new dir, gc)
            key = snap.tensors[index]["key"]
            if key not in store.where and key not in blobs:
                blobs[key] = raw_bytes(data if isinstance(data, np.ndarray) else np.asarray(data))
        itemsizes = {r["key"]: np.dtype(r["dtype"]).itemsize for r in snap.tensors.values()}
        store.write_commit(seq, manifest, {k: v for k, v in blobs.items() if k in needed}, itemsizes)
        if store.total_bytes() > store.budget:
            store.gc(keep={seq, self.head} - {None})

    # -- refs -------------------------------------------------------------------------------------------------------
    def resolve(self, ref: str) -> Commit:
        """``N`` (the cell In[N]), ``#S`` (commit S), ``HEAD``, ``HEAD~K`` or ``~K`` (K commits back from HEAD)."""
        self.wait()
        commits = self.store.commits
        ref = ref.strip()
        if not commits:
            raise CheckpointRefError("no cell checkpoints recorded yet")
        if ref.upper().startswith("HEAD") or ref.startswith("~"):
            back = ref.upper().removeprefix("HEAD")
            steps = int(back[1:] or 1) if back.startswith("~") else 0
            seq = self.head
            for _ in range(steps):
                seq = commits[seq].parent if seq in commits else None
                if seq is None:
                    break
            if seq is None or seq not in commits:
                raise CheckpointRefError(f"{ref}: there is no commit that far back (see %tg_log)")
            return commits[seq]
        if ref.startswith("#"):
            try:
                return commits[int(ref[1:])]
            except (ValueError, KeyError):
                raise CheckpointRefError(f"{ref}: no commit #{ref[1:]} (see %tg_log)") from None
        try:
            count = int(ref.removeprefix("In[").removesuffix("]"))
        except ValueError:
            raise CheckpointRefError(f"{ref!r} is not a REF: use N (cell In[N]), #S (commit S), HEAD or HEAD~K"
                                     ) from None
        found = [c for c in commits.values() if c.execution_count == count]
        if not found:
            raise CheckpointRefError(f"no checkpoint of cell In[{count}] (see %tg_log)")
        return max(found, key=lambda c: c.seq)

    def chain(self, first: Commit, last: Commit) -> list[Commit]:
        """The commits from ``first`` to ``last`` following parents back from ``last``."""
        out = []
        seq: int | None = last.seq
        while seq is not None:
            commit = self.store.commits.get(seq)
            if commit is None:
                break
            out.append(commit)
            if seq == first.seq:
                return out[::-1]
            seq = commit.parent
        raise CheckpointRefError(f"commit #{first.seq} is not an ancestor of commit #{last.seq}")

    # -- trust ------------------------------------------------------------------------------------------------------
    def trust(self) -> tuple[list[int], dict[int, str]]:
        """Sign this store's untrusted commits with this user's key (``%tg_ckpt trust``): the user accepts that their
        pickles and cells may run. Returns ``(seqs now trusted, {seq: why it could not be})``."""
        self.wait()
        return self.store.trust()

    # -- checkout ---------------------------------------------------------------------------------------------------
    def checkout(self, commit: Commit | None, rng: str = "rng_after") -> dict[str, Any]:
        """Put the namespace back to what it was after ``commit`` (None: an empty namespace). Returns a report.

        All or nothing: the skeleton, every blob it needs and the RNG states are read and verified, and every
        variable unpickled into a fresh dict, before the namespace, the live tensors, the RNG states and HEAD
        change. Raises :class:`~.trust.CheckpointTrustError` for a commit not signed with this user's key (nothing
        is unpickled) and :class:`~.trust.CheckpointStoreError` for a damaged one (nothing changes).
        """
        self.wait()
        ns = self.shell.user_ns
        hidden = set(getattr(self.shell, "user_ns_hidden", {}) or ())
        if commit is None:
            removed = [n for n, v in list(ns.items()) if recordable(n, v, hidden) and not _is_code(v)]
            for name in removed:
                del ns[name]
            return {"restored": [], "removed": removed, "lost": {}, "failed": {}, "changed_tensors": 0}
        store = self.store
        store.require_trusted(commit)
        # 1. read and verify everything; nothing outside this block changes
        try:
            m = commit.manifest
            variables, tensors, lost, code = m["variables"], m["tensors"], dict(m["lost"]), m["code"]
            _check_records(tensors)
            state = store.rng(m.get(rng))
            skeleton = store.skeleton(commit)
            restorer = Restorer(tensors, store.array, self.tracker, ns)
            values, failed = restore_values(skeleton, variables, restorer)
            keep = set(variables) | set(lost) | set(code)
        except CheckpointStoreError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise CheckpointStoreError(f"cell checkpoint store {store.root}: the manifest of commit #{commit.seq} "
                                       f"is damaged ({type(e).__name__}: {e})") from None
        # 2. switch: the RNG states first (the only step that can fail, and it is undone if it does)
        if state:
            before = _capture_rng()
            try:
                _restore_rng(state)
            except (KeyError, TypeError, ValueError, IndexError, OverflowError) as e:
                _restore_rng(before)
                raise CheckpointStoreError(f"cell checkpoint store {store.root}: the {rng} RNG states of commit "
                                           f"#{commit.seq} cannot be restored ({type(e).__name__}: {e})") from None
        restorer.apply()
        removed = [n for n, v in list(ns.items()) if recordable(n, v, hidden) and n not in keep]
        for name in removed:
            del ns[name]
        ns.update(values)
        self.head = commit.seq
        return {"restored": sorted(values), "removed": removed, "lost": lost, "failed": failed,
                "changed_tensors": restorer.changed}

    # -- diff -------------------------------------------------------------------------------------------------------
    def diff(self, a: Commit, b: Commit) -> list[dict[str, Any]]:
        """Which variables differ between commits ``a`` and ``b``: one row per added, removed or changed variable
        (for tensors max abs / max ULP over the elements that are numbers in both, and NaNs that appeared or
        vanished in ``where``). Both commits must be trusted (their skeletons may be unpickled)."""
        self.wait()
        for commit in (a, b):
            self.store.require_trusted(commit)
        va, vb = a.manifest["variables"], b.manifest["variables"]
        rows = []
        canonical: list[dict[str, str] | None] = []
        skeletons: list[bytes] = []

        def skeleton(which: int) -> bytes:
            if not skeletons:
                skeletons.extend(self.store.skeleton(c) for c in (a, b))
            return skeletons[which]

        def same_canonical(name: str) -> bool:
            """fps are raw skeleton bytes, which depend on the identity of equal strings (see .canonical)."""
            from .canonical import CanonicalError, canonical_digests

            if not canonical:
                for which, c in enumerate((a, b)):
                    data = skeleton(which)
                    try:
                        canonical.append(canonical_digests(data, c.manifest["variables"]))
                    except (CanonicalError, KeyError, IndexError, ValueError):
                        canonical.append(None)
            return canonical[0] is not None and canonical[1] is not None and \
                canonical[0].get(name) == canonical[1].get(name)

        values: list[dict[str, Any]] = []

        def first_difference(name: str) -> str:
            """Where a non-tensor variable differs: ``cfg['name']: 'a' -> 'other'`` (see .values)."""
            from .values import ValueComparer, load_values

            if not values:
                values.extend(load_values(skeleton(which), c.manifest["variables"], self.shell.user_ns)[0]
                              for which, c in enumerate((a, b)))
            if name not in values[0] or name not in values[1]:
                return ""
            try:
                real, run_bound = ValueComparer().compare([(name, values[0][name], values[1][name])])[name]
            except RecursionError:
                return "nested too deeply to say where"
            found = real or (run_bound[0] if run_bound else None)
            return str(found) if found else "shares objects with other variables differently"

        for name in list(va) + [n for n in vb if n not in va]:
            if name not in vb:
                rows.append({"variable": name, "change": "removed", "max_abs": "", "max_ulp": "", "where": ""})
            elif name not in va:
                rows.append({"variable": name, "change": "added", "max_abs": "", "max_ulp": "", "where": ""})
            elif va[name].get("fp") != vb[name].get("fp"):
                row = {"variable": name, "change": "changed", "max_abs": "", "max_ulp": "", "where": ""}
                ka = [a.manifest["tensors"][i] for i in va[name]["tensors"]]
                kb = [b.manifest["tensors"][i] for i in vb[name]["tensors"]]
                if [r["key"] for r in ka] == [r["key"] for r in kb] and same_canonical(name):
                    continue
                worst_abs, worst_ulp, appeared, vanished = 0.0, 0, 0, 0
                for ra, rb in zip(ka, kb):
                    if ra["key"] == rb["key"] or ra["shape"] != rb["shape"] or ra["dtype"] != rb["dtype"]:
                        continue
                    x = self.store.array(ra["key"], ra["dtype"], ra["shape"])
                    y = self.store.array(rb["key"], rb["dtype"], rb["shape"])
                    d = compare_arrays(x, y)
                    if d is not None:
                        worst_abs, worst_ulp = max(worst_abs, d["max_abs"]), max(worst_ulp, d["max_ulp"])
                        appeared, vanished = appeared + d["nan_appeared"], vanished + d["nan_vanished"]
                if any(ra["key"] != rb["key"] for ra, rb in zip(ka, kb)) or len(ka) != len(kb):
                    row.update(max_abs=f"{worst_abs:.6g}", max_ulp=str(worst_ulp),
                               where=describe_nans(appeared, vanished))
                else:  # the same tensors: something else in it changed
                    row["where"] = first_difference(name)
                rows.append(row)
        return rows

    # -- replay -----------------------------------------------------------------------------------------------------
    def replay(self, first: Commit, last: Commit, verify: bool = True) -> list[dict[str, Any]]:
        """Restore the state before ``first``, re-run the sources up to ``last``, compare with the records."""
        from .replay import add_run_bound_detail, compare_commit
        from .values import declared_run_bound

        chain = self.chain(first, last)
        parent = self.store.commits.get(first.parent) if first.parent is not None else None
        for commit in ([parent] if parent is not None else []) + chain:  # its cells run: all must be trusted
            self.store.require_trusted(commit)
        states = [self.store.rng(commit.manifest.get("rng_before")) for commit in chain]  # all read before any runs
        declared = self._declared_run_bound(parent)
        self.checkout(parent)
        results = []
        self.replaying = True
        try:
            for commit, state in zip(chain, states):
                m = commit.manifest
                declared.update(declared_run_bound(m["cell"]["source"]))
                if state:
                    _restore_rng(state)
                outcome = self._run_as(m["cell"]["source"], commit.execution_count)
                row: dict[str, Any] = {"seq": commit.seq, "cell": commit.execution_count}
                if verify:
                    row.update(compare_commit(self, commit, bool(outcome.success), declared))
                else:
                    row["result"] = "ran" if outcome.success else "error"
                results.append(row)
        finally:
            self.replaying = False
        self.head = last.seq
        if verify:
            add_run_bound_detail(results)
        self.last_replay = results
        return results

    def _declared_run_bound(self, commit: Commit | None) -> set[str]:
        """Variables declared run-bound (``# tg-replay: run-bound NAME``) by ``commit`` and its ancestors."""
        from .values import declared_run_bound

        names: set[str] = set()
        while commit is not None:
            names.update(declared_run_bound(commit.manifest["cell"]["source"]))
            commit = self.store.commits.get(commit.parent) if commit.parent is not None else None
        return names

    def _run_as(self, source: str, execution_count: int | None) -> Any:
        """Run ``source`` as the cell ``In[execution_count]`` it was recorded as, without recording it again: code
        that names its own cell (a NaN report's ``cell [5], line 3``) gives the same text as the first time."""
        current = self.shell.execution_count
        ns = self.shell.user_ns
        history = ns.get("In")
        if execution_count is not None:
            self.shell.execution_count = execution_count
            # The cell first ran with In[:n+1] as its history: a run's code fingerprint hashes In, so show it that
            # (when this session still has the cell there; after a kernel restart In holds other cells)
            if isinstance(history, list) and len(history) > execution_count + 1 and \
                    history[execution_count].strip() == self.shell.transform_cell(source).strip():
                ns["In"] = history[:execution_count + 1]
        try:
            return self.shell.run_cell(source, store_history=False, silent=True)
        finally:
            self.shell.execution_count = current
            if history is not None:
                ns["In"] = history

    # -- log --------------------------------------------------------------------------------------------------------
    def log(self) -> list[dict[str, Any]]:
        self.wait()
        rows = []
        for seq in sorted(self.store.commits):
            commit = self.store.commits[seq]
            m = commit.manifest
            first = next((line.strip() for line in m["cell"]["source"].splitlines() if line.strip()), "")
            rows.append({"": "*" if seq == self.head else "", "commit": f"#{seq}",
                         "cell": "" if commit.execution_count is None else f"In[{commit.execution_count}]",
                         "ok": "yes" if m["cell"]["success"] else "error",
                         "vars": str(len(m["variables"])), "lost": ",".join(sorted(m["lost"])) or "-",
                         "new bytes": _size(commit.size), "source": first[:40]})
        return rows


    def timeline(self) -> list[dict[str, Any]]:
        """The commits for the history widget, oldest first: seq, cell, ok, bytes (new), lost names, head, and the
        verdict of the last ``%tg_replay --verify`` that replayed it (or None)."""
        self.wait()
        verdicts = {row["seq"]: row["result"] for row in self.last_replay or []}
        out = []
        for seq in sorted(self.store.commits):
            commit = self.store.commits[seq]
            m = commit.manifest
            out.append({"seq": seq, "cell": "" if commit.execution_count is None else f"In[{commit.execution_count}]",
                        "ok": bool(m["cell"]["success"]), "bytes": int(commit.size), "lost": sorted(m["lost"]),
                        "head": seq == self.head, "replay": verdicts.get(seq)})
        return out


def compare_arrays(x: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    """How two same-shape arrays differ; None when they are bitwise equal.

    ``index``: the first element whose bytes differ; ``max_abs`` and ``max_ulp``: the largest absolute and ULP
    difference over the differing elements that are numbers on both sides; ``nan_appeared`` / ``nan_vanished``: how
    many elements are NaN in ``y`` but not in ``x`` / the reverse (a NaN has no distance to a number, so it is
    counted, not measured).
    """
    if x.shape != y.shape or x.dtype != y.dtype:
        return {"index": None, "max_abs": math.inf, "max_ulp": -1, "nan_appeared": 0, "nan_vanished": 0,
                "why": f"{x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}"}
    bx = np.ascontiguousarray(x).reshape(-1).view(np.uint8).reshape(x.size, -1) if x.size else x.reshape(0, 1)
    by = np.ascontiguousarray(y).reshape(-1).view(np.uint8).reshape(y.size, -1) if y.size else y.reshape(0, 1)
    differ = (bx != by).any(axis=1)
    if not differ.any():
        return None
    flat = int(np.argmax(differ))
    index = tuple(int(i) for i in np.unravel_index(flat, x.shape)) if x.ndim else ()
    fx, fy = x.reshape(-1), y.reshape(-1)
    appeared = vanished = 0
    measured = differ
    if x.dtype.kind in "fc":
        nan_x, nan_y = np.isnan(fx), np.isnan(fy)
        appeared, vanished = int(np.count_nonzero(nan_y & ~nan_x)), int(np.count_nonzero(nan_x & ~nan_y))
        measured = differ & ~(nan_x | nan_y)
    wide = np.complex128 if x.dtype.kind == "c" else np.float64
    with np.errstate(all="ignore"):
        gaps = np.abs(fx[measured].astype(wide) - fy[measured].astype(wide))
    max_abs = float(gaps.max()) if gaps.size else 0.0
    max_ulp = 0
    if x.dtype.kind == "f" and gaps.size:
        itype = np.dtype(f"i{x.dtype.itemsize}")
        ix = np.ascontiguousarray(fx[measured]).view(itype).astype(np.int64)
        iy = np.ascontiguousarray(fy[measured]).view(itype).astype(np.int64)
        low = np.int64(np.iinfo(itype).min)
        with np.errstate(all="ignore"):
            ox = np.where(ix < 0, low - ix, ix)
            oy = np.where(iy < 0, low - iy, iy)
            max_ulp = int(np.abs(ox - oy).max())
    return {"index": index, "max_abs": max_abs, "max_ulp": max_ulp, "nan_appeared": appeared,
            "nan_vanished": vanished}


def describe_nans(appeared: int, vanished: int) -> str:
    """``nan appeared in 1 element; nan vanished from 2 elements`` (the parts that are not zero), or ``""``."""
    parts = []
    if appeared:
        parts.append(f"nan appeared in {appeared} element{'' if appeared == 1 else 's'}")
    if vanished:
        parts.append(f"nan vanished from {vanished} element{'' if vanished == 1 else 's'}")
    return "; ".join(parts)


def _check_records(tensors: dict[str, dict[str, Any]]) -> None:
    """Raise KeyError/TypeError for a tensor table that lacks what a restore reads (a damaged or renamed manifest),
    before anything is built."""
    for idx, record in tensors.items():
        fields = ("kind", "key", "dtype", "shape") + (("cls", "device", "requires_grad") if record.get("kind") ==
                                                       "tensor" else ())
        missing = [f for f in fields if f not in record]
        if missing:
            raise KeyError(f"tensor record {idx!r} has no {', '.join(missing)}")
        if record["kind"] not in ("tensor", "array", "buffer"):
            raise TypeError(f"tensor record {idx!r} is of unknown kind {record['kind']!r}")


def _is_code(value: Any) -> bool:
    import types

    return isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type))


def _error_text(result: Any) -> str | None:
    error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
    return None if error is None else f"{type(error).__name__}: {error}"[:300]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _warn(message: str) -> None:
    print(f"tinygrad_nb: {message}", file=sys.stderr)
