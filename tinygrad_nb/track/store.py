"""The run store: one SQLite file (WAL) with tables ``runs``, ``config``, ``metrics``, ``hists``.

``metrics`` holds *chunks*: one row per (run, metric name, flush) with the steps (int64), values (float64) and wall
times (float64) of every point logged for that name since the previous flush, as little-endian binary blobs. A
point costs a few bytes and no per-row SQLite work, which is what keeps logging near the cost of a list append;
:meth:`RunStore.series` and :meth:`RunStore.metrics` decode them (numpy ``frombuffer``).

Writes never happen on the caller's thread. One background writer thread per process takes items from a queue,
groups everything queued since its last commit and inserts it with ``executemany`` in one transaction per file, so
``run.log`` never waits for the disk. ``flush()`` waits until everything queued so far is committed; an ``atexit``
handler drains the queue when the interpreter exits.

Several processes may write the same file at once: SQLite serializes the transactions (``busy_timeout`` plus a retry
loop for the rare "database is locked"), and nothing is lost.

Reads (``runs()``, ``metrics()``, ...) use a short-lived connection on the caller's thread and first flush the
writer, so a process always reads its own writes.
"""
from __future__ import annotations

import atexit
import difflib
import json
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

DEFAULT_DIR = ".tinygrad_nb"
DEFAULT_FILE = "runs.db"
SCHEMA_VERSION = 1
_default_path: Path | None = None

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT, project TEXT, status TEXT, start_time REAL, end_time REAL,
    fingerprint TEXT, host TEXT, pid INTEGER);
CREATE TABLE IF NOT EXISTS config (run_id TEXT, key TEXT, value TEXT, PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT, name TEXT, n INTEGER, first_step INTEGER, last_step INTEGER, steps BLOB, vals BLOB, times BLOB);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics (run_id, name);
CREATE TABLE IF NOT EXISTS hists (run_id TEXT, step INTEGER, name TEXT, counts TEXT, edges TEXT, time REAL);
CREATE INDEX IF NOT EXISTS hists_by_run ON hists (run_id, name, step);
"""


class UnknownRunError(KeyError):
    """No run with that id (or id prefix) in the store; the message lists close ids."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown run"


def default_store_path() -> Path:
    """``$TINYGRAD_NB_RUNS_DB``, else what :func:`set_default_store` set, else ``./.tinygrad_nb/runs.db``."""
    env = os.environ.get("TINYGRAD_NB_RUNS_DB")
    if env:
        return Path(env).absolute()
    if _default_path is not None:
        return _default_path
    return (Path.cwd() / DEFAULT_DIR / DEFAULT_FILE).absolute()


def set_default_store(path: str | os.PathLike[str] | None) -> None:
    """Where runs go when ``Run(store=None)``; None restores the default (``./.tinygrad_nb/runs.db``)."""
    global _default_path
    _default_path = Path(path).absolute() if path is not None else None


