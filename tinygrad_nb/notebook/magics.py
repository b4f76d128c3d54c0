"""IPython magics for tinygrad_nb: ``%load_ext tinygrad_nb`` registers them (see docs/magics.md).

    %tg_seed 42                 seed tinygrad_nb (and numpy's and Python's global generators)
    %tg_device cuda             the default device (no argument: show it and what is available)
    %%tg_profile --limit 10     profile the cell, then show the per-op table
    %%tg_nantrace               run the cell under the NaN/inf tracer, then show where NaNs started
    %tg_runs compare a1 b2      tracked runs: ls, show, compare, export
    %tg_deterministic on        deterministic mode: on, off or warn
    %tg_hooks                   hooks and widgets owned by cells (removed when their cell is re-run)
    %tg_exercises               the notebook's exercises (check.NAME(fn)), done and to do
    %tg_help                    all of the above

The magics are plain methods of :class:`TinygradMagics`; the extension registers them with
``shell.register_magic_function``. A bad argument raises IPython's ``UsageError``, which IPython shows as one line
(``UsageError: %tg_seed: argument seed: invalid int value: 'abc' ...``) without a traceback. IPython itself is
imported only when a magic needs it (an error, a widget), so this module imports anywhere.
"""
from __future__ import annotations

import argparse
import ast
import os
import random
import shlex
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

from ..argtypes import positive_int
from . import ownership

# name, kind ("line" or "cell"), one-line description; %tg_help prints this table
MAGICS: list[tuple[str, str, str]] = [
    ("tg_seed", "line", "seed tinygrad_nb's generator, numpy's and Python's: %tg_seed 42 (no argument: show it)"),
    ("tg_device", "line", "set the default device: %tg_device cpu|cuda|cuda:N|auto (no argument: show devices)"),
    ("tg_profile", "cell", ("profile the cell's ops and show the summary table: %%tg_profile [--sort S] [--limit N] "
                            "[--trace FILE]")),
    ("tg_nantrace", "cell", ("run the cell under the NaN/inf tracer and show where non-finite values started "
                             "(--strict raises)")),
    ("tg_runs", "line", "tracked runs: %tg_runs [ls | show ID | compare ID ID ... | export ID] [--store PATH]"),
    ("tg_deterministic", "line", "deterministic mode: %tg_deterministic on|off|warn (no argument: show it)"),
    ("tg_hooks", "line", "list the hooks and widgets each cell owns (--clear releases them all)"),
    ("tg_kernel", "cell", ("compile the C kernel in the cell into a custom op and opcheck it: "
                           "%%tg_kernel NAME [--sample EXPR]")),
    ("tg_precision", "cell", ("check each op of the cell against a float64 replay (autocast): "
                              "%%tg_precision [--dtype D] [--strict]")),
    ("tg_exercises", "line", "the notebook's exercises, done and to do: %tg_exercises [NOTEBOOK] [--all] [--attempts]"),
    ("tg_help", "line", "this list; %tg_help NAME shows the options of one magic"),
]


def usage_error(message: str) -> Exception:
    """IPython's ``UsageError`` (shown as one line, no traceback), or ValueError when IPython is not installed."""
    try:
        from IPython.core.error import UsageError  # noqa: PLC0415 - only when a magic is misused
    except ImportError:
        return ValueError(message)
    return UsageError(message)


class _HelpShown(Exception):
    """Raised instead of exiting after ``-h`` printed the help."""


class MagicParser(argparse.ArgumentParser):
    """argparse for a magic's line: errors become a one-line ``UsageError`` naming the magic; ``-h`` never exits."""

    def error(self, message: str) -> None:  # type: ignore[override]
        usage = " ".join(self.format_usage().removeprefix("usage: ").split())  # one line, whatever the width
        raise usage_error(f"{self.prog}: {message} (usage: {usage})")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise _HelpShown()

    def parse(self, line: str) -> argparse.Namespace | None:
        """Parse a magic's argument line; None when ``-h`` printed the help."""
        try:
            words = shlex.split(line)
        except ValueError as e:  # an unclosed quote
            raise usage_error(f"{self.prog}: {e}") from None
        try:
            return self.parse_args(words)
        except _HelpShown:
            return None


