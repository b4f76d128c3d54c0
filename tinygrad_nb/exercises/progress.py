"""Progress per notebook: which exercises passed, kept in a small JSON file next to the notebook.

The file is ``<notebook folder>/.tinygrad_nb/exercises/<notebook>.json`` (``.tinygrad_nb/`` is where the run store
lives too, and git ignores it). The notebook folder is the folder of the notebook Jupyter names in the kernel's
``JPY_SESSION_NAME`` when it sets one, else the kernel's working directory, which Jupyter starts in the notebook's
folder. ``TINYGRAD_NB_EXERCISES_DIR`` overrides the folder holding the JSON files (tests, read-only checkouts).

Format (``format_version`` 1)::

    {"format_version": 1, "notebook": "01_first_steps",
     "exercises": {"mse_grad": {"passed": true, "attempts": 3, "first_passed_attempt": 3}}}

Writes go through :func:`tinygrad_nb.io.atomic_write`, so a kernel killed mid-write leaves the old file whole.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..io import atomic_write

FORMAT_VERSION = 1
ENV_DIR = "TINYGRAD_NB_EXERCISES_DIR"


class ProgressError(ValueError):
    """A progress file that cannot be read: names the file and the field."""


def progress_dir() -> Path:
    """The folder of the progress files (see the module docstring for how it is found)."""
    override = os.environ.get(ENV_DIR)
    if override:
        return Path(override)
    session = os.environ.get("JPY_SESSION_NAME", "")
    if session.endswith(".ipynb") and Path(session).parent.is_dir():
        return Path(session).parent / ".tinygrad_nb" / "exercises"
    return Path.cwd() / ".tinygrad_nb" / "exercises"


def progress_path(notebook: str) -> Path:
    """The JSON file of ``notebook`` (a file stem such as ``01_first_steps``)."""
    return progress_dir() / f"{notebook}.json"


def load(notebook: str) -> dict[str, dict[str, Any]]:
    """``{exercise id: record}`` for ``notebook``; empty when it has no file yet. Raises :class:`ProgressError`."""
    path = progress_path(notebook)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProgressError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); delete the file "
                            "to start this notebook's progress afresh") from None
    if not isinstance(doc, dict):
        raise ProgressError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise ProgressError(f"{path}: field 'format_version' is {version!r}; this tinygrad_nb reads version "
                            f"{FORMAT_VERSION}")
    exercises = doc.get("exercises")
    if not isinstance(exercises, dict) or not all(isinstance(v, dict) for v in exercises.values()):
        raise ProgressError(f"{path}: field 'exercises' must be an object of objects")
    for key, record in exercises.items():
        for name, kind in (("passed", bool), ("attempts", int)):
            if not isinstance(record.get(name), kind):
                raise ProgressError(f"{path}: field 'exercises.{key}.{name}' must be a {kind.__name__}, got "
                                    f"{record.get(name)!r}")
    return exercises


def record(notebook: str, exercise_id: str, passed: bool) -> None:
    """Count one attempt at ``exercise_id``; once passed it stays passed (a later wrong try does not undo it)."""
    exercises = load(notebook)
    entry = exercises.setdefault(exercise_id, {"passed": False, "attempts": 0})
    entry["attempts"] += 1
    if passed and not entry["passed"]:
        entry["passed"] = True
        entry["first_passed_attempt"] = entry["attempts"]
    doc = {"format_version": FORMAT_VERSION, "notebook": notebook, "exercises": exercises}
    atomic_write(progress_path(notebook), json.dumps(doc, indent=1, sort_keys=True) + "\n", durable=False)
