"""Serving a runtime session over HTTP under memory and latency limits (starlette + uvicorn: the ``serve`` extra).

    import tinygrad_nb as tg
    sess = tg.runtime.load("model.onnx", max_batch=64)
    server = tg.serve.Server(sess, port=0, latency_budget_ms=50, memory_limit="256MB").start()
    ...                                     # POST server.url + "/v1/predict"
    server.stop()

or ``tinygrad-nb serve model.onnx --port 8000 --max-batch 64 --latency-budget-ms 50 --memory-limit 256MB``.
Batching is opportunistic (take what is queued, never wait when idle); each request has a deadline and the server
refuses with 503 + Retry-After what it cannot finish in time; memory comes from the runtime's plan for the max batch
and is checked against the limit at startup; /metrics is Prometheus text. See docs/serve.md.

Imports the runtime, never the notebook layer.
"""
from __future__ import annotations

from .alerts import AlertMonitor
from .batcher import BatchTimer, Calibration
from .codec import RequestError
from .memory import MemoryBudget, MemoryLimitError, parse_bytes
from .metrics import parse as parse_metrics
from .server import TOKEN_ENV, Server

__all__ = ["AlertMonitor", "BatchTimer", "Calibration", "MemoryBudget", "MemoryLimitError", "RequestError",
           "Server", "TOKEN_ENV", "parse_bytes", "parse_metrics"]
