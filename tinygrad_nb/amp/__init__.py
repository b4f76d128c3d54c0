"""Mixed precision: ``autocast`` (the op policy in :mod:`.policy`), ``GradScaler`` (dynamic loss scaling) and the
precision-safety check (``check``: each op of a low-precision forward/backward against a float64 replay).

    with tg.autocast("cpu", dtype=tg.bfloat16):
        loss = F.cross_entropy(model(x), y)
    tg.amp.policy()                                # the table: which ops run in 16 bits, float32, widest input
    tg.amp.check(model, (x, y), dtype=tg.float16)  # per-op error, ULPs, overflow/underflow, storage or compute

See docs/amp.md.
"""
from .autocast import autocast, get_autocast_dtype, is_autocast_enabled
from .bounds import bounds_table
from .check import OpPrecision, PrecisionError, PrecisionReport, check, precision
from .grad_scaler import GradScaler
from .policy import op_policy, policy, set_op_policy

__all__ = ["autocast", "get_autocast_dtype", "is_autocast_enabled", "GradScaler", "op_policy", "policy",
           "set_op_policy", "check", "precision", "PrecisionError", "PrecisionReport", "OpPrecision", "bounds_table"]
