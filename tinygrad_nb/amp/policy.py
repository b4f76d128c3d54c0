"""The autocast op policy: one table, keyed by op name (every op's ``Function`` carries its class name).

Three lists, as in PyTorch's autocast:

* ``lower`` -- run in the autocast dtype (float16/bfloat16): the ops whose cost is a matrix product and whose
  inputs tolerate 8-11 bits of mantissa: ``Matmul``, ``Linear``, ``Unfold`` (conv2d's im2col, followed by a Matmul),
  ``ScaledDotProductAttention``.
* ``float32`` -- run in float32 whatever the inputs: ops whose result loses most in 16 bits: exp/log/pow and their
  relatives (range), sums, products and cumulative sums (sum/mean/var reductions, so batch norm and softmax's
  denominator), layer norm, log-softmax and cross-entropy. A float64 input stays float64.
* ``promote`` -- ops with several float inputs run in the widest of their dtypes (``bf16 + f32 -> f32``).

An op that is in no list runs in the dtype of its inputs (relu, tanh, reshape...). Custom ops (``ns::name``) are in
no list unless :func:`set_op_policy` puts them in one.
"""
from __future__ import annotations

LOWER = "lower"
FLOAT32 = "float32"
PROMOTE = "promote"
CATEGORIES = (LOWER, FLOAT32, PROMOTE)

# op name -> (category, why). Printed by policy(); read by the autocast hook on every op inside an autocast region.
_TABLE: dict[str, tuple[str, str]] = {
    "Matmul": (LOWER, "matrix product: the cost of a model (CPU: stored in 16 bits, multiplied in float32)"),
    "Linear": (LOWER, "x W^T + b: a matrix product"),
    "Unfold": (LOWER, "conv2d's im2col: its columns (kh*kw copies of the input) are stored in 16 bits"),
    "ScaledDotProductAttention": (LOWER, "two matrix products around a softmax"),
    "Exp": (FLOAT32, "overflows float16 above 11.1"),
    "Expm1": (FLOAT32, "range, as exp"), "Exp2": (FLOAT32, "range, as exp"),
    "Sinh": (FLOAT32, "range, as exp"), "Cosh": (FLOAT32, "range, as exp"),
    "Log1p": (FLOAT32, "range, as log"), "Log2": (FLOAT32, "range, as log"), "Log10": (FLOAT32, "range, as log"),
    "Tan": (FLOAT32, "poles: large values near pi/2"), "Asin": (FLOAT32, "steep near +-1"),
    "Acos": (FLOAT32, "steep near +-1"), "Erfinv": (FLOAT32, "steep near +-1"),
    "Softplus": (FLOAT32, "log(1 + exp(x)): range"),
    "Prod": (FLOAT32, "a product of k values over- and underflows quickly"),
    "Log": (FLOAT32, "needs the input's full range (float16 stops at 6e-8)"),
    "Pow": (FLOAT32, "range: x**y over- and underflows quickly"),
    "Sum": (FLOAT32, "sum/mean/var (so norms and softmax's denominator): k roundings of a growing total"),
    "Cumsum": (FLOAT32, "a running total: k roundings"),
    "LogSoftmax": (FLOAT32, "log-sum-exp over a row"),
    "CrossEntropy": (FLOAT32, "the loss: log-sum-exp and a mean over the batch"),
    "LayerNorm": (FLOAT32, "a mean and a variance over each row"),
    "Add": (PROMOTE, "binary: widest input dtype"),
    "Sub": (PROMOTE, "binary: widest input dtype"),
    "Mul": (PROMOTE, "binary: widest input dtype"),
    "Div": (PROMOTE, "binary: widest input dtype"),
    "Maximum": (PROMOTE, "binary: widest input dtype"),
    "Minimum": (PROMOTE, "binary: widest input dtype"),
    "Where": (PROMOTE, "two value inputs: widest dtype"),
    "Cat": (PROMOTE, "several inputs: widest dtype"),
}

# The hook's view of the table: op name -> category (a plain dict lookup per op).
category_of: dict[str, str] = {name: rule[0] for name, rule in _TABLE.items()}


def set_op_policy(op: str | type, category: str | None, why: str = "") -> None:
    """Put the op named ``op`` (a name like ``"Gelu"`` or ``"mylib::fused"``, or a Function class) in a list:
    ``"lower"``, ``"float32"`` or ``"promote"``; ``None`` takes it out of every list (it then runs in its inputs'
    dtype)."""
    name = op if isinstance(op, str) else op.__name__
    if category is None:
        _TABLE.pop(name, None)
        category_of.pop(name, None)
        return
    if category not in CATEGORIES:
        raise ValueError(f"set_op_policy: category must be one of {', '.join(CATEGORIES)} or None, got {category!r}")
    _TABLE[name] = (category, why or "set by set_op_policy")
    category_of[name] = category


def op_policy(op: str | type) -> str | None:
    """The list an op is in (``"lower"``, ``"float32"``, ``"promote"``) or None."""
    return category_of.get(op if isinstance(op, str) else op.__name__)


class PolicyTable:
    """What :func:`policy` returns: prints as a text table, renders as HTML in a notebook; ``rows`` for code."""

    def __init__(self, rows: list[tuple[str, str, str]]):
        self.rows = rows

    def __str__(self) -> str:
        header = ("op", "runs in", "why")
        runs = {LOWER: "autocast dtype", FLOAT32: "float32", PROMOTE: "widest input"}
        rows = [header] + [(op, runs[cat], why) for op, cat, why in self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        lines = [f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2]}".rstrip() for r in rows]
        lines.insert(1, f"{'-' * widths[0]}  {'-' * widths[1]}  ---")
        lines.append("(every other op runs in the dtype of its inputs)")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html  # noqa: PLC0415

        body = "".join(f"<tr><td><code>{html.escape(op)}</code></td><td>{cat}</td><td>{html.escape(why)}</td></tr>"
                       for op, cat, why in self.rows)
        return (f"<table><thead><tr><th>op</th><th>list</th><th>why</th></tr></thead><tbody>{body}</tbody></table>"
                "<p>Every other op runs in the dtype of its inputs.</p>")


def policy() -> PolicyTable:
    """The autocast policy table, grouped by list (lower, float32, promote)."""
    order = {c: i for i, c in enumerate(CATEGORIES)}
    rows = sorted(((name, cat, why) for name, (cat, why) in _TABLE.items()), key=lambda r: order[r[1]])
    return PolicyTable(rows)
