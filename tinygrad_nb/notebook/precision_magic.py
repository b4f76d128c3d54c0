"""``%%tg_precision``: run a cell in low precision next to a float64 replay and show the error of every op.

    %%tg_precision --dtype float16
    loss = F.cross_entropy(model(x), y)
    loss.backward()

The cell runs under ``tg.autocast(dtype=...)`` (``--no-autocast``: in the dtypes the cell chooses itself) with
:class:`tinygrad_nb.amp.precision` watching: each forward op against a float64 replay (ULPs, storage or compute,
end-to-end relative error, overflow/underflow counts) and each backward node against its float64 backward. After the
cell, the report: an HTML table with per-op error bars in a notebook front end, a text table otherwise (and always
with ``--text``). ``--strict`` raises :class:`tinygrad_nb.amp.PrecisionError` at the first op beyond its documented
bound, naming the op and the cell and line. ``--out NAME`` stores the report in a variable.
"""
from __future__ import annotations

from typing import Any

from .magics import MagicParser

DESCRIPTION = ("run the cell in low precision next to a float64 replay and report each op's error: "
               "%%tg_precision [--dtype float16|bfloat16] [--strict]")


def precision_parser() -> MagicParser:
    p = MagicParser(prog="%%tg_precision", description="Run the cell under autocast with the precision check on "
                    "and show each op's error against a float64 replay (see docs/amp.md).")
    p.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16", help="the low dtype (float16)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="the autocast device type (cpu)")
    p.add_argument("--no-autocast", action="store_true", help="do not autocast: check the dtypes the cell uses")
    p.add_argument("--strict", action="store_true", help="raise PrecisionError at the first op beyond its bound")
    p.add_argument("--worst", type=int, default=None, metavar="N", help="show only the N forward ops with the "
                   "largest end-to-end error")
    p.add_argument("--text", action="store_true", help="print the text table even in a notebook front end")
    p.add_argument("--out", metavar="NAME", default=None, help="store the report in this variable")
    return p


def tg_precision(magics: Any, line: str, cell: str) -> Any:
    """The magic's body; ``magics`` is the shell's :class:`~tinygrad_nb.notebook.magics.TinygradMagics`."""
    __tracebackhide__ = True
    from .. import dtype as dtypes  # noqa: PLC0415
    from ..amp import PrecisionError, PrecisionReport, precision  # noqa: PLC0415
    from .magics import cut_library_frames  # noqa: PLC0415

    args = precision_parser().parse(line)
    if args is None:
        return None
    watch = precision(dtypes.to_dtype(args.dtype), strict=args.strict, device_type=args.device,
                      autocast=not args.no_autocast)
    if args.out:
        magics.shell.user_ns[args.out] = watch.report
    try:
        with watch:
            value = magics.run_body(cell)
    except PrecisionError as err:
        cut_library_frames(err.__traceback__)  # the message names the op; the traceback ends at the user's line
        raise
    report = watch.report
    if args.worst is not None:
        report = PrecisionReport(report.worst(args.worst), report.dtype)
    _show(report, text=args.text)
    return value


def _show(report: Any, text: bool) -> None:
    """HTML (with error bars) in a front end that renders it, plus the text table (what nbval compares)."""
    if not text:
        try:
            from IPython.display import HTML, display  # noqa: PLC0415

            display(HTML(report._repr_html_()))
        except ImportError:
            pass
    print(report)