# -- the writer thread ----------------------------------------------------------------------------------------------
def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    _retry(conn.execute, "PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    _retry(conn.executescript, SCHEMA)
    _retry(conn.execute, "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    return conn


def _retry(fn: Any, *args: Any, attempts: int = 50) -> Any:
    """``fn(*args)``, retried while another process holds the lock longer than busy_timeout allows."""
    for i in range(attempts):
        try:
            return fn(*args)
        except sqlite3.OperationalError as e:
            message = str(e).lower()
            if ("locked" not in message and "busy" not in message) or i == attempts - 1:
                raise
            time.sleep(min(0.01 * (i + 1), 0.5))
    return None


class _Writer:
    """The process's one writer thread. Queue items: (path, kind, payload) or (None, "flush", threading.Event)."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[Path | None, str, Any]] = queue.SimpleQueue()
        self.connections: dict[Path, sqlite3.Connection] = {}
        self.error: BaseException | None = None
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._loop, name="tinygrad_nb-run-store", daemon=True)
        self.thread.start()

    def put(self, path: Path, kind: str, payload: Any) -> None:
        self.queue.put((path, kind, payload))

    def flush(self, timeout: float | None = None) -> None:
        done = threading.Event()
        self.queue.put((None, "flush", done))
        if not done.wait(timeout):
            raise TimeoutError("run store: the writer did not drain its queue in time")
        if self.error is not None:
            error, self.error = self.error, None
            raise RuntimeError(f"run store: writing failed: {error}") from error

    def _loop(self) -> None:
        while True:
            items = [self.queue.get()]
            while len(items) < 20_000:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            pending: list[tuple[Path, str, Any]] = []
            for path, kind, payload in items:
                if kind == "flush":
                    self._commit(pending)
                    pending = []
                    payload.set()
                elif kind == "close":
                    self._commit(pending)
                    pending = []
                    conn = self.connections.pop(path, None) if path is not None else None
                    if conn is not None:
                        conn.close()
                else:
                    pending.append((path, kind, payload))
            self._commit(pending)

    def _commit(self, items: list[tuple[Path, str, Any]]) -> None:
        by_path: dict[Path, list[tuple[str, Any]]] = {}
        for path, kind, payload in items:
            by_path.setdefault(path, []).append((kind, payload))
        for path, work in by_path.items():
            try:
                conn = self.connections.get(path)
                if conn is None:
                    conn = self.connections[path] = _connect(path)
                _retry(_transaction, conn, work)
            except BaseException as e:  # noqa: BLE001 - kept and re-raised on the caller's next flush()
                self.error = e


def _transaction(conn: sqlite3.Connection, work: list[tuple[str, Any]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for kind, payload in work:
            if kind == "metrics":
                conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", payload)
            elif kind == "hists":
                conn.executemany("INSERT INTO hists VALUES (?, ?, ?, ?, ?, ?)", payload)
            elif kind == "run":
                row, config = payload
                conn.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                             "name=excluded.name, project=excluded.project, status=excluded.status, "
                             "start_time=excluded.start_time, end_time=excluded.end_time, "
                             "fingerprint=excluded.fingerprint", row)
                if config is not None:
                    conn.executemany("INSERT OR REPLACE INTO config VALUES (?, ?, ?)", config)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


_writer: _Writer | None = None
_writer_lock = threading.Lock()


def writer() -> _Writer:
    """The process's writer (a new one after a fork: threads do not survive fork)."""
    global _writer
    w = _writer
    if w is None or w.pid != os.getpid():
        with _writer_lock:
            if _writer is None or _writer.pid != os.getpid():
                _writer = _Writer()
            w = _writer
    return w


def flush_all(timeout: float | None = 60.0) -> None:
    """Wait until every queued write of this process is committed."""
    if _writer is not None and _writer.pid == os.getpid():
        _writer.flush(timeout)


@atexit.register
def _drain_at_exit() -> None:
    try:
        flush_all(timeout=30.0)
    except Exception:  # noqa: BLE001 - at exit there is nobody left to tell
        pass


# -- records read back --------------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """One row of ``runs`` plus its config."""

    # What a replayed notebook cell cannot make again (see docs/cell_checkpoints.md, "Run-bound values")
    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {"id": "a random run id", "start_time": "wall-clock time", "end_time": "wall-clock time",
                        "host": "the machine it ran on", "pid": "the process it ran in"}

    id: str
    name: str
    project: str | None
    status: str
    start_time: float | None
    end_time: float | None
    fingerprint: dict[str, Any] | None
    host: str | None
    pid: int | None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"opt": {"lr": 0.1}}`` -> ``{"opt.lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, name + "."))
        else:
            flat[name] = value
    return flat


def _json(value: Any) -> str:
    return json.dumps(value, default=repr, sort_keys=True)


class RunStore:
    """One SQLite run store. ``RunStore()`` is the default file; ``RunStore(path)`` any other."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path).absolute() if path is not None else default_store_path()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # -- writing (queued) -----------------------------------------------------------------------------------------
    def write_run(self, row: Sequence[Any], config: dict[str, Any] | None = None) -> None:
        """Insert or update a run row ``(id, name, project, status, start, end, fingerprint, host, pid)``."""
        row = list(row)
        if isinstance(row[6], dict):
            row[6] = _json(row[6])
        config_rows = None if config is None else [(row[0], k, _json(v)) for k, v in flatten_config(config).items()]
        writer().put(self.path, "run", (tuple(row), config_rows))

    def write_metrics(self, run_id: str, columns: dict[str, tuple[list[int], list[float], list[float]]]) -> None:
        """Queue points: ``{name: (steps, values, times)}``, one chunk row per name."""
        rows = []
        for name, (steps, values, times) in columns.items():
            rows.append((run_id, name, len(steps), steps[0], steps[-1], np.asarray(steps, dtype="<i8").tobytes(),
                         np.asarray(values, dtype="<f8").tobytes(), np.asarray(times, dtype="<f8").tobytes()))
        writer().put(self.path, "metrics", rows)

    def write_hists(self, rows: list[tuple[str, int, str, list[int], list[float], float]]) -> None:
        """Queue ``(run_id, step, name, counts, edges, time)`` rows."""
        writer().put(self.path, "hists", [(r, s, n, json.dumps(c), json.dumps(e), t) for r, s, n, c, e, t in rows])

    def flush(self) -> None:
        flush_all()

    # -- reading --------------------------------------------------------------------------------------------------
    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        flush_all()
        if not self.path.exists():
            return []
        conn = sqlite3.connect(str(self.path), timeout=30.0)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            return _retry(conn.execute, sql, tuple(params)).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
        finally:
            conn.close()

    def runs(self, project: str | None = None, status: str | None = None, name: str | None = None,
             config: dict[str, Any] | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first, optionally filtered by project, status, name and config values (``{"lr": 0.1}``)."""
        where, params = [], []
        for column, value in (("project", project), ("status", status), ("name", name)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + \
            " ORDER BY start_time DESC, id"
        records = [self._record(row) for row in self._read(sql, params)]
        configs = self._configs([r.id for r in records])
        for r in records:
            r.config = configs.get(r.id, {})
        if config:
            wanted = flatten_config(config)
            records = [r for r in records if all(k in r.config and r.config[k] == v for k, v in wanted.items())]
        return records[:limit] if limit is not None else records

    def _configs(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not ids:
            return out
        for run_id, key, value in self._read("SELECT run_id, key, value FROM config ORDER BY run_id, key"):
            out.setdefault(run_id, {})[key] = json.loads(value)
        return out

    @staticmethod
    def _record(row: tuple[Any, ...]) -> RunRecord:
        run_id, name, project, status, start, end, fingerprint, host, pid = row
        return RunRecord(run_id, name, project, status, start, end, json.loads(fingerprint) if fingerprint else None,
                         host, pid)

    def ids(self) -> list[str]:
        return [row[0] for row in self._read("SELECT id FROM runs ORDER BY start_time DESC")]

    def get(self, run_id: str) -> RunRecord:
        """The run with this id, or the only run whose id starts with it; :class:`UnknownRunError` otherwise."""
        return self.resolve([run_id])[0]

    def resolve(self, run_ids: Sequence[str]) -> list[RunRecord]:
        by_id = {r.id: r for r in self.runs()}
        found = []
        for wanted in run_ids:
            if wanted in by_id:
                found.append(by_id[wanted])
                continue
            matches = [i for i in by_id if i.startswith(wanted)] or [r.id for r in by_id.values() if r.name == wanted]
            if len(matches) == 1:
                found.append(by_id[matches[0]])
                continue
            close = matches or difflib.get_close_matches(wanted, list(by_id), n=5, cutoff=0.3)
            hint = f"; close matches: {', '.join(close)}" if close else \
                (f"; known runs: {', '.join(list(by_id)[:10])}" if by_id else "; the store has no runs")
            what = "is ambiguous" if len(matches) > 1 else "not found"
            raise UnknownRunError(f"run {wanted!r} {what} in {self.path}{hint}")
        return found

    def series(self, run_id: str, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(steps, values, times)`` arrays of one metric, in logging order."""
        chunks = self._read("SELECT steps, vals, times FROM metrics WHERE run_id = ? AND name = ? ORDER BY rowid",
                            [run_id, name])
        if not chunks:
            return np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.float64)
        return (np.concatenate([np.frombuffer(c[0], dtype="<i8") for c in chunks]),
                np.concatenate([np.frombuffer(c[1], dtype="<f8") for c in chunks]),
                np.concatenate([np.frombuffer(c[2], dtype="<f8") for c in chunks]))

    def metrics(self, run_id: str, name: str | None = None) -> list[tuple[int, str, float, float]]:
        """``(step, name, value, time)`` points sorted by step (then name); NaN comes back as NaN."""
        names = [name] if name is not None else self.metric_names(run_id)
        points = []
        for n in names:
            steps, values, times = self.series(run_id, n)
            points += [(int(s), n, float(v), float(t)) for s, v, t in zip(steps, values, times)]
        points.sort(key=lambda p: (p[0], p[1]))
        return points

    def metric_names(self, run_id: str) -> list[str]:
        return [r[0] for r in self._read("SELECT DISTINCT name FROM metrics WHERE run_id = ? ORDER BY name",
                                         [run_id])]

    def hists(self, run_id: str, name: str | None = None) -> list[tuple[int, str, list[int], list[float], float]]:
        """``(step, name, counts, edges, time)`` rows."""
        sql = "SELECT step, name, counts, edges, time FROM hists WHERE run_id = ?"
        params: list[Any] = [run_id]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        return [(s, n, json.loads(c), json.loads(e), t) for s, n, c, e, t in self._read(sql + " ORDER BY rowid",
                                                                                          params)]

    def summary(self, run_id: str) -> dict[str, dict[str, float]]:
        """Per metric: ``final`` (last logged), ``min``, ``max`` (NaN ignored), ``count`` and ``last_step``."""
        out: dict[str, dict[str, float]] = {}
        for name in self.metric_names(run_id):
            steps, values, _ = self.series(run_id, name)
            finite = values[~np.isnan(values)]
            out[name] = {"final": float(values[-1]), "min": float(finite.min()) if finite.size else math.nan,
                         "max": float(finite.max()) if finite.size else math.nan, "count": int(values.size),
                         "last_step": int(steps[-1])}
        return out

    def count(self, table: str = "metrics") -> int:
        """Rows of a table; for ``metrics`` the number of points (not chunks)."""
        if table not in ("metrics", "hists", "runs", "config"):
            raise ValueError(f"count: unknown table {table!r}")
        rows = self._read("SELECT SUM(n) FROM metrics" if table == "metrics" else f"SELECT COUNT(*) FROM {table}")
        return int(rows[0][0] or 0) if rows else 0
