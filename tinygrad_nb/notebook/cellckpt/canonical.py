"""A canonical form of a skeleton pickle, insensitive to the identity of equal immutable values.

One pickler memo serves every variable of a snapshot, and the memo is keyed by object *identity*: an immutable value
(a string such as an attribute or dict key, a tuple) met twice is written once and then referenced (``BINGET n``) when
both places hold the same object, but written twice when they hold two equal objects. Which of the two happens
depends on how the objects were made: code creates interned strings and shares constant tuples, while unpickling
(a checkout) makes fresh copies. So after a checkout, a cell that builds new objects next to restored ones pickles
to different bytes than the same cell did originally, and since every extra ``MEMOIZE`` shifts the memo indices
of everything pickled after it, every *later* variable's bytes differ too, although no value changed.

:func:`canonical_digests` replays the pickle opcodes symbolically and hashes, per variable, a tree in which strings,
bytes, numbers, tuples, globals and persistent ids are written by value (a memo reference to them is the same as
writing them again), ``FRAME`` lengths are dropped, and memo references to mutable objects (dicts, lists, objects)
are named ``(first variable, n)``: the n-th mutable object first met in that variable. Aliasing of mutable objects
(what a restore must preserve) is part of the form; identity of equal immutable values is not.
"""
from __future__ import annotations

import pickletools
from typing import Any

import xxhash

_BY_VALUE = {
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING",
    "SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4",
    "BINFLOAT", "FLOAT", "NONE", "NEWTRUE", "NEWFALSE", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "GLOBAL", "STACK_GLOBAL", "FROZENSET", "BINPERSID", "PERSID", "EXT1", "EXT2", "EXT4",
}
_MUTATORS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_SKIP = {"PROTO", "FRAME", "STOP"}


class _Node:
    __slots__ = ("arg", "changes", "children", "op")

    def __init__(self, op: str, arg: Any, children: tuple[Any, ...]):
        self.op, self.arg, self.children, self.changes = op, arg, children, []


class CanonicalError(ValueError):
    """The skeleton holds something this canonical form does not model (then compare raw bytes)."""


def canonical_digests(skeleton: bytes, variables: dict[str, dict[str, Any]]) -> dict[str, str]:
    """``{variable: xxh3-128 hex digest of its canonical form}`` for a skeleton and its per-variable slices."""
    memo: dict[int, _Node] = {}
    ids: dict[int, tuple[str, int]] = {}
    out: dict[str, str] = {}
    for name, var in sorted(variables.items(), key=lambda kv: kv[1]["start"]):
        root = _run(skeleton[var["start"]:var["end"]], memo)
        try:
            form = _serialize(root, name, ids, [0])
        except RecursionError:
            raise CanonicalError(f"{name} is nested too deeply") from None
        out[name] = xxhash.xxh3_128_hexdigest(repr(form).encode("utf-8", "backslashreplace"))
    return out


def _serialize(node: _Node, var: str, ids: dict[int, tuple[str, int]], counter: list[int]) -> Any:
    if node.op in _BY_VALUE:
        return (node.op, node.arg, tuple(_serialize(c, var, ids, counter) for c in node.children))
    ident = ids.get(id(node))
    if ident is not None:
        return ("ref", ident)
    ids[id(node)] = (var, counter[0])
    counter[0] += 1
    return (node.op, node.arg, tuple(_serialize(c, var, ids, counter) for c in node.children),
            tuple((op, tuple(_serialize(c, var, ids, counter) for c in items)) for op, items in node.changes))


def _run(data: bytes, memo: dict[int, _Node]) -> _Node:
    stack: list[Any] = []
    marks: list[int] = []
    root = None
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in _SKIP:
            if name == "STOP":
                root = stack.pop()
            continue
        if name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif name == "MARK":
            marks.append(len(stack))
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            del stack[marks.pop():]
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
            raise CanonicalError(f"opcode {name} is not supported")
        else:
            before = op.stack_before
            if pickletools.markobject in before:
                fixed_count = before.index(pickletools.markobject)
                start = marks.pop()
                sliced = stack[start:]
                del stack[start:]
            else:
                fixed_count, sliced = len(before), []
            fixed = stack[len(stack) - fixed_count:] if fixed_count else []
            if fixed_count:
                del stack[len(stack) - fixed_count:]
            if name in _MUTATORS:
                target = fixed[0]
                target.changes.append((name, tuple(fixed[1:]) + tuple(sliced)))
                stack.append(target)
            else:
                if len(op.stack_after) != 1:
                    raise CanonicalError(f"opcode {name} is not supported")
                stack.append(_Node(name, arg, tuple(fixed) + tuple(sliced)))
    if root is None:
        raise CanonicalError("a variable's slice does not end in STOP")
    return root
