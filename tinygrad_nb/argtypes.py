"""argparse ``type=`` functions shared by the ``tinygrad-nb`` command and the ``%tg_*`` magics.

A value that does not fit raises :class:`argparse.ArgumentTypeError`, which argparse turns into a usage error that
names the argument (status 2 on the command line, a one-line ``UsageError`` in a notebook).
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _parse(text: str, convert: Callable[[str], float], kind: str) -> float:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {kind} value: {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = int(_parse(text, int, "int"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _parse(text, float, "float")
    if not (0 < value and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    value = _parse(text, float, "float")
    if not (0 <= value < 1):
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value
