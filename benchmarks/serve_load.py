"""Serving under load: ``tinygrad-nb serve`` without batching (the baseline), with opportunistic batching (on the
event loop, ``--batch-thread off``; in a thread of its own, ``--batch-thread on``, the default on two or more cores;
the thread again with ``--batch-sizes any`` instead of the default preferred sizes, powers of two; with
``--split-batches``) and with a fixed 2 ms wait, for a small MLP and a wider one (784-1024-1024-10), at 1 and 32 concurrent clients; then, for the wider
model, each runner's saturation rate followed at once by an open-loop load at 80% of it, against the latency budget;
RSS before and after.

    python benchmarks/serve_load.py [--seconds 1.5] [--rounds 3] [--budget-ms 50] [--compare-src DIR]
        [--models small,wide] [--modes "opportunistic,opport. thread"] [--no-open-loop | --open-loop-only]
        [--connections 64]

Besides latency and throughput each row gives where a request's CPU goes: the server process's CPU per request, its
model calls' time per request, the load generator's own CPU per request, and the mean batch; per-round ratios follow.

Each server is a separate process (``python -m tinygrad_nb.cli serve``, BLAS on one thread, binary .npy bodies of one
sample). The load generator is raw asyncio streams (on uvloop when installed) on loopback with keep-alive
connections and pre-built requests (an HTTP client library would measure itself). Configurations are measured in
interleaved rounds, each round on fresh server processes, so machine noise hits all alike; the table gives medians over rounds of each round's p50/p99
latency and throughput (answers with status 200 per second), and the server process's CPU time per request (user +
system, from /proc): on a shared machine wall-clock throughput measures the neighbours as much as the server, while
CPU per request is what one dedicated core would sustain (``cpu vs none`` > 1: cheaper than no batching).
``--compare-src DIR`` also runs the no-batching and opportunistic servers from another checkout's ``tinygrad_nb``
(e.g. ``git archive HEAD tinygrad_nb | tar -x -C DIR``): a before/after of the HTTP path in one run.

The 80% test, per runner and round: a closed loop of 32 clients on a fresh server with the budget on measures the
saturation rate (200s per second), then Poisson arrivals at 80% of it for ``2 x seconds``; latency counts from each
request's scheduled send time (so time waiting for a free connection in the generator counts too). Also printed: the
server's own p99 (from its latency histogram: arrival to answer, bucket bounds), the generator's lag (how late its
task for a request started, p99) and "unsent p99" (scheduled time to the moment a free connection let it send: a
request waiting there is queued in the generator, where no admission control of the server can see it): an
end-to-end p99 far above the server's says the time went outside the server.

Targets (issue 14): idle overhead of batching <= 0.05 ms; >= 1.5x throughput from batching on the wider model at 32
clients; p99 within the budget at 80% of the saturation rate; flat RSS.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import tinygrad_nb as tg
from tinygrad_nb import nn
from tinygrad_nb.export import onnx as export_onnx

ROOT = Path(__file__).resolve().parents[1]
# each runner named explicitly: the server's default (--batch-thread auto) is the thread on a machine with two cores
LOOP = ["--batch-thread", "off"]
MODES = {"no batching": ["--no-batching"], "opportunistic": LOOP, "opport. thread": ["--batch-thread", "on"],
         "thread any size": ["--batch-thread", "on", "--batch-sizes", "any"],
         "opport. split": ["--split-batches", *LOOP], "wait 2 ms": ["--max-wait-ms", "2", *LOOP]}
BEFORE = " (before)"  # the modes run from --compare-src


def run(coroutine: Any) -> Any:
    """asyncio.run on uvloop when it is installed: the generator's own CPU per request is what the server does not
    get on a shared machine."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def export(model: nn.Module, width: int, path: Path) -> None:
    export_onnx(model, tg.randn(4, width), path, validate=False, verbose=False)


