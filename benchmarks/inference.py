"""Inference: tinygrad_nb.runtime against numpy by hand, onnxruntime and the eager forward, in one run.

    python benchmarks/inference.py [--rounds 200] [--calls 10000]

Models: an MLP 784-256-128-10 and a small CNN (1x28x28 -> conv 8 -> pool -> conv 16 -> pool -> linear 10), at
batch 1 and 128. Every contender runs single-threaded (BLAS limited to one thread when threadpoolctl is installed,
onnxruntime with intra_op_num_threads=1), timed with this thread's CPU clock in interleaved rounds; the table gives
medians and ratios to "numpy by hand" (plain numpy expressions, allocating). Targets (issue 13): batch 1 at or below
onnxruntime's single-thread latency, batch 128 <= 1.05x numpy by hand, zero steady-state allocations, planned peak
within 5% of the measured peak, export + validation of the MLP <= 200 ms.

Also measured: numpy allocations (tracemalloc, numpy's domain) and RSS over ``--calls`` calls with random batch sizes
1..128, after warm-up; the planned arena against the peak of an unplanned run of the same graph; export time.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import time
import tracemalloc
from typing import Any

import numpy as np
from _timing import interleaved_medians

import tinygrad_nb as tg
from tinygrad_nb import nn
from tinygrad_nb.export import onnx as export_onnx
from tinygrad_nb.runtime import load_model


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        x = self.pool(self.conv1(x).relu())
        x = self.pool(self.conv2(x).relu())
        return self.fc(x.flatten(1))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def _p(model: nn.Module, name: str) -> np.ndarray:
    return dict(model.named_parameters())[name].numpy()


def mlp_by_hand(model: nn.Module) -> tuple[Any, Any]:
    """Plain numpy (allocating), and numpy with every intermediate preallocated (out=)."""
    w1, b1, w2, b2, w3, b3 = (_p(model, n) for n in ("0.weight", "0.bias", "2.weight", "2.bias", "4.weight",
                                                     "4.bias"))

    def plain(x: np.ndarray) -> np.ndarray:
        h = np.maximum(x @ w1.T + b1, 0)
        h = np.maximum(h @ w2.T + b2, 0)
        return h @ w3.T + b3

    buffers: dict[int, tuple[np.ndarray, ...]] = {}
    zero = np.zeros((), np.float32)

    def preallocated(x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if n not in buffers:
            buffers[n] = (np.empty((n, 256), np.float32), np.empty((n, 128), np.float32), np.empty((n, 10), np.float32),
                          np.ascontiguousarray(np.broadcast_to(b1, (n, 256))),
                          np.ascontiguousarray(np.broadcast_to(b2, (n, 128))),
                          np.ascontiguousarray(np.broadcast_to(b3, (n, 10))))
        h1, h2, out, c1, c2, c3 = buffers[n]
        np.matmul(x, w1.T, out=h1)
        np.add(h1, c1, out=h1)
        np.maximum(h1, zero, out=h1)
        np.matmul(h1, w2.T, out=h2)
        np.add(h2, c2, out=h2)
        np.maximum(h2, zero, out=h2)
        np.matmul(h2, w3.T, out=out)
        np.add(out, c3, out=out)
        return out
    return plain, preallocated


def cnn_by_hand(model: SmallCNN) -> tuple[Any, None]:
    """im2col with numpy's sliding_window_view, one matmul per conv, the max of strided views for pooling."""
    w1, b1, w2, b2 = (_p(model, n) for n in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"))
    wf, bf = _p(model, "fc.weight"), _p(model, "fc.bias")

    def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        n, c, h, wd = x.shape
        p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        cols = np.lib.stride_tricks.sliding_window_view(p, (3, 3), axis=(2, 3))  # n, c, h, w, 3, 3
        cols = cols.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * 9, h * wd)
        return (w.reshape(w.shape[0], -1) @ cols + b[:, None]).reshape(n, w.shape[0], h, wd)

    def pool(x: np.ndarray) -> np.ndarray:  # the max of the four strided 2x2 corners (a reshape-max is ~30x slower)
        return np.maximum(np.maximum(x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]),
                          np.maximum(x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]))

    def plain(x: np.ndarray) -> np.ndarray:
        x = pool(np.maximum(conv(x, w1, b1), 0))
        x = pool(np.maximum(conv(x, w2, b2), 0))
        return x.reshape(x.shape[0], -1) @ wf.T + bf
    return plain, None


def onnxruntime_session(data: bytes) -> Any:
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})[0]


