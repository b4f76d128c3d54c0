"""Sweep config files (TOML) for ``tinygrad-nb sweep config.toml``.

    [sweep]
    train = "train.py:train"        # a file next to this one (or "package.module:function")
    search = "grid"                 # grid | random | optuna
    trials = 12                     # random/optuna: how many; grid: at most this many
    executor = "local"              # local | ray
    max_concurrent = 2
    metric = "val_loss"
    mode = "min"
    early_stop = "median"           # asha | median
    seed = 0
    # name, project, store, deterministic (true | "portable"), address (ray), start_method (local)
    resources_per_trial = {cpu = 1}

    [space]
    lr = {loguniform = [1e-4, 1e-1]}  # also uniform = [lo, hi], randint = [lo, hi], choice = [...]
    hidden = [32, 64]                 # a list is a choice
    epochs = 5                        # anything else is fixed

    [mlflow]                          # optional: mirror every trial to an MLflow tracking server
    tracking_uri = "http://127.0.0.1:5000"
    experiment = "ablations"

Every error names the file, the line and the key (``sweep.toml:7: sweep.trials: expected an integer, got "12"``).
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .space import DIMENSION_KINDS, SpaceError

_SWEEP_KEYS: dict[str, tuple[type, ...]] = {
    "train": (str,), "search": (str,), "trials": (int,), "executor": (str,), "max_concurrent": (int,),
    "metric": (str,), "mode": (str,), "early_stop": (str,), "seed": (int,), "name": (str,), "project": (str,),
    "store": (str,), "deterministic": (bool, str), "address": (str,), "resources_per_trial": (dict,),
    "start_method": (str,)}
_CHOICES = {"search": ("grid", "random", "optuna"), "executor": ("local", "ray"), "mode": ("min", "max"),
            "early_stop": ("asha", "median"), "deterministic": (True, False, "portable", "warn")}
_MLFLOW_KEYS = {"tracking_uri": (str,), "experiment": (str,)}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "a table", float: "a number"}


class SweepConfigError(ValueError):
    """A sweep config file that cannot be used; the message starts with ``file:line: key:``."""


class _Located:
    """Finds the line of a key in the TOML text (tomllib keeps no positions)."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()

    def line(self, table: str, key: str | None = None) -> int:
        current, header = "", None
        for number, line in enumerate(self.lines, 1):
            m = re.match(r"\s*\[\s*([^\]\s]+)\s*\]", line)
            if m:
                current = m.group(1).strip("\"'")
                if current == table:
                    header = number
                continue
            if current == table and key is not None and re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
                return number
        return header or 1

    def error(self, table: str, key: str | None, problem: str) -> SweepConfigError:
        where = f"{table}.{key}" if key else f"[{table}]"
        return SweepConfigError(f"{self.path}:{self.line(table, key)}: {where}: {problem}")


def load_config(path: str | Path) -> dict[str, Any]:
    """The keyword arguments of :func:`~tinygrad_nb.sweep.sweep` a config file asks for, with ``train_fn`` and
    ``space`` resolved. Raises :class:`SweepConfigError` naming file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SweepConfigError(f"{path}: cannot read the sweep config: {e.strerror or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        where = re.search(r"\(at line (\d+), column \d+\)", str(e))  # Python 3.11's error has no .lineno
        line = f":{where.group(1)}" if where else ""
        raise SweepConfigError(f"{path}{line}: not valid TOML: {e}") from None
    at = _Located(path, text)
    unknown = sorted(set(data) - {"sweep", "space", "mlflow"})
    if unknown:
        raise at.error(unknown[0], None, "unknown table; a sweep config has [sweep], [space] and [mlflow]")
    for table in ("sweep", "space"):
        if not isinstance(data.get(table), dict):
            raise SweepConfigError(f"{path}:1: [{table}]: missing; a sweep config needs [sweep] (with train = "
                                   "\"file.py:function\") and [space]")
    options = _check_table(at, "sweep", data["sweep"], _SWEEP_KEYS)
    if "train" not in options:
        raise at.error("sweep", None, "needs train = \"file.py:function\" (or \"module:function\")")
    kwargs: dict[str, Any] = {k: v for k, v in options.items() if k != "train"}
    kwargs["train_fn"] = _resolve_train(at, options["train"], path.parent)
    kwargs["space"] = _space(at, data["space"])
    if "mlflow" in data:
        mlflow = _check_table(at, "mlflow", data["mlflow"], _MLFLOW_KEYS)
        if "tracking_uri" not in mlflow:
            raise at.error("mlflow", None, "needs tracking_uri = \"...\"")
        kwargs["mlflow"] = mlflow
    if "store" in kwargs:
        kwargs["store"] = str((path.parent / kwargs["store"]).resolve())
    return kwargs


def _check_table(at: _Located, table: str, values: Any, allowed: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise at.error(table, None, "must be a table")
    for key, value in values.items():
        if key not in allowed:
            close = [k for k in allowed if k.startswith(key[:3])]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise at.error(table, key, f"unknown key{hint}; known keys: {', '.join(allowed)}")
        types = allowed[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise at.error(table, key, f"expected {wanted}, got {value!r}")
        if table == "sweep" and key in _CHOICES:
            if value not in _CHOICES[key]:
                raise at.error(table, key, f"must be one of {', '.join(map(repr, _CHOICES[key]))}, got {value!r}")
        if key in ("trials", "max_concurrent") and value < 1:
            raise at.error(table, key, f"must be at least 1, got {value}")
    return dict(values)


def _space(at: _Located, table: dict[str, Any]) -> dict[str, Any]:
    space: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            if len(value) != 1 or next(iter(value)) not in DIMENSION_KINDS:
                raise at.error("space", key, f"a table here is a range: one of {', '.join(DIMENSION_KINDS)} "
                               f"(e.g. {{loguniform = [1e-4, 0.1]}}), got {value!r}")
            kind, args = next(iter(value.items()))
            if not isinstance(args, list):
                raise at.error("space", key, f"{kind} needs a list, got {args!r}")
            if kind in ("uniform", "loguniform", "randint") and len(args) != 2:
                raise at.error("space", key, f"{kind} needs [low, high], got {args!r}")
            try:
                space[key] = DIMENSION_KINDS[kind](args)
            except (SpaceError, TypeError, ValueError) as e:
                raise at.error("space", key, str(e)) from None
        elif isinstance(value, list) and not value:
            raise at.error("space", key, "an empty list has nothing to choose from")
        else:
            space[key] = value
    return space


def _resolve_train(at: _Located, spec: str, folder: Path) -> Callable[..., Any]:
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise at.error("sweep", "train", f"expected \"file.py:function\" or \"module:function\", got {spec!r}")
    if target.endswith(".py"):
        file = (folder / target).resolve()
        if not file.is_file():
            raise at.error("sweep", "train", f"no file {file}")
        module_name = f"tinygrad_nb_sweep_{file.stem}"
        module_spec = importlib.util.spec_from_file_location(module_name, file)
        if module_spec is None or module_spec.loader is None:
            raise at.error("sweep", "train", f"cannot load {file}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module  # so worker processes (fork) and pickling find it
        module_spec.loader.exec_module(module)
        try:
            import cloudpickle  # noqa: PLC0415 - Ray's workers cannot import this file: ship the code itself

            cloudpickle.register_pickle_by_value(module)
        except ImportError:
            pass
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise at.error("sweep", "train", f"cannot import {target!r}: {e}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise at.error("sweep", "train", f"{target} has no function {name!r}")
    return fn
