"""Comparing a replayed cell's non-tensor values with the recorded ones, and the run-bound values a replay re-makes.

Tensors and arrays are compared by their bytes (:mod:`.replay`). This module compares everything else, when a
variable's skeleton differs: both skeletons are unpickled with every tensor/array replaced by a placeholder, and the
two object graphs are walked side by side (dict keys, list items, attributes as ``pickle`` sees them through
``__reduce_ex__``; numbers compared bit for bit). The result names the first differing place,
``run.config['lr']: 0.003 -> 0.01``, instead of "the variable differs".

Some values can never be made again by re-running a cell, because they belong to one run, not to the computation:

* **temporary directories**: Python's ``tempfile`` picks a random name (``/tmp/tmpk3j_x9qa``). A string that differs
  only by such names, consistently (the same recorded name always becomes the same new one), is run-bound, so a
  ``Path`` inside the folder, or a message naming a file in it, still compares equal;
* **fields a type declares**: a class lists them in ``RUN_BOUND_FIELDS``, a dict ``{path: why}`` where a path is an
  attribute name or a tuple of steps into the value (attribute, dict key or ``"*"`` for any item):
  ``track.Run`` declares its random ``id`` and wall-clock times, the profiler's records their timings. A string
  field (a run id) is then also renamed wherever it appears, such as in a log file's name;
* **variables a cell declares** with a comment line ``# tg-replay: run-bound NAME[, NAME...] (why)``, for plain data
  that carries run-bound values (log records with wall-clock times): those variables are not compared at all.

Everything else inside those values (a run's name, config and status, a comparison's metrics, a profile's op names
and call counts) must still be equal: a cell whose values differ only in run-bound places is ``bitwise``, with the
run-bound ones named in the report.
"""
from __future__ import annotations

import os
import re
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from .snapshot import unpickle_variables

# tempfile names its files and folders "tmp" + 8 characters of this alphabet (``tempfile._RandomNameSequence``)
_TEMP_NAME = re.compile(re.escape(os.path.join(tempfile.gettempdir(), "tmp")) + r"[a-z0-9_]{8}")
_MARKER = re.compile(r"^[ \t]*#[ \t]*tg-replay:[ \t]*run-bound[ \t]+([^\n(]+)", re.MULTILINE)
_ATOMS = (str, bytes, bytearray, int, float, complex, bool, type(None))
_MISSING = object()


def declared_run_bound(source: str) -> list[str]:
    """The variable names a cell declares run-bound: ``# tg-replay: run-bound records, trace (why)``."""
    names: list[str] = []
    for match in _MARKER.finditer(source):
        names += [n for n in re.split(r"[,\s]+", match.group(1)) if n.isidentifier()]
    return names


