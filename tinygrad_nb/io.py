"""The one atomic-write helper: everything tinygrad_nb writes to disk goes through it.

The bytes go to a temporary file in the destination's folder, which is renamed over the destination only once it is
complete (``os.replace`` is atomic on POSIX and Windows). A crash of the process, ``kill`` or Ctrl-C at any moment
leaves either the old file or the new one, never a torn mix; on an exception the temporary file is removed.

``durable=True`` (the default) also survives power loss and OS crashes: the file is fsynced *before* the rename (so
the name can never point at data that is not on disk yet) and the folder after it (so the rename itself is on disk
when the call returns). ``durable=False`` skips both fsyncs: the file still appears atomically, but after a power
loss or kernel crash in the seconds that follow, the new file may be missing or incomplete (how likely depends on the
filesystem; see docs/checkpoints.md).

A process killed mid-write (``SIGKILL``, the OOM killer, power loss) cannot remove its temporary file. Each temporary
name says who wrote it (host, process id, and the process's boot and start time: :mod:`tinygrad_nb.owner`), so the
next write of the same target, and :func:`tinygrad_nb.load`, remove the leftovers that are provably stale: written on
this host by this user, by a process that no longer runs (its pid is gone, or now belongs to another process).
Files of live writers, of other hosts on a shared folder, or of unknown origin are never touched.

Replacing a large file frees its cached pages and disk blocks, which takes the kernel ~20 ms per 100 MB. On POSIX,
:func:`atomic_open` keeps the replaced file open across the rename (so the rename only drops its name) and closes it
on a background thread, where the freeing happens while the caller carries on. The replaced file is gone from the
folder at the rename as before; if the process dies first, the kernel closes it and frees it just the same.
:func:`wait_for_released` waits for that work (benchmarks and tests use it).
"""
from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import socket
import stat
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .owner import current_token, owner_is_dead


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", durable: bool = True) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path`` atomically.

    On an exception (including KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.
    ``durable``: fsync the file before the rename and the folder after it (see the module docstring).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    # The name is chosen before the file exists and the file is created inside the try, so a Ctrl-C at any point
    # (even while the file is being created) finds a name to clean up (tempfile.mkstemp would not tell it).
    tmp = _temp_path(target)
    try:
        while True:
            try:
                fd = os.open(tmp, _TEMP_FLAGS, 0o600)
                break
            except FileExistsError:  # another writer's file with the same random name: practically never
                tmp = _temp_path(target)
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before the name can point at it
        old = _hold_replaced(target)
        try:
            os.replace(tmp, target)
        finally:
            if old is not None:
                _release_later(old)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(target.parent)


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def _temp_path(target: Path) -> Path:
    """``.<name>.<host>.<pid>.<token>.<random>.tmp`` next to ``target``: the writer's host (a CRC-32 of its name), pid
    and process token (:func:`tinygrad_nb.owner.process_token`), so a leftover can later be proven stale."""
    return target.parent / f".{target.name}.{_writer()}.{secrets.token_hex(6)}.tmp"


_TEMP_NAME = re.compile(r"\.(?P<host>[0-9a-f]{8})\.(?P<pid>[0-9]+)\.(?P<token>[0-9a-z-]+)\.[0-9a-f]{12}\.tmp")


def _host_tag(host: str) -> str:
    return f"{zlib.crc32(host.encode()):08x}"


def _writer() -> str:
    return f"{_host_tag(socket.gethostname())}.{os.getpid()}.{current_token() or 'none'}"


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that killed writes of ``path`` left behind; return the ones removed.

    A file is removed only when it is provably a stale leftover of :func:`atomic_open`: named like its temporary
    files for this target, a regular file owned by this user, written on this host, by a process that certainly no
    longer runs (:func:`tinygrad_nb.owner.owner_is_dead`: its pid is gone, or now belongs to another process).
    """
    target = Path(path)
    prefix = f".{target.name}"
    try:
        names = [name for name in os.listdir(target.parent) if name.startswith(prefix) and name.endswith(".tmp")]
    except OSError:
        return []
    host = socket.gethostname()
    removed: list[Path] = []
    for name in names:
        match = _TEMP_NAME.fullmatch(name, len(prefix))
        if match is None or match["host"] != _host_tag(host):
            continue
        token = None if match["token"] == "none" else match["token"]
        if not owner_is_dead(host, int(match["pid"]), token):
            continue
        temp = target.parent / name
        try:
            info = temp.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():
                temp.unlink()
                removed.append(temp)
        except OSError:  # removed meanwhile by another cleaner, or not ours to remove
            continue
    return removed


def atomic_write(path: str | os.PathLike[str], data: bytes | str, durable: bool = True) -> None:
    """Write ``data`` (bytes or text) to ``path`` atomically."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w", durable=durable) as f:
        f.write(data)


