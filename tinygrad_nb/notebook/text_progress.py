"""Text progress for terminals, scripts and logs: what the live widgets become outside Jupyter.

In a terminal the line is redrawn in place (``\\r``) at most ten times a second; in a log file or pipe one line is
printed every ``interval`` seconds. Each epoch ends with its own line either way.
"""
from __future__ import annotations

import sys
import time
from typing import IO, Any


def format_values(values: dict[str, float]) -> str:
    """``loss 0.4321  acc 91.20%`` (names ending in acc/accuracy as percentages)."""
    parts = []
    for name, value in values.items():
        if name.endswith(("acc", "accuracy")):
            parts.append(f"{name} {value:6.2%}")
        else:
            parts.append(f"{name} {value:.4g}")
    return "  ".join(parts)


class TextProgress:
    """A throttled progress line: ``epoch 2/5  step 13/26  loss 0.4321``."""

    def __init__(self, epochs: int | None = None, steps_per_epoch: int | None = None, interval: float = 2.0,
                 stream: IO[str] | None = None):
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.stream = stream if stream is not None else sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 0.1 if self.tty else interval
        self._next = time.monotonic() + self.interval
        self._started = time.monotonic()
        self._drawn = False

    def _prefix(self, epoch: int, step: int | None = None) -> str:
        text = f"epoch {epoch + 1}" + (f"/{self.epochs}" if self.epochs else "")
        if step is not None:
            text += f"  step {step + 1}" + (f"/{self.steps_per_epoch}" if self.steps_per_epoch else "")
        return text

    def update(self, epoch: int, step: int, values: dict[str, float]) -> None:
        """Cheap unless it is time to print (a clock read per call)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        line = f"{self._prefix(epoch, step)}  {format_values(values)}"
        if self.tty:
            self.stream.write("\r" + line + " " * 4)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def epoch_end(self, epoch: int, values: dict[str, float]) -> None:
        """One line per epoch, with the time since the previous one."""
        now = time.monotonic()
        line = f"{self._prefix(epoch)}  {format_values(values)}  ({now - self._started:.1f}s)"
        self._started = now
        self.stream.write(("\r" if self._drawn else "") + line + " " * (8 if self._drawn else 0) + "\n")
        self.stream.flush()
        self._drawn = False
        self._next = now + self.interval

    def message(self, text: str) -> None:
        self.stream.write(("\n" if self._drawn else "") + text + "\n")
        self.stream.flush()
        self._drawn = False

    def close(self, *_: Any) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
