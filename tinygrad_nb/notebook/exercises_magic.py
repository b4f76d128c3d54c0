"""``%tg_exercises``: which exercises of a notebook are done and which are still to do.

    %tg_exercises                      the notebook of the latest check.NAME(...) in this kernel (else Jupyter's)
    %tg_exercises 01_first_steps       one notebook, by its file name (with or without .ipynb)
    %tg_exercises --all                every notebook that has exercises
    %tg_exercises --attempts           also how many tries each took

Progress lives in a small JSON file per notebook (see :mod:`tinygrad_nb.exercises.progress`); this magic only reads
it. Attempt counts are left out unless asked for, so the default listing of a finished notebook is the same on every
run (the teaching notebooks' stored outputs are compared by nbval).
"""
from __future__ import annotations

import os
from pathlib import Path

from .magics import MagicParser, usage_error

DESCRIPTION = "list the exercises of a notebook, done and to do: %tg_exercises [NOTEBOOK] [--all] [--attempts]"


def exercises_parser() -> MagicParser:
    p = MagicParser(prog="%tg_exercises", description="List the exercises of a notebook (check.NAME(fn) in the "
                    "teaching notebooks) as done or to do, from the progress file next to the notebook.")
    p.add_argument("notebook", nargs="?", help="a notebook's file name, e.g. 01_first_steps (default: the notebook "
                   "of the latest check in this kernel, else the one Jupyter runs)")
    p.add_argument("--all", action="store_true", help="every notebook that has exercises")
    p.add_argument("--attempts", action="store_true", help="also show how many tries each exercise took")
    return p


def _default_notebook() -> str | None:
    from .. import exercises  # noqa: PLC0415

    if exercises.last_notebook:
        return exercises.last_notebook
    session = Path(os.environ.get("JPY_SESSION_NAME", "")).stem
    return session if session in exercises.notebooks() else None


def listing(notebook: str, attempts: bool = False) -> str:
    """The done / to do text of one notebook."""
    from .. import exercises  # noqa: PLC0415

    rows = exercises.status(notebook)
    done = sum(1 for _, record in rows if record and record["passed"])
    lines = [f"{notebook}: {done} of {len(rows)} exercises done"]
    width = max(len(ex.id) for ex, _ in rows)
    for ex, record in rows:
        passed = bool(record and record["passed"])
        mark = "✓" if passed else "·"
        line = f"  {mark} {ex.id:{width}}  {ex.title}"
        if not passed:
            line += f"   to do: write {ex.signature}, then check.{ex.id}(...)"
        if attempts and record:
            tries = record["attempts"]
            line += f"   ({tries} {'try' if tries == 1 else 'tries'}"
            line += f", passed at try {record['first_passed_attempt']})" if passed else ")"
        lines.append(line)
    return "\n".join(lines)


def tg_exercises(line: str) -> None:
    from .. import exercises  # noqa: PLC0415

    args = exercises_parser().parse(line)
    if args is None:
        return
    known = exercises.notebooks()
    if args.all:
        names = known
    elif args.notebook:
        name = Path(args.notebook).stem if args.notebook.endswith(".ipynb") else args.notebook
        if name not in known:
            raise usage_error(f"%tg_exercises: {args.notebook!r} has no exercises; the notebooks with exercises are: "
                              f"{', '.join(known)}")
        names = [name]
    else:
        default = _default_notebook()
        names = [default] if default else known
    try:
        print("\n".join(listing(name, args.attempts) for name in names))
    except exercises.ProgressError as e:
        raise usage_error(f"%tg_exercises: {e}") from None
