"""Batch inference on Ray Data: kept here for ``from tinygrad_nb.sweep.data import map_dataset``.

The implementation lives in :mod:`tinygrad_nb.runtime.dataset` (it is a runtime feature that needs only the runtime
and Ray, not the sweep driver); use it as ``tg.runtime.map_dataset``.
"""
from __future__ import annotations

from ..runtime.dataset import map_dataset

__all__ = ["map_dataset"]
