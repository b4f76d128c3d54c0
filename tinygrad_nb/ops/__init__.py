"""The op table: one ``Function`` per primitive. Everything else in tinygrad_nb is composed from these."""
from .elementwise import (Abs, Add, Cast, Clamp, Div, Exp, FloorDivide, Gelu, Log, Maximum, Minimum, Mul, Neg,
                          NoGradOp, Pow, Relu, Sigmoid, Sqrt, Sub, Tanh, Where)
from ..autograd import ShapeError, unbroadcast
from .matmul import Linear, Matmul
from .movement import Cat, Expand, GetItem, Pad, Permute, Reshape
from .nn import Unfold
from .reduce import CrossEntropy, Cumsum, LogSoftmax, Max, Sum

PRIMITIVES = (Add, Sub, Mul, Div, FloorDivide, Pow, Maximum, Minimum, Where, Neg, Exp, Log, Sqrt, Tanh, Sigmoid,
              Relu, Gelu, Abs, Clamp, Cast, Sum, Max, Cumsum, LogSoftmax, CrossEntropy, Reshape, Permute, Expand,
              GetItem, Cat, Pad, Matmul, Linear, Unfold, NoGradOp)

__all__ = [op.__name__ for op in PRIMITIVES] + ["PRIMITIVES", "ShapeError", "unbroadcast"]


# tg.ops.<namespace>.<op>: custom-op namespaces. tinygrad_nb.library appends its lookup here (the core never
# imports it), so an unknown attribute costs nothing until someone asks for one.
namespace_resolvers: list = []


def __getattr__(name: str):  # noqa: ANN202 - a module's __getattr__
    """``tg.ops.mylib``: a custom-op namespace of tinygrad_nb.library (its package is loaded on first use)."""
    if not name.startswith("__"):
        for resolve in namespace_resolvers:
            found = resolve(name)
            if found is not None:
                return found
    raise AttributeError(f"module 'tinygrad_nb.ops' has no attribute {name!r}")