# -- one parser per magic (also what %tg_help NAME prints) --------------------------------------------------------
def seed_parser() -> MagicParser:
    p = MagicParser(prog="%tg_seed", description="Seed tinygrad_nb's central generator (every randn, dropout mask, "
                    "init and DataLoader shuffle). Also seeds numpy's global generator (with the seed mod 2**32) and "
                    "Python's random module, for user code that draws from them. No argument: show the seed.")
    p.add_argument("seed", nargs="?", type=int, help="an integer in [0, 2**64)")
    p.add_argument("--tg-only", action="store_true", help="seed only tinygrad_nb, not numpy or random")
    return p


def device_parser() -> MagicParser:
    p = MagicParser(prog="%tg_device", description="Set the default device for new tensors. No argument: show the "
                    "default device and the devices available here.")
    p.add_argument("device", nargs="?", help="cpu, cuda, cuda:N or auto (cuda when a GPU answers, else cpu)")
    return p


def profile_parser() -> MagicParser:
    p = MagicParser(prog="%%tg_profile", description="Run the cell under tinygrad_nb.profile() and show the per-op "
                    "summary table.")
    p.add_argument("--sort", default="total", choices=["total", "calls", "mean"], help="sort rows by (default total)")
    p.add_argument("--limit", type=positive_int, default=None, help="show only the top N ops")
    p.add_argument("--every", type=positive_int, default=1, help="time one call in N of each op (default 1)")
    p.add_argument("--trace", metavar="FILE", default=None, help="also write a Chrome trace (Perfetto) JSON file")
    p.add_argument("--out", metavar="NAME", default=None, help="store the Profile in this variable")
    return p


def nantrace_parser() -> MagicParser:
    p = MagicParser(prog="%%tg_nantrace", description="Run the cell under the NaN/inf tracer (non-strict: the cell "
                    "runs to the end) and show each op where non-finite values started, with the cell and line.")
    p.add_argument("--strict", action="store_true", help="raise NonFiniteError at the first NaN/inf instead")
    p.add_argument("--no-inf", action="store_true", help="report NaN only, ignore infinities")
    p.add_argument("--text", action="store_true", help="print a text table even when the NaNTracer widget works")
    p.add_argument("--out", metavar="NAME", default=None, help="store the tracer (with .events) in this variable")
    return p


def runs_parser() -> MagicParser:
    from ..track import cli  # noqa: PLC0415

    p = MagicParser(prog="%tg_runs", description="Tracked runs, as the `tinygrad-nb runs` command shows them. "
                    "No action: ls.")
    cli.add_arguments(p)
    return p


def deterministic_parser() -> MagicParser:
    p = MagicParser(prog="%tg_deterministic", description="Set tinygrad_nb.deterministic(...): on (True), off "
                    "(False) or warn. No argument: show the mode and what it pins.")
    p.add_argument("mode", nargs="?", choices=["on", "off", "warn"])
    p.add_argument("--blas-threads", metavar="N", type=positive_int, default=1,
                   help="BLAS threads while on (default 1)")
    return p


def hooks_parser() -> MagicParser:
    p = MagicParser(prog="%tg_hooks", description="List the hooks, observers and widgets owned by cells; each "
                    "cell's are removed or closed when that cell runs again.")
    p.add_argument("--clear", action="store_true", help="release everything owned by every cell now")
    return p


def help_parser() -> MagicParser:
    p = MagicParser(prog="%tg_help", description="List the tinygrad_nb magics, or show one magic's options.")
    p.add_argument("name", nargs="?", help="a magic, e.g. tg_profile or %%tg_profile")
    return p


PARSERS: dict[str, Callable[[], MagicParser]] = {
    "tg_seed": seed_parser, "tg_device": device_parser, "tg_profile": profile_parser,
    "tg_nantrace": nantrace_parser, "tg_runs": runs_parser, "tg_deterministic": deterministic_parser,
    "tg_hooks": hooks_parser, "tg_help": help_parser, "tg_kernel": lambda: _kernel_magic().kernel_parser(),
    "tg_precision": lambda: _precision_magic().precision_parser(),
    "tg_exercises": lambda: _exercises_magic().exercises_parser(),
}


def _kernel_magic() -> Any:
    from . import kernel_magic  # noqa: PLC0415 - only when %%tg_kernel is used (it brings the C toolchain code)

    return kernel_magic


def _precision_magic() -> Any:
    from . import precision_magic  # noqa: PLC0415 - only when %%tg_precision is used

    return precision_magic


def _exercises_magic() -> Any:
    from . import exercises_magic  # noqa: PLC0415 - only when %tg_exercises is used

    return exercises_magic