def single_thread_blas() -> Any:
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def compare(name: str, model: nn.Module, example: np.ndarray, rounds: int) -> None:
    proto = export_onnx(model, tg.tensor(example[:8]), None, validate=False).model
    sess = load_model(proto)
    ort = onnxruntime_session(proto.SerializeToString())
    plain, preallocated = mlp_by_hand(model) if name == "mlp" else cnn_by_hand(model)  # type: ignore[arg-type]
    for batch in (1, 128):
        x = np.ascontiguousarray(example[np.arange(batch) % example.shape[0]])
        tx = tg.tensor(x)

        def eager() -> Any:
            with tg.no_grad():
                return model(tx)
        contenders: dict[str, Any] = {"numpy by hand": lambda: plain(x)}
        if preallocated is not None:
            contenders["numpy preallocated"] = lambda: preallocated(x)
        contenders["tinygrad_nb.runtime"] = lambda: sess.run(x)
        contenders["runtime (copy=False)"] = lambda: sess.run(x, copy=False)
        if ort is not None:
            contenders["onnxruntime 1 thread"] = lambda: ort(x)
        contenders["eager no_grad"] = eager
        want = plain(x)
        assert np.allclose(sess(x), want, rtol=1e-4, atol=1e-5), "runtime disagrees with numpy"
        # settle: one untimed call per round, so every contender runs with its own weights in cache (the runtime
        # and onnxruntime hold their own copies; numpy by hand and eager share the model's)
        medians = interleaved_medians(contenders, rounds=rounds, per_round=20 if batch == 1 else 2, warmup=20,
                                      clock=time.thread_time, settle=1)
        base = medians["numpy by hand"]
        print(f"{name} batch {batch}:")
        for contender, seconds in medians.items():
            print(f"  {contender:22s} {seconds * 1e6:9.1f} us   {seconds / base:5.2f}x numpy by hand")
        ours = medians["tinygrad_nb.runtime"]
        if ort is not None:
            print(f"  runtime / onnxruntime = {ours / medians['onnxruntime 1 thread']:.2f}x"
                  + ("   (target <= 1.00x at batch 1)" if batch == 1 else ""))
        if batch == 128:
            print(f"  runtime / numpy by hand = {ours / base:.2f}x   (target <= 1.05x)")


def memory(calls: int) -> None:
    model = mlp()
    proto = export_onnx(model, tg.randn(8, 784), None, validate=False).model
    sess = load_model(proto)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 784)).astype(np.float32)
    for b in range(1, 129):
        sess.run(x[:b])
        sess.run(x[:b])
    sizes = rng.integers(1, 129, size=calls)
    numpy_only = [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
    tracemalloc.start()
    before = tracemalloc.take_snapshot().filter_traces(numpy_only)
    for b in sizes:
        sess.run(x[:int(b)], copy=False)
    after = tracemalloc.take_snapshot().filter_traces(numpy_only)
    tracemalloc.stop()
    diff = after.compare_to(before, "filename")
    net, count = sum(d.size_diff for d in diff), sum(d.count_diff for d in diff)
    rss = [rss_bytes()]
    for _ in range(2):  # RSS without tracemalloc's own bookkeeping: two more rounds of the same calls
        for b in sizes:
            sess.run(x[:int(b)], copy=False)
        rss.append(rss_bytes())
    print(f"memory: {calls} calls, random batch sizes 1..128, after warm-up (MLP):")
    print(f"  numpy arrays allocated and kept: {count} ({net} bytes)   (target 0)")
    print(f"  RSS {rss[0] / 2**20:.2f} MiB -> {rss[1] / 2**20:.2f} MiB -> {rss[2] / 2**20:.2f} MiB after two more "
          f"rounds of {calls} calls ({(rss[2] - rss[0]) / 2**10:+.0f} KiB)")
    for name, m, shape in (("mlp", model, (128, 784)), ("cnn", SmallCNN(), (128, 1, 28, 28))):
        s = load_model(export_onnx(m, tg.randn(2, *shape[1:]), None, validate=False).model)
        xb = rng.standard_normal(shape).astype(np.float32)
        plan = s.memory_plan([128]).plans[-1]
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        s.reference([xb], keep=False)
        measured = tracemalloc.get_traced_memory()[1] - base + xb.nbytes  # the arena holds a copy of the input
        tracemalloc.stop()
        print(f"  {name} batch 128: planned arena {plan.arena_bytes / 2**10:.1f} KiB (liveness lower bound "
              f"{plan.lower_bound / 2**10:.1f} KiB); measured peak of an unplanned run (numpy, each intermediate "
              f"freed after its last use, input included) {measured / 2**10:.1f} KiB: planned / unplanned = "
              f"{plan.arena_bytes / measured:.3f}")
        # The plan's own prediction against what the runtime really holds: a fresh session, warmed up at batch 128
        # under tracemalloc (the first call's reference values are freed; steady calls allocate nothing).
        fresh = load_model(export_onnx(m, tg.randn(2, *shape[1:]), None, validate=False).model)
        outside_before = fresh.outside_arena_bytes()
        gc.collect()
        tracemalloc.start()
        fresh.run(xb, copy=False)
        fresh.run(xb, copy=False)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        report = fresh.memory_plan()
        predicted = report.plans[-1].arena_bytes + report.outside_bytes - outside_before
        print(f"  {name} batch 128: planned {predicted / 2**10:.1f} KiB (arena + buffers outside it) vs measured "
              f"{held / 2**10:.1f} KiB held after warm-up (tracemalloc): measured / planned = {held / predicted:.3f} "
              "(target within 5%)")


def export_time(rounds: int) -> None:
    model = mlp()
    x = tg.randn(32, 784)
    times = {"export only": [], "export + checker + validation (onnxruntime and runtime, 3 batch sizes)": []}
    for _ in range(rounds):
        for label, validate in (("export only", False),
                                ("export + checker + validation (onnxruntime and runtime, 3 batch sizes)", True)):
            start = time.perf_counter()
            export_onnx(model, x, None, validate=validate, verbose=False)
            times[label].append(time.perf_counter() - start)
    print("export of the MLP (no reference evaluator):")
    for label, values in times.items():
        print(f"  {label}: median {statistics.median(values) * 1e3:.1f} ms   (target <= 200 ms with validation)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    tg.manual_seed(0)
    rng = np.random.default_rng(0)
    with single_thread_blas():
        compare("mlp", mlp(), rng.standard_normal((128, 784)).astype(np.float32), args.rounds)
        compare("cnn", SmallCNN(), rng.standard_normal((128, 1, 28, 28)).astype(np.float32), max(args.rounds // 4, 10))
        memory(args.calls)
        export_time(7)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
