"""tinygrad_nb.serve: a real uvicorn server on 127.0.0.1 (a free port) per test, started and stopped here.

Round trips (JSON, .npy, safetensors) equal the runtime's outputs bit for bit; batches form under concurrency and
count samples; a bad item fails only its own request; deadline refusals (503 + Retry-After) fire the alert hook and
it clears on recovery; memory-limit refusal names both numbers; 1,000 malformed requests get 4xx and the server keeps
serving; SIGTERM under load loses no received request; bearer-token auth. Timing never decides a test: slow models
are gated by events, and loops are bounded."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import json
import logging
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from safetensors.numpy import load as st_load, save as st_save  # noqa: E402

import tinygrad_nb as tg  # noqa: E402
from tinygrad_nb import nn  # noqa: E402
from tinygrad_nb.export import onnx as export_onnx  # noqa: E402
from tinygrad_nb.runtime import load  # noqa: E402
from tinygrad_nb.serve import BatchTimer, MemoryLimitError, Server, parse_bytes, parse_metrics  # noqa: E402
from tinygrad_nb.serve import cli as serve_cli  # noqa: E402

NPY, ST = "application/x-npy", "application/x-safetensors"
ROOT = Path(__file__).resolve().parents[1]


# -- models ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlp_bytes() -> bytes:
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 10))
    return export_onnx(model, tg.randn(4, 20), None, validate=False, verbose=False).model.SerializeToString()


def two_io_model() -> bytes:
    """Inputs x (batch, 4) float32 and idx (batch, 3) int64; outputs emb = table[idx] (batch, 3, 4) and sq = x * x.
    An index >= 10 makes the Gather fail: a request whose values the model rejects."""
    table = np.arange(40, dtype=np.float32).reshape(10, 4) / 8
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["emb"], axis=0), helper.make_node("Mul", ["x", "x"], ["sq"])],
        "two_io",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", 3])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 3, 4]),
         helper.make_tensor_value_info("sq", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(table, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


class Gated:
    """A session whose calls wait for ``gate`` (and sleep ``delay``): the test-only slow model. ``entered`` is set
    when a call starts; ``sizes`` lists each call's batch size."""

    def __init__(self, inner: Any):
        self.inner, self.delay = inner, 0.0
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()
        self.sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def run(self, inputs: Any, copy: bool = True) -> Any:
        self.entered.set()
        assert self.gate.wait(30)
        if self.delay:
            time.sleep(self.delay)
        first = inputs if isinstance(inputs, np.ndarray) else inputs[0]
        self.sizes.append(len(first))
        return self.inner.run(inputs, copy)


def http_client(base_url: str, timeout: float = 30) -> Any:
    """httpx writes headers and body separately; without TCP_NODELAY the body waits out the server's delayed ACK
    (40 ms per request)."""
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(base_url=base_url, timeout=timeout, transport=transport)


def wait_for(condition: Any, what: str, tries: int = 3000) -> None:
    """Poll ``condition`` (bounded: at most ``tries`` x 10 ms)."""
    for _ in range(tries):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def serving() -> Iterator[Any]:
    """``start(session, **kw)`` -> (server, client); everything started is stopped at the end."""
    started: list[tuple[Server, Any]] = []

    def start(session: Any, **kw: Any) -> tuple[Server, Any]:
        # split_batches times every batch size at startup, so which calls a batch becomes depends on this machine's
        # timings: tests that count batch sizes run without it (the planner has its own tests)
        kw.setdefault("split_batches", False)
        server = Server(session, port=0, **kw).start()
        client = http_client(server.url, timeout=30)
        started.append((server, client))
        return server, client

    yield start
    for server, client in started:
        client.close()
        server.stop()


def npy(a: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, a)
    return buffer.getvalue()


def rows(n: int, seed: int = 0, width: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32)


# -- round trips ----------------------------------------------------------------------------------------------------
def test_predict_round_trips_equal_the_runtime(mlp_bytes: bytes, serving: Any) -> None:
    server, client = serving(load_model_from(mlp_bytes))
    reference = load(mlp_bytes)
    x = rows(5)
    want = reference.run(x)["output"]
    r = client.post("/v1/predict", json={"inputs": {"input": x.tolist()}})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    got = np.array(r.json()["outputs"]["output"], dtype=np.float32)
    assert got.tobytes() == want.tobytes()  # JSON keeps float32 bits: the shortest repr of the exact double
    r = client.post("/v1/predict", json={"inputs": x[:1].tolist()})  # one-input model: the array alone
    one = reference.run(x[:1])["output"]  # (BLAS may round a batch of 1 differently from a batch of 5)
    assert np.array(r.json()["outputs"]["output"], dtype=np.float32).tobytes() == one.tobytes()
    r = client.post("/v1/predict", content=npy(x), headers={"content-type": NPY})
    assert r.status_code == 200 and r.headers["content-type"] == NPY
    assert np.load(io.BytesIO(r.content), allow_pickle=False).tobytes() == want.tobytes()
    r = client.post("/v1/predict", content=st_save({"input": x}), headers={"content-type": ST})
    assert r.headers["content-type"] == ST and st_load(r.content)["output"].tobytes() == want.tobytes()
    r = client.post("/v1/predict", content=npy(x), headers={"content-type": NPY, "accept": "application/json"})
    assert np.array(r.json()["outputs"]["output"], dtype=np.float32).tobytes() == want.tobytes()


def load_model_from(data: bytes, max_batch: int = 64) -> Any:
    return load(data, max_batch=max_batch)


def test_two_inputs_two_outputs_by_name(serving: Any) -> None:
    data = two_io_model()
    server, client = serving(load(data), max_batch=8)
    x = rows(3, width=4)
    idx = np.array([[0, 1, 2], [9, 8, 7], [3, 3, 3]], dtype=np.int64)
    want = load(data).run({"x": x, "idx": idx})
    r = client.post("/v1/predict", content=st_save({"x": x, "idx": idx}), headers={"content-type": ST})
    got = st_load(r.content)
    assert sorted(got) == ["emb", "sq"]
    assert all(got[k].tobytes() == want[k].tobytes() for k in want)
    r = client.post("/v1/predict", json={"inputs": {"x": x.tolist(), "idx": idx.tolist()}})
    assert np.array(r.json()["outputs"]["sq"], dtype=np.float32).tobytes() == want["sq"].tobytes()
    r = client.post("/v1/predict", content=npy(x), headers={"content-type": NPY})
    assert r.status_code == 400 and "the model has 2 inputs ['x', 'idx']" in r.json()["error"]
    r = client.post("/v1/predict", json={"inputs": {"x": x.tolist()}})
    assert r.status_code == 400 and r.json()["error"] == "missing input 'idx': expected shape (batch, 3) int64"
    r = client.post("/v1/predict", json={"inputs": {"x": x.tolist(), "idx": (idx + 0.5).tolist()}})
    assert r.status_code == 400 and r.json()["error"] == ("input 'idx': expected dtype int64 with shape (batch, 3) "
                                                          "int64, got float64 of shape (3, 3)")


