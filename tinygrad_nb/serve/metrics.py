"""The server's metrics, written in the Prometheus text exposition format (version 0.0.4) by ``GET /metrics``.

    tgnb_requests_total{status="200"}          requests answered, by HTTP status
    tgnb_rejections_total{reason="deadline"}   refused requests by reason: deadline, queue_full, too_large,
                                               invalid, unauthorized, timeout, model_error, aborted
    tgnb_request_latency_seconds               histogram: arrival to answer (successful predictions)
    tgnb_queue_wait_seconds                    histogram: arrival to the start of the request's batch
    tgnb_batch_size_samples                    histogram: samples per model call
    tgnb_batch_seconds                         histogram: one model call
    tgnb_in_flight_requests, tgnb_queue_samples, tgnb_resident_memory_bytes, tgnb_planned_memory_bytes,
    tgnb_memory_limit_bytes, tgnb_latency_budget_seconds, tgnb_window_p99_seconds, tgnb_alert_active

A histogram keeps cumulative bucket counts, a sum and a count (what Prometheus' ``histogram_quantile`` reads);
updates are a bisect and three additions. Writers are the event loop (requests) and the batch thread (batches);
each metric has one writer, so no lock is needed under the GIL.
"""
from __future__ import annotations

import bisect
import os
import re
from collections.abc import Iterable, Sequence

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _batch_buckets(max_batch: int) -> tuple[float, ...]:
    edges, b = [], 1
    while b < max_batch:
        edges.append(float(b))
        b *= 2
    return tuple(edges + [float(max_batch)])


class Histogram:
    """Counts of observations per bucket (upper bounds ``buckets``, plus +Inf), their sum and their count."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]):
        self.name, self.help, self.buckets = name, help_text, tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def quantile(self, q: float) -> float:
        """The bucket upper bound below which a fraction ``q`` of observations fall (as histogram_quantile, without
        interpolation); 0.0 when empty."""
        if not self.count:
            return 0.0
        target, seen = q * self.count, 0
        for bound, n in zip(self.buckets, self.counts):
            seen += n
            if seen >= target:
                return bound
        return float("inf")

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        cumulative = 0
        for bound, n in zip(self.buckets, self.counts):
            cumulative += n
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {_number(self.sum)}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


class Counter:
    """A counter per label value (one label)."""

    def __init__(self, name: str, help_text: str, label: str, values: Iterable[str] = ()):
        self.name, self.help, self.label = name, help_text, label
        self.values: dict[str, int] = {v: 0 for v in values}

    def inc(self, value: str, n: int = 1) -> None:
        self.values[value] = self.values.get(value, 0) + n

    def total(self) -> int:
        return sum(self.values.values())

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        lines += [f'{self.name}{{{self.label}="{v}"}} {n}' for v, n in sorted(self.values.items())]
        return lines


def _number(x: float) -> str:
    if x == float("inf"):
        return "+Inf"
    return repr(float(x)) if not float(x).is_integer() or abs(x) >= 1e15 else str(int(x)) + ".0"


def gauge(name: str, help_text: str, value: float) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {_number(value)}"]


def resident_bytes() -> int:
    """This process's resident set size (Linux: /proc/self/statm; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource  # noqa: PLC0415

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


REJECTION_REASONS = ("deadline", "queue_full", "too_large", "invalid", "unauthorized", "timeout", "model_error",
                     "aborted")


class Metrics:
    """Every metric of one server."""

    def __init__(self, max_batch: int):
        self.requests = Counter("tgnb_requests_total", "Requests answered, by HTTP status.", "status")
        self.rejections = Counter("tgnb_rejections_total", "Requests refused, by reason.", "reason",
                                  REJECTION_REASONS)
        self.latency = Histogram("tgnb_request_latency_seconds", "Arrival to answer of successful predictions.",
                                 LATENCY_BUCKETS)
        self.queue_wait = Histogram("tgnb_queue_wait_seconds", "Arrival to the start of the request's batch.",
                                    LATENCY_BUCKETS)
        self.batch_size = Histogram("tgnb_batch_size_samples", "Samples per model call.", _batch_buckets(max_batch))
        self.batch_seconds = Histogram("tgnb_batch_seconds", "Seconds per model call.", LATENCY_BUCKETS)
        self.in_flight = 0

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        lines: list[str] = []
        for metric in (self.requests, self.rejections, self.latency, self.queue_wait, self.batch_size,
                       self.batch_seconds):
            lines += metric.render()
        lines += gauge("tgnb_in_flight_requests", "Requests received and not yet answered.", self.in_flight)
        lines += gauge("tgnb_resident_memory_bytes", "Resident set size of the server process.", resident_bytes())
        for name, (help_text, value) in gauges.items():
            lines += gauge(name, help_text, value)
        return "\n".join(lines) + "\n"


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"\})? (\S+)$')


def parse(text: str) -> dict[str, dict[str, float]]:
    """Read exposition text back: ``{metric name: {label value or "": value}}`` (the subset this module writes; a
    line that does not fit raises ValueError naming it). ``--stats`` and the tests read /metrics with this."""
    out: dict[str, dict[str, float]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"metrics line {number}: not a sample line: {line!r}")
        value = float(m.group(5).replace("+Inf", "inf"))
        out.setdefault(m.group(1), {})[m.group(4) or ""] = value
    return out
