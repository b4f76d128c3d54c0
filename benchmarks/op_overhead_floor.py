"""How low can per-op overhead go in pure Python on numpy? op_overhead.py's chain, run by a minimal autograd.

    python benchmarks/op_overhead_floor.py [--rounds 30]

Issue 20 asks for <= 2.5 us per op and <= 0.5x PyTorch eager on op_overhead.py's chain (1,000 tiny mul/add ops plus
backward). This prints what the smallest reasonable numpy autograd achieves on the same chain, in the same run: a
graph node per op (the function, the parents, which need gradients, the saved arrays, a sequence number) and a
backward that runs nodes from a heap keyed by that number, as tinygrad_nb's does. Everything else that tinygrad_nb's
core does per op is left out: numpy's floating-point warnings silenced, devices, dispatch overrides and observers,
autocast, dtype promotion, in-place version checks, gradient shape and dtype checks, hooks, broadcasting. So the gap
between the two lines is what those guarantees cost, and the minimal line is roughly the floor for the target.
A third line, "minimal + kept", adds back only what issue 20 says to keep (the in-place version check, one
comparison per node while nothing was written in place, and the observer seam, one truthiness check per op and
node) and numpy's warnings silenced per op (inf and NaN come out silently, as in PyTorch): the floor for the target
with those guarantees. Clock: this thread's CPU time, as op_overhead.py.
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import time
from typing import Any

import numpy as np
from _timing import interleaved_medians, optional_torch
from op_overhead import CHAIN, make_torch_chain, numpy_chain, tinygrad_chain

_next_seq = itertools.count(1).__next__


class Node:
    """One recorded op: ``backward(node, grad)`` returns one gradient per parent."""

    __slots__ = ("backward", "parents", "needs", "saved", "seq")


class Value:
    """A numpy array with a gradient and the node that made it (None for leaves)."""

    __slots__ = ("data", "requires_grad", "grad", "node")

    def __init__(self, data: Any, requires_grad: bool = False):
        self.data, self.requires_grad, self.grad, self.node = np.asarray(data, np.float32), requires_grad, None, None

    def _record(self, other: Value, out: Any, backward: Any, saved: tuple[Any, ...]) -> Value:
        result = Value.__new__(Value)
        result.data, result.grad, result.node = out, None, None
        result.requires_grad = self.requires_grad or other.requires_grad
        if result.requires_grad:
            node = result.node = Node()
            node.backward, node.parents, node.saved, node.seq = backward, (self, other), saved, _next_seq()
            node.needs = (self.requires_grad, other.requires_grad)
        return result

    def __mul__(self, other: Value) -> Value:  # out = a b;  da = g b,  db = g a
        return self._record(other, self.data * other.data, _mul_backward, (self.data, other.data))

    def __add__(self, other: Value) -> Value:  # out = a + b;  da = db = g
        return self._record(other, self.data + other.data, _add_backward, ())


def _mul_backward(node: Node, g: Any) -> tuple[Any, Any]:
    a, b = node.saved
    return (g * b if node.needs[0] else None), (g * a if node.needs[1] else None)


def _add_backward(node: Node, g: Any) -> tuple[Any, Any]:
    return g, g


def backward(root: Value) -> None:
    """Nodes latest-recorded first from a heap keyed by sequence number; leaves get ``.grad``."""
    grads = {root: np.ones_like(root.data)}
    ready = [(-root.node.seq, id(root), root)]
    while ready:
        t = heapq.heappop(ready)[2]
        g = grads.pop(t)
        node = t.node
        for parent, pg, need in zip(node.parents, node.backward(node, g), node.needs):
            if need and pg is not None:
                earlier = grads.get(parent)
                if earlier is not None:
                    grads[parent] = earlier + pg
                elif parent.node is None:
                    grads[parent] = parent.grad = pg  # a leaf: in this chain it is reached once
                else:
                    grads[parent] = pg
                    heapq.heappush(ready, (-parent.node.seq, id(parent), parent))


# -- the same, plus only what issue 20 says to keep: the in-place version check and the observer seam ---------------
# (and numpy's floating-point warnings silenced per op, so inf and NaN come out silently, as in PyTorch)
_observers: list[Any] = []  # the seam: a profiler or NaN tracer would be appended here; empty while measuring
_last_write = 0  # tick of the latest in-place write (none in this chain): a node recorded after it needs no check
try:
    from numpy._core._multiarray_umath import _make_extobj
    from numpy._core._ufunc_config import _extobj_contextvar
    _QUIET: Any = _make_extobj(all="ignore")
    _silence, _restore = _extobj_contextvar.set, _extobj_contextvar.reset
except ImportError:  # numpy 1.x: no per-op silencing measured (the floor is then a little lower)
    _QUIET, _silence, _restore = None, (lambda mode: None), (lambda token: None)


class GuardedValue(Value):
    """:class:`Value` with the guarantees the issue keeps: an observer check per op, numpy silenced around each
    op, and in backward a version check per node (one comparison while nothing was written in place)."""

    __slots__ = ()

    def _record(self, other: Value, out: Any, backward: Any, saved: tuple[Any, ...]) -> Value:
        if _observers:  # pragma: no cover - never attached while measuring
            for obs in _observers:
                obs(backward)
        result = GuardedValue.__new__(GuardedValue)  # (Value._record's body: its results must be guarded too)
        result.data, result.grad, result.node = out, None, None
        result.requires_grad = self.requires_grad or other.requires_grad
        if result.requires_grad:
            node = result.node = Node()
            node.backward, node.parents, node.saved, node.seq = backward, (self, other), saved, _next_seq()
            node.needs = (self.requires_grad, other.requires_grad)
        return result

    def __mul__(self, other: Value) -> Value:
        quiet = _silence(_QUIET)
        out = self.data * other.data
        _restore(quiet)
        return self._record(other, out, _mul_backward, (self.data, other.data))

    def __add__(self, other: Value) -> Value:
        quiet = _silence(_QUIET)
        out = self.data + other.data
        _restore(quiet)
        return self._record(other, out, _add_backward, ())


def guarded_backward(root: Value) -> None:
    """:func:`backward` plus the observer seam and the version check per node. (Its loop is written out again, as
    ``GuardedValue._record`` repeats ``Value._record``: a flag or a shared helper would add a branch or a call to
    the minimal line, whose whole point is to pay for nothing else.)"""
    quiet = _silence(_QUIET)
    grads = {root: np.ones_like(root.data)}
    ready = [(-root.node.seq, id(root), root)]
    while ready:
        t = heapq.heappop(ready)[2]
        g = grads.pop(t)
        node = t.node
        if node.saved and not node.seq > _last_write:  # pragma: no cover - nothing is written in place here
            raise RuntimeError("a saved array was modified in place")
        if _observers:  # pragma: no cover
            for obs in _observers:
                obs(node)
        for parent, pg, need in zip(node.parents, node.backward(node, g), node.needs):
            if need and pg is not None:
                earlier = grads.get(parent)
                if earlier is not None:
                    grads[parent] = earlier + pg
                elif parent.node is None:
                    grads[parent] = parent.grad = pg
                else:
                    grads[parent] = pg
                    heapq.heappush(ready, (-parent.node.seq, id(parent), parent))
    _restore(quiet)


def guarded_chain() -> None:
    x = GuardedValue([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    b = GuardedValue([0.5, 0.5, 0.5, 0.5])
    y = x
    for _ in range(CHAIN // 2):
        y = y * b + b
    guarded_backward(y)
    assert type(y) is GuardedValue and np.allclose(x.grad, 0.5 ** (CHAIN // 2))


def minimal_chain() -> None:
    x = Value([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    b = Value([0.5, 0.5, 0.5, 0.5])
    y = x
    for _ in range(CHAIN // 2):
        y = y * b + b
    backward(y)  # y has 4 elements; seeding with ones is the gradient of y.sum()
    assert np.allclose(x.grad, 0.5 ** (CHAIN // 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    contenders = {"tinygrad_nb": tinygrad_chain, "minimal autograd": minimal_chain,
                  "minimal + kept": guarded_chain, "numpy by hand": numpy_chain}
    torch = optional_torch()
    if torch is not None:
        torch.set_num_threads(1)
        contenders["pytorch eager"] = make_torch_chain(torch)
    medians = interleaved_medians(contenders, rounds=args.rounds, clock=time.thread_time)
    print(f"op_overhead_floor: chain of {CHAIN} tiny ops + backward, median of {args.rounds} interleaved rounds, "
          "cpu clock")
    base = medians.get("pytorch eager")
    for name, seconds in medians.items():
        versus = f"   / pytorch eager = {seconds / base:5.2f}x" if base else ""
        print(f"  {name:16s} {seconds / CHAIN * 1e6:6.2f} us/op{versus}")


if __name__ == "__main__":
    main()
