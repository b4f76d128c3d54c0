"""The run store under bad data and dead processes: rows that cannot be decoded show as "damaged" (and the other runs
still list), a run whose process was killed shows as "crashed", and store files of schema version 1 still read."""
from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tinygrad_nb import track
from tinygrad_nb.track import cli as runs_cli
from tinygrad_nb.owner import current_token, owner_is_dead, process_token
from tinygrad_nb.track.store import DamagedRunError

LINUX = Path("/proc/self/stat").exists()


@pytest.fixture
def store(tmp_path: Path) -> track.RunStore:
    return track.RunStore(tmp_path / "runs.db")


def make_run(store: track.RunStore, **kwargs: Any) -> track.Run:
    return track.Run(store=store, fingerprint=False, **kwargs)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``tinygrad-nb runs ARGV`` -> (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="tinygrad-nb runs")
    runs_cli.add_arguments(parser)
    code = runs_cli.main(parser.parse_args(list(argv)))
    out, err = capsys.readouterr()
    return code, out, err


def line_of(output: str, run_id: str) -> str:
    """The one ``ls`` line of ``run_id``."""
    lines = [line for line in output.splitlines() if line.startswith(run_id + " ")]
    assert len(lines) == 1, output
    return lines[0]


def raw(store: track.RunStore, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Write to the store behind its back, as a corrupting tool (or a hand edit) would."""
    store.flush()
    conn = sqlite3.connect(str(store.path))
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def bad_row(store: track.RunStore, run_id: str, **columns: Any) -> None:
    """A runs row that is fine except for ``columns`` (values are SQL expressions, e.g. ``"X'ff'"``)."""
    values = {"id": f"'{run_id}'", "name": f"'{run_id}-name'", "project": "NULL", "status": "'finished'",
              "start_time": "100.0", "end_time": "101.5", "fingerprint": "NULL", "host": "'h'", "pid": "1"}
    values.update(columns)
    raw(store, f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join(values.values())})")


# -- damaged rows ---------------------------------------------------------------------------------------------------
@pytest.fixture
def damaged_store(store: track.RunStore) -> tuple[track.RunStore, track.Run]:
    with make_run(store, name="good", config={"lr": 0.1}) as good:
        good.log({"loss": 2.0})
        good.log({"loss": 1.0})
    bad_row(store, "badname", name="CAST(X'626164ff6e616d65' AS TEXT)")  # "bad\xffname": not UTF-8
    bad_row(store, "badfp", fingerprint="'{not json'")
    bad_row(store, "badtime", start_time="'yesterday'", pid="'many'")
    bad_row(store, "badstat", status="'zombie'")
    bad_row(store, "nostat", status="NULL")
    bad_row(store, "noid", id="NULL", name="'anonymous'")
    bad_row(store, "badcfg")
    raw(store, "INSERT INTO config VALUES ('badcfg', 'lr', 'not json')")
    raw(store, "INSERT INTO config VALUES ('badcfg', 'epochs', '3')")
    raw(store, "INSERT INTO config VALUES ('badcfg', CAST(X'6bff' AS TEXT), '1')")
    bad_row(store, "badmetric")
    good_chunk = np.array([0, 1], "<i8").tobytes(), np.array([3.0, 4.0], "<f8").tobytes(), np.zeros(2, "<f8").tobytes()
    raw(store, "INSERT INTO metrics VALUES ('badmetric', 'acc', 2, 0, 1, ?, ?, ?)", good_chunk)
    raw(store, "INSERT INTO metrics VALUES ('badmetric', 'loss', 1, 0, 0, ?, 'abc', ?)",
        (np.zeros(1, "<i8").tobytes(), np.zeros(1, "<f8").tobytes()))  # a value that is text, not float64
    raw(store, "INSERT INTO metrics VALUES ('badmetric', 'loss', 2, 1, 2, ?, ?, NULL)",
        (np.zeros(2, "<i8").tobytes(), np.zeros(2, "<f8").tobytes()))
    raw(store, "INSERT INTO hists VALUES ('badmetric', 0, 'w', '[1, 2]', '[0, 1, 2]', 5.0)")
    raw(store, "INSERT INTO hists VALUES ('badmetric', 1, 'w', 'nope', '[0, 1]', 5.0)")
    bad_row(store, "bad\\xffid", id="CAST(X'626164ff6964' AS TEXT)", name="'badid'")
    raw(store, "INSERT INTO config VALUES (CAST(X'626164ff6964' AS TEXT), 'lr', '0.5')")
    return store, good


EXPECTED_DAMAGE = {
    "badname": ["name is not UTF-8: b'bad\\xffname'"],
    "badfp": ["fingerprint is not JSON: '{not json'"],
    "badtime": ["start_time is not a number: b'yesterday'", "pid is not an integer: b'many'"],
    "badstat": ["status 'zombie' is unknown"],
    "nostat": ["status is missing"],
    "badcfg": ["config key is not UTF-8: b'k\\xff'", "config 'lr' is not JSON: 'not json'"],
    "badmetric": ["2 metric chunks damaged", "1 histogram row damaged"],
    "bad\\xffid": ["id is not UTF-8: b'bad\\xffid'"],
}


def test_damaged_rows_are_listed_with_their_reasons(damaged_store: tuple[track.RunStore, track.Run]) -> None:
    store, good = damaged_store
    records = {r.id: r for r in track.runs(store=store)}
    noid = [r for r in records.values() if r.name == "anonymous"]
    assert len(noid) == 1 and noid[0].id.startswith("(rowid ") and noid[0].damage == ["id is missing"]
    assert {i: r.damage for i, r in records.items() if r.damage and r.name != "anonymous"} == EXPECTED_DAMAGE
    assert {r.status for r in records.values() if r.damage} == {"damaged"}
    assert records[good.id].status == "finished" and records[good.id].config == {"lr": 0.1}
    assert records["badname"].name == "bad\\xffname"  # what can be read is kept, with escapes for the bad bytes
    assert records["badcfg"].config == {"epochs": 3} and records["badcfg"].recorded_status == "finished"
    assert records["badstat"].recorded_status == "zombie" and records["nostat"].recorded_status is None
    assert records["badtime"].start_time is None and records["badtime"].end_time == 101.5
    assert records["bad\\xffid"].config == {"lr": 0.5}
    assert [r.id for r in track.runs(store=store, status="finished")] == [good.id]
    assert len(track.runs(store=store, status="damaged")) == len(EXPECTED_DAMAGE) + 1


def test_cli_ls_lists_good_and_damaged_runs(damaged_store: tuple[track.RunStore, track.Run],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    store, good = damaged_store
    code, out, err = run_cli(capsys, "--store", str(store.path), "ls")
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == ["id", "name", "project", "status", "started", "duration", "s", "damage"]
    assert len(out.splitlines()) == 2 + 1 + len(EXPECTED_DAMAGE) + 1
    assert line_of(out, good.id).split()[1:4] == ["good", "-", "finished"]
    assert line_of(out, "badname").split()[1:4] == ["bad\\xffname", "-", "damaged"]
    assert line_of(out, "badname").endswith("name is not UTF-8: b'bad\\xffname'")
    assert line_of(out, "badtime").endswith("start_time is not a number: b'yesterday' (+1 more)")
    assert line_of(out, "badmetric").endswith("2 metric chunks damaged (+1 more)")
    assert line_of(out, "(rowid").endswith("id is missing")

    code, out, _ = run_cli(capsys, "--store", str(store.path), "ls", "--status", "finished")
    assert code == 0 and out.splitlines()[0].split()[-1] == "s"  # no damage column when nothing listed is damaged
    assert [line.split()[0] for line in out.splitlines()[2:]] == [good.id]


def test_cli_show_prints_what_can_be_read(damaged_store: tuple[track.RunStore, track.Run],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    store, good = damaged_store
    db = str(store.path)
    code, out, err = run_cli(capsys, "show", good.id, "--store", db)
    assert (code, err) == (0, "") and "status     finished" in out and "damage" not in out

    code, out, err = run_cli(capsys, "show", "badmetric", "--store", db)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:4] == ["run badmetric", "  name       badmetric-name", "  project    -",
                         "  status     damaged (recorded finished)"]
    acc = next(line for line in lines if line.strip().startswith("acc"))
    assert acc.split()[1:6] == ["4", "3", "4", "2", "1"]  # the readable metric: final, min, max, count, last step
    assert not any(line.strip().startswith("loss") for line in lines)
    assert "histograms: w" in lines
    assert lines[lines.index("damage:"):] == [
        "damage:",
        "  metric 'loss': chunk 3 vals is text, not a blob",
        "  metric 'loss': chunk 4 times is null, not a blob",
        "  histogram 'w': row 2: counts is not JSON: 'nope'",
    ]

    code, out, _ = run_cli(capsys, "show", "badcfg", "--store", db)
    assert code == 0 and "  epochs = 3" in out and "lr =" not in out
    assert out.splitlines()[-3:] == ["damage:", "  config key is not UTF-8: b'k\\xff'",
                                     "  config 'lr' is not JSON: 'not json'"]
    code, out, _ = run_cli(capsys, "show", "bad\\xffid", "--store", db)
    assert code == 0 and "run bad\\xffid" in out and "  lr = 0.5" in out
    assert out.splitlines()[-2:] == ["damage:", "  id is not UTF-8: b'bad\\xffid'"]
    code, out, _ = run_cli(capsys, "show", "badtime", "--store", db)
    assert code == 0 and "  started    -" in out and "  host/pid   h/None" in out


def test_reading_damaged_metrics_through_the_api(damaged_store: tuple[track.RunStore, track.Run],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    store, good = damaged_store
    message = ("run badmetric is damaged: metric 'loss': chunk 3 vals is text, not a blob (and 1 more); "
               "`tinygrad-nb runs show badmetric` lists what can be read")
    with pytest.raises(DamagedRunError) as info:
        store.summary("badmetric")
    assert str(info.value) == message
    with pytest.raises(DamagedRunError, match="histogram 'w': row 2: counts is not JSON"):
        store.hists("badmetric")
    assert store.series("badmetric", "acc")[1].tolist() == [3.0, 4.0]  # another metric's chunks are fine
    assert [p[2] for p in store.metrics("badmetric", skip_damaged=True)] == [3.0, 4.0]
    assert store.metric_names("badmetric") == ["acc", "loss"]
    assert store.damage(good.id) == []

    code, out, err = run_cli(capsys, "export", "badmetric", "--store", str(store.path))
    assert (code, out) == (1, "") and err == f"tinygrad-nb runs: error: {message}\n"
    code, _, err = run_cli(capsys, "compare", good.id, "badmetric", "--store", str(store.path))
    assert code == 1 and err.startswith("tinygrad-nb runs: error: run badmetric is damaged: ")


STEPS, VALS = np.arange(2, dtype="<i8").tobytes(), np.ones(2, "<f8").tobytes()
NOT_NUMBERS = "histogram 'w': row 1: counts and edges must be lists of numbers"
# (table, row after run_id, what RunStore.damage says): the listing's SQL checks must find each of these too
BAD_DATA: list[tuple[str, str, tuple[Any, ...], str]] = [
    ("metrics", "NULL, 2, 0, 1, ?, ?, ?", (STEPS, VALS, VALS), "metric chunk 1: the name is missing"),
    ("metrics", "CAST(X'6cff' AS TEXT), 2, 0, 1, ?, ?, ?", (STEPS, VALS, VALS),
     "metric chunk 1: the name is not UTF-8: b'l\\xff'"),
    ("metrics", "'loss', 'two', 0, 1, ?, ?, ?", (STEPS, VALS, VALS),
     "metric 'loss': chunk 1 has a bad point count b'two'"),
    ("metrics", "'loss', 0, 0, 1, ?, ?, ?", (b"", b"", b""), "metric 'loss': chunk 1 has a bad point count 0"),
    ("metrics", "'loss', 3, 0, 1, ?, ?, ?", (STEPS, VALS, VALS),
     "metric 'loss': chunk 1 steps holds 16 bytes for 3 points"),
    ("metrics", "'loss', 2, 0, 1, ?, ?, 12.5", (STEPS, VALS), "metric 'loss': chunk 1 times is real, not a blob"),
    ("hists", "0, NULL, '[1]', '[0, 1]', 1.0", (), "histogram '?': row 1: the name is missing"),
    ("hists", "0, CAST(X'77ff' AS TEXT), '[1]', '[0, 1]', 1.0", (),
     "histogram 'w\\\\xff': row 1: the name is not UTF-8: b'w\\xff'"),
    ("hists", "NULL, 'w', '[1]', '[0, 1]', 1.0", (), "histogram 'w': row 1: step is missing"),
    ("hists", "'first', 'w', '[1]', '[0, 1]', 1.0", (), "histogram 'w': row 1: step is not an integer: b'first'"),
    ("hists", "0, 'w', '[1]', '[0, 1]', 'noon'", (), "histogram 'w': row 1: time is not a number: b'noon'"),
    ("hists", "0, 'w', NULL, '[0, 1]', 1.0", (), "histogram 'w': row 1: counts is missing"),
    ("hists", "0, 'w', '{\"a\": 1}', '[0, 1]', 1.0", (), NOT_NUMBERS),
    ("hists", "0, 'w', '[1, \"a\"]', '[0, 1, 2]', 1.0", (), NOT_NUMBERS),
    ("hists", "0, 'w', '[true]', '[0, 1]', 1.0", (), NOT_NUMBERS),
    ("hists", "0, 'w', '[1, 2]', '[0, 1]', 1.0", (), "histogram 'w': row 1: 2 counts need 3 edges, got 2"),
]


@pytest.mark.parametrize(("table", "values", "params", "reason"), BAD_DATA,
                         ids=[str(i) for i in range(len(BAD_DATA))])
def test_listing_and_show_agree_on_damaged_data(store: track.RunStore, table: str, values: str,
                                                params: tuple[Any, ...], reason: str) -> None:
    with make_run(store, name="good") as good:
        pass
    bad_row(store, "bad")
    raw(store, f"INSERT INTO {table} VALUES ('bad', {values})", params)
    what = "metric chunk" if table == "metrics" else "histogram row"
    assert {r.id: r.damage for r in store.runs()} == {good.id: [], "bad": [f"1 {what} damaged"]}
    assert store.damage("bad") == [reason]


def test_cli_subprocess_lists_a_store_with_bad_bytes(damaged_store: tuple[track.RunStore, track.Run]) -> None:
    store, good = damaged_store
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}  # the escapes keep even an ASCII terminal working
    result = subprocess.run([sys.executable, "-m", "tinygrad_nb.cli", "runs", "ls", "--store", str(store.path)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "finished" in line_of(result.stdout, good.id) and "damaged" in line_of(result.stdout, "badname")


# -- crashed runs ---------------------------------------------------------------------------------------------------
VICTIM = textwrap.dedent("""
    import sys
    from tinygrad_nb import track
    run = track.Run(name="victim", store=sys.argv[1], fingerprint=False)
    run.log({"loss": 1.0})
    run.flush()
    print(run.id, flush=True)
    sys.stdin.read()  # until killed
""")


def test_a_killed_run_shows_crashed(store: track.RunStore, capsys: pytest.CaptureFixture[str]) -> None:
    with make_run(store, name="done") as done:
        done.log({"loss": 0.5})
    live = make_run(store, name="live")
    proc = subprocess.Popen([sys.executable, "-c", VICTIM, str(store.path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        victim_id = proc.stdout.readline().strip()  # the run is committed once the child prints its id
        assert victim_id, "the child exited before opening its run"
        assert store.get(victim_id).status == "running"  # still alive
    finally:
        proc.kill()  # SIGKILL: no atexit, no finish()
        proc.wait(timeout=60)
        proc.stdin.close()
        proc.stdout.close()
    assert proc.returncode == -9

    statuses = {r.name: r.status for r in track.runs(store=store)}
    assert statuses == {"done": "finished", "live": "running", "victim": "crashed"}
    victim = store.get(victim_id)
    assert victim.recorded_status == "running" and victim.pid == proc.pid and victim.host == socket.gethostname()
    assert store.metrics(victim_id)[0][2] == 1.0  # what it logged before dying is kept
    assert [r.id for r in track.runs(store=store, status="crashed")] == [victim_id]
    assert [r.id for r in track.runs(store=store, status="running")] == [live.id]

    code, out, _ = run_cli(capsys, "--store", str(store.path), "ls")
    assert code == 0 and line_of(out, victim_id).split()[1:4] == ["victim", "-", "crashed"]
    assert line_of(out, live.id).split()[1:4] == ["live", "-", "running"]
    assert line_of(out, done.id).split()[1:4] == ["done", "-", "finished"]
    code, out, _ = run_cli(capsys, "show", victim_id, "--store", str(store.path))
    assert code == 0
    assert f"  status     crashed (recorded running, but process {proc.pid} on {socket.gethostname()} is gone)" in out
    code, out, _ = run_cli(capsys, "--store", str(store.path), "ls", "--status", "crashed")
    assert [line.split()[0] for line in out.splitlines()[2:]] == [victim_id]
    live.finish()
    assert store.get(live.id).status == "finished"


def test_owner_checks(store: track.RunStore) -> None:
    host, me = socket.gethostname(), os.getpid()
    assert not owner_is_dead(host, me, current_token())
    assert not owner_is_dead("another-host", 2**22 + 12345, None)  # another machine: cannot tell
    assert not owner_is_dead(host, None, None)
    if LINUX:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        assert owner_is_dead(host, pid_max + 1, None)  # no such process, ever
        token = process_token(me)
        assert token == current_token() and token.split("-")[-1].isdigit()
        boot, start = token.rsplit("-", 1)
        assert owner_is_dead(host, me, f"{boot}-{int(start) + 1}")  # this pid, but a different process started it
        assert owner_is_dead(host, me, f"anotherb-{start}")  # the same pid and start time before a reboot

    # through the store: a row with this pid and a foreign token reads as crashed, another host's stays running
    with make_run(store, name="done") as done:
        pass
    bad_row(store, "reused", status="'running'", end_time="NULL", host=f"'{host}'", pid=str(me),
            pid_start="'anotherb-1'" if LINUX else "NULL")
    bad_row(store, "elsewhere", status="'running'", end_time="NULL", host="'another-host'", pid=str(me))
    statuses = {r.id: r.status for r in store.runs()}
    assert statuses == {"reused": "crashed" if LINUX else "running", "elsewhere": "running", done.id: "finished"}


@pytest.mark.skipif(not LINUX, reason="zombie state is read from /proc")
def test_a_zombie_owner_is_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert not owner_is_dead(socket.gethostname(), proc.pid, process_token(proc.pid))
        proc.kill()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited but not reaped: a zombie
        assert owner_is_dead(socket.gethostname(), proc.pid, None)
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdin.close()


# -- schema versions ------------------------------------------------------------------------------------------------
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT, project TEXT, status TEXT, start_time REAL, end_time REAL,
    fingerprint TEXT, host TEXT, pid INTEGER);
CREATE TABLE config (run_id TEXT, key TEXT, value TEXT, PRIMARY KEY (run_id, key));
CREATE TABLE metrics (
    run_id TEXT, name TEXT, n INTEGER, first_step INTEGER, last_step INTEGER, steps BLOB, vals BLOB, times BLOB);
CREATE TABLE hists (run_id TEXT, step INTEGER, name TEXT, counts TEXT, edges TEXT, time REAL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO runs VALUES ('0ld00001', 'old', 'p', 'finished', 10.0, 12.0, NULL, 'h', 7);
INSERT INTO runs VALUES ('0ld00002', 'old-running', 'p', 'running', 11.0, NULL, NULL, 'another-host', 8);
INSERT INTO config VALUES ('0ld00001', 'lr', '0.1');
"""


def columns_and_version(path: Path) -> tuple[list[str], str]:
    conn = sqlite3.connect(str(path))
    try:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    finally:
        conn.close()
    return columns, version


def test_a_version_1_store_reads_and_is_upgraded_by_a_writer(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(str(path))
    conn.executescript(V1_SCHEMA)
    conn.close()
    store = track.RunStore(path)
    old = store.get("0ld00001")
    assert (old.name, old.status, old.config, old.pid, old.pid_start) == ("old", "finished", {"lr": 0.1}, 7, None)
    assert store.get("0ld00002").status == "running"  # another host: cannot be checked
    code, out, _ = run_cli(capsys, "--store", str(path), "ls")
    assert code == 0 and line_of(out, "0ld00001").split()[1:4] == ["old", "p", "finished"]
    assert columns_and_version(path) == (["id", "name", "project", "status", "start_time", "end_time",
                                          "fingerprint", "host", "pid"], "1")  # reading changes nothing

    with make_run(store, name="new") as new:
        new.log({"loss": 1.0})
    columns, version = columns_and_version(path)
    assert columns[-1] == "pid_start" and version == "2"
    assert {r.name: r.status for r in store.runs()} == {"old": "finished", "old-running": "running", "new": "finished"}
    assert store.get(new.id).pid_start == current_token()