def test_model_health_and_ready_endpoints(mlp_bytes: bytes, serving: Any) -> None:
    sess = load_model_from(mlp_bytes)
    server, client = serving(sess, max_batch=16, name="digits", version="7")
    info = client.get("/v1/model").json()
    assert info["name"] == "digits" and info["version"] == "7"
    assert info["hash"] == sess.metadata["tinygrad_nb.weights_hash"] and info["hash"].startswith("xxh3-128:")
    assert info["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 20]}]
    assert info["outputs"] == [{"name": "output", "dtype": "float32", "shape": ["batch", 10]}]
    assert info["max_batch"] == 16 and info["latency_budget_ms"] == 50.0
    assert info["memory"]["planned_bytes"]["total"] == server.memory.total
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    server.draining = True
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json() == {"ready": False, "reason": "draining (shutting down)"}
    server.draining = False
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json() == {"error": "GET /v1/nothing: no such endpoint"}
    assert client.get("/v1/predict").status_code == 405


# -- metrics --------------------------------------------------------------------------------------------------------
def test_metrics_are_prometheus_text_with_the_right_counts(mlp_bytes: bytes, serving: Any) -> None:
    server, client = serving(load_model_from(mlp_bytes), max_batch=16)
    for n in (1, 2, 3):
        assert client.post("/v1/predict", content=npy(rows(n)), headers={"content-type": NPY}).status_code == 200
    assert client.post("/v1/predict", json={"inputs": [[1.0]]}).status_code == 400
    assert client.post("/v1/predict", content=npy(rows(17)), headers={"content-type": NPY}).status_code == 413
    text = client.get("/metrics").text
    m = parse_metrics(text)
    assert m["tgnb_requests_total"] == {"200": 3.0, "400": 1.0, "413": 1.0}
    assert m["tgnb_rejections_total"]["invalid"] == 1 and m["tgnb_rejections_total"]["too_large"] == 1
    assert m["tgnb_batch_size_samples_count"][""] == 3 and m["tgnb_batch_size_samples_sum"][""] == 6
    assert m["tgnb_batch_size_samples_bucket"] == {"1.0": 1, "2.0": 2, "4.0": 3, "8.0": 3, "16.0": 3, "+Inf": 3}
    assert m["tgnb_request_latency_seconds_count"][""] == 3 and m["tgnb_queue_wait_seconds_count"][""] == 3
    assert m["tgnb_planned_memory_bytes"][""] == server.memory.total
    assert m["tgnb_resident_memory_bytes"][""] > server.memory.total
    assert m["tgnb_alert_active"][""] == 0
    parser = pytest.importorskip("prometheus_client.parser")
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert families["tgnb_request_latency_seconds"].type == "histogram"
    assert {s.labels["status"]: s.value for s in families["tgnb_requests"].samples} == {"200": 3, "400": 1, "413": 1}


# -- batching -------------------------------------------------------------------------------------------------------
def post_in_thread(client_url: str, body: bytes, results: dict[int, Any], key: int,
                   headers: dict[str, str] | None = None) -> threading.Thread:
    def go() -> None:
        with http_client(client_url, timeout=30) as c:
            results[key] = c.post("/v1/predict", content=body, headers=headers or {"content-type": NPY})
    t = threading.Thread(target=go)
    t.start()
    return t


@contextlib.contextmanager
def not_alone(server: Server) -> Iterator[None]:
    """Hold one more request in the server (its headers sent, its body never): a request that arrives meanwhile is
    not alone, so it goes through the batcher's queue (an alone one on an idle batcher runs at once on the event
    loop: Batcher.submit), and a gated model call holds the batch thread, not the event loop."""
    before = server.metrics.in_flight
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: {NPY}\r\nContent-Length: 100\r\n\r\n"
                     .encode())
        wait_for(lambda: server.metrics.in_flight > before, "the held request")
        yield
    finally:
        sock.close()


def hold_first_then_queue(server: Server, sess: Any, bodies: list[bytes], samples: int,
                          headers: dict[str, str] | None = None) -> dict[int, Any]:
    """Send ``bodies[0]`` and hold it inside the gated model; send the others one at a time, each queued (``samples``
    samples apiece) before the next, so the queue's order is the list's; then open the gate. The responses, by
    index. Another request is held in the server meanwhile (``not_alone``), so none of them runs at once."""
    with not_alone(server):
        sess.sizes.clear()
        sess.gate.clear()
        sess.entered.clear()
        results: dict[int, Any] = {}
        threads = [post_in_thread(server.url, bodies[0], results, 0, headers)]
        assert sess.entered.wait(30)  # request 0 is in the model (held there by the gate)
        for k in range(1, len(bodies)):
            threads.append(post_in_thread(server.url, bodies[k], results, k, headers))
            wait_for(lambda k=k: server.batcher.queued_samples == k * samples, f"request {k} queued")
        sess.gate.set()
        for t in threads:
            t.join(30)
    return results


# 7 requests of 3 samples queued behind a first one, max_batch 16. "any": the limit counts samples: 5 requests (15
# samples; a 6th would make 18 > 16), then the other 2 (6). "pow2": 16 of the 21 queued samples at most (15), then
# of the 6 left 4 at most (one request), then the last one.
SIZES_AFTER_THE_GATE = {"any": [3, 15, 6], "pow2": [3, 15, 3, 3]}


@pytest.mark.parametrize("batch_sizes", ["any", "pow2"])
def test_batches_form_under_concurrency_and_count_samples(mlp_bytes: bytes, serving: Any, batch_sizes: str) -> None:
    sess = Gated(load_model_from(mlp_bytes))
    batches: list[dict[str, Any]] = []
    server, client = serving(sess, max_batch=16, on_batch=batches.append, latency_budget_ms=None, batch_thread=True,
                             batch_sizes=batch_sizes)
    inputs = {k: rows(3, seed=k) for k in range(8)}
    results = hold_first_then_queue(server, sess, [npy(inputs[k]) for k in range(8)], samples=3)
    assert sess.sizes == SIZES_AFTER_THE_GATE[batch_sizes]
    assert [b["samples"] for b in batches] == sess.sizes and [b["requests"] for b in batches] == [n // 3
                                                                                                  for n in sess.sizes]
    reference = load(mlp_bytes)
    for k in range(8):
        assert results[k].status_code == 200
        got = np.load(io.BytesIO(results[k].content))
        np.testing.assert_allclose(got, reference.run(inputs[k])["output"], rtol=1e-6, atol=1e-6)


def http_exchange(sock: socket.socket, request: bytes) -> tuple[int, bytes]:
    """Send one request on a raw keep-alive connection; (status, body) of its response."""
    sock.sendall(request)
    return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head[9:12]), body