def start_server(model: Path, extra: list[str], budget_ms: float,
                 src: Path | None = None) -> tuple[subprocess.Popen, str, int]:
    """A server process for ``model``; ``src``: a directory holding another ``tinygrad_nb`` to serve with."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-m", "tinygrad_nb.cli", "serve", str(model), "--port", "0",
                             "--max-batch", "64", "--latency-budget-ms", str(budget_ms), *extra],
                            cwd=src or ROOT, env=env, stderr=subprocess.PIPE, text=True)
    line = json.loads(proc.stderr.readline())
    url = line["url"]
    return proc, url, int(url.rsplit(":", 1)[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 10 ms ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_bytes(width: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(seed).standard_normal((1, width)).astype(np.float32))
    body = buffer.getvalue()
    return (f"POST /v1/predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-npy\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request, read its response; the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def closed_loop(port: int, request: bytes, clients: int, seconds: float) -> dict[str, float]:
    """``clients`` connections, each sending the next request when the last is answered."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    warm = asyncio.Barrier(clients)

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(5):  # warm-up
            await exchange(reader, writer, request)
        await warm.wait()
        nonlocal begin
        begin = begin or time.perf_counter()
        stop = begin + seconds
        while time.perf_counter() < stop:
            t = time.perf_counter()
            status = await exchange(reader, writer, request)
            latencies.append(time.perf_counter() - t)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    begin = 0.0
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - begin
    latencies.sort()
    # throughput counts answers (200), not quick refusals: a server that sheds load is not faster for it
    return {"p50": latencies[len(latencies) // 2], "p99": latencies[int(0.99 * (len(latencies) - 1))],
            "rps": statuses.get(200, 0) / elapsed, "non200": sum(v for k, v in statuses.items() if k != 200),
            "n": len(latencies)}


async def open_loop(port: int, request: bytes, rate: float, seconds: float, connections: int = 64) -> dict[str, Any]:
    """Poisson arrivals at ``rate`` per second over a pool of connections; latency from the scheduled send time."""
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    lags: list[float] = []
    waits: list[float] = []
    statuses: dict[int, int] = {}
    rng = random.Random(0)

    async def one(scheduled: float) -> None:
        lags.append(time.perf_counter() - scheduled)
        reader, writer = await pool.get()
        waits.append(time.perf_counter() - scheduled)  # sent only now: queued in the generator until here
        try:
            status = await exchange(reader, writer, request)
        finally:
            pool.put_nowait((reader, writer))
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            latencies.append(time.perf_counter() - scheduled)

    tasks = []
    t = time.perf_counter()
    stop = t + seconds
    while t < stop:
        t += rng.expovariate(rate)
        delay = t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(t)))
    await asyncio.gather(*tasks)
    for _, writer in [pool.get_nowait() for _ in range(connections)]:
        writer.close()
    latencies.sort()
    lags.sort()
    waits.sort()
    return {"p50": latencies[len(latencies) // 2], "p99": latencies[int(0.99 * (len(latencies) - 1))],
            "sent": len(tasks), "statuses": statuses, "lag99": lags[int(0.99 * (len(lags) - 1))],
            "wait99": waits[int(0.99 * (len(waits) - 1))]}


def metrics(url: str) -> dict[str, dict[str, float]]:
    import urllib.request

    from tinygrad_nb.serve import parse_metrics

    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:  # noqa: S310 - our own server on loopback
        return parse_metrics(r.read().decode())


def server_p99(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> float:
    """The server's own p99 latency between two scrapes (a bucket's upper bound, seconds)."""
    from tinygrad_nb.serve.cli import _quantile

    return _quantile(after["tgnb_request_latency_seconds_bucket"], before["tgnb_request_latency_seconds_bucket"], 0.99)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget-ms", type=float, default=50.0)
    parser.add_argument("--compare-src", type=Path, default=None,
                        help="a directory holding another tinygrad_nb: its no-batching and opportunistic servers too")
    parser.add_argument("--models", default="small,wide", help="which models (comma-separated: small, wide)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="which modes (comma-separated; 'no batching' is always measured: the baseline)")
    parser.add_argument("--no-open-loop", action="store_true", help="skip the 80%% of saturation part")
    parser.add_argument("--open-loop-only", action="store_true", help="only the 80%% of saturation part")
    parser.add_argument("--connections", type=int, default=64, help="the open loop's pool of connections")
    parser.add_argument("--clients", default="1,32", help="closed-loop client counts (comma-separated)")
    args = parser.parse_args()
    tg.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="serve_load_"))
    models = {"small MLP 64-128-10": (nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)), 64),
              "wide MLP 784-1024-1024-10": (nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024),
                                                          nn.ReLU(), nn.Linear(1024, 10)), 784)}
    models = {name: v for name, v in models.items() if name.split()[0] in args.models.split(",")}
    chosen = {"no batching", *args.modes.split(",")}
    modes: dict[str, tuple[list[str], Path | None]] = {mode: (extra, None) for mode, extra in MODES.items()
                                                       if mode in chosen}
    if args.compare_src is not None:
        modes["none" + BEFORE] = (MODES["no batching"], args.compare_src.resolve())
        # (an older checkout may not know --batch-thread's values: its default was the loop, its flag the thread)
        modes["loop" + BEFORE] = ([], args.compare_src.resolve())
        if "opport. thread" in chosen:
            modes["thread" + BEFORE] = (["--batch-thread"], args.compare_src.resolve())
    servers: dict[tuple[str, str], tuple[subprocess.Popen, str, int]] = {}
    try:
        paths = {}
        for name, (model, width) in models.items():
            paths[name] = tmp / (name.split()[0] + ".onnx")
            export(model, width, paths[name])
        samples: dict[tuple[str, str, int], list[dict[str, float]]] = {}
        for r in range(0 if args.open_loop_only else args.rounds):
            # fresh server processes every round: a process keeps where the scheduler first put it (which core,
            # beside which of the generator's), and that moved one server's 1-client p50 against another's by up to
            # 0.1 ms in every round of a run; across rounds it averages out
            for name in models:
                for mode, (extra, src) in modes.items():
                    servers[(name, mode)] = start_server(paths[name], extra, 10_000, src)  # no refusals: capacity
            for (name, mode), (proc, url, port) in servers.items():
                for clients in [int(c) for c in args.clients.split(",")]:
                    request = request_bytes(models[name][1], 0)
                    before = metrics(url)
                    cpu, gen = cpu_seconds(proc.pid), time.process_time()
                    result = run(closed_loop(port, request, clients, args.seconds))
                    # (the warm-up requests are in the CPU time too: 5 per client)
                    n = result["n"] + 5 * clients
                    result["cpu"] = (cpu_seconds(proc.pid) - cpu) / n
                    result["gen"] = (time.process_time() - gen) / n  # the load generator's own CPU per request
                    after = metrics(url)
                    batches = after["tgnb_batch_size_samples_count"][""] - before["tgnb_batch_size_samples_count"][""]
                    result["batch"] = (after["tgnb_batch_size_samples_sum"][""]
                                       - before["tgnb_batch_size_samples_sum"][""]) / max(batches, 1)
                    result["model"] = (after["tgnb_batch_seconds_sum"][""]
                                       - before["tgnb_batch_seconds_sum"][""]) / n  # model seconds per request
                    result["load"] = os.getloadavg()[0]
                    samples.setdefault((name, mode, clients), []).append(result)
            for key in list(servers):
                stop_server(servers.pop(key)[0])
            print(f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
        fields = ("p50", "p99", "rps", "cpu", "gen", "batch", "model", "load")
        if args.open_loop_only:
            models = {}
        print(f"{'model':<27} {'mode':<16} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'vs none':>8} "
              f"{'cpu us/req':>10} {'cpu vs none':>11} {'model us':>8} {'gen us':>6} {'batch':>5} {'load':>5}")
        med = {k: {f: statistics.median(r[f] for r in v) for f in fields} for k, v in samples.items()}
        for (name, mode, clients), m in med.items():
            base = med[(name, "no batching", clients)]
            print(f"{name:<27} {mode:<16} {clients:>7} {m['p50'] * 1e3:8.3f} {m['p99'] * 1e3:8.3f} {m['rps']:8.0f} "
                  f"{m['rps'] / base['rps']:7.2f}x {m['cpu'] * 1e6:10.0f} {base['cpu'] / m['cpu']:10.2f}x "
                  f"{m['model'] * 1e6:8.0f} {m['gen'] * 1e6:6.0f} {m['batch']:5.1f} {m['load']:5.1f}")
        print("(cpu: the server process's CPU per request; model: its model calls' wall time per request; gen: the "
              "load generator's CPU per request; batch: mean samples per model call; load: load average)")
        for (name, mode, clients), rounds in samples.items():
            if mode != "no batching" and clients == 1:
                base = samples[(name, "no batching", 1)]
                print(f"  {name} {mode} at 1 client, p50 minus no batching's by round: "
                      + ", ".join(f"{(a['p50'] - b['p50']) * 1e3:+.3f} ms" for a, b in zip(rounds, base)))
            if clients == 32 and mode != "no batching":
                base = samples[(name, "no batching", 32)]
                print(f"  {name} {mode} at 32 clients, throughput vs no batching by round: "
                      + ", ".join(f"{a['rps'] / b['rps']:.2f}x" for a, b in zip(rounds, base)))
        print()
        for name in models if args.clients == "1,32" else ():
            none1, none32 = med[(name, "no batching", 1)], med[(name, "no batching", 32)]
            batched = [mode for mode in ("opportunistic", "opport. thread", "opport. split") if mode in modes]
            idle = {mode: (med[(name, mode, 1)]["p50"] - none1["p50"]) * 1e3
                    for mode in ("opportunistic", "opport. thread") if mode in modes}
            gain = {mode: med[(name, mode, 32)]["rps"] / none32["rps"] for mode in batched}
            cpu_gain = {mode: none32["cpu"] / med[(name, mode, 32)]["cpu"] for mode in batched}
            fixed = (f"; fixed 2 ms wait idle latency {med[(name, 'wait 2 ms', 1)]['p50'] / none1['p50']:.1f}x"
                     if "wait 2 ms" in modes else "")
            print(f"{name}: idle overhead of batching " + ", ".join(f"{v:+.3f} ms ({m})" for m, v in idle.items())
                  + f" (target <= 0.05){fixed}; at 32 clients, throughput vs no batching "
                  + ", ".join(f"{gain[m]:.2f}x ({m})" for m in gain) + "; CPU per request "
                  + ", ".join(f"{cpu_gain[m]:.2f}x" for m in cpu_gain) + " less (target >= 1.5 for the wide one)")
            if args.compare_src is not None:
                for now, before in (("no batching", "none" + BEFORE), ("opportunistic", "loop" + BEFORE),
                                    ("opport. thread", "thread" + BEFORE)):
                    if now in modes and before in modes:
                        print(f"  {now}: CPU per request " + ", ".join(
                            f"{med[(name, before, c)]['cpu'] * 1e6:.0f} -> {med[(name, now, c)]['cpu'] * 1e6:.0f} us, "
                            f"{med[(name, before, c)]['rps']:.0f} -> {med[(name, now, c)]['rps']:.0f} req/s "
                            f"({c} client{'s' if c > 1 else ''})" for c in (1, 32)) + f" (before: {args.compare_src})")
        if args.no_open_loop:
            return
        # each runner on the wider model: its saturation rate, then 80% of it (open loop), against the budget
        name = "wide MLP 784-1024-1024-10"
        request = request_bytes(784, 0)
        runners = [m for m in ("no batching", "opportunistic", "opport. thread", "opport. split") if m in modes]
        for mode in runners:
            servers[(name, mode)] = start_server(tmp / "wide.onnx", MODES[mode], args.budget_ms)
        # whose RSS is followed: the default runner on two cores when it runs, else the first batching one
        watched = ("opport. thread" if "opport. thread" in runners
                   else next((m for m in runners if m != "no batching"), runners[0]))
        rss: list[float] = []
        loaded: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for mode in runners:
                proc, url, port = servers[(name, mode)]
                saturation = run(closed_loop(port, request, 32, args.seconds))["rps"]
                before = metrics(url)
                if mode == watched:
                    rss.append(before["tgnb_resident_memory_bytes"][""])
                result = run(open_loop(port, request, 0.8 * saturation, args.seconds * 2, args.connections))
                after = metrics(url)
                refused = sum(v for k, v in result["statuses"].items() if k != 200)
                loaded.setdefault(mode, []).append({
                    "saturation": saturation, "p50": result["p50"], "p99": result["p99"],
                    "server_p99": server_p99(before, after), "lag99": result["lag99"], "wait99": result["wait99"],
                    "refused": refused / result["sent"], "load": os.getloadavg()[0]})
        print()
        print(f"{name} at 80% of each runner's saturation rate (open loop, budget {args.budget_ms:g} ms; medians of "
              f"{args.rounds} rounds, each measuring saturation first; {args.connections} connections)")
        print(f"{'runner':<15} {'saturation':>10} {'p50 ms':>8} {'p99 ms':>8} {'server p99':>10} {'gen. lag p99':>12} "
              f"{'unsent p99':>10} {'refused':>8} {'load avg':>8}  budget")
        for mode, rounds in loaded.items():
            m = {f: statistics.median(r[f] for r in rounds) for f in rounds[0]}
            each = ", ".join(f"{r['p99'] * 1e3:.0f}" for r in rounds)
            print(f"{mode:<15} {m['saturation']:10.0f} {m['p50'] * 1e3:8.2f} {m['p99'] * 1e3:8.2f} "
                  f"{m['server_p99'] * 1e3:9.1f}  {m['lag99'] * 1e3:11.2f} {m['wait99'] * 1e3:10.2f} "
                  f"{m['refused']:7.1%} {m['load']:8.1f}  "
                  f"{'within' if m['p99'] * 1e3 <= args.budget_ms else 'OVER'}"
                  f" (p99 by round: {each} ms)")
        proc, url, port = servers[(name, watched)]
        more = run(closed_loop(port, request, 32, args.seconds * 2))
        rss.append(metrics(url)["tgnb_resident_memory_bytes"][""])
        print(f"RSS of the {watched} server: {rss[0] / 2**20:.1f} MiB before the first open-loop run, then "
              + ", ".join(f"{r / 2**20:.1f}" for r in rss[1:-1]) + " MiB after each later saturation + 80% round, "
              f"{rss[-1] / 2**20:.1f} MiB after {int(more['rps'] * args.seconds * 2)} more requests at saturation "
              f"(planned {metrics(url)['tgnb_planned_memory_bytes'][''] / 2**20:.1f} MiB)")
    finally:
        for proc, _, _ in servers.values():
            stop_server(proc)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


if __name__ == "__main__":
    main()
