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

Reading never trusts the file. Every text column is read as bytes and decoded per row; a row that cannot be decoded
(text that is not UTF-8, a config value that is not JSON, a metric chunk whose blobs do not hold ``n`` points, a
missing id or status, ...) makes its run's status "damaged", with the reasons in :attr:`RunRecord.damage`, and the
other runs read normally. A run still "running" whose owning process is gone (see :mod:`.owner`) reads as "crashed".

Schema versions (``meta.schema_version``): 1 had no ``runs.pid_start``; 2 adds it (the owner's process token). A
writer adds the column to an older file (``ALTER TABLE``); readers never change a file and read a missing column as
NULL.
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

from ..owner import owner_is_dead

DEFAULT_DIR = ".tinygrad_nb"
DEFAULT_FILE = "runs.db"
SCHEMA_VERSION = 2
STATUSES = ("running", "finished", "failed", "nan", "pruned")  # what a run records ("pruned": stopped early by
# a sweep's scheduler or pruner); reading adds "crashed" and "damaged"
READ_STATUSES = STATUSES + ("crashed", "damaged")
RUN_COLUMNS = ("id", "name", "project", "status", "start_time", "end_time", "fingerprint", "host", "pid", "pid_start")
_default_path: Path | None = None

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT, project TEXT, status TEXT, start_time REAL, end_time REAL,
    fingerprint TEXT, host TEXT, pid INTEGER, pid_start TEXT);
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


class DamagedRunError(ValueError):
    """Data of a run that cannot be decoded; the message says which rows and what is wrong with them."""


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
    _migrate(conn)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a file written by an older version up to ``SCHEMA_VERSION`` (added columns only; old rows keep NULLs),
    in one transaction, so two processes opening an old file at once cannot both add the column."""
    def upgrade() -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if "pid_start" not in {row[1] for row in conn.execute("PRAGMA table_info(runs)")}:
                conn.execute("ALTER TABLE runs ADD COLUMN pid_start TEXT")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version' AND CAST(value AS INTEGER) < ?",
                         (str(SCHEMA_VERSION), SCHEMA_VERSION))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    _retry(upgrade)


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


_UPSERT_RUN = (f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))}) "
               "ON CONFLICT(id) DO UPDATE SET name=excluded.name, project=excluded.project, status=excluded.status, "
               "start_time=excluded.start_time, end_time=excluded.end_time, fingerprint=excluded.fingerprint")


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
                conn.execute(_UPSERT_RUN, row)
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
    """One row of ``runs`` plus its config.

    ``status`` is what the run is now: the recorded status, except "crashed" for a run recorded "running" whose
    process is gone, and "damaged" when part of its data cannot be read (``damage`` then says what, one short
    sentence per problem; what could be read is still filled in). ``recorded_status`` is the status as stored.
    """

    # What a replayed notebook cell cannot make again (see docs/cell_checkpoints.md, "Run-bound values")
    RUN_BOUND_FIELDS: ClassVar[dict[Any, str]] = {"id": "a random run id", "start_time": "wall-clock time", "end_time": "wall-clock time",
                        "host": "the machine it ran on", "pid": "the process it ran in",
                        "pid_start": "the process it ran in"}

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
    pid_start: str | None = None
    recorded_status: str | None = None
    damage: list[str] = field(default_factory=list)

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


def _short(value: Any, limit: int = 40) -> str:
    """A repr cut to ``limit`` characters, for damage reasons."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_utf8(value: Any) -> bool:
    """False only for bytes that are not valid UTF-8."""
    if not isinstance(value, bytes):
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _text(value: Any) -> str:
    """A column read as bytes, as text: bytes that are not UTF-8 become ``\\xff`` escapes (readable and typeable)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


class _Decoder:
    """Decodes the columns of one raw row (text read as bytes), collecting what is wrong in ``problems``."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def text(self, what: str, value: Any, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.problems.append(f"{what} is missing")
            return None
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                self.problems.append(f"{what} is not UTF-8: {_short(value)}")
        return _text(value)

    def number(self, what: str, value: Any, required: bool = False) -> float | None:
        if value is None:
            if required:
                self.problems.append(f"{what} is missing")
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        self.problems.append(f"{what} is not a number: {_short(value)}")
        return None

    def integer(self, what: str, value: Any, required: bool = False) -> int | None:
        if value is None:
            if required:
                self.problems.append(f"{what} is missing")
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.problems.append(f"{what} is not an integer: {_short(value)}")
        return None

    def json(self, what: str, value: Any) -> Any:
        text = self.text(what, value, required=True)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            self.problems.append(f"{what} is not JSON: {_short(text)}")
            return None


