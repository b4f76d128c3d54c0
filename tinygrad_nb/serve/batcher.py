"""The batcher: one thread owns the session and runs what is queued as one model call.

Requests arrive on the event loop, already decoded and checked (:mod:`.codec`), as ``Item``s of ``n`` samples.

* **Opportunistic** (``max_wait_s = 0``, the default): when the model is free the thread takes what is queued, up to
  ``max_batch`` *samples* (not requests), and runs it at once; an idle server never waits. While a batch runs, new
  requests queue and form the next batch, so batches grow exactly when load does.
* **Preferred sizes** (``batch_sizes="pow2"``, the default): of what is queued the thread takes the largest power
  of two of samples (or ``max_batch``, when that many are queued), in whole requests, and leaves the rest for the
  very next call, as Triton's preferred batch sizes do. Two reasons, both measured (docs/serve.md): BLAS runs a
  power-of-two batch fastest per sample (784x1024 float32, one thread: 20 us per row at 16 rows, 25 at 19), and
  the requests left over keep the event loop busy answering and parsing while the model runs, where taking
  everything makes the two take turns: at 32 closed-loop clients the loop and the thread were each busy ~55% of
  the time, alternating. ``"any"``: everything queued, up to ``max_batch``.
* **Fixed wait** (``max_wait_s > 0``): the thread waits up to ``max_wait_s`` after the oldest queued request for the
  batch to fill (trading idle latency for larger batches).
* **Admission** (:meth:`Batcher.submit`): a request is refused with 503 when the queue holds ``max_queue_samples``
  samples, or when the estimated time to finish it (what runs now, the queue ahead of it in full batches, then the
  rest, with ``"pow2"`` as one call per power of two in it) would pass its deadline. The estimate
  ``t(n) = a + b n`` comes from recent batches (:class:`BatchTimer`).
  It counts model time only, while a request also waits for everything else the process does meanwhile: on the
  event loop, parsing and answering every other request of the batches ahead (often more than the model itself),
  and on a shared machine, waiting for a CPU. So the estimate is scaled by :class:`Calibration`, a running 90th
  percentile of (measured arrival-to-answer time) / (the estimate made on arrival) over recent busy requests.
  Arrival is when the event loop read the request (server.py's protocol), not when its handler got its turn.
  Just before a batch runs, items whose deadline the batch would miss are refused too, so the server answers 503
  early instead of 200 late.
  An idle server admits one request per ``probe_interval_s`` (1 s) even so, to measure the model again.
* **Call sizes**: a batch runs as one model call. Opt-in (``split_batches``): a batch of k samples runs as the
  calls that the costs measured at startup say are fastest (:func:`plan_chunks`), which makes how a batch is computed
  depend on those timings.
* **Alone, at once**: a request alone in the server that finds nothing queued or running runs at once in the event
  loop's thread (:meth:`Batcher.submit`'s ``alone``): no thread hop and no extra loop iteration at idle.
* **Isolation**: inputs were checked on arrival, but a model can still fail on values (an index out of range). When
  a batch fails, its items run one by one and only the failing ones get an error (422).

Results go back to the event loop with one ``call_soon_threadsafe`` per batch.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .codec import RequestError
from .metrics import Metrics

log = logging.getLogger("tinygrad_nb.serve")


BATCH_SIZES = ("pow2", "any")  # the batch_sizes values: preferred sizes (powers of two and max_batch), or any


class BatchTimer:
    """Seconds per model call as ``a + b * samples``, by exponentially weighted least squares over recent batches
    (each new batch weighs ``1 - decay``; O(1) per update). With one batch size seen so far the estimate scales the
    mean time with the size above it (conservative: it ignores the fixed cost that batching amortises)."""

    def __init__(self, decay: float = 0.95):
        self.decay = decay
        self.w = self.n = self.t = self.nn = self.nt = 0.0

    def add(self, samples: int, seconds: float) -> None:
        d = self.decay
        self.w = d * self.w + 1.0
        self.n = d * self.n + samples
        self.t = d * self.t + seconds
        self.nn = d * self.nn + samples * samples
        self.nt = d * self.nt + samples * seconds

    def estimate(self, samples: int) -> float:
        if not self.w or samples <= 0:
            return 0.0
        mean_n, mean_t = self.n / self.w, self.t / self.w
        var = self.nn / self.w - mean_n * mean_n
        if var < 0.25:  # (nearly) one size seen: no slope to fit
            return mean_t * max(1.0, samples / mean_n)
        b = max((self.nt / self.w - mean_n * mean_t) / var, 0.0)
        a = max(mean_t - b * mean_n, 0.0)
        return a + b * samples


class Calibration:
    """How much longer requests really take than the admission estimate says: a running ``quantile`` (0.9) of
    ``actual / estimated`` over answered requests, at least 1 and at most ``ceiling`` (4: bounded pessimism),
    relaxing back towards 1 with time.

    Stochastic approximation of a quantile, in log space: ``q <- q * exp(step * (quantile - [x <= q]))`` moves q up by
    ``step * quantile`` when an observation lands above it and down by ``step * (1 - quantile)`` below, so it settles
    where a fraction ``quantile`` of observations is below (O(1) per request, no window to keep). Only requests whose
    estimate was at least ``min_estimate_s`` count: an idle server's estimate (one model call) says nothing about
    queueing, and its ratio (HTTP time over model time) would only make the busy server refuse too much. Between
    observations ``log q`` decays with time constant ``relax_s`` (1 s): a factor learnt in a bad moment (a noisy
    neighbour) that makes the server refuse everything would otherwise never be measured again."""

    def __init__(self, quantile: float = 0.9, step: float = 0.05, min_estimate_s: float = 0.002,
                 ceiling: float = 4.0, relax_s: float = 1.0, clock: Callable[[], float] = time.perf_counter):
        self.quantile, self.step, self.min_estimate_s, self.ceiling = quantile, step, min_estimate_s, ceiling
        self.relax_s, self.clock = relax_s, clock
        self.log_factor, self.at = 0.0, clock()

    @property
    def factor(self) -> float:
        """The factor now (a pure read: the batch thread reads it while the event loop observes)."""
        if not self.log_factor:
            return 1.0
        return math.exp(self.log_factor * math.exp(-(self.clock() - self.at) / self.relax_s))

    def observe(self, estimated_s: float, actual_s: float) -> None:
        if estimated_s < self.min_estimate_s:
            return
        now = self.clock()
        log_factor = self.log_factor * math.exp(-(now - self.at) / self.relax_s)
        above = actual_s > estimated_s * math.exp(log_factor)
        self.log_factor = min(max(log_factor + self.step * (self.quantile - (not above)), 0.0),
                              math.log(self.ceiling))
        self.at = now


def plan_chunks(cost: list[float], margin: float = 0.9) -> list[tuple[int, ...]]:
    """For every batch of k samples, the sizes of the calls that run it fastest, from ``cost[n]`` (seconds of one
    call of n samples; ``cost[0]`` unused). Batching is not always cheaper per sample: BLAS's matrix-matrix kernels
    pack the weights on every call, so on some CPUs a batch of 8 through a 784-1024-1024 MLP costs more than 8
    calls of one sample (matrix-vector). Dynamic programming over ``best[k] = min_n cost[n] + best[k - n]``; a batch is
    split only when the split is estimated at least ``1 - margin`` faster than one call (measurement noise)."""
    top = len(cost) - 1
    best = [0.0] * (top + 1)
    first = [0] * (top + 1)
    for k in range(1, top + 1):
        best[k], first[k] = min((cost[n] + best[k - n], n) for n in range(1, k + 1))
    chunks: list[tuple[int, ...]] = [()]
    for k in range(1, top + 1):
        if best[k] >= margin * cost[k]:
            chunks.append((k,))
            continue
        sizes, left = [], k
        while left:
            sizes.append(first[left])
            left -= first[left]
        chunks.append(tuple(sorted(sizes, reverse=True)))
    return chunks


class Item:
    """One request waiting for the model."""

    __slots__ = ("arrays", "n", "arrival", "deadline", "future", "loop", "key", "started", "probe", "estimated")

    def __init__(self, arrays: list[np.ndarray], n: int, arrival: float, deadline: float,
                 future: asyncio.Future, loop: asyncio.AbstractEventLoop):
        self.arrays, self.n, self.arrival, self.deadline = arrays, n, arrival, deadline
        self.future, self.loop = future, loop
        self.key = tuple(a.shape[1:] for a in arrays)  # only items of one trailing shape can share a batch
        self.started = 0.0
        self.probe = False  # admitted to measure the model again (see Batcher.submit)
        self.estimated = 0.0  # arrival to answer, as estimated on admission before calibration (0: a probe)


def _settle(pairs: list[tuple[asyncio.Future, Any, bool]]) -> None:
    for future, value, failed in pairs:
        if not future.done():  # (a client that went away cancelled its future)
            if failed:
                future.set_exception(value)
            else:
                future.set_result(value)


class Batcher:
    def __init__(self, session: Any, *, max_batch: int, max_wait_s: float, max_queue_samples: int,
                 metrics: Metrics, timer: BatchTimer, on_batch: Callable[[dict[str, Any]], Any] | None = None,
                 clock: Callable[[], float] = time.perf_counter, calibration: Calibration | None = None,
                 batch_sizes: str = "pow2"):
        self.preferred_sizes = batch_sizes == "pow2"  # (Server checked it is one of BATCH_SIZES)
        self.session, self.max_batch, self.max_wait_s = session, max_batch, max_wait_s
        self.max_queue_samples, self.metrics, self.timer, self.on_batch = max_queue_samples, metrics, timer, on_batch
        self.clock = clock
        self.calibration = calibration if calibration is not None else Calibration()
        self.names = list(session.output_names)
        self.single = len(session.inputs) == 1
        # one staging buffer per input for the max batch (inputs whose non-batch dims are fixed), so collating a
        # batch allocates nothing; planned with the session's arenas (see Server's memory accounting)
        self.staging = [np.empty((max_batch, *s.shape[1:]), s.dtype) if all(isinstance(d, int) for d in s.shape[1:])
                        else None for s in session.inputs]
        # chunks[k]: the call sizes that run k samples fastest (see plan_chunks); None: always one call
        self.chunks: list[tuple[int, ...]] | None = None
        self.out_staging: list[np.ndarray] | None = None
        self.queue: collections.deque[Item] = collections.deque()
        self.queued_samples = 0
        self.cond = threading.Condition()
        self.running_since = 0.0  # start of the batch now running (0.0: idle)
        self.running_estimate = 0.0
        self.stopping = False
        # an idle server admits one request per probe interval whatever the estimate says, so an estimate made
        # while the model was slow (a noisy neighbour, a cold cache) is measured again instead of refusing forever
        self.probe_interval_s = 1.0
        self.last_batch_end = 0.0
        self.thread: threading.Thread | None = None
        self.batches = 0
        self.inline = False  # a request runs in the event loop's thread now (submit's ``alone``)

    # -- the event loop's side ------------------------------------------------------------------------------------
    def submit(self, item: Item, alone: bool = False) -> None:
        """Queue ``item`` or refuse it (RequestError 503 with Retry-After) when it cannot finish by its deadline.

        ``alone``: no other request is in the server, read or running (app.py asks uvicorn's set of request tasks;
        every request read from a socket has one before any of them runs). Then, when
        nothing is queued or running and there is no fixed wait, the item runs now, in the caller's thread (the event
        loop), and its future is settled before this returns: a batch of one would run at once anyway, and running it
        here saves the hand-over (for the thread: a lock handoff, a wake-up of the other thread, and one of the loop;
        on the loop: one more loop iteration). Under load another request is always in flight, so batches form and
        run as before."""
        with self.cond:
            if self.stopping:
                raise RequestError(503, "the server is shutting down", "queue_full", retry_after=1)
            backlog = self.queued_samples + item.n
            if backlog > self.max_queue_samples:
                raise RequestError(503, f"the queue is full ({self.queued_samples} samples waiting, at most "
                                        f"{self.max_queue_samples})", "queue_full",
                                   retry_after=_retry_after(self._backlog_seconds(backlog, item.arrival)))
            estimated = self._backlog_seconds(backlog, item.arrival)
            wait = estimated * self.calibration.factor
            idle = not self.queue and not self.running_since
            probe = idle and item.arrival - self.last_batch_end >= self.probe_interval_s
            if item.arrival + wait > item.deadline and not probe:
                raise RequestError(503, f"cannot answer within the deadline: about {wait * 1e3:.1f} ms of work is "
                                        f"ahead of this request and its deadline is "
                                        f"{(item.deadline - item.arrival) * 1e3:.1f} ms away", "deadline",
                                   retry_after=_retry_after(wait))
            item.probe = probe
            item.estimated = 0.0 if probe else estimated
            now = alone and idle and self.max_wait_s <= 0
            if now:  # claim the session: the thread (if any) does not take a batch while this runs
                self.inline = True
                self.running_since = self.clock()
                self.running_estimate = self.timer.estimate(item.n)
            else:
                self.queue.append(item)
                self.queued_samples = backlog
                self._wake(item)
        if now:
            self._run_now(item)

    def _run_now(self, item: Item) -> None:
        """Run one item in the caller's thread (see ``submit``'s ``alone``) and settle its future directly."""
        try:
            self._run([item], _settle_here)
        except Exception as e:  # noqa: BLE001 - answer the waiting request whatever happened
            log.exception("serve: batch failed")
            _settle_here([(item, RequestError(500, f"internal error: {e}", "model_error"), True)])
        finally:
            with self.cond:
                self.inline = False
                self.running_since = 0.0
                self.last_batch_end = self.clock()
                if self.queue:
                    self._resume()

    def _resume(self) -> None:
        """Something was queued while ``_run_now`` held the session: hand it to the runner (the lock is held)."""
        self.cond.notify()

    def _wake(self, item: Item) -> None:
        """Tell the runner that ``item`` was queued (the lock is held)."""
        if len(self.queue) == 1 or self.queued_samples >= self.max_batch:
            self.cond.notify()

    def _backlog_seconds(self, samples: int, now: float) -> float:
        """Estimated seconds until ``samples`` queued samples are answered: the batch running now, then full
        batches, then the rest (plus the fixed wait, when there is one). With preferred sizes the rest runs as one
        call per power of two in it (19 samples: 16, 2, 1), each paying the model's fixed cost."""
        est = self.timer.estimate
        left = max(self.running_estimate - (now - self.running_since), 0.0) if self.running_since else 0.0
        full, rest = divmod(samples, self.max_batch)
        if self.preferred_sizes and rest.bit_count() > 1:
            rest_seconds = sum(est(1 << bit) for bit in range(rest.bit_length()) if rest >> bit & 1)
        else:
            rest_seconds = est(rest) if rest else 0.0
        return left + full * est(self.max_batch) + rest_seconds + self.max_wait_s

    # -- the thread ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="tinygrad_nb-serve-batcher", daemon=True)
        self.thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the thread."""
        with self.cond:
            self.stopping = True
            self.cond.notify()
        if self.thread is not None:
            self.thread.join(timeout)

    def _take(self) -> list[Item] | None:
        with self.cond:
            while not self.queue or self.inline:
                if self.stopping and not self.queue:
                    return None
                self.cond.wait()
            if self.max_wait_s > 0:
                until = self.queue[0].arrival + self.max_wait_s
                while self.queued_samples < self.max_batch and not self.stopping:
                    left = until - self.clock()
                    if left <= 0:
                        break
                    self.cond.wait(left)
            return self._select()

    def _select(self) -> list[Item]:
        """Pop the next batch: queued items in order, of one trailing shape, up to max_batch samples (with preferred
        sizes, up to the largest power of two of samples queued; at least the first item)."""
        queue, first = self.queue, self.queue[0]
        batch, total = [], 0
        limit = self.max_batch
        if self.preferred_sizes and self.queued_samples < limit:
            limit = max(first.n, 1 << (self.queued_samples.bit_length() - 1))
        while queue and total + queue[0].n <= limit and queue[0].key == first.key:
            item = queue.popleft()
            batch.append(item)
            total += item.n
        self.queued_samples -= total
        self.running_since = self.clock()
        self.running_estimate = self.timer.estimate(total)
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                self._run(batch)
            except Exception as e:  # noqa: BLE001 - never let the thread die with requests waiting on it
                log.exception("serve: batch failed")
                self._answer([(item, RequestError(500, f"internal error: {e}", "model_error"), True)
                              for item in batch])
            finally:
                self.running_since = 0.0
                self.last_batch_end = self.clock()

    def _run(self, batch: list[Item], answer: Callable[[list[tuple[Item, Any, bool]]], None] | None = None) -> None:
        """Run ``batch`` (refusing first what it would finish late) and hand the answers to ``answer`` (default:
        ``self._answer``)."""
        now = self.clock()
        total = sum(item.n for item in batch)
        estimate = self.timer.estimate(total) * self.calibration.factor
        late = [item for item in batch if now + estimate > item.deadline and not item.probe]
        answers: list[tuple[Item, Any, bool]] = []
        if late:  # refuse now what this batch would finish after its deadline
            batch = [item for item in batch if now + estimate <= item.deadline or item.probe]
            total = sum(item.n for item in batch)
            answers += [(item, RequestError(503, f"cannot answer within the deadline: the request waited "
                                                 f"{(now - item.arrival) * 1e3:.1f} ms and its batch would take about "
                                                 f"{estimate * 1e3:.1f} ms more", "deadline",
                                            retry_after=_retry_after(estimate)), True) for item in late]
        if batch:
            metrics = self.metrics
            for item in batch:
                item.started = now
                metrics.queue_wait.observe(now - item.arrival)
            start = self.clock()
            answers += self._call(batch, total)
            seconds = self.clock() - start
            self.timer.add(total, seconds)
            self.batches += 1
            metrics.batch_size.observe(total)
            metrics.batch_seconds.observe(seconds)
            if self.on_batch:
                try:
                    self.on_batch({"samples": total, "requests": len(batch), "seconds": seconds})
                except Exception:  # noqa: BLE001 - a monitoring hook must not break serving
                    log.exception("serve: the on_batch hook raised")
        (answer or self._answer)(answers)

    def _call(self, batch: list[Item], total: int) -> list[tuple[Item, Any, bool]]:
        """Run the batch as one model call; on failure, each item alone (so only a bad item fails)."""
        if len(batch) == 1:
            inputs = batch[0].arrays
        else:
            inputs = []
            for i, buffer in enumerate(self.staging):
                parts = [item.arrays[i] for item in batch]
                if buffer is not None:
                    inputs.append(np.concatenate(parts, out=buffer[:total]))
                else:
                    inputs.append(np.concatenate(parts))
        chunks = self.chunks[total] if self.chunks is not None else None
        try:
            if chunks is None or len(chunks) == 1:
                outputs = list(self.session.run(inputs[0] if self.single else inputs, copy=False).values())
            else:
                outputs = self._run_chunks(inputs, chunks, total)
        except Exception as e:  # noqa: BLE001 - find the item(s) the model fails on
            if len(batch) == 1:
                return [(batch[0], RequestError(422, f"the model failed on this request's values: {e}",
                                                "model_error"), True)]
            return [answer for item in batch for answer in self._call([item], item.n)]
        answers, start = [], 0
        for item in batch:
            stop = start + item.n
            answers.append((item, {name: out[start:stop].copy() for name, out in zip(self.names, outputs)}, False))
            start = stop
        return answers

    def _run_chunks(self, inputs: list[np.ndarray], chunks: tuple[int, ...], total: int) -> list[np.ndarray]:
        """Run ``total`` samples as several calls of the cheaper sizes, gathering the outputs in a staging buffer
        per output (allocated once, for the max batch)."""
        start = 0
        for size in chunks:
            stop = start + size
            part = [x[start:stop] for x in inputs]
            outs = list(self.session.run(part[0] if self.single else part, copy=False).values())
            if self.out_staging is None:
                self.out_staging = [np.empty((self.max_batch, *o.shape[1:]), o.dtype) for o in outs]
            for buffer, o in zip(self.out_staging, outs):
                buffer[start:stop] = o
            start = stop
        return [buffer[:total] for buffer in self.out_staging]

    def _answer(self, answers: list[tuple[Item, Any, bool]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any, bool]]] = {}
        for item, value, failed in answers:
            by_loop.setdefault(item.loop, []).append((item.future, value, failed))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, pairs)
            except RuntimeError:  # the loop closed (server stopped hard): nobody is waiting
                pass


def _settle_here(answers: list[tuple[Item, Any, bool]]) -> None:
    """Settle the futures from their loop's own thread."""
    _settle([(item.future, value, failed) for item, value, failed in answers])


