"""Where did the user create this tensor? Source locations for error reports.

:func:`user_location` walks up the call stack past every frame inside the ``tinygrad_nb`` package and returns the
first user frame as ``(filename, lineno)``. It is cheap (a few attribute reads per frame) so the NaN tracer can call it
for every op while it is on; the location is only *formatted* when something is reported:

* a script: ``train.py:12``
* a notebook cell: ``cell [5], line 3`` (IPython names cells ``<ipython-input-5-...>`` or, with ipykernel,
  ``/tmp/ipykernel_123/4567.py``; the second kind is mapped to its execution count when IPython is running)
"""
from __future__ import annotations

import linecache
import os
import re
import sys
from types import FrameType
from typing import Any

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # .../tinygrad_nb/
_IPYTHON_INPUT = re.compile(r"^<ipython-input-(\d+)-[0-9a-f]+>$")
_IPYKERNEL_CELL = re.compile(r"[/\\]ipykernel_\d+[/\\][^/\\]+\.py$")

_internal: dict[Any, bool] = {}  # code object -> "is inside tinygrad_nb" (a cache: startswith once per code object)

Location = tuple[str, int]


def user_location(frame: FrameType | None = None) -> Location | None:
    """``(filename, lineno)`` of the innermost frame outside tinygrad_nb, starting at ``frame`` (default: caller)."""
    f = frame if frame is not None else sys._getframe(1)
    internal = _internal
    while f is not None:
        code = f.f_code
        inside = internal.get(code)
        if inside is None:
            inside = internal[code] = _is_internal(code.co_filename)
        if not inside:
            return code.co_filename, f.f_lineno
        f = f.f_back
    return None


_PLUMBING = ("autograd.py", "tensor.py", "dispatch.py", "ops" + os.sep, "debug" + os.sep,
             os.path.join("nn", "module.py"))


def library_frames(frame: FrameType | None = None) -> list[str]:
    """The tinygrad_nb frames between the user's line and the op, e.g. ``['nn/linear.py:52 in forward']``,
    innermost first, without the plumbing (tensor methods, autograd, ops, debug). Only for error reports."""
    f = frame if frame is not None else sys._getframe(1)
    found = []
    while f is not None:
        filename = f.f_code.co_filename
        if not _is_internal(filename):
            break
        relative = os.path.abspath(filename)[len(PACKAGE_DIR):]
        if not relative.startswith(_PLUMBING):
            found.append(f"{relative.replace(os.sep, '/')}:{f.f_lineno} in {f.f_code.co_name}")
        f = f.f_back
    return found


def _is_internal(filename: str) -> bool:
    return os.path.abspath(filename).startswith(PACKAGE_DIR) if not filename.startswith("<") else False


def cell_number(filename: str) -> int | None:
    """The notebook execution count of a cell's filename, or None when it is not (known to be) a cell."""
    m = _IPYTHON_INPUT.match(filename)
    if m:
        return int(m.group(1))
    shell = _get_ipython()
    if shell is not None:
        mapping = getattr(getattr(shell, "compile", None), "_filename_map", None) or {}
        if filename in mapping:
            return int(mapping[filename])
    return None


def is_notebook_cell(filename: str) -> bool:
    return bool(_IPYTHON_INPUT.match(filename) or _IPYKERNEL_CELL.search(filename))


def _get_ipython() -> Any:
    """The running IPython shell, if IPython is imported and active (never imports IPython itself)."""
    module = sys.modules.get("IPython")
    if module is None:
        return None
    try:
        return module.get_ipython()
    except Exception:  # noqa: BLE001 - a broken IPython install must not break an error report
        return None


def format_location(location: Location | None, source: bool = True) -> str:
    """``train.py:12`` / ``cell [5], line 3``, followed by the source line when it can be read."""
    if location is None:
        return "<unknown location>"
    filename, lineno = location
    number = cell_number(filename)
    if number is not None:
        text = f"cell [{number}], line {lineno}"
    elif is_notebook_cell(filename):
        text = f"notebook cell {filename}, line {lineno}"
    else:
        text = f"{filename}:{lineno}"
    if source:
        line = linecache.getline(filename, lineno).strip()
        if line:
            text += f":  {line}"
    return text
