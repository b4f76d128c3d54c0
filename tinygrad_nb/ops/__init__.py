"""The op table: one ``Function`` per primitive. Everything else in tinygrad_nb is composed from these."""
from .elementwise import (NO_GRAD_OPS, Abs, Add, Cast, Clamp, Div, Exp, FloorDivide, Gelu, Log, Maximum, Minimum, Mul,
                          Neg, NoGradOp, Pow, Relu, Sigmoid, Sqrt, Sub, Tanh, Where)
from ..autograd import ShapeError, unbroadcast
from .matmul import Linear, Matmul
from .movement import Cat, Expand, GetItem, Pad, Permute, Reshape
from .indexing import Gather, Scatter
from .nn import Fold, LayerNorm, ScaledDotProductAttention, Unfold
from .pointwise import (Acos, Acosh, Asin, Asinh, Atan, Atan2, Atanh, Cos, Cosh, Erf, Erfc, Erfinv, Exp2, Expm1, Fmod,
                        Log1p, Log2, Log10, Remainder, Sin, Sinh, Softplus, Tan)
from .reduce import CrossEntropy, Cumsum, LogSoftmax, Max, Prod, Sum

PRIMITIVES = (Add, Sub, Mul, Div, FloorDivide, Pow, Maximum, Minimum, Where, Neg, Exp, Log, Sqrt, Tanh, Sigmoid,
              Relu, Gelu, Abs, Clamp, Cast, Sum, Max, Cumsum, LogSoftmax, CrossEntropy, Reshape, Permute, Expand,
              GetItem, Cat, Pad, Matmul, Linear, Unfold, NoGradOp,
              Prod, Gather, Scatter, Fold, ScaledDotProductAttention, LayerNorm, Sin, Cos, Tan, Asin, Acos, Atan, Sinh,
              Cosh, Asinh, Acosh, Atanh, Log1p, Expm1, Log2, Log10, Exp2, Erf, Erfc, Erfinv, Softplus, Atan2, Remainder, Fmod)

__all__ = [op.__name__ for op in PRIMITIVES] + ["NO_GRAD_OPS", "PRIMITIVES", "ShapeError", "unbroadcast"]


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