def start_writeback(f: IO[Any]) -> None:
    """Ask the kernel to start writing ``f``'s dirty pages to disk now, without waiting for them.

    Called every few megabytes while writing a large file, it overlaps the disk I/O with the writing, so a final
    fsync (or the flush ext4 starts when the file is renamed over another) has little left to wait for. Only a hint: Linux ``sync_file_range(WRITE)``; a no-op
    elsewhere or when the call fails. It never replaces the fsync.
    """
    sync_file_range = _sync_file_range()
    if sync_file_range is None:
        return
    try:
        f.flush()
        fd = f.fileno()
    except (OSError, ValueError):  # not a real file (io.BytesIO): nothing to start
        return
    sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # offset 0, nbytes 0: the whole file; errors ignored


_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range_fn: Any = None


def _sync_file_range() -> Any:
    """libc's sync_file_range (Linux), looked up once; None where there is none."""
    global _sync_file_range_fn
    if _sync_file_range_fn is None:
        _sync_file_range_fn = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes  # only needed here, once

                fn = ctypes.CDLL(None, use_errno=True).sync_file_range
            except (OSError, AttributeError):
                pass
            else:
                fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                fn.restype = ctypes.c_int
                _sync_file_range_fn = fn
    return _sync_file_range_fn or None


# -- freeing replaced files in the background ------------------------------------------------------------------------
_RELEASE_MIN_BYTES = 8 * 1024 * 1024  # smaller files are freed in no time: not worth the thread
_release_queue: queue.Queue[int] | None = None
_release_lock = threading.Lock()


def _hold_replaced(target: Path) -> int | None:
    """An open descriptor of the large file about to be replaced (POSIX), or None."""
    if os.name != "posix":  # on Windows an open file cannot be replaced
        return None
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)  # never wait on a FIFO, never follow links
    except OSError:  # no file yet (the usual first save), or unreadable: the rename frees it as before
        return None
    try:
        if os.fstat(fd).st_size >= _RELEASE_MIN_BYTES:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _release_later(fd: int) -> None:
    """Close ``fd`` on the background thread (started on first use)."""
    global _release_queue
    with _release_lock:
        if _release_queue is None:
            _release_queue = queue.Queue()
            threading.Thread(target=_release_loop, args=(_release_queue,), name="tinygrad_nb-io-release",
                             daemon=True).start()
        _release_queue.put(fd)


def _release_loop(fds: queue.Queue[int]) -> None:
    while True:
        fd = fds.get()
        try:
            os.close(fd)  # the last reference: the kernel frees the replaced file's pages and blocks here
        except OSError:
            pass
        finally:
            fds.task_done()


def wait_for_released() -> None:
    """Block until every file replaced by :func:`atomic_open` so far has been freed."""
    fds = _release_queue
    if fds is not None:
        fds.join()


def _after_fork_in_child() -> None:
    """A forked child has no release thread: close the child's copies of the descriptors the parent had queued (so
    the child does not keep those files alive) and start afresh. The queue's locks may have been held by the
    parent's thread at the fork, so its deque is read directly (the child has one thread)."""
    global _release_queue, _release_lock
    fds, _release_queue, _release_lock = _release_queue, None, threading.Lock()
    for fd in list(fds.queue) if fds is not None else []:
        with contextlib.suppress(OSError):
            os.close(fd)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
