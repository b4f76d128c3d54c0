"""The HTTP endpoints (a starlette app; uvicorn runs it).

    POST /v1/predict   inputs in, outputs out (JSON, .npy or safetensors; see codec.py)
    GET  /v1/model     name, version, content hash, inputs and outputs with shapes, limits, planned memory
    GET  /healthz      200 while the process serves
    GET  /readyz       200 once warmed up; 503 while starting or draining
    GET  /metrics      Prometheus text (metrics.py)

Every refusal is JSON ``{"error": message}`` with a 4xx status (503 + ``Retry-After`` for load shedding); an
unexpected exception is still answered (500, logged), never a dropped connection. With a token, every endpoint but
/healthz and /readyz needs ``Authorization: Bearer <token>``, compared in constant time. No endpoint reads a file or
a path named by the client.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .batcher import Item
from .codec import JSON, NPY, SAFETENSORS, RequestError, body_format, decode, encode, reply_format

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("tinygrad_nb.serve")
MEDIA = {JSON: "application/json", NPY: NPY, SAFETENSORS: SAFETENSORS}


def _error(e: RequestError) -> Response:
    headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else None
    if e.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse({"error": e.message}, status_code=e.status, headers=headers)


def build_app(server: Server) -> Starlette:
    metrics, monitor, checker = server.metrics, server.monitor, server.checker
    token = server.token.encode() if server.token else None
    clock = time.perf_counter

    def authorize(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        # compare_digest takes time independent of where the strings differ (not of their lengths)
        if not (scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token)):
            raise RequestError(401, "missing or wrong bearer token (send Authorization: Bearer <token>)",
                               "unauthorized")

    async def read_body(request: Request) -> bytes:
        limit = server.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise RequestError(400, f"Content-Length {declared!r} is not a number")
            if int(declared) > limit:
                raise RequestError(413, f"the body has {int(declared)} bytes; this server accepts at most {limit} "
                                        f"bytes (--max-body-bytes)", "too_large")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(server.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise RequestError(413, f"the body has more than {limit} bytes, the most this server "
                                                f"accepts (--max-body-bytes)", "too_large")
                    chunks.append(chunk)
        except TimeoutError:
            raise RequestError(408, f"the body did not arrive within {server.body_timeout_s} s ({size} bytes "
                                    "received)", "timeout") from None
        return b"".join(chunks)

    def deadline_of(request: Request, arrival: float) -> float:
        header = request.headers.get("x-deadline-ms")
        if header is None:
            return arrival + server.budget_s if server.budget_s else math.inf
        try:
            ms = float(header)
        except ValueError:
            ms = math.nan
        if not (ms > 0 and math.isfinite(ms)):
            raise RequestError(400, f"X-Deadline-Ms must be a positive number of milliseconds, got {header!r}")
        return arrival + ms / 1e3

    async def predict(request: Request) -> Response:
        arrival = clock()
        metrics.in_flight += 1
        server.received += 1
        status, reason, samples = 500, "", 0
        try:
            authorize(request)
            fmt = body_format(request.headers.get("content-type"))
            deadline = deadline_of(request, arrival)
            body = await read_body(request)
            arrays, samples = decode(body, fmt, checker)
            if server.batcher is not None:
                loop = asyncio.get_running_loop()
                future = loop.create_future()
                server.batcher.submit(Item(arrays, samples, arrival, deadline, future, loop))
                outputs = await future
            else:
                outputs = server.run_inline(arrays, samples, arrival, deadline)
            out_fmt = reply_format(request.headers.get("accept"), fmt)
            response = Response(encode(outputs, out_fmt), media_type=MEDIA[out_fmt])
            status = 200
            return response
        except RequestError as e:
            status, reason = e.status, e.reason
            return _error(e)
        except ClientDisconnect:
            status, reason = 499, "aborted"  # nobody to answer (499: nginx's "client closed request")
            return Response(status_code=400)
        except Exception as e:  # noqa: BLE001 - answer, log, and keep serving
            log.exception("serve: unexpected error in /v1/predict")
            return JSONResponse({"error": f"internal error: {type(e).__name__}: {e}"}, status_code=500)
        finally:
            latency = clock() - arrival
            metrics.in_flight -= 1
            metrics.requests.inc(str(status))
            if status == 200:
                server.answered += 1
                metrics.latency.observe(latency)
                monitor.record(latency, False)
            else:
                if reason:
                    metrics.rejections.inc(reason)
                if status == 503:
                    monitor.record(latency, True)
            if server.on_request:
                server.call_hook("on_request", {"status": status, "reason": reason, "samples": samples,
                                                "latency_s": latency})

    async def model(request: Request) -> Response:
        try:
            authorize(request)
        except RequestError as e:
            metrics.rejections.inc(e.reason)
            return _error(e)
        return JSONResponse(server.describe())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if server.ready and not server.draining:
            return JSONResponse({"ready": True})
        why = "draining (shutting down)" if server.draining else "starting (warming up)"
        return JSONResponse({"ready": False, "reason": why}, status_code=503)

    async def metrics_endpoint(request: Request) -> Response:
        try:
            authorize(request)
        except RequestError as e:
            metrics.rejections.inc(e.reason)
            return _error(e)
        monitor.check()
        return PlainTextResponse(server.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def not_found(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 404)
        return JSONResponse({"error": f"{request.method} {request.url.path}: "
                                      f"{'no such endpoint' if code == 404 else 'method not allowed'}"},
                            status_code=code)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        async def watch() -> None:  # so an alert clears when traffic stops, and the window does not grow
            while True:
                await asyncio.sleep(monitor.check_every_s)
                monitor.check()

        task = asyncio.get_running_loop().create_task(watch())
        try:
            yield
        finally:
            task.cancel()
            if server.batcher is not None:  # uvicorn drained the connections first: nothing is waiting now
                await asyncio.get_running_loop().run_in_executor(None, server.batcher.stop)
            log.info(json.dumps({"event": "stopped", "received": server.received, "answered": server.answered}))

    routes = [Route("/v1/predict", predict, methods=["POST"]), Route("/v1/model", model, methods=["GET"]),
              Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"]),
              Route("/metrics", metrics_endpoint, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found})