class Payload:
    """Stands in for a tensor or array while comparing values (their bytes are compared elsewhere, in order)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str):
        self.kind = kind


def load_values(skeleton: bytes, variables: dict[str, dict[str, Any]], user_ns: dict[str, Any],
                ) -> tuple[dict[str, Any], dict[str, str]]:
    """Unpickle every variable of a skeleton with tensors as :class:`Payload`:
    ``(values, {name: why it could not be read back})``."""
    return unpickle_variables(skeleton, variables, lambda kind, ident: Payload(kind), user_ns)


@dataclass
class Difference:
    """One differing place: ``path`` as Python would spell it, both values, and ``why`` when it is run-bound."""

    path: str
    old: Any
    new: Any
    why: str | None = None
    declared: bool = False  # a field its type declares run-bound (else a string with run-bound names in it)

    def __str__(self) -> str:
        path = self.path if len(self.path) <= 100 else f"{self.path[:60]}...{self.path[-35:]}"
        if self.old is _MISSING:
            return f"{path} is new"
        if self.new is _MISSING:
            return f"{path} is missing"
        return f"{path}: {_short(self.old)} -> {_short(self.new)}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass
class _Walk:
    learning: bool  # the first walk: go on past differences, to learn every rename
    run_bound: list[Difference] = field(default_factory=list)
    real: Difference | None = None
    seen: set[tuple[int, int]] = field(default_factory=set)
    # the pairs behind ``seen``: objects made by __reduce_ex__ are temporary, and a freed one's id could be reused
    kept: list[tuple[Any, Any]] = field(default_factory=list)

    def found(self, difference: Difference) -> None:
        if self.real is None:
            self.real = difference

    @property
    def done(self) -> bool:
        return self.real is not None and not self.learning


class ValueComparer:
    """Compares recorded and replayed values of the variables whose skeletons differ.

    :meth:`compare` walks them twice: the first walk only learns the renames (temporary directory names, run ids
    met in declared fields), so a path that names a run id before the run itself is met still compares equal.
    """

    def __init__(self) -> None:
        self.renames: dict[str, tuple[str, str]] = {}

    def compare(self, pairs: list[tuple[str, Any, Any]]) -> dict[str, tuple[Difference | None, list[Difference]]]:
        """``{name: (first real difference or None, run-bound differences)}`` for ``(name, old, new)`` pairs."""
        for name, old, new in pairs:
            self._walk(_Walk(learning=True), old, new, name, [])
        out = {}
        for name, old, new in pairs:
            walk = _Walk(learning=False)
            self._walk(walk, old, new, name, [])
            out[name] = (walk.real, walk.run_bound)
        return out

    # -- the walk -----------------------------------------------------------------------------------------------------
    def _walk(self, w: _Walk, old: Any, new: Any, path: str, rules: list[tuple[tuple[Any, ...], str]]) -> None:
        if w.done:
            return
        reason = next((why for steps, why in rules if not steps), None)
        if reason is not None:  # a declared run-bound field: compare only to learn renames and to report it
            if not _same_atom(old, new) and not (isinstance(old, Payload) and isinstance(new, Payload)):
                if isinstance(old, str) and isinstance(new, str) and old != new:
                    self.renames.setdefault(old, (new, reason))
                w.run_bound.append(Difference(path, old, new, reason, declared=True))
            return
        if old is new:  # one live object on both sides (a class, a function defined in the notebook)
            return
        if isinstance(old, Payload) and isinstance(new, Payload):
            return
        if type(old) is not type(new):
            w.found(Difference(path, old, new))
            return
        if isinstance(old, _ATOMS):
            self._atom(w, old, new, path)
            return
        if isinstance(old, PurePath):  # pickled as separate parts: compare the whole path, like a string
            self._atom(w, str(old), str(new), path)
            return
        pair = (id(old), id(new))
        if pair in w.seen:  # shared or cyclic: already compared
            return
        w.seen.add(pair)
        w.kept.append((old, new))
        rules = rules + [(tuple(_steps(p)), why) for p, why in getattr(type(old), "RUN_BOUND_FIELDS", {}).items()]
        if isinstance(old, dict):
            self._dict(w, old, new, path, rules)
        elif isinstance(old, (list, tuple)):
            if len(old) != len(new):
                w.found(Difference(f"len({path})", len(old), len(new)))
                return
            for i, (a, b) in enumerate(zip(old, new)):
                self._walk(w, a, b, f"{path}[{i}]", _descend(rules, i))
        elif isinstance(old, (set, frozenset)):
            if sorted(map(self._renamed_repr, old)) != sorted(map(repr, new)):
                w.found(Difference(path, old, new))
        else:
            self._object(w, old, new, path, rules)

    def _dict(self, w: _Walk, old: dict[Any, Any], new: dict[Any, Any], path: str,
              rules: list[tuple[tuple[Any, ...], str]]) -> None:
        matched = set()
        for key, value in old.items():
            other = key if key in new else self._renamed(key) if isinstance(key, str) else _MISSING
            if other is _MISSING or other not in new:
                w.found(Difference(f"{path}[{key!r}]", value, _MISSING))
                continue
            matched.add(other)
            self._walk(w, value, new[other], f"{path}[{key!r}]", _descend(rules, key))
        extra = [k for k in new if k not in matched]
        if extra:
            w.found(Difference(f"{path}[{extra[0]!r}]", _MISSING, new[extra[0]]))

    def _object(self, w: _Walk, old: Any, new: Any, path: str, rules: list[tuple[tuple[Any, ...], str]]) -> None:
        try:
            a, b = old.__reduce_ex__(4), new.__reduce_ex__(4)
        except Exception:  # noqa: BLE001 - not reducible: equality is all there is
            if not _equal(old, new):
                w.found(Difference(path, old, new))
            return
        if isinstance(a, str) or isinstance(b, str):  # a global (a function, a class): the same one
            if a != b:
                w.found(Difference(path, old, new))
            return
        a, b = tuple(a) + (None,) * (6 - len(a)), tuple(b) + (None,) * (6 - len(b))
        if a[0] is not b[0]:
            w.found(Difference(path, old, new))
            return
        args_path = path if len(a[1] or ()) == 1 else f"{path}.__reduce__ args"
        args_a, args_b = a[1] or (), b[1] or ()
        if len(args_a) == 1 and len(args_b) == 1:
            self._walk(w, args_a[0], args_b[0], args_path, [])
        else:
            self._walk(w, tuple(args_a), tuple(args_b), args_path, [])
        state_a, state_b = _attributes(a[2]), _attributes(b[2])
        if isinstance(state_a, dict) and isinstance(state_b, dict):
            for name in sorted(set(state_a) | set(state_b), key=str):
                x, y = state_a.get(name, _MISSING), state_b.get(name, _MISSING)
                if x is _MISSING or y is _MISSING:
                    w.found(Difference(f"{path}.{name}", x, y))
                    continue
                self._walk(w, x, y, f"{path}.{name}", _descend(rules, name))
        else:
            self._walk(w, state_a, state_b, f"{path} (state)", [])
        for index, label in ((3, "items"), (4, "entries")):
            items_a = list(a[index]) if a[index] is not None else []
            items_b = list(b[index]) if b[index] is not None else []
            self._walk(w, items_a, items_b, f"{path} ({label})", [])

    def _atom(self, w: _Walk, old: Any, new: Any, path: str) -> None:
        if _same_atom(old, new):
            return
        if isinstance(old, str):
            why = self._run_bound_string(old, new)
            if why is not None:
                w.run_bound.append(Difference(path, old, new, why))
                return
        w.found(Difference(path, old, new))

    # -- renames ------------------------------------------------------------------------------------------------------
    def _run_bound_string(self, old: str, new: str) -> str | None:
        """Why ``old`` (recorded) and ``new`` are the same but for run-bound names, or None if they are not."""
        olds, news = _TEMP_NAME.findall(old), _TEMP_NAME.findall(new)
        if len(olds) != len(news):
            return None
        folders: dict[str, str] = {}  # recorded temporary folder -> the replay's: one to one, here and before
        for a, b in zip(olds, news):
            earlier = self.renames.get(a, (None, ""))[0]
            if folders.get(a, b) != b or (earlier is not None and earlier != b) or \
                    any(target == b and source != a for source, (target, _) in self.renames.items()):
                return None
            folders[a] = b
        if len(set(folders.values())) != len(folders):
            return None
        candidate = self._renamed(_TEMP_NAME.sub(lambda m: folders[m.group(0)], old))
        if candidate != new:
            return None
        whys = {why for name, (_, why) in self.renames.items() if name in old and name not in folders}
        for a, b in folders.items():
            if a != b:
                self.renames.setdefault(a, (b, "a new temporary directory"))
                whys.add("a new temporary directory")
        return ", ".join(sorted(whys)) or None

    def _renamed(self, text: str) -> str:
        for old, (new, _why) in self.renames.items():
            if old in text:
                text = text.replace(old, new)
        return text

    def _renamed_repr(self, value: Any) -> str:
        return repr(self._renamed(value)) if isinstance(value, str) else repr(value)


def _steps(path: str | tuple[Any, ...]) -> tuple[Any, ...]:
    return (path,) if isinstance(path, str) else tuple(path)


def _descend(rules: list[tuple[tuple[Any, ...], str]], step: Any) -> list[tuple[tuple[Any, ...], str]]:
    """The rules that still apply one step (an attribute, key or index) further in."""
    return [(steps[1:], why) for steps, why in rules if steps and (steps[0] == "*" or steps[0] == step)]


def _attributes(state: Any) -> Any:
    """An object's state as pickle gives it: ``__dict__``, or ``(__dict__, slots)`` merged into one dict."""
    if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
        merged = dict(state[0] or {})
        merged.update(state[1] or {})
        return merged
    return state


def _same_atom(old: Any, new: Any) -> bool:
    """Equal, and for floats equal bit for bit (so 0.0 and -0.0 differ, and a NaN equals the same NaN)."""
    if type(old) is not type(new):
        return False
    if isinstance(old, float):
        return struct.pack("<d", old) == struct.pack("<d", new)
    if isinstance(old, complex):
        return _same_atom(old.real, new.real) and _same_atom(old.imag, new.imag)
    return _equal(old, new)


def _equal(old: Any, new: Any) -> bool:
    try:
        return bool(old == new)
    except Exception:  # noqa: BLE001
        return False


def describe(name: str, run_bound: list[Difference]) -> str:
    """``run (id, start_time, end_time)``: a variable and what in it was re-made."""
    labels: list[str] = []
    for d in run_bound:
        label = re.sub(r"\[\d+\]", "[*]", d.path[len(name):].lstrip(".")) if d.declared else ""
        label = label or d.why or ""
        if label not in labels:
            labels.append(label)
    shown = labels[:4] + ([f"{len(labels) - 4} more"] if len(labels) > 4 else [])
    return f"{name} ({', '.join(shown)})" if shown else name
