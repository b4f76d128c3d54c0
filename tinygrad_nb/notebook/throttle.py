"""The throttling protocol of the live views: cheap appends, few messages, no point lost.

* Per training step a widget only appends a row to a Python list and calls :meth:`Channel.tick` (a counter increment
  and a clock read).
* A widget sends what is pending as one message of float32 deltas when its channel allows it: at least
  ``interval`` (0.1 s, i.e. at most ~10 Hz) since its last message *and* at least ``batch`` new rows, or ``max_latency``
  (1 s) since its last message with anything pending. With a 1-2 ms training step and ``batch=100`` that is one
  message per 100-200 steps, so 10,000 steps send ~100 messages.
* Every message also needs a token from the process-wide :class:`TokenBucket` (100 per second, bursts of 10), so all
  live widgets together stay far below the ~1000 messages/s at which the Jupyter server starts dropping output.
* Forced flushes (:meth:`Channel.flush` with ``force=True``: at cell end, on KeyboardInterrupt, on NaN, when a run ends)
  skip the waiting but still spend a token, so the bucket's rate holds on average.

Nothing is ever dropped: a message carries every row since the previous one, with the index of its first row, and the
browser appends rows in order (asking for a resend if it ever sees a gap).
"""
from __future__ import annotations

import json
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any

MESSAGES_PER_SECOND = 100.0
BURST = 10.0


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` saved up. One token per message."""

    def __init__(self, rate: float = MESSAGES_PER_SECOND, capacity: float = BURST,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.capacity = capacity
        self.clock = clock
        self.tokens = capacity
        self._last = clock()

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self, force: bool = False) -> bool:
        """Spend a token if one is there (``force``: spend it anyway, going into debt). True when allowed."""
        self._refill(self.clock())
        if self.tokens >= 1.0 or force:
            self.tokens -= 1.0
            return True
        return False

    def wait_seconds(self) -> float:
        """How long until the next token."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


PROCESS_BUCKET = TokenBucket()


class Channel:
    """Decides when one widget sends. ``send()`` (the widget's) sends everything pending as one message."""

    def __init__(self, send: Callable[[], None], batch: int = 100, interval: float = 0.1, max_latency: float = 1.0,
                 bucket: TokenBucket | None = None, clock: Callable[[], float] = time.monotonic):
        self._send = send
        self.batch = max(1, int(batch))
        self.interval = interval
        self.max_latency = max_latency
        self.bucket = bucket if bucket is not None else PROCESS_BUCKET
        self.clock = clock
        self.pending = 0  # rows appended since the last message
        self.messages = 0
        now = clock()
        self._ready_at = now  # no earlier than this may a full batch go (last message + interval)
        self._stale_at = now  # from this time on, anything pending goes (last message + max_latency)

    def tick(self, rows: int = 1) -> None:
        """The hot path: ``rows`` new rows are pending. Sends when the policy allows."""
        self.pending += rows
        if self.pending >= self.batch:
            if self.clock() >= self._ready_at:
                self._try_send()
        elif self.clock() >= self._stale_at:
            self._try_send()

    def _try_send(self) -> None:
        now = self.clock()
        if not self.bucket.take():
            self._ready_at = self._stale_at = now + self.bucket.wait_seconds()
            return
        self._sent(now)

    def flush(self, force: bool = True) -> None:
        """Send what is pending now (cell end, interrupt, NaN, end of a run)."""
        if self.pending and self.bucket.take(force=force):
            self._sent(self.clock())

    def _sent(self, now: float) -> None:
        self.pending = 0
        self.messages += 1
        self._ready_at = now + self.interval
        self._stale_at = now + self.max_latency
        self._send()


# -- a comm that records instead of talking to a frontend (tests, benchmarks) -----------------------------------------
class RecordingComm:
    """Stands in for a widget's comm when there is no frontend: it counts and keeps (or just sizes) what is sent.

    Pass it as ``comm=`` to a widget. ``messages`` holds ``(data, buffers)`` for every message (``keep=False``: only
    ``count`` and ``bytes`` are kept). :meth:`receive` plays a message from the browser into the widget.
    """

    kernel = "recording"  # ipywidgets only sends through comms whose kernel is not None

    def __init__(self, keep: bool = True):
        self.comm_id = f"recording-{id(self):x}"
        self.keep = keep
        self.messages: list[tuple[dict[str, Any], list[bytes]]] = []
        self.count = 0
        self.bytes = 0
        self.closed = False
        self._on_msg: Callable[[dict[str, Any]], Any] | None = None

    def send(self, data: dict[str, Any] | None = None, metadata: Any = None, buffers: Any = None) -> None:
        buffers = [bytes(b) for b in buffers or []]
        self.count += 1
        self.bytes += len(json.dumps(data, default=str)) + sum(len(b) for b in buffers)
        if self.keep:
            self.messages.append((data or {}, buffers))

    def custom(self) -> list[tuple[dict[str, Any], list[bytes]]]:
        """The custom messages (the widget's data), without state updates."""
        return [(d["content"], b) for d, b in self.messages if d.get("method") == "custom"]

    def on_msg(self, callback: Callable[[dict[str, Any]], Any] | None) -> None:
        self._on_msg = callback

    def receive(self, content: dict[str, Any]) -> None:
        """Deliver a custom message from the (pretend) browser."""
        if self._on_msg is not None:
            self._on_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})

    def close(self, data: Any = None, metadata: Any = None, buffers: Any = None, deleting: bool = False) -> None:
        self.closed = True


# -- the live widgets of this process, flushed at cell end --------------------------------------------------------
_live: weakref.WeakSet[Any] = weakref.WeakSet()
_hook_registered = False


def register_live(widget: Any) -> None:
    """Remember a live widget so :func:`flush_all` reaches it; hook the flush to IPython's cell end once."""
    _live.add(widget)
    _register_cell_end_hook()


def unregister_live(widget: Any) -> None:
    _live.discard(widget)


def flush_all(*_: Any) -> None:
    """Send what every live widget has pending (IPython calls this after each cell, interrupted or not)."""
    for widget in list(_live):
        try:
            widget.flush()
        except Exception as e:  # noqa: BLE001 - a broken widget must not break the user's next cell
            print(f"tinygrad_nb: could not flush {type(widget).__name__}: {type(e).__name__}: {e}", file=sys.stderr)


def _register_cell_end_hook() -> None:
    global _hook_registered
    if _hook_registered:
        return
    module = sys.modules.get("IPython")
    shell = module.get_ipython() if module is not None else None
    if shell is None:
        return
    shell.events.register("post_run_cell", flush_all)
    _hook_registered = True
