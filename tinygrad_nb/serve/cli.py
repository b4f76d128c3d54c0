"""``tinygrad-nb serve model.onnx [--port 8000 --max-batch 64 --latency-budget-ms 50 --memory-limit 256MB]`` and
``tinygrad-nb serve --stats http://127.0.0.1:8000`` (a live line per second from the server's /metrics).

Logs (alerts, startup, shutdown) are JSON lines on stderr. SIGTERM or Ctrl-C stops accepting, answers every request
already received and exits 0.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.request
from typing import Any

from .batcher import BATCH_SIZES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="an ONNX file (not with --stats)")
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at startup)")
    parser.add_argument("--max-batch", type=int, default=64, help="most samples per model call and per request")
    parser.add_argument("--max-wait-ms", type=float, default=0.0,
                        help="0: opportunistic batching (never wait when idle); >0: wait for a batch to fill")
    parser.add_argument("--no-batching", action="store_true", help="run each request alone on the event loop")
    parser.add_argument("--batch-thread", nargs="?", const="on", default="auto", choices=("auto", "on", "off"),
                        help="on: run batches on a thread of their own (overlaps the model with HTTP parsing on a "
                             "second core); off: on the event loop; auto (default): the thread when this process may "
                             "use two or more cores and --reuse-port is not set")
    parser.add_argument("--batch-sizes", default="pow2", choices=BATCH_SIZES,
                        help="pow2 (default): a batch takes the largest power of two of the samples queued (or "
                             "--max-batch) and leaves the rest for the next call; any: all that is queued")
    parser.add_argument("--split-batches", action="store_true",
                        help="time every batch size at startup and run a batch as the calls that were cheapest then "
                             "(how a batch is computed then depends on those timings: not reproducible across runs)")
    parser.add_argument("--latency-budget-ms", type=float, default=50.0,
                        help="default deadline per request (X-Deadline-Ms overrides)")
    parser.add_argument("--memory-limit", default=None, help="refuse to start above this many planned bytes "
                                                             "(e.g. 256MB, 1GiB)")
    parser.add_argument("--max-queue", type=int, default=None, help="most samples waiting (default 4 x max batch)")
    parser.add_argument("--max-body-bytes", type=int, default=None)
    parser.add_argument("--token", default=None,
                        help="require Authorization: Bearer TOKEN (default: $TINYGRAD_NB_SERVE_TOKEN)")
    parser.add_argument("--reuse-port", action="store_true",
                        help="SO_REUSEPORT: run one process per core on the same port")
    parser.add_argument("--name", default=None)
    parser.add_argument("--model-version", default=None)
    parser.add_argument("--stats", metavar="URL", default=None, help="show a running server's metrics live")
    parser.add_argument("--interval", type=float, default=1.0, help="--stats: seconds between lines")
    parser.add_argument("--count", type=int, default=0, help="--stats: stop after this many lines (0: never)")


def main(args: argparse.Namespace) -> int:
    if args.stats:
        return stats(args.stats, args.interval, args.count, args.token)
    if not args.model:
        print("tinygrad-nb serve: give a model file (or --stats URL)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from ..runtime import InputError, ModelFormatError, load  # noqa: PLC0415
    from . import MemoryLimitError, Server  # noqa: PLC0415

    try:
        sess = load(args.model, max_batch=args.max_batch)
        server = Server(sess, host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                        batching=not args.no_batching, batch_thread={"auto": None, "on": True, "off": False}[args.batch_thread],
                        split_batches=args.split_batches, batch_sizes=args.batch_sizes,
                        latency_budget_ms=args.latency_budget_ms,
                        memory_limit=args.memory_limit, max_queue=args.max_queue, token=args.token,
                        max_body_bytes=args.max_body_bytes, name=args.name, version=args.model_version,
                        reuse_port=args.reuse_port)
    except (MemoryLimitError, ModelFormatError, InputError, OSError, ValueError) as e:
        print(f"tinygrad-nb serve: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"event": "serving", "url": server.url, "model": server.name, "max_batch": server.max_batch,
                      "planned_bytes": server.memory.total, "memory_limit": server.memory_limit}),
          file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


def _get(url: str, token: str | None) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - the user's own URL
        return response.read().decode()


def _quantile(buckets: dict[str, float], before: dict[str, float], q: float) -> float:
    """The q-quantile (bucket upper bound) of the observations between two scrapes of one histogram."""
    edges = sorted((float(k.replace("+Inf", "inf")), v - before.get(k, 0.0)) for k, v in buckets.items())
    total = edges[-1][1] if edges else 0.0
    if total <= 0:
        return 0.0
    for bound, cumulative in edges:
        if cumulative >= q * total:
            return bound
    return float("inf")


def stats(url: str, interval: float, count: int, token: str | None) -> int:
    """One line per interval: request rate, p50/p99 latency, rejections, mean batch, queue, RSS vs planned."""
    from .metrics import parse  # noqa: PLC0415

    url = url.rstrip("/")
    previous: dict[str, Any] | None = None
    lines = 0
    try:
        while True:
            try:
                now = parse(_get(url + "/metrics", token)), time.monotonic()
            except OSError as e:
                print(f"tinygrad-nb serve --stats: cannot read {url}/metrics: {e}", file=sys.stderr)
                return 1
            if previous is not None:
                (m, t), (p, t0) = now, previous
                dt = max(t - t0, 1e-9)
                done = sum(m["tgnb_requests_total"].values()) - sum(p.get("tgnb_requests_total", {}).values())
                lat, lat0 = m["tgnb_request_latency_seconds_bucket"], p["tgnb_request_latency_seconds_bucket"]
                refused = sum(m["tgnb_rejections_total"].values()) - sum(p["tgnb_rejections_total"].values())
                batches = m["tgnb_batch_size_samples_count"][""] - p["tgnb_batch_size_samples_count"][""]
                samples = m["tgnb_batch_size_samples_sum"][""] - p["tgnb_batch_size_samples_sum"][""]
                print(f"{done / dt:8.1f} req/s  p50 {_quantile(lat, lat0, 0.5) * 1e3:7.2f} ms  p99 "
                      f"{_quantile(lat, lat0, 0.99) * 1e3:7.2f} ms  refused {int(refused):5d}  mean batch "
                      f"{samples / batches if batches else 0.0:5.1f}  queue {int(m['tgnb_queue_samples']['']):4d}  "
                      f"rss {m['tgnb_resident_memory_bytes'][''] / 2**20:7.1f} MiB  planned "
                      f"{m['tgnb_planned_memory_bytes'][''] / 2**20:6.1f} MiB"
                      f"{'  ALERT' if m['tgnb_alert_active'][''] else ''}", flush=True)
                lines += 1
                if count and lines >= count:
                    return 0
            previous = now
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
