"""Latency-budget alerts: the p99 latency and the rejection rate over a sliding window, with hooks.

The monitor keeps the latency of each answered request and the count of refused ones over the last ``window_s``
seconds. It is *exceeded* when
the window holds at least ``min_requests`` requests and either the p99 latency of the answered ones is above the
budget or the fraction refused (503: deadline or queue full) is above ``rejection_threshold``; it *recovers* when
neither holds (an empty window holds neither). Each change of state writes one JSON line to the
``tinygrad_nb.serve`` logger and calls the user's hooks::

    {"event": "latency_budget_exceeded", "p99_ms": 81.2, "budget_ms": 50.0, "rejection_rate": 0.0,
     "requests": 412, "window_s": 10.0, "reason": "p99"}

Checks run at most every ``check_every_s``, from the request path and from a timer, so an alert also clears when
traffic stops. Hook exceptions are logged, never raised into a request.

Recording a request is a list append: the event loop pays it on every answer. The latencies of each check interval
become one numpy array at the next check, and a check finds the p99 with ``np.partition`` over the window's arrays
(linear time, in C). Keeping one Python tuple per request and scanning them at every check cost 15% of the event
loop's time at 5,000 requests/s (py-spy, ``benchmarks/serve_load.py``'s wide model at 32 clients). The window
slides by whole intervals: a slice leaves it when its last request is older than ``window_s``.
"""
from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("tinygrad_nb.serve")

Hook = Callable[[dict[str, Any]], Any]


class AlertMonitor:
    def __init__(self, budget_s: float, *, window_s: float = 10.0, rejection_threshold: float = 0.05,
                 min_requests: int = 20, check_every_s: float = 0.1, on_budget_exceeded: Hook | None = None,
                 on_recovered: Hook | None = None, clock: Callable[[], float] = time.monotonic):
        self.budget_s, self.window_s = budget_s, window_s
        self.rejection_threshold, self.min_requests, self.check_every_s = rejection_threshold, min_requests, \
            check_every_s
        self.on_budget_exceeded, self.on_recovered = on_budget_exceeded, on_recovered
        self.clock = clock
        # the current interval's answered latencies (seconds) and refusals; closed into ``slices`` by each check
        self._latencies: list[float] = []
        self._refused = 0
        self.slices: deque[tuple[float, np.ndarray, int]] = deque()  # (time closed, latencies, refused)
        self.exceeded = False
        self.last: dict[str, Any] = {"p99_ms": 0.0, "rejection_rate": 0.0, "requests": 0}
        self.history: list[dict[str, Any]] = []  # every state change (bounded: the last 100)
        self._next_check = 0.0

    def record(self, latency_s: float, refused: bool) -> None:
        if refused:
            self._refused += 1
        else:
            self._latencies.append(latency_s)
        now = self.clock()
        if now >= self._next_check:
            self.check(now)

    def check(self, now: float | None = None) -> dict[str, Any]:
        """Recompute the window's p99 and rejection rate; fire the hooks on a change of state."""
        now = self.clock() if now is None else now
        self._next_check = now + self.check_every_s
        slices = self.slices
        if self._latencies or self._refused:
            slices.append((now, np.array(self._latencies), self._refused))
            self._latencies, self._refused = [], 0
        while slices and slices[0][0] < now - self.window_s:
            slices.popleft()
        latencies = np.concatenate([s[1] for s in slices]) if slices else np.empty(0)
        refused = sum(s[2] for s in slices)
        n = len(latencies)
        requests = n + refused
        # the value at sorted index int(0.99 n), found in linear time without sorting the window
        k = min(n - 1, int(0.99 * n))
        p99 = float(np.partition(latencies, k)[k]) if n else 0.0
        rate = refused / requests if requests else 0.0
        self.last = {"p99_ms": round(p99 * 1e3, 3), "rejection_rate": round(rate, 4), "requests": requests}
        enough = requests >= self.min_requests
        over_p99, over_rate = enough and p99 > self.budget_s, enough and rate > self.rejection_threshold
        if (over_p99 or over_rate) and not self.exceeded:
            self.exceeded = True
            self._emit("latency_budget_exceeded", "p99" if over_p99 else "rejections", self.on_budget_exceeded)
        elif not (over_p99 or over_rate) and self.exceeded and (enough or not requests):
            self.exceeded = False
            self._emit("latency_budget_recovered", "", self.on_recovered)
        return self.last

    def _emit(self, event: str, reason: str, hook: Hook | None) -> None:
        record = {"event": event, **self.last, "budget_ms": round(self.budget_s * 1e3, 3),
                  "window_s": self.window_s, "reason": reason}
        self.history = (self.history + [record])[-100:]
        log.warning(json.dumps(record))
        if hook:
            try:
                hook(record)
            except Exception:  # noqa: BLE001 - a monitoring hook must not break serving
                log.exception("serve: the %s hook raised", event)
