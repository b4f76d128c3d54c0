"""``Server``: a runtime session behind HTTP, with a memory plan, a latency budget and alerts.

    import tinygrad_nb as tg
    sess = tg.runtime.load("model.onnx", max_batch=64)
    server = tg.serve.Server(sess, port=0, latency_budget_ms=50, memory_limit="256MB").start()  # background
    server.url                     # http://127.0.0.1:<port>
    server.stop()                  # drains in-flight requests

``serve_forever()`` runs in the calling thread instead (uvicorn handles SIGINT/SIGTERM there: it stops accepting,
answers every request already received, then the batcher finishes its queue).
"""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import threading
import time
from typing import Any

import numpy as np

from . import memory
from .alerts import AlertMonitor, Hook
from .batcher import BATCH_SIZES, Batcher, BatchTimer, LoopBatcher, plan_chunks
from .codec import InputChecker, RequestError
from .metrics import Metrics

log = logging.getLogger("tinygrad_nb.serve")
TOKEN_ENV = "TINYGRAD_NB_SERVE_TOKEN"



def default_batch_thread(reuse_port: bool = False) -> bool:
    """The runner ``Server(batch_thread=None)`` picks: a thread of its own when this process may run on two or more
    cores (its CPU affinity, which a container or ``taskset`` narrows) and is not one of several workers sharing a
    port, else the event loop. Measured on two cores (docs/serve.md): with a core free the thread gave 1.33-1.74x the
    throughput of no batching on the wide MLP at 32 clients against 1.24-1.49x on the loop; with one worker per core
    there is no free core, and every hand-over to the thread waits for the scheduler."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores >= 2 and not reuse_port

class Server:
    """Serve ``session`` (a :class:`tinygrad_nb.runtime.Session`) over HTTP.

    Args:
        host, port: where to listen (127.0.0.1 by default; port 0 picks a free port, see ``port`` after init).
        max_batch: the most samples per model call, and per request (413 above it); memory is planned for it.
        max_wait_ms: 0 = opportunistic batching (never wait when idle); > 0 = wait that long for a batch to fill.
        batching: False runs each request on the event loop, alone (the no-batching baseline).
        split_batches: opt-in. Time one call of every batch size at startup and run a batch as the calls that
            were cheapest then (batcher.plan_chunks): how a batch is cut into model calls then depends on timings
            taken once at startup on a machine that may have been busy, so two runs of one server may compute the
            same batch differently (and so round differently). False (the default): always one call per batch.
        batch_sizes: "pow2" (the default): a batch takes the largest power of two of the samples queued (or
            max_batch), leaving the rest for the next call: fastest per sample in BLAS, and the event loop keeps
            answering and parsing while the model runs (batcher's "Preferred sizes"). "any": all that is queued.
        batch_thread: True: batches run on a thread of their own (batcher.Batcher), so the model's BLAS calls
            (which release the GIL) overlap the event loop's HTTP parsing on a second core. False: batches run on
            the event loop (batcher.LoopBatcher): HTTP and the model take turns on one core, and nothing waits for
            another thread to be scheduled. None (the default): the thread when this process may run on two or
            more cores and is not one of several workers sharing a port (``reuse_port``), else the event loop
            (:func:`default_batch_thread`; docs/serve.md measures both). Either way a request alone in an idle
            server runs at once on the event loop (batcher.Batcher.submit's ``alone``).
        latency_budget_ms: the default deadline of a request (``X-Deadline-Ms`` overrides it); None = no deadline.
        memory_limit: bytes or a size ("256MB"); refusing to start (MemoryLimitError) when the plan is larger.
        max_queue: the most samples waiting (503 queue_full above it); default 4 x max_batch.
        token: a bearer token every endpoint but /healthz and /readyz requires (default: $TINYGRAD_NB_SERVE_TOKEN).
        max_body_bytes: the largest request body (default: room for max_batch samples as JSON); body_timeout_s: how
            long a body may take to arrive (408 after).
        alert_window_s, rejection_threshold, alert_min_requests: see :mod:`.alerts`.
        on_budget_exceeded, on_recovered, on_request, on_batch: hooks, each called with one dict.
        name, version: shown by /v1/model (default: the file's name, the model's ``model_version`` metadata or 1).
        reuse_port: SO_REUSEPORT, so several server processes share one port (one per core; see docs/serve.md).
    """

    def __init__(self, session: Any, *, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 64,
                 max_wait_ms: float = 0.0, batching: bool = True, batch_thread: bool | None = None,
                 split_batches: bool = False, batch_sizes: str = "pow2", latency_budget_ms: float | None = 50.0,
                 memory_limit: int | str | None = None, max_queue: int | None = None, token: str | None = None,
                 max_body_bytes: int | None = None, body_timeout_s: float = 10.0, alert_window_s: float = 10.0,
                 rejection_threshold: float = 0.05, alert_min_requests: int = 20,
                 on_budget_exceeded: Hook | None = None, on_recovered: Hook | None = None,
                 on_request: Hook | None = None, on_batch: Hook | None = None, name: str | None = None,
                 version: str | None = None, log_level: str = "warning", reuse_port: bool = False):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_batch > session.max_batch:
            raise ValueError(f"max_batch {max_batch} is larger than the session's max_batch {session.max_batch} "
                             f"(load it with tg.runtime.load(path, max_batch={max_batch}))")
        if batch_sizes not in BATCH_SIZES:
            raise ValueError(f"batch_sizes must be one of {BATCH_SIZES}, got {batch_sizes!r}")
        if max_wait_ms < 0 or (latency_budget_ms is not None and latency_budget_ms <= 0):
            raise ValueError("max_wait_ms must be >= 0 and latency_budget_ms > 0 (or None)")
        fixed = [s.name for s, batched in zip(session.inputs, session.batched) if not batched]
        if fixed:
            raise ValueError(f"every input needs a batch dimension; {fixed} have a fixed first dimension (export "
                             "with dynamic_batch=True)")
        self.session, self.host, self.max_batch = session, host, int(max_batch)
        self.max_wait_s = max_wait_ms / 1e3
        self.budget_s = latency_budget_ms / 1e3 if latency_budget_ms is not None else None
        self.max_queue = int(max_queue) if max_queue is not None else 4 * self.max_batch
        if self.max_queue < self.max_batch:
            raise ValueError(f"max_queue ({self.max_queue} samples) must hold at least one max batch "
                             f"({self.max_batch})")
        self.memory_limit = memory.parse_bytes(memory_limit) if memory_limit is not None else None
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.body_timeout_s = body_timeout_s
        self.name = name or os.path.splitext(os.path.basename(session.source))[0] or "model"
        self.version = version or session.metadata.get("model_version") or "1"
        self.on_request, self.on_batch = on_request, on_batch
        self.log_level = log_level

        # memory: first from the plan alone (no arena allocated yet), then with what warm-up really bound
        self.memory = memory.plan(session, self.max_batch, self.max_queue)
        self.memory.check(self.memory_limit, "from the plan, before warm-up")
        self.ready = self.draining = False
        self.received = self.answered = 0  # requests that reached /v1/predict; of those, answered 200
        self.in_flight_at_signal: int | None = None
        self._last_inline_end = 0.0
        self.output_specs = self._warm_up()
        out_bytes = sum(int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
                        for _, dtype, shape in self.output_specs)
        self.memory = memory.plan(session, self.max_batch, self.max_queue, out_bytes)
        self.memory.check(self.memory_limit, "after warm-up")
        per_sample = memory.sample_bytes(session.inputs)
        # JSON spends up to ~25 bytes per number; a body beyond a full batch of them is refused unread
        self.max_body_bytes = int(max_body_bytes) if max_body_bytes else 64 * 1024 + self.max_batch * max(
            per_sample // min(s.dtype.itemsize for s in session.inputs), 1) * 25

        self.metrics = Metrics(self.max_batch)
        self.timer = BatchTimer()
        self.monitor = AlertMonitor(self.budget_s or math.inf, window_s=alert_window_s,
                                    rejection_threshold=rejection_threshold, min_requests=alert_min_requests,
                                    on_budget_exceeded=on_budget_exceeded, on_recovered=on_recovered)
        self.checker = InputChecker(session.inputs, self.max_batch)
        self.batch_thread = default_batch_thread(reuse_port) if batch_thread is None else bool(batch_thread)
        runner = Batcher if self.batch_thread else LoopBatcher
        self.batcher = runner(session, max_batch=self.max_batch, max_wait_s=self.max_wait_s,
                              max_queue_samples=self.max_queue, metrics=self.metrics, timer=self.timer,
                              on_batch=on_batch, batch_sizes=batch_sizes) if batching else None
        self.call_seconds: list[float] = []  # [0, seconds of a call of 1 sample, of 2, ...] when splitting
        if self.batcher is not None and split_batches:
            self.call_seconds = self._time_calls()
            self.batcher.chunks = plan_chunks(self.call_seconds)
        self.hash = session.metadata.get("tinygrad_nb.weights_hash") or _weights_hash(session)

        from .app import build_app  # noqa: PLC0415 - starlette only when a server is built

        self.app = build_app(self)
        self._socket = _bind(host, port, reuse_port)
        self.port = self._socket.getsockname()[1]
        self._uvicorn: Any = None
        self._thread: threading.Thread | None = None
        # uvicorn's tasks of the requests read and not yet answered (all endpoints; see app.py's ``alone``)
        self.request_tasks: set[Any] = set()
        self.ready = True

    # -- model ------------------------------------------------------------------------------------------------------
    def _warm_up(self) -> list[tuple[str, str, tuple[Any, ...]]]:
        """Bind the program of every batch size 1..max_batch now (so serving allocates no plan memory later);
        return the outputs' (name, dtype, shape) with the batch dimension symbolic."""
        specs = self.session.inputs
        result: dict[str, np.ndarray] = {}
        for n in range(1, self.max_batch + 1):
            result = self.session.run([np.zeros((n, *s.shape[1:]), s.dtype) for s in specs])
            self.session.run([np.zeros((n, *s.shape[1:]), s.dtype) for s in specs], copy=False)
        return [(name, str(a.dtype), ("batch", *a.shape[1:])) for name, a in result.items()]

    def _time_calls(self, repeats: int = 3) -> list[float]:
        """The fastest of ``repeats`` planned calls at each batch size 1..max_batch (zeros as inputs)."""
        specs, run, clock = self.session.inputs, self.session.run, time.perf_counter
        seconds = [0.0]
        for n in range(1, self.max_batch + 1):
            arrays = [np.zeros((n, *s.shape[1:]), s.dtype) for s in specs]
            inputs = arrays[0] if len(arrays) == 1 else arrays
            best = math.inf
            for _ in range(repeats):
                start = clock()
                run(inputs, copy=False)
                best = min(best, clock() - start)
            seconds.append(best)
        return seconds

    def run_inline(self, arrays: list[np.ndarray], n: int, arrival: float, deadline: float) -> dict[str, np.ndarray]:
        """No batching: run one request now, on the event loop (refused if its estimated time passes its
        deadline)."""
        start = time.perf_counter()
        estimate = self.timer.estimate(n)
        if start + estimate > deadline and start - self._last_inline_end < 1.0:  # (else a probe: see Batcher)
            raise RequestError(503, f"cannot answer within the deadline: the model takes about {estimate * 1e3:.1f}"
                                    f" ms and the deadline is {(deadline - start) * 1e3:.1f} ms away", "deadline",
                               retry_after=1)
        self.metrics.queue_wait.observe(start - arrival)
        try:
            outputs = self.session.run(arrays[0] if len(arrays) == 1 else arrays)
        except Exception as e:  # noqa: BLE001 - the model's error on these values
            raise RequestError(422, f"the model failed on this request's values: {e}", "model_error") from None
        self._last_inline_end = end = time.perf_counter()
        seconds = end - start
        self.timer.add(n, seconds)
        self.metrics.batch_size.observe(n)
        self.metrics.batch_seconds.observe(seconds)
        if self.on_batch:
            self.call_hook("on_batch", {"samples": n, "requests": 1, "seconds": seconds})
        return outputs

    def call_hook(self, name: str, info: dict[str, Any]) -> None:
        try:
            getattr(self, name)(info)
        except Exception:  # noqa: BLE001 - a monitoring hook must not break serving
            log.exception("serve: the %s hook raised", name)

    # -- descriptions -------------------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What GET /v1/model answers."""
        return {
            "name": self.name, "version": self.version, "hash": self.hash,
            "inputs": [{"name": s.name, "dtype": str(s.dtype), "shape": ["batch", *s.shape[1:]]}
                       for s in self.session.inputs],
            "outputs": [{"name": n, "dtype": d, "shape": list(shape)} for n, d, shape in self.output_specs],
            "max_batch": self.max_batch, "max_queue": self.max_queue, "max_wait_ms": self.max_wait_s * 1e3,
            "batching": self.batcher is not None,
            "latency_budget_ms": self.budget_s * 1e3 if self.budget_s else None,
            "memory": {"planned_bytes": self.memory.parts(), "limit_bytes": self.memory_limit},
        }

    def metrics_text(self) -> str:
        gauges = {
            "tgnb_queue_samples": ("Samples waiting for the model.",
                                   self.batcher.queued_samples if self.batcher else 0),
            "tgnb_planned_memory_bytes": ("Planned bytes (weights, arenas, staging, queue).", self.memory.total),
            "tgnb_memory_limit_bytes": ("The memory limit (0: none).", self.memory_limit or 0),
            "tgnb_latency_budget_seconds": ("The default deadline of a request.", self.budget_s or 0.0),
            "tgnb_window_p99_seconds": ("p99 latency over the alert window.", self.monitor.last["p99_ms"] / 1e3),
            "tgnb_window_rejection_rate": ("Fraction refused (503) over the alert window.",
                                           self.monitor.last["rejection_rate"]),
            "tgnb_alert_active": ("1 while the latency budget is exceeded.", float(self.monitor.exceeded)),
            "tgnb_admission_calibration": ("Admission scales its estimate by this (measured / estimated time to "
                                           "answer, 90th percentile).",
                                           self.batcher.calibration.factor if self.batcher else 1.0),
        }
        return self.metrics.render(gauges)

    def stats(self) -> dict[str, Any]:
        """A snapshot for notebooks: counts, window p99, rejections, batches, memory."""
        m = self.metrics
        return {"requests": dict(m.requests.values), "rejections": {k: v for k, v in m.rejections.values.items()
                                                                    if v},
                "window": dict(self.monitor.last), "alert": self.monitor.exceeded,
                "batches": m.batch_size.count,
                "mean_batch": round(m.batch_size.sum / m.batch_size.count, 2) if m.batch_size.count else 0.0,
                "planned_bytes": self.memory.total}

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- running ----------------------------------------------------------------------------------------------------
    def _make_uvicorn(self) -> Any:
        import uvicorn  # noqa: PLC0415

        owner = self

        class _Uvicorn(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:  # SIGTERM/SIGINT: stop being ready, then drain
                owner.draining = True
                owner.in_flight_at_signal = owner.metrics.in_flight
                log.info(json.dumps({"event": "draining", "in_flight": owner.metrics.in_flight}))
                super().handle_exit(sig, frame)

        # proxy_headers off: nothing here reads the client's address, and uvicorn's X-Forwarded-For middleware is
        # one more ASGI layer per request; no "server: uvicorn" header (one header less to check and write per
        # answer, and the software's name is nobody's business)
        config = uvicorn.Config(self.app, log_level=self.log_level, access_log=False, lifespan="on",
                                timeout_keep_alive=5, proxy_headers=False, server_header=False,
                                http=_http_protocol())
        server = _Uvicorn(config)
        self.request_tasks = server.server_state.tasks
        return server

    def start(self, timeout: float = 30.0) -> Server:
        """Serve in a background thread (e.g. from a notebook); returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"the server is already running at {self.url}")
        if self.batcher is not None:
            self.batcher.start()
        self._uvicorn = self._make_uvicorn()
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._socket]},
                                        name="tinygrad_nb-serve", daemon=True)
        self._thread.start()
        until = time.monotonic() + timeout
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > until:
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, answer what was received, stop the batcher (graceful, as on SIGTERM)."""
        if self._thread is None:
            return
        self.draining = True
        self._uvicorn.should_exit = True
        self._thread.join(timeout)
        self._thread = None
        self._socket.close()

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (then drain and return)."""
        if self.batcher is not None:
            self.batcher.start()
        self._uvicorn = self._make_uvicorn()
        # uvicorn re-raises the signal it caught once it has drained, with the handler it found installed: a
        # no-op for SIGTERM here, so a drained server returns (exit status 0) instead of dying of the signal
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, lambda sig, frame: None) if main else None
        try:
            self._uvicorn.run(sockets=[self._socket])
        except KeyboardInterrupt:  # SIGINT, re-raised the same way after draining
            pass
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
            self._socket.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._thread is not None else "stopped"
        return (f"Server({self.name} v{self.version}, {self.url}, max_batch={self.max_batch}, "
                f"{'batching' if self.batcher else 'no batching'}, {state})")


class _HeadHeldTransport:
    """A transport that holds a response's head (uvicorn writes the status line and headers, then the body, as two
    writes) until the next write, and sends both with one ``writelines``: one ``writev`` system call per answer
    instead of two (checked with ``strace -c``), and one TCP segment for the client to wake up for. A head with no
    write after it in the same loop iteration (a streamed answer) leaves with ``call_soon``; ``close`` sends it
    first; ``abort`` drops it."""

    __slots__ = ("_transport", "_held", "_loop")

    def __init__(self, transport: Any, loop: Any):
        self._transport, self._held, self._loop = transport, None, loop

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif data[:5] == b"HTTP/" and data[-4:] == b"\r\n\r\n":  # a head alone (uvicorn's response.start)
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        self._flush()
        self._transport.writelines(lines)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # everything else is the real transport's
        return getattr(self._transport, name)


def _http_protocol() -> Any:
    """uvicorn's httptools protocol with the head held back (``_HeadHeldTransport``) and each request stamped with
    the time the event loop read it (``scope["extensions"]["tgnb.received_at"]``: the deadline counts from there,
    not from when the handler got its turn); "auto" (uvicorn's choice) without httptools."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415
    except ImportError:
        return "auto"
    from .app import RECEIVED_AT  # noqa: PLC0415

    clock = time.perf_counter

    class Protocol(HttpToolsProtocol):  # type: ignore[misc]
        received_at = 0.0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(_HeadHeldTransport(transport, self.loop))

        def data_received(self, data: bytes) -> None:
            self.received_at = clock()
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope.setdefault("extensions", {})[RECEIVED_AT] = self.received_at  # (keeps uvicorn's own)

    return Protocol


def _bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it a
    # response's header and body writes wait out the client's delayed ACK (40 ms per request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # several worker processes on one port; the kernel spreads connections between them
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _weights_hash(session: Any) -> str:
    from ..export.writer import weights_hash  # noqa: PLC0415

    return weights_hash(session.consts)
