"""``%%tg_kernel NAME``: write a C kernel in a notebook cell; it is compiled, registered as an op and opchecked.

    %%tg_kernel mylib::softsign --sample "tg.randn(3, 4, dtype=tg.float64)"
    static int32_t forward(const DLTensor *const *in, int32_t n_in, DLTensor *const *out, int32_t n_out) {
        const double *x = tgnb_data(in[0]);
        ...
        return 0;                       /* or: return tgnb_fail("message"); */
    }
    static int32_t backward(const DLTensor *const *grad_out, int32_t n_out, const DLTensor *const *in,
                            int32_t n_in, DLTensor *const *grad_in) { ... }   /* optional */

The cell is C99 with ``<math.h>`` and ``tgnb_plugin.h`` already included (DLTensor, ``tgnb_data``, ``tgnb_numel``, ``tgnb_is_dtype``,
``tgnb_fail``). It must define ``forward``; ``backward`` (makes the op differentiable) and ``shape`` (default: the
output is shaped like input 0) are optional. The magic adds the plugin table, compiles the cell with
:func:`tinygrad_nb.library.build` (cached), registers the op (owned by the cell: re-running the cell replaces it)
and runs :func:`tinygrad_nb.library.opcheck` on the samples. Compiler messages name the cell and its line numbers
(the magic line is line 1). ``%load_ext tinygrad_nb.notebook.kernel_magic`` registers the magic on its own.
"""
from __future__ import annotations

import re
from typing import Any

from .magics import MagicParser, _running_cell_number, usage_error

DESCRIPTION = "compile the C kernel in the cell, register it as a custom op and opcheck it: %%tg_kernel NAME"


def kernel_parser() -> MagicParser:
    parser = MagicParser(prog="%%tg_kernel", description=DESCRIPTION, add_help=True)
    parser.add_argument("name", help="the op's name, namespace::name (e.g. mylib::softsign)")
    parser.add_argument("--inputs", type=int, default=1, help="number of tensor inputs (default 1)")
    parser.add_argument("--sample", action="append", default=None, metavar="EXPR",
                        help="a Python expression giving one sample input (a tensor or a tuple of them) for "
                             "opcheck; repeatable. Default: tg.randn(3, 4) in float64 per input")
    parser.add_argument("--no-check", action="store_true", help="register without running opcheck")
    parser.add_argument("--flags", default="", help="extra compiler flags, e.g. \"-O2 -march=native\"")
    parser.add_argument("--doc", default="", help="a one-line description of the op")
    return parser


_FUNCTION = r"\b{}\s*\("


def plugin_source(body: str, name: str, inputs: int, cell: str, doc: str = "") -> str:
    """The compilation unit for a cell: header, the cell under ``#line 2 "<cell>"``, then the plugin table."""
    has = {fn: re.search(_FUNCTION.format(fn), _strip_comments(body)) is not None
           for fn in ("forward", "backward", "shape")}
    if not has["forward"]:
        raise usage_error(f"%%tg_kernel {name}: the cell must define forward(...) (see %tg_help or "
                          "docs/custom_ops.md for its signature)")
    quoted = doc.replace("\\", "\\\\").replace('"', '\\"')
    cell_name = cell.replace('"', "'")
    return "\n".join([
        '#line 1 "<%%tg_kernel prologue>"',
        "#include <math.h>",
        '#include "tgnb_plugin.h"',
        "TGNB_DEFINE_ERRORS()",
        f'#line 2 "{cell_name}"',
        body,
        '#line 1 "<%%tg_kernel table>"',
        f"static const tgnb_op tg_kernel_op_ = {{sizeof(tgnb_op), \"{name}\", {int(inputs)}, 1, "
        f"{'shape' if has['shape'] else 'tgnb_shape_like_input0'}, forward, "
        f"{'backward' if has['backward'] else 'NULL'}, \"{quoted}\"}};",
        "static const tgnb_op *const tg_kernel_ops_[] = {&tg_kernel_op_};",
        f"static const tgnb_plugin tg_kernel_plugin_ = {{sizeof(tgnb_plugin), TGNB_ABI_MAJOR, TGNB_ABI_MINOR, "
        f"\"{cell_name}\", \"0\", 1, tg_kernel_ops_, tgnb_last_error}};",
        "TGNB_EXPORT const tgnb_plugin *tgnb_plugin_init(uint32_t major, uint32_t minor) {",
        "    (void)major; (void)minor; return &tg_kernel_plugin_;",
        "}",
        "",
    ])


def _strip_comments(source: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", source, flags=re.S)


class KernelMagic:
    """The ``%%tg_kernel`` cell magic of one IPython shell."""

    def __init__(self, shell: Any):
        self.shell = shell

    def tg_kernel(self, line: str, cell: str) -> Any:
        """Compile, register and check; returns the :class:`~tinygrad_nb.library.OpCheckReport` (or the op with
        ``--no-check``)."""
        __tracebackhide__ = True
        from .. import library  # noqa: PLC0415
        from ..library.registry import cell_origin, origin_context  # noqa: PLC0415

        args = kernel_parser().parse(line)
        if args is None:
            return None
        if args.inputs < 1:
            raise usage_error(f"%%tg_kernel: --inputs must be >= 1, got {args.inputs}")
        number = _running_cell_number(self.shell)
        where = f"cell [{number}]"
        source = plugin_source(cell, args.name, args.inputs, where, args.doc)
        try:
            with origin_context(cell_origin(number)):
                plugin = library.build(source, name=args.name.replace("::", "_"), flags=args.flags.split(),
                                       display_name=where, first_line=1)
        except library.CompileError as e:
            raise usage_error(f"%%tg_kernel {args.name}: {e}") from None
        op = plugin.ops[0]
        if args.no_check:
            print(f"registered {op.name} (C, {where}); not checked")
            return op
        samples = [self._sample(expr) for expr in args.sample] if args.sample else [self._default(args.inputs)]
        report = library.opcheck(op, samples)
        print(f"registered {op.name} (C, {where})")
        return report

    def _sample(self, expression: str) -> Any:
        try:
            return eval(expression, self.shell.user_global_ns, self.shell.user_ns)  # noqa: S307 - the user's code
        except Exception as e:
            raise usage_error(f"%%tg_kernel: --sample {expression!r} failed: {type(e).__name__}: {e}") from None

    @staticmethod
    def _default(inputs: int) -> tuple[Any, ...]:
        import numpy as np  # noqa: PLC0415

        from ..tensor import Tensor  # noqa: PLC0415

        rng = np.random.default_rng(0)
        return tuple(Tensor(rng.standard_normal((3, 4))) for _ in range(inputs))


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%tg_kernel`` and let cells own the ops they register (re-running a cell replaces them)."""
    ipython.register_magic_function(KernelMagic(ipython).tg_kernel, magic_kind="cell", magic_name="tg_kernel")
    from .. import library  # noqa: PLC0415
    from . import ownership  # noqa: PLC0415

    if ownership.registry.auto_own not in library.op_listeners:
        library.op_listeners.append(ownership.registry.auto_own)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove ``%%tg_kernel`` (registered ops stay)."""
    ipython.magics_manager.magics["cell"].pop("tg_kernel", None)
    from .. import library  # noqa: PLC0415
    from . import ownership  # noqa: PLC0415

    if ownership.registry.auto_own in library.op_listeners:
        library.op_listeners.remove(ownership.registry.auto_own)