def _table(columns: list[str], rows: list[dict[str, Any]]) -> str:
    from ..track import Comparison  # noqa: PLC0415 - the same aligned-text table `tinygrad-nb runs` prints

    return str(Comparison(columns, rows))


# -- the magics ---------------------------------------------------------------------------------------------------
class TinygradMagics:
    """The magics of one IPython shell. Line magics take ``(line)``, cell magics ``(line, cell)``."""

    def __init__(self, shell: Any):
        self.shell = shell

    def functions(self) -> list[tuple[str, str, Callable[..., Any]]]:
        """``(name, kind, function)`` for every magic, in :data:`MAGICS` order."""
        by_name: dict[str, Callable[..., Any]] = {
            "tg_seed": self.tg_seed, "tg_device": self.tg_device, "tg_profile": self.tg_profile,
            "tg_nantrace": self.tg_nantrace, "tg_runs": self.tg_runs, "tg_deterministic": self.tg_deterministic,
            "tg_hooks": self.tg_hooks, "tg_help": self.tg_help, "tg_kernel": self.tg_kernel,
            "tg_precision": self.tg_precision,
            "tg_exercises": self.tg_exercises,
        }
        return [(name, kind, by_name[name]) for name, kind, _ in MAGICS]

    # -- %%tg_kernel (tinygrad_nb/notebook/kernel_magic.py) ------------------------------------------------------
    def tg_kernel(self, line: str, cell: str) -> Any:
        __tracebackhide__ = True
        return _kernel_magic().KernelMagic(self.shell).tg_kernel(line, cell)

    # -- %%tg_precision (tinygrad_nb/notebook/precision_magic.py) ----------------------------------------------
    def tg_precision(self, line: str, cell: str) -> Any:
        __tracebackhide__ = True
        return _precision_magic().tg_precision(self, line, cell)

    # -- %tg_exercises (tinygrad_nb/notebook/exercises_magic.py) ------------------------------------------------
    def tg_exercises(self, line: str) -> None:
        _exercises_magic().tg_exercises(line)

    # -- %tg_seed -----------------------------------------------------------------------------------------------
    def tg_seed(self, line: str) -> None:
        from .. import random as tg_random  # noqa: PLC0415

        args = seed_parser().parse(line)
        if args is None:
            return
        if args.seed is None:
            state = tg_random.get_rng_state()
            print(f"tinygrad_nb generator: seed {state['seed']}, {state['offset']} blocks drawn since seeding")
            return
        if not 0 <= args.seed < 2**64:
            raise usage_error(f"%tg_seed: the seed must be in [0, 2**64), got {args.seed}")
        tg_random.manual_seed(args.seed)
        if args.tg_only:
            print(f"seeded tinygrad_nb with {args.seed}")
            return
        np.random.seed(args.seed % 2**32)
        random.seed(args.seed)
        print(f"seeded tinygrad_nb, numpy and random with {args.seed}")

    # -- %tg_device ---------------------------------------------------------------------------------------------
    def tg_device(self, line: str) -> None:
        from .. import device as tg_device  # noqa: PLC0415

        args = device_parser().parse(line)
        if args is None:
            return
        if args.device is None:
            print(f"default device: {tg_device.get_default_device()}")
            rows = [{"device": d.name, "description": d.description,
                     "memory": "-" if d.memory_bytes is None else f"{d.memory_bytes / 2**30:.1f} GiB"}
                    for d in tg_device.devices()]
            reason = tg_device.cuda_unavailable_reason()
            if reason is not None:
                rows.append({"device": "cuda", "description": f"unavailable: {reason}", "memory": "-"})
            print(_table(["device", "description", "memory"], rows))
            return
        note = ""
        spec = args.device
        if spec.strip().lower() == "auto":  # resolved here so the reason is said in this cell's output
            reason = tg_device.cuda_unavailable_reason()
            spec = "cuda:0" if reason is None else "cpu"
            note = " (auto: a GPU answered)" if reason is None else f" (auto: cuda unavailable: {reason})"
        try:
            chosen = tg_device.set_default_device(spec)
        except (tg_device.DeviceError, TypeError) as e:
            raise usage_error(f"%tg_device: {e}") from None
        print(f"default device: {chosen}{note}")

    # -- %%tg_profile -------------------------------------------------------------------------------------------
    def tg_profile(self, line: str, cell: str) -> Any:
        __tracebackhide__ = True  # IPython leaves this frame out of the user's traceback
        from ..profiler import profile  # noqa: PLC0415

        args = profile_parser().parse(line)
        if args is None:
            return None
        prof = profile(every=args.every)
        if args.out:
            self.shell.user_ns[args.out] = prof
        with prof:
            value = self.run_body(cell)
        print(prof.summary(sort_by=args.sort, limit=args.limit))
        if args.trace:
            prof.export_chrome_trace(args.trace)
            print(f"wrote the Chrome trace to {args.trace} (open it in https://ui.perfetto.dev)")
        return value

    # -- %%tg_nantrace ------------------------------------------------------------------------------------------
    def tg_nantrace(self, line: str, cell: str) -> Any:
        """In a notebook with the widget half installed, a live NaNTracer table follows the tracer and becomes a
        static image when the cell ends; the events are also printed as a text table at the end, always (text is
        what nbval compares and what a reader can copy)."""
        __tracebackhide__ = True
        from ..debug import NonFiniteError, detect_anomaly  # noqa: PLC0415

        args = nantrace_parser().parse(line)
        if args is None:
            return None
        tracer = detect_anomaly(strict=args.strict, check_inf=not args.no_inf)
        if args.out:
            self.shell.user_ns[args.out] = tracer
        widget_class = None if args.text else nantracer_widget()
        widget = None
        try:
            with tracer, np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # the tracer says it better
                if widget_class is not None:
                    widget = ownership.own(widget_class(tracer, show=True), label="NaNTracer widget (%%tg_nantrace)")
                value = self.run_body(cell)
        except BaseException as err:
            if isinstance(err, NonFiniteError):
                cut_library_frames(err.__traceback__)  # the report names the op; the traceback ends at the user line
            if widget is not None and isinstance(err, NonFiniteError):
                widget.add_error(err)  # --strict: the table shows the event the traceback reports
            elif widget is None and tracer.events:  # what was found before the cell failed for another reason
                print(event_table(tracer.events))
            raise
        finally:
            if widget is not None:
                widget.stop()
                widget.finish()  # the live table becomes a static one (survives saving and kernel restarts)
                ownership.disown(widget)  # finished: nothing left for a re-run to close
        print(event_table(tracer.events))
        return value

    # -- %tg_runs -----------------------------------------------------------------------------------------------
    def tg_runs(self, line: str) -> None:
        from ..track import RunStore, UnknownRunError, cli  # noqa: PLC0415

        args = runs_parser().parse(line)
        if args is None:
            return
        action = getattr(args, "runs_command", None) or "ls"
        wanted = args.run_ids if action == "compare" else [args.run_id] if action in ("show", "export") else []
        try:
            RunStore(args.store).resolve(wanted)  # a clear one-line error before anything is printed
        except UnknownRunError as e:
            raise usage_error(f"%tg_runs {action}: {e}") from None
        cli.main(args)

    # -- %tg_deterministic --------------------------------------------------------------------------------------
    def tg_deterministic(self, line: str) -> None:
        from .. import determinism  # noqa: PLC0415

        args = deterministic_parser().parse(line)
        if args is None:
            return
        if args.mode is not None:
            mode = {"on": True, "off": False, "warn": "warn"}[args.mode]
            determinism.deterministic(mode, blas_threads=args.blas_threads)
        state = determinism.state()
        shown = {True: "on", False: "off", "warn": "warn"}[state["mode"]]
        lines = [f"deterministic mode: {shown}"]
        if state["mode"] is not False:
            blas = state["blas_threads"]
            if blas.get("pinned"):
                lines.append(f"  BLAS threads: {blas.get('threads') or blas.get('environment_at_import')} "
                             f"(pinned by {blas['method']})")
            else:
                lines.append(f"  BLAS threads: not pinned: {blas.get('note')}")
            lines.append(f"  CUBLAS_WORKSPACE_CONFIG={state['cublas_workspace_config']}")
        print("\n".join(lines))

    # -- %tg_hooks ----------------------------------------------------------------------------------------------
    def tg_hooks(self, line: str) -> None:
        args = hooks_parser().parse(line)
        if args is None:
            return
        if args.clear:
            print(f"released {ownership.registry.release_all()} owned object(s)")
            return
        cells = ownership.registry.live()
        if not cells:
            print("no hooks or widgets are owned by a cell")
            return
        rows = [{"cell": info.describe(), "key": info.key, "object": entry.label}
                for info, entries in cells for entry in entries]
        print(_table(["cell", "key", "object"], rows))

    # -- %tg_help -----------------------------------------------------------------------------------------------
    def tg_help(self, line: str) -> None:
        args = help_parser().parse(line)
        if args is None:
            return
        if args.name is not None:
            name = args.name.lstrip("%")
            if name not in PARSERS:
                raise usage_error(f"%tg_help: no magic named {args.name!r}; the magics are "
                                  + ", ".join(n for n, _, _ in MAGICS))
            PARSERS[name]().print_help()
            return
        rows = [{"magic": ("%%" if kind == "cell" else "%") + name, "what": what} for name, kind, what in MAGICS]
        from .widgets.base import in_notebook  # noqa: PLC0415 - an HTML table that never wraps in a notebook

        if in_notebook():
            from IPython.display import display  # noqa: PLC0415

            from .tables import Table  # noqa: PLC0415

            display(Table(["magic", "what"], rows))
        else:
            print(_table(["magic", "what"], rows))
        print("%tg_help NAME shows one magic's options; docs/magics.md has examples.")

    # -- running a cell magic's body ----------------------------------------------------------------------------
    def run_body(self, cell: str) -> Any:
        """Run a cell magic's body in the user namespace and return the value of a trailing expression.

        The body is compiled under a name IPython maps to this cell's execution count, with one blank line in front,
        so tracebacks and the NaN tracer say ``cell [N], line L`` with L counted as the user sees it (the magic line
        is line 1).
        """
        __tracebackhide__ = True
        shell = self.shell
        source = "\n" + shell.transform_cell(cell)
        filename = shell.compile.cache(source, _running_cell_number(shell), raw_code=source)
        tree = ast.parse(source, filename=filename)
        shows_value = bool(tree.body) and isinstance(tree.body[-1], ast.Expr) and not cell.rstrip().endswith(";")
        last = tree.body.pop() if shows_value else None
        exec(compile(tree, filename, "exec"), shell.user_global_ns, shell.user_ns)  # noqa: S102 - the user's cell
        if last is None:
            return None
        return eval(compile(ast.Expression(last.value), filename, "eval"),  # noqa: S307 - the user's cell
                    shell.user_global_ns, shell.user_ns)


