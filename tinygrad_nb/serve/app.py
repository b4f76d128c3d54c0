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

``POST /v1/predict`` is plain ASGI (``scope``, ``receive``, ``send``) in front of the starlette app, which answers
everything else (and 405 for other methods on /v1/predict): starlette's middleware stack, router, ``Request``,
``Headers`` and ``Response`` objects cost tens of microseconds of CPU per request on the hottest endpoint. Together
with the one-write transport and no proxy-headers middleware (server.py) this cut the server's CPU per request by
30-50 us of about 190 (small MLP; ``benchmarks/serve_load.py --compare-src``). Statuses, headers, bodies and
messages are starlette's.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .batcher import Item
from .codec import JSON, NPY, SAFETENSORS, RequestError, body_format, decode, encode, reply_format

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("tinygrad_nb.serve")
MEDIA = {JSON: "application/json", NPY: NPY, SAFETENSORS: SAFETENSORS}


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
MEDIA_BYTES = {k: v.encode() for k, v in MEDIA.items()}
RECEIVED_AT = "tgnb.received_at"  # scope["extensions"][RECEIVED_AT]: when the loop read the request (server.py)


class ClientGone(Exception):
    """The client closed the connection before its body arrived."""


def _error(e: RequestError) -> Response:
    headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else None
    if e.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse({"error": e.message}, status_code=e.status, headers=headers)


def _json_bytes(content: Any) -> bytes:
    """JSONResponse's rendering (compact, UTF-8, NaN refused)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


async def _respond(send: Send, status: int, body: bytes, media: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", media)]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond_error(send: Send, e: RequestError) -> None:
    extra = [(b"retry-after", str(e.retry_after).encode())] if e.retry_after is not None else None
    if e.status == 401:
        extra = [(b"www-authenticate", b"Bearer")]
    await _respond(send, e.status, _json_bytes({"error": e.message}), MEDIA_BYTES[JSON], extra)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name; the first of repeated names wins (as starlette's ``get``)."""
    out: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name not in out:
            out[name] = value
    return out


