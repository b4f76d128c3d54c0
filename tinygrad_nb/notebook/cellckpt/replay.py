"""Verifying a replayed cell against its recorded commit, by raw bytes.

Per cell the verdict is one of

* ``bitwise``: every tensor/array has the same bytes and every other value is equal (numbers bit for bit), except
  for run-bound values (:mod:`.values`: temporary directory names, fields a type declares, variables a cell
  declares), which the detail names;
* ``outputs differ``: every tensor is bitwise equal, but a non-tensor value differs (the detail names the first
  differing place, ``run.config['lr']: 0.003 -> 0.01``), a variable appeared or vanished, or the cell failed where it
  had succeeded (or the reverse);
* ``diverged``: some tensor differs: the first such variable (in namespace order), the first differing index, the max
  abs and max ULP difference (over the elements that are numbers in both), and how many NaNs appeared or vanished.

Skeleton pickles use positional persistent ids (see :mod:`.snapshot`), so the same structure pickles to the same
bytes even though the replay built new objects. Where a variable's skeleton bytes differ, its canonical form
(:mod:`.canonical`) decides: the memo makes the bytes depend on whether equal strings and tuples are one object or
several, which differs between objects restored by a checkout and objects the replayed cell built. Where the
canonical forms differ too, :mod:`.values` compares the values themselves.
"""
from __future__ import annotations

from typing import Any

from .canonical import CanonicalError, canonical_digests
from .snapshot import capture
from .values import ValueComparer, describe, load_values


