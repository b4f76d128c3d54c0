"""Exercises that check themselves: ``check.<exercise>(your_function)`` in the teaching notebooks.

    from tinygrad_nb.exercises import check

    def log_softmax(x):
        return x - x.exp().sum(-1, keepdim=True).log()

    check.log_softmax(log_softmax)
    # ✗ log_softmax: not yet (1 problem)
    #   - overflows for logits >= 89 (row (89, 0, -1) gives inf): exp(89) is beyond float32's largest number ...

Each check runs hidden tests (shapes, dtypes, values against tinygrad_nb's own reference in float64, ``gradcheck``,
adversarial inputs such as logits of 1e4, broadcasting edge cases) and answers with one specific hint per problem,
never the solution; a pass lists what was verified. Every attempt is counted in the notebook's progress file
(:mod:`.progress`), which ``%tg_exercises`` reads (see docs/exercises.md). ``check.run(name, fn)`` does the same
without touching the progress file.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import checkers as _checkers  # noqa: F401 - registers the exercises
from . import checkers_more as _checkers_more  # noqa: F401 - notebooks 02, 04, 08, 09 and 12
from . import checkers_late as _checkers_late  # noqa: F401 - notebooks 15, 17 and 19
from . import checkers_serving as _checkers_serving  # noqa: F401 - notebook 14
from . import progress
from .core import REGISTRY, Exercise, Result, run
from .progress import ProgressError

__all__ = ["REGISTRY", "Exercise", "ProgressError", "Result", "check", "exercises_of", "notebooks", "run", "status"]


class _Check:
    """``check.<exercise>(fn)``: run the exercise's checker on ``fn`` and record the attempt in the progress file."""

    def __getattr__(self, name: str) -> Callable[[Callable[..., Any]], Result]:
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in REGISTRY:
            raise AttributeError(f"no exercise named {name!r}; the exercises are: {', '.join(sorted(REGISTRY))}")

        def checker(fn: Callable[..., Any]) -> Result:
            global last_notebook
            last_notebook = REGISTRY[name].notebook
            result = run(name, fn)
            try:
                progress.record(REGISTRY[name].notebook, name, result.passed)
            except (ProgressError, OSError) as e:
                result.note = f"progress not saved: {e}"
            return result

        checker.__name__ = name
        checker.__doc__ = f"Check {REGISTRY[name].signature}: {REGISTRY[name].title}."
        return checker

    def __dir__(self) -> list[str]:
        return sorted(REGISTRY)

    def __repr__(self) -> str:
        return f"check: {len(REGISTRY)} exercises ({', '.join(sorted(REGISTRY))}); call check.NAME(your_function)"


check = _Check()
last_notebook: str | None = None    # the notebook of the latest check in this process (%tg_exercises's default)


def notebooks() -> list[str]:
    """The notebooks that have exercises, in order."""
    return sorted({ex.notebook for ex in REGISTRY.values()})


def exercises_of(notebook: str) -> list[Exercise]:
    """The exercises of ``notebook`` (a file stem), in the order they appear in it."""
    return [ex for ex in REGISTRY.values() if ex.notebook == notebook]


def status(notebook: str) -> list[tuple[Exercise, dict[str, Any] | None]]:
    """``(exercise, progress record or None)`` for each exercise of ``notebook``."""
    done = progress.load(notebook)
    return [(ex, done.get(ex.id)) for ex in exercises_of(notebook)]