def build_app(server: Server) -> ASGIApp:
    metrics, monitor, checker = server.metrics, server.monitor, server.checker
    token = server.token.encode() if server.token else None
    clock = time.perf_counter

    def authorize(request: Request) -> None:
        check_token(request.headers.get("authorization", ""))

    def check_token(given: str) -> None:
        if token is None:
            return
        scheme, _, value = given.partition(" ")
        # compare_digest takes time independent of where the strings differ (not of their lengths)
        if not (scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token)):
            raise RequestError(401, "missing or wrong bearer token (send Authorization: Bearer <token>)",
                               "unauthorized")

    async def read_body(headers: dict[bytes, bytes], receive: Receive) -> bytes:
        limit = server.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            text = declared.decode("latin-1")
            if not text.isdigit():
                raise RequestError(400, f"Content-Length {text!r} is not a number")
            if int(text) > limit:
                raise RequestError(413, f"the body has {int(text)} bytes; this server accepts at most {limit} "
                                        f"bytes (--max-body-bytes)", "too_large")
        chunks, size, more = [], 0, True
        try:
            async with asyncio.timeout(server.body_timeout_s):
                while more:
                    message = await receive()
                    if message["type"] != "http.request":  # http.disconnect
                        raise ClientGone
                    chunk = message.get("body", b"")
                    more = message.get("more_body", False)
                    size += len(chunk)
                    if size > limit:
                        raise RequestError(413, f"the body has more than {limit} bytes, the most this server "
                                                f"accepts (--max-body-bytes)", "too_large")
                    if chunk:
                        chunks.append(chunk)
        except TimeoutError:
            raise RequestError(408, f"the body did not arrive within {server.body_timeout_s} s ({size} bytes "
                                    "received)", "timeout") from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # (one chunk: no copy)

    def deadline_of(headers: dict[bytes, bytes], arrival: float) -> float:
        raw = headers.get(b"x-deadline-ms")
        if raw is None:
            return arrival + server.budget_s if server.budget_s else math.inf
        header = raw.decode("latin-1")
        try:
            ms = float(header)
        except ValueError:
            ms = math.nan
        if not (ms > 0 and math.isfinite(ms)):
            raise RequestError(400, f"X-Deadline-Ms must be a positive number of milliseconds, got {header!r}")
        return arrival + ms / 1e3

    def text(headers: dict[bytes, bytes], name: bytes) -> str | None:
        value = headers.get(name)
        return None if value is None else value.decode("latin-1")

    async def predict(scope: Scope, receive: Receive, send: Send) -> None:
        """POST /v1/predict, in plain ASGI (see the module's docstring)."""
        now = clock()
        # when the event loop read the request (server.py's protocol stamps it): time spent waiting for the loop
        # before this handler ran counts against the deadline too
        arrival = min(scope.get("extensions", {}).get(RECEIVED_AT, now), now)
        metrics.in_flight += 1
        server.received += 1
        status, reason, samples = 500, "", 0
        item: Item | None = None
        try:
            headers = _headers(scope)
            check_token(text(headers, b"authorization") or "")
            fmt = body_format(text(headers, b"content-type"))
            deadline = deadline_of(headers, arrival)
            body = await read_body(headers, receive)
            arrays, samples = decode(body, fmt, checker)
            if server.batcher is not None:
                loop = asyncio.get_running_loop()
                future = loop.create_future()
                item = Item(arrays, samples, arrival, deadline, future, loop)
                # alone: no other request is in the server, parsed or running (uvicorn's set of request tasks, to
                # which every request read from a socket is added before any of them runs). An idle batcher then
                # runs it now instead of handing it over; in_flight would not do: it counts handlers that started,
                # and on the event loop a request that runs now finishes before the next one read with it starts
                server.batcher.submit(item, alone=len(server.request_tasks) <= 1)
                outputs = await future  # (already settled when it ran now: no suspension)
            else:
                outputs = server.run_inline(arrays, samples, arrival, deadline)
            out_fmt = reply_format(text(headers, b"accept"), fmt)
            answer = encode(outputs, out_fmt)
            status = 200
            await _respond(send, 200, answer, MEDIA_BYTES[out_fmt])
        except RequestError as e:
            status, reason = e.status, e.reason
            await _respond_error(send, e)
        except ClientGone:
            status, reason = 499, "aborted"  # nobody to answer (499: nginx's "client closed request")
            await _respond(send, 400, b"", b"text/plain")
        except Exception as e:  # noqa: BLE001 - answer, log, and keep serving
            log.exception("serve: unexpected error in /v1/predict")
            await _respond(send, 500, _json_bytes({"error": f"internal error: {type(e).__name__}: {e}"}),
                           MEDIA_BYTES[JSON])
        finally:
            latency = clock() - arrival
            metrics.in_flight -= 1
            metrics.requests.inc(str(status))
            if status == 200:
                server.answered += 1
                metrics.latency.observe(latency)
                monitor.record(latency, False)
                if item is not None:  # how far off the admission estimate was (see batcher.Calibration)
                    server.batcher.calibration.observe(item.estimated, latency)
            else:
                if reason:
                    metrics.rejections.inc(reason)
                if status == 503:
                    monitor.record(latency, True)
            if server.on_request:
                server.call_hook("on_request", {"status": status, "reason": reason, "samples": samples,
                                                "latency_s": latency})

    async def predict_other_method(request: Request) -> Response:  # (never called: POST goes to predict)
        raise AssertionError("POST /v1/predict is answered by the plain ASGI path")

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

    # /v1/predict stays in starlette's routes so that another method on it gets starlette's 405
    routes = [Route("/v1/predict", predict_other_method, methods=["POST"]),
              Route("/v1/model", model, methods=["GET"]),
              Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"]),
              Route("/metrics", metrics_endpoint, methods=["GET"])]
    starlette = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/predict":
            await predict(scope, receive, send)
        else:
            await starlette(scope, receive, send)

    app.starlette = starlette  # type: ignore[attr-defined]
    return app