def compare_commit(recorder: Any, commit: Any, success: bool, declared: set[str] | frozenset[str] = frozenset(),
                   ) -> dict[str, Any]:
    """The verdict on a replayed cell (see the module docstring); ``declared``: variables declared run-bound by
    ``# tg-replay: run-bound`` in this cell or an earlier one."""
    from .session import describe_nans

    m = commit.manifest
    shell = recorder.shell
    hidden = set(getattr(shell, "user_ns_hidden", {}) or ())
    snap = capture(shell.user_ns, hidden, recorder.tracker, recorder.unpicklable)
    snap.finish()
    recorded, now = m["variables"], snap.variables
    skeleton = recorder.store.skeleton(commit)  # trusted (signed by this user) and verified, or it raises
    notes: list[str] = []
    if success != m["cell"]["success"]:
        notes.append("the cell " + ("succeeded" if success else "failed") + " where it had " +
                     ("succeeded" if m["cell"]["success"] else "failed"))
    for name in recorded:
        if name not in now and name not in snap.lost:
            notes.append(f"{name} is missing")
    for name in now:
        if name not in recorded and name not in m["lost"]:
            notes.append(f"{name} is new")
    first_diverged = None
    differing: list[str] = []  # non-tensor parts differ: compared as values below
    canonical: list[dict[str, str] | None] = []

    def same_skeleton(name: str, var: dict[str, Any], mine: dict[str, Any]) -> bool:
        if skeleton[var["start"]:var["end"]] == snap.skeleton[mine["start"]:mine["end"]]:
            return True
        if not canonical:  # computed once, only when some bytes differ
            try:
                canonical.extend([canonical_digests(skeleton, recorded), canonical_digests(snap.skeleton, now)])
            except (CanonicalError, KeyError, IndexError, ValueError):
                canonical.extend([None, None])
        old, new = canonical
        return old is not None and new is not None and old.get(name) == new.get(name)

    for name, var in recorded.items():
        if name not in now:
            continue
        mine = now[name]
        rec_tensors = [m["tensors"][i] for i in var["tensors"]]
        new_tensors = [snap.tensors[i] for i in mine["tensors"]]
        for position, (r, t) in enumerate(zip(rec_tensors, new_tensors)):
            if r["key"] == t["key"] and r["dtype"] == t["dtype"] and r["shape"] == t["shape"]:
                continue
            from .session import compare_arrays

            expected = recorder.store.array(r["key"], r["dtype"], r["shape"])
            got = snap_array(shell.user_ns, snap, mine["tensors"][position], t)
            d = compare_arrays(expected, got) or {"index": None, "max_abs": 0.0, "max_ulp": 0, "nan_appeared": 0,
                                                  "nan_vanished": 0}
            where = name if len(rec_tensors) == 1 else f"{name} (tensor {position} of {len(rec_tensors)}, shape " \
                f"{tuple(r['shape'])})"
            first_diverged = {"variable": name, "where": where, **d}
            break
        if first_diverged is not None:
            break
        if len(rec_tensors) != len(new_tensors):
            notes.append(f"{name} holds {len(new_tensors)} tensors, recorded {len(rec_tensors)}")
        elif not same_skeleton(name, var, mine):
            differing.append(name)
    if first_diverged is not None:
        d = first_diverged
        detail = f"diverged: {d['where']}"
        if d.get("index") is not None:
            detail += f" first differs at index {d['index']}, max abs {d['max_abs']:.6g}, max ULP {d['max_ulp']}"
            nans = describe_nans(d["nan_appeared"], d["nan_vanished"])
            detail += f", {nans}" if nans else ""
        elif d.get("why"):
            detail += f" ({d['why']})"
        return {"result": "diverged", "variable": d["variable"], "index": d.get("index"),
                "max_abs": d["max_abs"], "max_ulp": d["max_ulp"], "detail": detail}
    run_bound: list[str] = []
    if differing:
        old_values, old_failures = load_values(skeleton, recorded, shell.user_ns)
        new_values, new_failures = load_values(snap.skeleton, now, shell.user_ns)
        pairs = []
        for name in differing:
            if name in declared:
                run_bound.append(f"{name} (declared run-bound)")
            elif name in old_values and name in new_values:
                pairs.append((name, old_values[name], new_values[name]))
            else:
                why = old_failures.get(name) or new_failures.get(name)
                notes.append(f"{name} differs (not a tensor; reading it back to say where failed: {why})")
        try:
            compared = ValueComparer().compare(pairs)
        except RecursionError:  # nested too deeply to walk: say that it differs, not where
            compared = {}
            notes += [f"{name} differs (not a tensor; nested too deeply to say where)" for name, _, _ in pairs]
        for name, (real, bound) in compared.items():
            if real is not None:
                notes.append(str(real))
            elif bound:
                run_bound.append(describe(name, bound))
            else:  # equal values, different pickles: objects are shared between variables differently than before
                notes.append(f"{name} differs (not a tensor): it shares objects with other variables differently")
    if notes:
        return {"result": "outputs differ", "detail": "; ".join(notes), "run_bound": run_bound}
    detail = f"{len(recorded)} variables, {sum(len(v['tensors']) for v in recorded.values())} tensors identical"
    return {"result": "bitwise", "detail": detail, "run_bound": run_bound}


def add_run_bound_detail(rows: list[dict[str, Any]]) -> None:
    """Name each cell's run-bound values in its detail once: a value re-made by an earlier cell and carried on
    unchanged is counted, not named again."""
    named: set[str] = set()
    for row in rows:
        run_bound = row.get("run_bound") or []
        new = [item for item in run_bound if item not in named]
        if new:
            row["detail"] += "; run-bound, re-made: " + ", ".join(new)
        if len(run_bound) > len(new):
            row["detail"] += f"; {len(run_bound) - len(new)} run-bound carried"
        named.update(run_bound)


def snap_array(user_ns: dict[str, Any], snap: Any, index: int, record: dict[str, Any]) -> Any:
    """The live array behind tensor ``index`` of a fresh snapshot (its bytes were hashed into ``record['key']``)."""
    import numpy as np

    array = snap.arrays.get(index)
    if array is None:  # its hash was cached (unchanged tensor): find it through the tracker
        obj = snap.infos[index].ref() if index in snap.infos else None
        array = obj.numpy() if obj is not None else None
    if array is None:
        raise LookupError("the replayed array is gone")
    return np.asarray(array)