def predict_request(body: bytes) -> bytes:
    return (f"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: {NPY}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


@pytest.mark.parametrize("batch_sizes", ["any", "pow2"])
def test_batches_form_on_the_event_loop_too(mlp_bytes: bytes, serving: Any, batch_sizes: str) -> None:
    """The event-loop runner batches too: what arrived while a batch ran forms the next batch."""
    sess = Gated(load_model_from(mlp_bytes))
    server, client = serving(sess, max_batch=16, latency_budget_ms=None, batch_thread=False, batch_sizes=batch_sizes)
    sess.sizes.clear()
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(7)]
    try:
        for s in socks:  # connections accepted and set up before the loop is held
            assert http_exchange(s, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200
        sess.gate.clear()
        sess.entered.clear()
        results: dict[int, Any] = {}
        first = post_in_thread(server.url, npy(rows(3, seed=0)), results, 0)
        assert sess.entered.wait(30)  # request 0 holds the event loop inside the model
        inputs = {k: rows(3, seed=k) for k in range(1, 8)}
        for k, s in enumerate(socks, 1):
            s.sendall(predict_request(npy(inputs[k])))  # in the server's socket buffers now
        sess.gate.set()
        first.join(30)
        answers = {k: read_response(s) for k, s in enumerate(socks, 1)}
    finally:
        for s in socks:
            s.close()
    assert sess.sizes == SIZES_AFTER_THE_GATE[batch_sizes]
    reference = load(mlp_bytes)
    for k, (status, body) in answers.items():
        assert status == 200
        np.testing.assert_allclose(np.load(io.BytesIO(body)), reference.run(inputs[k])["output"], rtol=1e-6,
                                   atol=1e-6)


@pytest.mark.parametrize("runner", ["LoopBatcher", "Batcher"])
def test_an_alone_request_on_an_idle_batcher_runs_at_once(mlp_bytes: bytes, runner: str) -> None:
    """submit(alone=True) on an idle batcher runs the item before it returns (in the caller's thread, the event
    loop's), with the bits of a plain run; not alone, or with something queued, the item waits in the queue."""
    from tinygrad_nb.serve import batcher as batcher_module
    from tinygrad_nb.serve.metrics import Metrics

    sess = load_model_from(mlp_bytes, max_batch=8)
    b = getattr(batcher_module, runner)(sess, max_batch=8, max_wait_s=0.0, max_queue_samples=32, metrics=Metrics(8),
                                        timer=batcher_module.BatchTimer())  # (the thread is never started)
    loop = asyncio.new_event_loop()
    try:
        def item(x: np.ndarray) -> Any:
            now = time.perf_counter()
            return batcher_module.Item([x], len(x), now, math.inf, loop.create_future(), loop)

        x = rows(3)
        first = item(x)
        b.submit(first, alone=True)
        assert first.future.done() and b.batches == 1 and not b.queue
        assert first.future.result()["output"].tobytes() == load(mlp_bytes).run(x)["output"].tobytes()
        second, third = item(rows(2, seed=1)), item(rows(1, seed=2))
        b.submit(second, alone=False)  # another request is in the server: queued, not run
        b.submit(third, alone=True)  # alone, but the batcher is not idle (something is queued): queued too
        assert not second.future.done() and not third.future.done() and b.queued_samples == 3 and b.batches == 1
    finally:
        loop.close()


def test_an_alone_request_runs_on_the_event_loop_and_others_on_the_batch_thread(mlp_bytes: bytes,
                                                                                serving: Any) -> None:
    threads: list[str] = []
    server, client = serving(load_model_from(mlp_bytes), max_batch=8, latency_budget_ms=None, batch_thread=True,
                             on_batch=lambda info: threads.append(threading.current_thread().name))
    x = rows(2)
    want = load(mlp_bytes).run(x)["output"].tobytes()
    r = client.post("/v1/predict", content=npy(x), headers={"content-type": NPY})
    assert r.status_code == 200 and np.load(io.BytesIO(r.content)).tobytes() == want
    with not_alone(server):
        r = client.post("/v1/predict", content=npy(x), headers={"content-type": NPY})
    assert r.status_code == 200 and np.load(io.BytesIO(r.content)).tobytes() == want
    assert threads == ["tinygrad_nb-serve", "tinygrad_nb-serve-batcher"]


def test_a_sample_gets_the_same_bits_in_any_batch_of_up_to_8() -> None:
    """Up to 8 rows, a Linear layer (Gemm with transB) with a large weight (the runtime's Gemm.large_weight, 65536
    elements) runs one matrix-vector product per row (Gemm.row_products_max), so a sample's answer does not depend on
    which batch of up to 8 it landed in. From 9 to 256 rows it runs W @ x.T into a scratch buffer (faster in
    OpenBLAS than x @ W.T): the same values to rounding, and the first (reference) call and the planned ones agree
    bit for bit. Small weights keep one gemm (the eager model's bits)."""
    from tinygrad_nb.runtime.kernels import Gemm

    tg.manual_seed(1)
    model = nn.Sequential(nn.Linear(300, 257), nn.ReLU(), nn.Linear(257, 300),
                          nn.LogSoftmax(1))  # (a reduction: sensitive to the memory order of its input)
    data = export_onnx(model, tg.randn(4, 300), None, validate=False, verbose=False).model.SerializeToString()
    sess = load(data, max_batch=64)
    x = np.random.default_rng(3).standard_normal((64, 300)).astype(np.float32)
    alone = [sess.run(x[i:i + 1])["output"][0].tobytes() for i in range(64)]
    assert (Gemm.row_products_max, Gemm.transposed_max, Gemm.large_weight) == (8, 256, 65536)
    for b in range(2, 9):
        for _ in range(2):  # the first call (reference kernels) and the planned one
            got = sess.run(x[:b])["output"]
            assert [row.tobytes() for row in got] == alone[:b], f"batch {b}"
    want = np.stack([np.frombuffer(a, np.float32) for a in alone])
    for b in (9, 16, 17, 64):
        first, planned = sess.run(x[:b])["output"], sess.run(x[:b])["output"]
        assert first.tobytes() == planned.tobytes(), f"batch {b}"
        np.testing.assert_allclose(planned, want[:b], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_thread", [False, True])
def test_fixed_wait_fills_the_batch(mlp_bytes: bytes, serving: Any, batch_thread: bool) -> None:
    sess = Gated(load_model_from(mlp_bytes))
    server, client = serving(sess, max_batch=8, max_wait_ms=20_000, latency_budget_ms=None, batch_thread=batch_thread)
    sess.sizes.clear()
    results: dict[int, Any] = {}
    threads = [post_in_thread(server.url, npy(rows(2, seed=k)), results, k) for k in range(4)]
    for t in threads:
        t.join(30)
    assert sess.sizes == [8]  # it waited (20 s at most) until 8 samples were queued, then ran at once
    assert all(r.status_code == 200 for r in results.values())


def test_a_bad_item_fails_only_its_own_request(serving: Any) -> None:
    data = two_io_model()
    sess = Gated(load(data))
    # (the gate: no model time; "any": the three queued requests run as one batch)
    server, client = serving(sess, max_batch=16, latency_budget_ms=None, batch_thread=True, batch_sizes="any")
    x = rows(2, width=4)
    good = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    bad = np.array([[1, 2, 3], [4, 12, 6]], dtype=np.int64)  # 12 is out of range for the 10-row table
    results = hold_first_then_queue(server, sess, [st_save({"x": x, "idx": idx}) for idx in (good, good, bad, good)],
                                    samples=2, headers={"content-type": ST})
    assert sess.sizes[:2] == [2, 6]  # the three queued requests ran as one batch first, which failed
    want = load(data).run({"x": x, "idx": good})
    for k in (0, 1, 3):
        assert results[k].status_code == 200
        assert st_load(results[k].content)["emb"].tobytes() == want["emb"].tobytes()
    assert results[2].status_code == 422
    assert "index 12 is out of range for axis 0 of size 10" in results[2].json()["error"]
    assert client.post("/v1/predict", content=st_save({"x": x, "idx": good}),
                       headers={"content-type": ST}).status_code == 200


# -- deadlines and alerts -------------------------------------------------------------------------------------------
def test_deadline_refusal_fires_the_alert_and_recovery_clears_it(mlp_bytes: bytes, serving: Any,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    sess = Gated(load_model_from(mlp_bytes))
    exceeded: list[dict[str, Any]] = []
    recovered: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    caplog.set_level(logging.WARNING, logger="tinygrad_nb.serve")
    server, client = serving(sess, max_batch=8, latency_budget_ms=200, alert_window_s=2.0, alert_min_requests=4,
                             rejection_threshold=0.2, on_budget_exceeded=exceeded.append,
                             on_recovered=recovered.append, on_request=requests.append)
    server.batcher.probe_interval_s = 3600.0  # no probe while the model is slow
    sess.delay = 1.0  # the injected slow model: 1 s per call against a 200 ms budget
    body = npy(rows(1))
    first = client.post("/v1/predict", content=body, headers={"content-type": NPY})
    assert first.status_code == 200  # nothing measured yet: admitted, and late
    refused = [client.post("/v1/predict", content=body, headers={"content-type": NPY}) for _ in range(6)]
    for r in refused:
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"].startswith("cannot answer within the deadline: about 1")  # ~1000 ms of work
    # a longer deadline of its own is admitted
    assert client.post("/v1/predict", content=body, headers={"content-type": NPY,
                                                             "x-deadline-ms": "5000"}).status_code == 200
    wait_for(lambda: exceeded, "the budget-exceeded hook")
    assert len(exceeded) == 1 and exceeded[0]["event"] == "latency_budget_exceeded"
    assert exceeded[0]["budget_ms"] == 200.0 and exceeded[0]["reason"] in ("p99", "rejections")
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tinygrad_nb.serve"]
    assert logged[0] == exceeded[0]  # the structured log line is the hook's record
    assert parse_metrics(client.get("/metrics").text)["tgnb_alert_active"][""] == 1
    assert parse_metrics(client.get("/metrics").text)["tgnb_rejections_total"]["deadline"] == 6
    wait_for(lambda: len(requests) >= 8, "the on_request hook")  # (it runs once each answer has gone out)
    assert [q["status"] for q in requests[:8]] == [200] + [503] * 6 + [200]
    # recovery: the model is fast again; an idle server probes, the estimate drops, the window clears
    sess.delay = 0.0
    server.batcher.probe_interval_s = 0.0
    for _ in range(500):
        client.post("/v1/predict", content=body, headers={"content-type": NPY})
        if recovered:
            break
        time.sleep(0.01)
    assert len(recovered) == 1 and recovered[0]["event"] == "latency_budget_recovered"
    assert client.post("/v1/predict", content=body, headers={"content-type": NPY}).status_code == 200
    assert parse_metrics(client.get("/metrics").text)["tgnb_alert_active"][""] == 0


def test_a_full_queue_refuses_with_503(mlp_bytes: bytes, serving: Any) -> None:
    sess = Gated(load_model_from(mlp_bytes))
    server, client = serving(sess, max_batch=4, max_queue=4, latency_budget_ms=None, batch_thread=True)
    with not_alone(server):
        sess.gate.clear()
        sess.entered.clear()
        results: dict[int, Any] = {}
        threads = [post_in_thread(server.url, npy(rows(4)), results, 0)]
        assert sess.entered.wait(30)
        threads.append(post_in_thread(server.url, npy(rows(3)), results, 1))
        wait_for(lambda: server.batcher.queued_samples == 3, "a queued request")
        r = client.post("/v1/predict", content=npy(rows(2)), headers={"content-type": NPY})
        assert r.status_code == 503 and "Retry-After" in r.headers
        assert r.json()["error"] == "the queue is full (3 samples waiting, at most 4)"
        sess.gate.set()
        for t in threads:
            t.join(30)
    assert results[0].status_code == results[1].status_code == 200


# -- memory ---------------------------------------------------------------------------------------------------------
def test_memory_plan_and_limit_refusal(mlp_bytes: bytes, tmp_path: Path) -> None:
    sess = load_model_from(mlp_bytes)
    with pytest.raises(MemoryLimitError) as info:
        Server(sess, port=0, max_batch=32, memory_limit=10_000)
    budget = __import__("tinygrad_nb.serve.memory", fromlist=["plan"]).plan(load_model_from(mlp_bytes), 32, 128)
    message = str(info.value)
    assert message.startswith(f"planned memory {budget.total} bytes (")
    assert "exceeds --memory-limit 10000 bytes (9.8 KiB) (from the plan, before warm-up;" in message
    # the arenas are the runtime's plans for the buckets 1, 2, 4, 8, 16, 32
    fresh = load_model_from(mlp_bytes)
    report = fresh.memory_plan(batch_sizes=[1, 2, 4, 8, 16, 32])
    assert budget.arenas == sum(p.arena_bytes for p in report.plans)
    assert budget.staging == 32 * 20 * 4 and budget.queue == 128 * 20 * 4
    assert budget.weights == sum(a.nbytes for a in fresh.consts.values())
    server = Server(load_model_from(mlp_bytes), port=0, max_batch=32, memory_limit="1MB")
    assert server.memory.total <= 1_000_000 and server.memory.queue == 128 * (20 + 10) * 4
    assert server.memory.outside > 0  # the bound programs' batch-broadcast biases, counted after warm-up
    server._socket.close()
    # the command line says the same and exits 1
    model = tmp_path / "m.onnx"
    model.write_bytes(mlp_bytes)
    proc = subprocess.run([sys.executable, "-m", "tinygrad_nb.cli", "serve", str(model), "--port", "0",
                           "--max-batch", "32", "--memory-limit", "10KB"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 1
    m = re.match(r"tinygrad-nb serve: planned memory (\d+) bytes \(.*\) for --max-batch 32 exceeds --memory-limit "
                 r"10000 bytes \(9.8 KiB\) \(from the plan, before warm-up; weights (\d+), arenas (\d+), "
                 r"outside_arenas (\d+), staging (\d+), queue (\d+)\)", proc.stderr)
    assert m is not None, proc.stderr
    total, *parts = map(int, m.groups())
    assert total == sum(parts) and parts[:2] == [budget.weights, budget.arenas]


def test_parse_bytes() -> None:
    assert parse_bytes("256MB") == 256_000_000 and parse_bytes("1.5GiB") == 1610612736 and parse_bytes("4096") == 4096
    with pytest.raises(ValueError, match="cannot read a memory size from '12 parsecs'"):
        parse_bytes("12 parsecs")


def test_max_batch_beyond_the_session_is_refused(mlp_bytes: bytes) -> None:
    with pytest.raises(ValueError, match=r"max_batch 256 is larger than the session's max_batch 64 "
                                         r"\(load it with tg.runtime.load\(path, max_batch=256\)\)"):
        Server(load_model_from(mlp_bytes), port=0, max_batch=256)


# -- bad input ------------------------------------------------------------------------------------------------------
def malformed(rng: random.Random, k: int) -> tuple[bytes, dict[str, str]]:
    """The k-th malformed request (cycling through the kinds, each with random content)."""
    kind = k % 16
    good = rows(2, seed=k)
    j = {"content-type": "application/json"}
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))), j
    if kind == 1:
        text = json.dumps({"inputs": good.tolist()})
        return text[:rng.randrange(1, len(text) - 1)].encode(), j
    if kind == 2:
        return json.dumps({"inputs": rows(2, width=rng.choice([1, 19, 21, 40])).tolist()}).encode(), j
    if kind == 3:
        return json.dumps({"inputs": [[1.0] * 20, [1.0] * rng.randrange(1, 19)]}).encode(), j  # ragged
    if kind == 4:
        return json.dumps({"inputs": [["a"] * 20]}).encode(), j
    if kind == 5:
        return json.dumps({"inputs": {"nope": good.tolist()}}).encode(), j
    if kind == 6:
        return json.dumps(rng.choice([[], {}, None, 3, "x", {"input": 1}, {"inputs": None}])).encode(), j
    if kind == 7:
        return ("[" * rng.randrange(1000, 100000)).encode(), j
    if kind == 8:
        return npy(good.astype(rng.choice([np.float64, np.int32, np.float16]))), {"content-type": NPY}
    if kind == 9:
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        return buffer.getvalue(), {"content-type": NPY}
    if kind == 10:
        data = npy(good)
        return data[:rng.randrange(0, len(data))], {"content-type": NPY}
    if kind == 11:
        data = st_save({"input": good})
        size = int.from_bytes(data[:8], "little")
        if rng.random() < 0.5:  # an absurd header length
            return rng.randrange(len(data), 2**63).to_bytes(8, "little") + data[8:], {"content-type": ST}
        cut = rng.randrange(0, size - 1)  # a header cut short (its JSON never closes)
        return len(data[8:8 + cut]).to_bytes(8, "little") + data[8:8 + cut], {"content-type": ST}
    if kind == 12:
        return st_save({"input": rows(2, width=21)}), {"content-type": ST}
    if kind == 13:
        return json.dumps({"inputs": good.tolist()}).encode(), {"content-type": rng.choice(
            ["text/plain", "image/png", "application/x-www-form-urlencoded", "application/xml"])}
    if kind == 14:
        return json.dumps({"inputs": good.tolist()}).encode(), {**j, "x-deadline-ms": rng.choice(
            ["-5", "0", "abc", "nan", "inf", ""])}
    return json.dumps({"inputs": np.zeros((0, 20)).tolist() if rng.random() < 0.5 else
                       rows(65).tolist()}).encode(), j


def test_a_thousand_malformed_requests_get_4xx_and_serving_goes_on(mlp_bytes: bytes, serving: Any) -> None:
    server, client = serving(load_model_from(mlp_bytes), max_batch=64)
    rng = random.Random(1234)
    statuses: dict[int, int] = {}
    for k in range(1000):
        body, headers = malformed(rng, k)
        r = client.post("/v1/predict", content=body, headers=headers)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert 400 <= r.status_code < 500, (k, r.status_code, r.text)
        assert isinstance(r.json()["error"], str) and r.json()["error"]
    assert set(statuses) == {400, 413, 415}
    x = rows(3)
    r = client.post("/v1/predict", content=npy(x), headers={"content-type": NPY})
    assert np.load(io.BytesIO(r.content)).tobytes() == load(mlp_bytes).run(x)["output"].tobytes()
    m = parse_metrics(client.get("/metrics").text)
    assert sum(v for k, v in m["tgnb_requests_total"].items() if k.startswith("4")) == 1000


def test_bad_input_messages_name_the_input_and_shape(mlp_bytes: bytes, serving: Any) -> None:
    server, client = serving(load_model_from(mlp_bytes), max_batch=8)
    cases = [
        ({"inputs": [[1.0, 2.0]]}, "input 'input': expected shape (batch, 20) float32, got (1, 2)"),
        ({"inputs": {"x": []}}, "unknown input 'x'; the model's inputs are ['input']"),
        ({"inputs": [[1.0] * 20, [1.0]]}, "input 'input': not a rectangular array of numbers (expected shape "
                                          "(batch, 20) float32)"),
        ({"inputs": [["a"] * 20]}, "input 'input': expected numbers of shape (batch, 20) float32, got str32 array "
                                   "of shape (1, 20)"),
        ({"inputs": []}, "input 'input': expected shape (batch, 20) float32, got (0,)"),
        ({"inputs": rows(9).tolist()}, "the request holds 9 samples; this server's memory plan holds at most 8 "
                                       "samples per batch (--max-batch 8): split it"),
    ]
    for body, message in cases:
        r = client.post("/v1/predict", json=body)
        assert r.json() == {"error": message}
    r = client.post("/v1/predict", content=npy(rows(2).astype(np.float64)), headers={"content-type": NPY})
    assert r.json()["error"] == ("input 'input': expected dtype float32 with shape (batch, 20) float32, got float64 "
                                 "of shape (2, 20)")
    r = client.post("/v1/predict", content=b"x" * (server.max_body_bytes + 1))
    assert r.status_code == 413 and r.json()["error"] == (f"the body has {server.max_body_bytes + 1} bytes; this "
                                                          f"server accepts at most {server.max_body_bytes} bytes "
                                                          "(--max-body-bytes)")


def raw_request(port: int, head: bytes, body: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(head + body)
    return s


def test_slow_and_aborted_clients(mlp_bytes: bytes, serving: Any) -> None:
    server, client = serving(load_model_from(mlp_bytes), max_batch=8, body_timeout_s=0.3)
    body = npy(rows(2))
    head = (f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {NPY}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
    slow = raw_request(server.port, head, body[:10])  # then nothing: the body never completes
    status, answer = read_response(slow)
    slow.close()
    assert status == 408
    assert json.loads(answer) == {"error": "the body did not arrive within 0.3 s (10 bytes received)"}
    aborted = raw_request(server.port, head, body[:10])
    aborted.close()  # goes away mid-body
    wait_for(lambda: parse_metrics(client.get("/metrics").text)["tgnb_rejections_total"]["aborted"] == 1,
             "the aborted request to be counted")
    r = client.post("/v1/predict", content=body, headers={"content-type": NPY})
    assert r.status_code == 200


# -- security -------------------------------------------------------------------------------------------------------
def test_bearer_token(mlp_bytes: bytes, serving: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINYGRAD_NB_SERVE_TOKEN", "s3cret-token")
    server, client = serving(load_model_from(mlp_bytes), max_batch=8)
    assert server.host == "127.0.0.1"
    body, h = npy(rows(1)), {"content-type": NPY}
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic s3cret-token"},
                    {"authorization": "Bearer s3cret-token2"}):
        r = client.post("/v1/predict", content=body, headers={**h, **headers})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"error": "missing or wrong bearer token (send Authorization: Bearer <token>)"}
    assert client.get("/metrics").status_code == 401 and client.get("/v1/model").status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    ok = {"authorization": "Bearer s3cret-token"}
    assert client.post("/v1/predict", content=body, headers={**h, **ok}).status_code == 200
    m = parse_metrics(client.get("/metrics", headers=ok).text)
    assert m["tgnb_rejections_total"]["unauthorized"] == 6


# -- processes: the command line, SIGTERM ---------------------------------------------------------------------------
SLOW_SERVER = """
import json, sys, time
sys.path.insert(0, {root!r})
import tinygrad_nb as tg
sess = tg.runtime.load({model!r}, max_batch=16)
class Slow:  # the test-only delay: 20 ms per model call
    def __init__(self, inner): self.inner = inner
    def __getattr__(self, name): return getattr(self.inner, name)
    def run(self, inputs, copy=True):
        time.sleep(0.02)
        return self.inner.run(inputs, copy)
server = tg.serve.Server(Slow(sess), port=0, max_batch=16, latency_budget_ms=None)
print(json.dumps({{"url": server.url}}), flush=True)
server.serve_forever()
print(json.dumps({{"received": server.received, "answered": server.answered,
                  "in_flight_at_signal": server.in_flight_at_signal}}), flush=True)
"""


def test_sigterm_under_load_loses_no_received_request(mlp_bytes: bytes, tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(mlp_bytes)
    script = tmp_path / "server.py"
    script.write_text(SLOW_SERVER.format(root=str(ROOT), model=str(model)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = json.loads(proc.stdout.readline())["url"]
        outcomes: list[list[int]] = [[] for _ in range(6)]

        def client(k: int) -> None:
            with http_client(url, timeout=30) as c:
                for i in range(2000):  # bounded; ends at the first connection the server refuses or closes
                    try:
                        r = c.post("/v1/predict", content=npy(rows(1 + i % 3, seed=k)), headers={"content-type": NPY})
                    except httpx.TransportError:
                        return
                    outcomes[k].append(r.status_code)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        with http_client(url, timeout=30) as probe:
            wait_for(lambda: sum(map(len, outcomes)) >= 30 and parse_metrics(
                probe.get("/metrics").text)["tgnb_in_flight_requests"][""] >= 2, "load with requests in flight")
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    statuses = [s for o in outcomes for s in o]
    assert final["in_flight_at_signal"] >= 1
    # every request that reached the app was answered, and the clients got every answer
    assert final["received"] == final["answered"] == len(statuses)
    assert set(statuses) == {200}


def test_cli_serve_and_stats(mlp_bytes: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(mlp_bytes)
    proc = subprocess.Popen([sys.executable, "-m", "tinygrad_nb.cli", "serve", str(model), "--port", "0",
                             "--max-batch", "8", "--max-wait-ms", "1", "--latency-budget-ms", "500",
                             "--memory-limit", "64MB", "--name", "mlp", "--model-version", "3"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        started = json.loads(proc.stderr.readline())
        assert started["event"] == "serving" and started["memory_limit"] == 64_000_000
        url = started["url"]
        assert url.startswith("http://127.0.0.1:")
        with http_client(url, timeout=30) as c:
            assert c.get("/v1/model").json()["version"] == "3"
            x = rows(2)
            r = c.post("/v1/predict", content=npy(x), headers={"content-type": NPY})
            assert np.load(io.BytesIO(r.content)).tobytes() == load(mlp_bytes).run(x)["output"].tobytes()
        args = _parse(["--stats", url, "--interval", "0.05", "--count", "2"])
        assert serve_cli.main(args) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2 and all(" req/s  p50 " in line and " MiB  planned " in line for line in lines)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _parse(argv: list[str]) -> Any:
    import argparse

    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_no_batching_mode_and_hooks(mlp_bytes: bytes, serving: Any) -> None:
    batches: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    server, client = serving(load_model_from(mlp_bytes), max_batch=8, batching=False, on_batch=batches.append,
                             on_request=requests.append)
    x = rows(3)
    r = client.post("/v1/predict", content=npy(x), headers={"content-type": NPY})
    assert np.load(io.BytesIO(r.content)).tobytes() == load(mlp_bytes).run(x)["output"].tobytes()
    assert [b["samples"] for b in batches] == [3] and batches[0]["requests"] == 1
    wait_for(lambda: requests, "the on_request hook")  # (it runs once the answer has gone out)
    assert requests[0]["status"] == 200 and requests[0]["samples"] == 3 and requests[0]["latency_s"] > 0
    assert client.post("/v1/predict", json={"inputs": [[1]]}).status_code == 400
    wait_for(lambda: len(requests) == 2, "the on_request hook")
    assert requests[1]["status"] == 400 and requests[1]["reason"] == "invalid"
    assert repr(server) == f"Server(<bytes> v1, {server.url}, max_batch=8, no batching, running)"


def test_two_workers_share_a_port_with_reuse_port(mlp_bytes: bytes) -> None:
    first = Server(load_model_from(mlp_bytes), port=0, max_batch=4, reuse_port=True, name="one")
    second = Server(load_model_from(mlp_bytes), port=first.port, max_batch=4, reuse_port=True, name="two")
    with first, second:
        names = set()
        for _ in range(200):  # bounded: the kernel spreads new connections over both listeners
            with http_client(first.url) as c:
                names.add(c.get("/v1/model").json()["name"])
            if names == {"one", "two"}:
                break
        assert names == {"one", "two"}
    busy = Server(load_model_from(mlp_bytes), port=0, max_batch=4)
    try:
        with pytest.raises(OSError, match=rf"cannot listen on 127.0.0.1:{busy.port}: Address already in use"):
            Server(load_model_from(mlp_bytes), port=busy.port, max_batch=4)
    finally:
        busy._socket.close()


def test_plan_chunks_splits_only_when_cheaper() -> None:
    from tinygrad_nb.serve.batcher import plan_chunks

    # a model whose batch of 1 is cheap (matrix-vector) and whose batches of 2..7 cost more than that many singles
    cost = [0.0, 1.0, 3.0, 3.2, 3.9, 4.2, 6.5, 7.0, 4.8]
    chunks = plan_chunks(cost)
    assert all(sum(c) == k for k, c in enumerate(chunks))
    assert chunks[1] == (1,) and chunks[2] == (1, 1)  # 2 singles (2.0) beat a pair (3.0)
    assert chunks[3] == (3,)  # 3 singles (3.0) are not 10% cheaper than one call (3.2)
    assert chunks[6] == (5, 1) and chunks[7] == (5, 1, 1)  # 5.2 and 6.2 against 6.5 and 7.0
    assert chunks[8] == (8,)
    assert plan_chunks([0.0, 1.0, 1.5, 2.0]) == [(), (1,), (2,), (3,)]  # batching pays: never split


def test_a_split_batch_answers_each_request_with_its_rows(mlp_bytes: bytes, serving: Any) -> None:
    sess = Gated(load_model_from(mlp_bytes))
    server, client = serving(sess, max_batch=16, latency_budget_ms=None, batch_thread=True, batch_sizes="any")
    server.batcher.chunks = [()] + [(1,) * k for k in range(1, 17)]  # every batch as calls of one sample
    inputs = {k: rows(3, seed=k) for k in range(4)}
    results = hold_first_then_queue(server, sess, [npy(inputs[k]) for k in range(4)], samples=3)
    assert sess.sizes == [1] * 12 and server.metrics.batch_size.count == 2  # 2 batches (3 and 9), 12 calls
    reference = load(mlp_bytes)
    for k in range(4):
        want = np.concatenate([reference.run(inputs[k][i:i + 1])["output"] for i in range(3)])
        assert np.load(io.BytesIO(results[k].content)).tobytes() == want.tobytes()


def test_fast_npy_paths_match_numpy_byte_for_byte() -> None:
    from tinygrad_nb.serve.codec import _from_npy, npy_bytes

    for shape in [(3,), (1, 10), (64, 784), (2, 3, 4), (0, 5), (1,) * 10]:
        for dtype in (np.float32, np.float64, np.int64, np.bool_, np.float16, ">f4"):
            a = (np.arange(int(np.prod(shape))) % 7).reshape(shape).astype(dtype)
            saved = npy(a)
            assert npy_bytes(a) == saved
            back = _from_npy(saved)
            assert back.dtype == a.dtype and back.shape == a.shape and back.tobytes() == a.tobytes()
    fortran = io.BytesIO()
    np.save(fortran, np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))  # numpy's own reader
    np.testing.assert_array_equal(_from_npy(fortran.getvalue()), np.arange(6, dtype=np.float32).reshape(2, 3))


def test_alert_p99_is_the_window_percentile() -> None:
    from tinygrad_nb.serve import AlertMonitor

    now = [0.0]
    monitor = AlertMonitor(0.05, window_s=10.0, min_requests=1, check_every_s=1.0, clock=lambda: now[0])
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 0.1, 1000)
    for i, v in enumerate(values):  # 200 a second for 5 s (i / 200 is exact): checks at requests 0, 200, ..., 800
        now[0] = i / 200
        monitor.record(float(v), refused=False)
    for _ in range(10):
        monitor.record(0.0, refused=True)
    last = monitor.check()  # closes the last interval: requests 801-999 and the 10 refused
    assert last["p99_ms"] == round(float(np.sort(values)[990]) * 1e3, 3)  # sorted index int(0.99 n) of the answered
    assert last["requests"] == 1010 and last["rejection_rate"] == round(10 / 1010, 4)
    assert monitor.exceeded
    now[0] = 14.5  # the window is [4.5, 14.5]: the interval closed at 4.995 is in it, the one closed at 4.0 is not
    last = monitor.check()
    assert last["requests"] == 199 + 10 and last["p99_ms"] == round(float(np.sort(values[801:])[197]) * 1e3, 3)
    now[0] = 16.0  # the window slides past everything: an empty window recovers
    assert monitor.check()["requests"] == 0 and not monitor.exceeded


# -- the plain ASGI /v1/predict path and the transport that sends an answer in one write ----------------------------
def test_predict_path_chunked_body_headers_and_errors(mlp_bytes: bytes, serving: Any) -> None:
    """/v1/predict is plain ASGI in front of starlette: a body in several chunks round-trips byte for byte, the
    answer's headers are exact, and every error keeps its status, headers and message."""
    server, client = serving(load_model_from(mlp_bytes), max_batch=8)
    x = rows(4)
    want = load(mlp_bytes).run(x)["output"]
    body = npy(x)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        head = (f"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: {NPY}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n").encode()
        s.sendall(head)
        for start in range(0, len(body), 100):  # chunks the server reads in several receive() calls
            part = body[start:start + 100]
            s.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head_bytes).group(1))
        while len(rest) < length:
            rest += s.recv(65536)
    lines = head_bytes.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    fields = dict(line.split(b": ", 1) for line in lines[1:])
    assert fields[b"content-type"] == NPY.encode() and int(fields[b"content-length"]) == len(rest)
    assert b"server" not in fields  # (uvicorn's "server: uvicorn" is off)
    assert np.load(io.BytesIO(rest), allow_pickle=False).tobytes() == want.tobytes()
    r = client.post("/v1/predict", content=npy(x), headers={"content-type": NPY, "x-deadline-ms": "soon"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "X-Deadline-Ms must be a positive number of milliseconds, got 'soon'"}
    r = client.post("/v1/predict", content=b"{}", headers={"content-type": "text/csv"})
    assert r.status_code == 415 and r.json() == {"error": "unsupported Content-Type 'text/csv': send application/json,"
                                                          " application/x-npy or application/x-safetensors"}
    r = client.get("/v1/predict")
    assert r.status_code == 405 and r.json() == {"error": "GET /v1/predict: method not allowed"}
    r = client.post("/v1/predict/extra", content=body, headers={"content-type": NPY})
    assert r.status_code == 404 and r.json() == {"error": "POST /v1/predict/extra: no such endpoint"}


def test_a_model_exception_is_a_500_answer_and_serving_goes_on(mlp_bytes: bytes, serving: Any,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def __init__(self, inner: Any):
            self.inner, self.broken = inner, False

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    sess = Broken(load_model_from(mlp_bytes))
    server, client = serving(sess, max_batch=8, batching=False)

    def explode(*args: Any) -> Any:
        raise KeyError("boom")

    server.run_inline = explode  # an unexpected error inside the handler (not the model's: that is a 422)
    caplog.set_level(logging.ERROR, logger="tinygrad_nb.serve")
    r = client.post("/v1/predict", content=npy(rows(1)), headers={"content-type": NPY})
    assert r.status_code == 500 and r.json() == {"error": "internal error: KeyError: 'boom'"}
    assert any("unexpected error in /v1/predict" in rec.getMessage() for rec in caplog.records)
    del server.run_inline
    assert client.post("/v1/predict", content=npy(rows(1)), headers={"content-type": NPY}).status_code == 200
    assert parse_metrics(client.get("/metrics").text)["tgnb_requests_total"] == {"500": 1.0, "200": 1.0}


class RecordingTransport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, lines: Any) -> None:
        self.calls.append(("writelines", [bytes(x) for x in lines]))

    def close(self) -> None:
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.calls.append(("abort", None))

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_the_head_is_held_until_the_body_and_never_lost() -> None:
    import asyncio

    from tinygrad_nb.serve.server import _HeadHeldTransport

    loop = asyncio.new_event_loop()
    try:
        inner = RecordingTransport()
        t = _HeadHeldTransport(inner, loop)
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n"
        t.write(head)
        assert inner.calls == []  # held
        t.write(b"abc")
        assert inner.calls == [("writelines", [head, b"abc"])]  # one send for both
        t.write(b"not a head")
        assert inner.calls[-1] == ("write", b"not a head")
        t.write(head)  # a head with nothing after it in this loop iteration leaves with call_soon
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert inner.calls[-1] == ("write", head)
        t.write(head)
        t.close()  # close sends what is held first
        assert inner.calls[-2:] == [("write", head), ("close", None)]
        t.write(head)
        t.abort()  # abort drops it
        assert inner.calls[-1] == ("abort", None)
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert inner.calls[-1] == ("abort", None)
        assert t.get_extra_info("peername") == "info:peername"
    finally:
        loop.close()


def test_split_batches_is_opt_in(mlp_bytes: bytes) -> None:
    server = Server(load_model_from(mlp_bytes), port=0, max_batch=8)
    try:
        assert server.batcher.chunks is None and server.call_seconds == []  # one call per batch, nothing timed
    finally:
        server._socket.close()
    server = Server(load_model_from(mlp_bytes), port=0, max_batch=8, split_batches=True)
    try:
        assert len(server.call_seconds) == 9 and len(server.batcher.chunks) == 9
        assert all(sum(sizes) == k for k, sizes in enumerate(server.batcher.chunks))
    finally:
        server._socket.close()
    assert not _parse(["m.onnx"]).split_batches and _parse(["m.onnx", "--split-batches"]).split_batches


@pytest.mark.parametrize(("cores", "reuse_port", "threaded"), [({0}, False, False), ({0, 1}, False, True),
                                                            ({0, 1, 2, 3}, True, False)])
def test_the_default_runner_is_a_thread_with_a_second_core(mlp_bytes: bytes, monkeypatch: pytest.MonkeyPatch,
                                                           cores: set[int], reuse_port: bool, threaded: bool) -> None:
    """batch_thread=None: a thread of its own when the process may use two cores and is not one of several workers
    sharing a port; else the event loop. True and False choose regardless."""
    from tinygrad_nb.serve.batcher import Batcher, LoopBatcher
    from tinygrad_nb.serve.server import default_batch_thread

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores, raising=False)
    assert default_batch_thread(reuse_port) is threaded
    servers = [Server(load_model_from(mlp_bytes), port=0, max_batch=8, reuse_port=reuse_port, batch_thread=choice)
               for choice in (None, True, False)]
    try:
        assert [type(s.batcher) for s in servers] == [Batcher if threaded else LoopBatcher, Batcher, LoopBatcher]
        assert [s.batch_thread for s in servers] == [threaded, True, False]
    finally:
        for s in servers:
            s._socket.close()


def test_preferred_sizes_take_the_largest_power_of_two_queued() -> None:
    """_select with batch_sizes="pow2": the largest power of two of the samples queued, in whole requests, at
    least the first request, max_batch when that many are queued (even if it is not a power of two)."""
    from tinygrad_nb.serve.batcher import Batcher

    class Queued:
        def __init__(self, n: int, key: Any = (4,)):
            self.n, self.key = n, key

    def batches(sizes: list[int], max_batch: int, batch_sizes: str = "pow2") -> list[list[int]]:
        b = Batcher.__new__(Batcher)  # only what _select reads
        b.max_batch, b.preferred_sizes = max_batch, batch_sizes == "pow2"
        b.queue = collections.deque(Queued(n) for n in sizes)
        b.queued_samples, b.clock, b.timer = sum(sizes), time.perf_counter, BatchTimer()
        taken = []
        while b.queue:
            taken.append([item.n for item in b._select()])
        assert b.queued_samples == 0
        return taken

    assert batches([1] * 19, 64) == [[1] * 16, [1] * 2, [1]]
    assert batches([1] * 19, 64, "any") == [[1] * 19]
    assert batches([3, 3, 3], 64) == [[3, 3], [3]]  # 9 queued: at most 8
    assert batches([5], 64) == [[5]]  # 5 queued: more than 4, but a request is never split
    assert batches([1] * 60, 50) == [[1] * 50, [1] * 8, [1] * 2]  # max_batch itself is a preferred size
    assert batches([2] * 4, 8) == [[2] * 4]
    with pytest.raises(ValueError, match=r"batch_sizes must be one of \('pow2', 'any'\), got 'all'"):
        Server(load_model_from(two_io_model()), port=0, batch_sizes="all")


def test_admission_estimate_counts_one_call_per_preferred_size() -> None:
    """The backlog estimate follows the batch-size policy: with "pow2" the rest after full batches runs as one call
    per power of two in it, each paying the fixed cost; with "any" as one call."""
    from tinygrad_nb.serve.batcher import Batcher

    timer = BatchTimer()
    for samples in (1, 8, 32, 1, 8, 32):  # exactly t(n) = 1 ms + 0.1 ms * n
        timer.add(samples, 1e-3 + 1e-4 * samples)

    def backlog_ms(samples: int, batch_sizes: str, max_batch: int = 64) -> float:
        b = Batcher.__new__(Batcher)  # only what _backlog_seconds reads
        b.max_batch, b.preferred_sizes, b.timer = max_batch, batch_sizes == "pow2", timer
        b.running_since, b.max_wait_s = 0.0, 0.0
        return b._backlog_seconds(samples, now=0.0) * 1e3

    assert backlog_ms(19, "pow2") == pytest.approx(3 * 1.0 + 19 * 0.1)  # 16, 2, 1
    assert backlog_ms(19, "any") == pytest.approx(1.0 + 19 * 0.1)
    assert backlog_ms(16, "pow2") == pytest.approx(1.0 + 16 * 0.1)
    assert backlog_ms(1, "pow2") == pytest.approx(1.0 + 0.1)
    assert backlog_ms(150, "pow2") == pytest.approx(2 * (1.0 + 6.4) + 3 * 1.0 + 22 * 0.1)  # 64, 64, then 16, 4, 2
    assert backlog_ms(50, "pow2", max_batch=50) == pytest.approx(1.0 + 5.0)  # max_batch itself is a preferred size


def test_batch_sizes_option_on_the_command_line() -> None:
    assert [_parse(["m.onnx", *extra]).batch_sizes for extra in ([], ["--batch-sizes", "any"],
                                                                  ["--batch-sizes", "pow2"])] == ["pow2", "any", "pow2"]
    with pytest.raises(SystemExit):
        _parse(["m.onnx", "--batch-sizes", "all"])


def test_batch_thread_option_on_the_command_line() -> None:
    assert [_parse(["m.onnx", *extra]).batch_thread for extra in ([], ["--batch-thread"], ["--batch-thread", "on"],
                                                                  ["--batch-thread", "off"])] == ["auto", "on", "on",
                                                                                                  "off"]
    with pytest.raises(SystemExit):
        _parse(["m.onnx", "--batch-thread", "sometimes"])


def test_calibration_tracks_the_quantile_of_actual_over_estimated_and_relaxes() -> None:
    from tinygrad_nb.serve.batcher import Calibration

    now = [0.0]
    cal = Calibration(quantile=0.9, step=0.02, ceiling=4.0, relax_s=1.0, clock=lambda: now[0])
    rng = np.random.default_rng(0)
    ratios = rng.uniform(1.0, 3.0, 20000)  # requests took 1-3x their admission estimate
    factors = []
    for r in ratios:
        cal.observe(0.010, 0.010 * r)
        factors.append(cal.factor)
    # the 90th percentile of U(1, 3) is 2.8; the stochastic estimate wanders a few steps around it
    late = np.array(factors[-5000:])
    assert abs(late.mean() - 2.8) < 0.05 and abs(np.mean(ratios[-5000:] <= late) - 0.9) < 0.03
    assert 2.5 < late.min() and late.max() < 3.1
    for _ in range(1000):
        cal.observe(0.010, 0.5)  # 50x: more pessimism is capped
    assert cal.factor == pytest.approx(4.0)
    before = cal.factor
    cal.observe(0.001, 1.0)  # an estimate under min_estimate_s (an idle server) says nothing about queueing
    assert cal.factor == before
    now[0] += 1.0  # no observations for one relax time: log(factor) shrinks by e
    assert cal.factor == pytest.approx(4.0 ** np.exp(-1.0))
    now[0] += 30.0
    assert cal.factor == pytest.approx(1.0, abs=1e-9)
    assert Calibration().factor == 1.0
