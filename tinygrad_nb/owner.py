"""Is the process that wrote something still alive? How a "running" run whose process died is told apart (shown
"crashed"), and how a temporary file left by a killed write is proven stale (:mod:`tinygrad_nb.io`).

The writer records its host, its pid and a *process token*: on Linux the boot id (its first 8 hex digits) plus the
process start time (``/proc/<pid>/stat`` field 22, clock ticks since boot), so neither a pid reused by a later
process nor one reused after a reboot is mistaken for the owner. Elsewhere there is no token, and a pid that no longer exists is the only
sign (``os.kill(pid, 0)``); a reused pid then reads as alive, which errs on the side of "running".

Only runs recorded on this host (same host name) can be checked; for the others the answer is "unknown" and they
keep their recorded status.
"""
from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

_PROC = Path("/proc")
_DEAD_STATES = ("Z", "X", "x")  # zombie (exited, not yet reaped), dead


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` from field 3 (state) on, or None when there is no such process."""
    try:
        text = (_PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    # field 2 (comm) is in parentheses and may itself hold spaces and parentheses: split after the last ")"
    return text[text.rfind(")") + 2:].split()


@functools.lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return "unknown"


def _has_proc() -> bool:
    return (_PROC / "self" / "stat").exists()


def process_token(pid: int) -> str | None:
    """``"<boot id>-<start time>"`` of a live process on Linux (characters safe in a file name); None elsewhere or
    when it cannot be read."""
    if not _has_proc():
        return None
    try:
        fields = _proc_stat(pid)
    except OSError:
        return None
    if fields is None or len(fields) < 20:
        return None
    return f"{_boot_id()[:8]}-{fields[19]}"  # fields[0] is field 3, so field 22 (starttime) is fields[19]


@functools.lru_cache(maxsize=4)
def _own_token(pid: int) -> str | None:
    return process_token(pid)


def current_token() -> str | None:
    """This process's token (computed once per process; a forked child gets its own)."""
    return _own_token(os.getpid())


def owner_is_dead(host: str | None, pid: int | None, token: str | None) -> bool:
    """True only when the owning process is certainly gone: it ran on this host and its pid no longer exists, is a
    zombie, or (with a token) now belongs to another process. False when it is alive or when that cannot be told."""
    if pid is None or pid <= 0 or host != socket.gethostname():
        return False
    if _has_proc():
        try:
            fields = _proc_stat(pid)
        except OSError:  # e.g. hidden by hidepid: cannot tell
            return False
        if fields is None or fields[0] in _DEAD_STATES:
            return True
        return token is not None and process_token(pid) != token
    if os.name != "posix":  # Windows: os.kill(pid, 0) would send CTRL_C_EVENT; cannot tell cheaply
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False
