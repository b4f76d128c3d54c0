"""The registry of files read through :func:`tinygrad_nb.data.read_csv`, for run fingerprints.

Each file is recorded once (by resolved path) with its size, modification time and the xxh3-128 hash of its full
content. Hashes are cached by ``(path, size, mtime_ns)``, so reading the same unchanged file again costs nothing.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import xxhash

_lock = threading.Lock()
_records: dict[str, dict[str, Any]] = {}  # resolved path -> record, in first-read order
_hash_cache: dict[tuple[str, int, int], str] = {}


def record_file(path: str | os.PathLike[str], content: bytes, stat: os.stat_result) -> dict[str, Any]:
    """Register ``path`` whose full ``content`` was just read (``stat`` taken before reading); returns its record."""
    resolved = str(Path(path).resolve())
    key = (resolved, stat.st_size, stat.st_mtime_ns)
    with _lock:
        digest = _hash_cache.get(key)
    if digest is None:
        digest = xxhash.xxh3_128(content).hexdigest()
        with _lock:
            _hash_cache[key] = digest
    record = {"path": resolved, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "xxh3_128": digest}
    with _lock:
        _records.pop(resolved, None)  # re-reading a file moves it to the end with its current state
        _records[resolved] = record
    return dict(record)


def files_read() -> list[dict[str, Any]]:
    """Every file read through ``read_csv`` in this process: ``[{path, size, mtime_ns, xxh3_128}, ...]``."""
    with _lock:
        return [dict(r) for r in _records.values()]


def clear_files_read() -> None:
    """Forget the files read so far (e.g. at the start of a new run in the same process). The hash cache stays."""
    with _lock:
        _records.clear()