def _check_chunk(name: str, rowid: int, n: Any, blobs: Sequence[Any], types: Sequence[Any]) -> str | None:
    """What is wrong with metric chunk ``rowid`` (point count ``n``, the steps/vals/times ``blobs`` and their SQLite
    ``types``), or None. Must agree with ``_DAMAGED_CHUNKS``."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return f"metric {name!r}: chunk {rowid} has a bad point count {_short(n)}"
    for column, blob, kind in zip(("steps", "vals", "times"), blobs, types):
        if kind != b"blob" and kind != "blob":
            return f"metric {name!r}: chunk {rowid} {column} is {_text(kind)}, not a blob"
        if len(blob) != 8 * n:
            return f"metric {name!r}: chunk {rowid} {column} holds {len(blob)} bytes for {n} points"
    return None


def _check_hist(counts: Any, edges: Any) -> str | None:
    """What is wrong with decoded histogram ``counts`` and ``edges``, or None. Must agree with ``_DAMAGED_HISTS``."""
    def numbers(values: Any) -> bool:
        return isinstance(values, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                for v in values)
    if not numbers(counts) or not numbers(edges):
        return "counts and edges must be lists of numbers"
    if len(edges) != len(counts) + 1:
        return f"{len(counts)} counts need {len(counts) + 1} edges, got {len(edges)}"
    return None


# The checks of metric chunks and histogram rows that listing runs does in SQL, without decoding a blob: the same as
# _check_chunk / _check_hist and the _Decoder calls in RunStore._chunks / _hist_rows, except for names that are not
# UTF-8 (RunStore._damaged_data decodes the distinct names).
_BAD_CHUNK = """name IS NULL OR typeof(n) != 'integer' OR n < 1
    OR typeof(steps) != 'blob' OR typeof(vals) != 'blob' OR typeof(times) != 'blob'
    OR length(steps) != 8 * n OR length(vals) != 8 * n OR length(times) != 8 * n"""
# CASE, not AND/OR: SQLite may evaluate both sides of AND, and json_each() raises on text that is not JSON
_NUMBERS = "CASE WHEN json_valid({0}) THEN CASE WHEN json_type({0}) = 'array' THEN NOT EXISTS " \
    "(SELECT 1 FROM json_each({0}) WHERE type NOT IN ('integer', 'real')) ELSE 0 END ELSE 0 END"
_BAD_HIST = f"""NOT CASE
    WHEN name IS NULL OR typeof(step) != 'integer' OR typeof(time) NOT IN ('real', 'integer', 'null') THEN 0
    WHEN NOT ({_NUMBERS.format('counts')}) OR NOT ({_NUMBERS.format('edges')}) THEN 0
    ELSE json_array_length(edges) = json_array_length(counts) + 1 END"""


class RunStore:
    """One SQLite run store. ``RunStore()`` is the default file; ``RunStore(path)`` any other."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path).absolute() if path is not None else default_store_path()
        self._raw_ids: dict[str, bytes] = {}  # decoded -> stored bytes, for run ids that are not UTF-8

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # -- writing (queued) -----------------------------------------------------------------------------------------
    def write_run(self, row: Sequence[Any], config: dict[str, Any] | None = None) -> None:
        """Insert or update a run row ``(id, name, project, status, start, end, fingerprint, host, pid[, pid_start])``
        (see :data:`RUN_COLUMNS`)."""
        row = list(row) + [None] * (len(RUN_COLUMNS) - len(row))
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
    def _read(self, sql: str, params: Iterable[Any] = (), raw: bool = False) -> list[tuple[Any, ...]]:
        """Rows of a query on a short-lived connection; ``raw``: text columns come back as bytes (decode per row)."""
        flush_all()
        if not self.path.exists():
            return []
        conn = sqlite3.connect(str(self.path), timeout=30.0)
        if raw:
            conn.text_factory = bytes
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            return _retry(conn.execute, sql, tuple(params)).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
        finally:
            conn.close()

    def _by_run(self, run_id: str) -> tuple[str, Any]:
        """The WHERE clause and parameter selecting rows of ``run_id`` (its stored bytes when it is not UTF-8)."""
        raw = self._raw_ids.get(run_id)
        return ("CAST(run_id AS BLOB) = ?", raw) if raw is not None else ("run_id = ?", run_id)

    def runs(self, project: str | None = None, status: str | None = None, name: str | None = None,
             config: dict[str, Any] | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first, optionally filtered by project, status (as read: "crashed" and "damaged" too), name
        and config values (``{"lr": 0.1}``). Damaged rows come back as records with ``status == "damaged"``."""
        where, params = [], []
        for column, value in (("project", project), ("name", name)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        present = {_text(row[1]) for row in self._read("PRAGMA table_info(runs)", raw=True)}  # old files lack some
        columns = ", ".join(c if c in present else "NULL" for c in RUN_COLUMNS)
        sql = f"SELECT rowid, {columns} FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        records = [self._record(row) for row in self._read(sql, params, raw=True)]
        records.sort(key=lambda r: (0, -r.start_time, r.id) if r.start_time is not None else (1, 0.0, r.id))
        configs, config_damage = self._configs()
        damaged_data = self._damaged_data()
        alive: dict[tuple[Any, ...], bool] = {}
        for r in records:
            r.config = configs.get(r.id, {})
            r.damage += config_damage.get(r.id, []) + damaged_data.get(r.id, [])
            if r.damage:
                r.status = "damaged"
            elif r.status == "running":
                owner = (r.host, r.pid, r.pid_start)
                if owner not in alive:
                    alive[owner] = not owner_is_dead(*owner)
                if not alive[owner]:
                    r.status = "crashed"
        if status is not None:
            records = [r for r in records if r.status == status]
        if config:
            wanted = flatten_config(config)
            records = [r for r in records if all(k in r.config and r.config[k] == v for k, v in wanted.items())]
        return records[:limit] if limit is not None else records

    def _record(self, row: tuple[Any, ...]) -> RunRecord:
        """A :class:`RunRecord` from a raw ``(rowid, *RUN_COLUMNS)`` row; what cannot be decoded goes to ``damage``."""
        rowid, run_id, name, project, status, start, end, fingerprint, host, pid, pid_start = row
        d = _Decoder()
        decoded_id = d.text("id", run_id, required=True)
        if decoded_id is None:
            decoded_id = f"(rowid {rowid})"
        elif d.problems:
            self._raw_ids[decoded_id] = run_id
        record = RunRecord(decoded_id, d.text("name", name, required=True) or decoded_id,
                           d.text("project", project), d.text("status", status, required=True) or "?",
                           d.number("start_time", start, required=True), d.number("end_time", end), None,
                           d.text("host", host), d.integer("pid", pid), pid_start=d.text("pid_start", pid_start))
        if status is not None and record.status not in STATUSES:
            d.problems.append(f"status {record.status!r} is unknown")
        if fingerprint is not None:
            value = d.json("fingerprint", fingerprint)
            if value is not None and not isinstance(value, dict):
                d.problems.append(f"fingerprint is not a JSON object: {_short(value)}")
            record.fingerprint = value if isinstance(value, dict) else None
        record.recorded_status = None if status is None else record.status
        record.damage = d.problems
        return record

    def _configs(self) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
        """Every run's config, and per run what is wrong with its config rows (those keys are left out)."""
        out: dict[str, dict[str, Any]] = {}
        damage: dict[str, list[str]] = {}
        for run_id, key, value in self._read("SELECT run_id, key, value FROM config ORDER BY run_id, key", raw=True):
            if run_id is None:
                continue
            d = _Decoder()
            name = d.text("config key", key, required=True)
            decoded = d.json(f"config {name!r}", value) if name is not None else None
            if d.problems:
                damage.setdefault(_text(run_id), []).extend(d.problems)
            else:
                out.setdefault(_text(run_id), {})[name] = decoded
        return out, damage

    def _damaged_data(self) -> dict[str, list[str]]:
        """Per run, how many of its metric chunks and histogram rows are damaged (``_BAD_CHUNK``, ``_BAD_HIST``, and
        names that are not UTF-8), as ``"2 metric chunks damaged"``."""
        out: dict[str, list[str]] = {}
        for what, table, bad in (("metric chunk", "metrics", _BAD_CHUNK), ("histogram row", "hists", _BAD_HIST)):
            sql = f"SELECT run_id, name, COUNT(*), SUM({bad}) FROM {table} GROUP BY run_id, name"
            try:
                groups = self._read(sql, raw=True)
            except sqlite3.OperationalError as e:  # an SQLite without the JSON functions: `damage()` still checks
                if "no such function" not in str(e):
                    raise
                groups = [(r, n, c, 0) for r, n, c in self._read(f"SELECT run_id, name, COUNT(*) FROM {table} "
                                                                 "GROUP BY run_id, name", raw=True)]
            counts: dict[Any, int] = {}
            for run_id, name, rows, damaged in groups:
                if not _is_utf8(name):
                    damaged = rows  # every row under a name that is not UTF-8
                if damaged:
                    counts[run_id] = counts.get(run_id, 0) + damaged
            for run_id, count in counts.items():
                if run_id is not None:
                    out.setdefault(_text(run_id), []).append(f"{count} {what}{'s' if count > 1 else ''} damaged")
        return out

    def ids(self) -> list[str]:
        return [r.id for r in self.runs()]

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

    # -- metrics and histograms -----------------------------------------------------------------------------------
    def _chunks(self, run_id: str, name: str | None = None) -> tuple[dict[str, list[tuple[bytes, bytes, bytes]]],
                                                                      list[str]]:
        """The run's metric chunks ``{name: [(steps, vals, times) blobs]}`` in logging order, and what is wrong with
        those left out."""
        clause, param = self._by_run(run_id)
        sql = f"SELECT rowid, name, n, steps, vals, times, typeof(steps), typeof(vals), typeof(times) FROM metrics " \
              f"WHERE {clause}"
        params: list[Any] = [param]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        chunks: dict[str, list[tuple[bytes, bytes, bytes]]] = {}
        problems: list[str] = []
        for rowid, raw_name, *rest in self._read(sql + " ORDER BY rowid", params, raw=True):
            d = _Decoder()
            metric = d.text(f"metric chunk {rowid}: the name", raw_name, required=True)
            n, blobs, types = rest[0], rest[1:4], rest[4:]
            problem = d.problems[0] if d.problems else _check_chunk(metric or "?", rowid, n, blobs, types)
            if problem is not None:
                problems.append(problem)
                continue
            chunks.setdefault(metric or "?", []).append(blobs)
        return chunks, problems

    @staticmethod
    def _raise_damaged(run_id: str, problems: list[str]) -> None:
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise DamagedRunError(f"run {run_id} is damaged: {problems[0]}{more}; `tinygrad-nb runs show {run_id}` "
                                  "lists what can be read")

    def series(self, run_id: str, name: str, skip_damaged: bool = False) -> tuple[np.ndarray, np.ndarray,
                                                                                 np.ndarray]:
        """``(steps, values, times)`` arrays of one metric, in logging order. A damaged chunk raises
        :class:`DamagedRunError` (``skip_damaged=True``: left out)."""
        chunks, problems = self._chunks(run_id, name)
        if not skip_damaged:
            self._raise_damaged(run_id, problems)
        return _concat(chunks.get(name, []))

    def metrics(self, run_id: str, name: str | None = None,
                skip_damaged: bool = False) -> list[tuple[int, str, float, float]]:
        """``(step, name, value, time)`` points sorted by step (then name); NaN comes back as NaN."""
        chunks, problems = self._chunks(run_id, name)
        if not skip_damaged:
            self._raise_damaged(run_id, problems)
        points = []
        for n, parts in chunks.items():
            steps, values, times = _concat(parts)
            points += [(int(s), n, float(v), float(t)) for s, v, t in zip(steps, values, times)]
        points.sort(key=lambda p: (p[0], p[1]))
        return points

    def metric_names(self, run_id: str) -> list[str]:
        clause, param = self._by_run(run_id)
        rows = self._read(f"SELECT DISTINCT name FROM metrics WHERE {clause}", [param], raw=True)
        return sorted(_text(r[0]) for r in rows if r[0] is not None)

    def hists(self, run_id: str, name: str | None = None,
              skip_damaged: bool = False) -> list[tuple[int, str, list[int], list[float], float]]:
        """``(step, name, counts, edges, time)`` rows. A damaged row raises :class:`DamagedRunError`
        (``skip_damaged=True``: left out)."""
        rows, problems = self._hist_rows(run_id, name)
        if not skip_damaged:
            self._raise_damaged(run_id, problems)
        return rows

    def _hist_rows(self, run_id: str, name: str | None = None) -> tuple[list[tuple[int, str, list[int], list[float],
                                                                                      float]], list[str]]:
        clause, param = self._by_run(run_id)
        sql = f"SELECT rowid, step, name, counts, edges, time FROM hists WHERE {clause}"
        params: list[Any] = [param]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        rows, problems = [], []
        for rowid, step, raw_name, counts, edges, t in self._read(sql + " ORDER BY rowid", params, raw=True):
            d = _Decoder()
            hist = d.text("the name", raw_name, required=True)
            step = d.integer("step", step, required=True)
            counts, edges = d.json("counts", counts), d.json("edges", edges)
            t = d.number("time", t)
            problem = d.problems[0] if d.problems else _check_hist(counts, edges)
            if problem is not None:
                problems.append(f"histogram {hist or '?'!r}: row {rowid}: {problem}")
                continue
            rows.append((step, hist, counts, edges, t))
        return rows, problems

    def damage(self, run_id: str) -> list[str]:
        """Everything wrong with a run's data: its row and config (as in :attr:`RunRecord.damage`, without the
        counts of damaged chunks), then each damaged metric chunk and histogram row."""
        record = self.get(run_id)
        counts = set(self._damaged_data().get(record.id, []))  # "2 metric chunks damaged": listed one by one below
        problems = [p for p in record.damage if p not in counts]
        return problems + self._chunks(record.id)[1] + self._hist_rows(record.id)[1]

    def summary(self, run_id: str, skip_damaged: bool = False) -> dict[str, dict[str, float]]:
        """Per metric: ``final`` (last logged), ``min``, ``max`` (NaN ignored), ``count`` and ``last_step``. A
        damaged chunk raises :class:`DamagedRunError` (``skip_damaged=True``: left out)."""
        chunks, problems = self._chunks(run_id)
        if not skip_damaged:
            self._raise_damaged(run_id, problems)
        out: dict[str, dict[str, float]] = {}
        for name in sorted(chunks):
            steps, values, _ = _concat(chunks[name])
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


def _concat(chunks: list[tuple[bytes, bytes, bytes]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(steps, values, times)`` arrays of checked chunks, concatenated."""
    if not chunks:
        return np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.float64)
    return (np.concatenate([np.frombuffer(c[0], dtype="<i8") for c in chunks]),
            np.concatenate([np.frombuffer(c[1], dtype="<f8") for c in chunks]),
            np.concatenate([np.frombuffer(c[2], dtype="<f8") for c in chunks]))