def event_table(events: list[Any]) -> str:
    """Non-finite events as text: one row per op where NaN/inf started, then the first event's full report."""
    if not events:
        return "no NaN or inf appeared in this cell"
    from ..debug.provenance import format_location  # noqa: PLC0415

    rows = [{"#": i, "op": e.op, "phase": e.phase, "NaN": e.nan, "inf": e.inf, "where": format_location(e.location)}
            for i, e in enumerate(events, 1)]
    plural = "s" if len(events) > 1 else ""
    lines = [f"NaN/inf started in {len(events)} op{plural} (ops they flowed into afterwards are not listed):",
             _table(["#", "op", "phase", "NaN", "inf", "where"], rows), "", "first event:", events[0].report]
    return "\n".join(lines)


def cut_library_frames(tb: TracebackType | None) -> None:
    """End a traceback at its last frame outside tinygrad_nb (the user's line), dropping the library frames after it."""
    from ..debug.provenance import PACKAGE_DIR  # noqa: PLC0415

    last_user = None
    while tb is not None:
        if not os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(PACKAGE_DIR):
            last_user = tb
        tb = tb.tb_next
    if last_user is not None:
        last_user.tb_next = None


def nantracer_widget() -> Any:
    """The widget half's NaNTracer class when it is installed and a notebook front end can show widgets, else None."""
    try:
        from . import NaNTracer, in_notebook  # noqa: PLC0415 - the widget half (tinygrad_nb/notebook/__init__.py)
    except ImportError:
        return None
    return NaNTracer if in_notebook() else None


def _running_cell_number(shell: Any) -> int:
    """The In[N] number of the cell running now, read from the name IPython compiled it under.

    ``shell.execution_count`` is N while the cell runs in IPython 8 but already N + 1 in IPython 9, so the compiled
    cell's filename (``<ipython-input-N-...>``, or ipykernel's file that IPython maps to N) is the reliable source.
    """
    from ..debug.provenance import cell_number  # noqa: PLC0415 - keeps this module's imports light

    frame = sys._getframe(1)
    while frame is not None:
        number = cell_number(frame.f_code.co_filename)
        if number is not None:
            return number
        frame = frame.f_back
    return shell.execution_count