def _retry_after(seconds: float) -> int:
    """Retry-After is whole seconds: at least 1."""
    return max(1, int(seconds + 0.999))


class LoopBatcher(Batcher):
    """The same batching on the event loop's own thread: no thread hop (no lock handoff, no wake-up of another
    thread, no ``call_soon_threadsafe``), at the price of HTTP parsing and the model not overlapping.

    A queued request schedules one drain with ``call_soon``, which runs after the callbacks already ready: every
    request that arrived while the last batch ran is parsed and queued first, then runs in the next batch. An idle
    server so pays two loop iterations; a busy one batches what arrived during the previous call. A fixed wait
    schedules the drain ``max_wait_s`` after the oldest request (or at once when a full batch is queued)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self.timed = False  # the handle is a fixed wait's timer (uvloop's handles are not asyncio's classes)

    def _wake(self, item: Item) -> None:
        full = self.queued_samples >= self.max_batch
        if self.handle is not None and not (full and self.timed):
            return
        if self.handle is not None:
            self.handle.cancel()
        self._schedule(item.loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        full = self.queued_samples >= self.max_batch
        delay = 0.0 if full or self.max_wait_s <= 0 else self.queue[0].arrival + self.max_wait_s - self.clock()
        self.timed = delay > 0
        self.handle = loop.call_later(delay, self._drain) if self.timed else loop.call_soon(self._drain)

    def _drain(self) -> None:
        self.handle = None
        if not self.queue:
            return
        loop = self.queue[0].loop
        batch = self._select()
        try:
            self._run(batch)
        except Exception as e:  # noqa: BLE001 - answer every waiting request whatever happened
            log.exception("serve: batch failed")
            self._answer([(item, RequestError(500, f"internal error: {e}", "model_error"), True) for item in batch])
        finally:
            self.running_since = 0.0
            self.last_batch_end = self.clock()
        if self.queue and self.handle is None:  # what arrived meanwhile: after the loop has read the sockets
            self._schedule(loop)

    def _answer(self, answers: list[tuple[Item, Any, bool]]) -> None:
        _settle_here(answers)

    def _resume(self) -> None:
        if self.handle is None:
            self._schedule(self.queue[0].loop)

    def start(self) -> None:
        pass

    def stop(self, timeout: float | None = None) -> None:
        self.stopping = True  # (nothing is queued: uvicorn answered every request before the lifespan ends)
