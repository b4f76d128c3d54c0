"""The atomic-write helper's cleanup of temporary files left by killed writers (tinygrad_nb.io.remove_stale_temps)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tinygrad_nb import io as tio
from tinygrad_nb.owner import current_token, process_token

pytestmark = pytest.mark.skipif(os.name != "posix", reason="stale temporary files are only removed on POSIX")


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def temp_name(target: Path, host: str, pid: int, token: str | None) -> Path:
    return target.parent / f".{target.name}.{host}.{pid}.{token or 'none'}.0123456789ab.tmp"


def test_temp_names_identify_their_writer(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    name = tio._temp_path(target).name
    match = tio._TEMP_NAME.fullmatch(name, len(f".{target.name}"))
    assert match is not None
    assert (match["host"], int(match["pid"])) == (tio._host_tag(socket.gethostname()), os.getpid())
    assert match["token"] == (current_token() or "none")


def test_only_provably_stale_temps_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    host = tio._host_tag(socket.gethostname())
    parent = os.getppid()  # alive while this test runs
    dead = temp_name(target, host, dead_pid(), process_token(os.getpid()))
    live = temp_name(target, host, parent, process_token(parent))
    mine = temp_name(target, host, os.getpid(), current_token())
    elsewhere = temp_name(target, tio._host_tag("another-host"), dead_pid(), None)  # a shared folder
    unknown = tmp_path / f".{target.name}.0123456789ab.tmp"  # an older naming scheme: origin unprovable
    other_target = temp_name(tmp_path / "other.safetensors", host, dead_pid(), None)
    for path in (dead, live, mine, elsewhere, unknown, other_target):
        path.write_bytes(b"partial")
    link = temp_name(target, host, dead_pid(), None)
    link.symlink_to(other_target)  # not a regular file: never removed, nor what it points to
    expected_gone = {dead}
    if current_token() is not None:  # Linux: a live pid whose token differs is another process, so the file is stale
        reused = temp_name(target, host, parent, "anotherb-1")
        reused.write_bytes(b"partial")
        expected_gone.add(reused)

    removed = tio.remove_stale_temps(target)

    assert set(removed) == expected_gone
    assert not any(path.exists() for path in expected_gone)
    for kept in (live, mine, elsewhere, unknown, other_target):
        assert kept.read_bytes() == b"partial"
    assert link.is_symlink()


KILLED_WRITER = """
import sys
from tinygrad_nb.io import atomic_open
with atomic_open(sys.argv[1]) as f:
    f.write(b"x" * 1000)
    f.flush()
    print("writing", flush=True)
    sys.stdin.read()  # blocks until the parent kills this process
"""


def test_the_next_write_removes_a_killed_writers_temp(tmp_path: Path) -> None:
    target = tmp_path / "log.json"
    tio.atomic_write(target, b"old")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p != target)
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")
    assert target.read_bytes() == b"old"
    tio.atomic_write(target, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["log.json"]
    assert target.read_bytes() == b"new"


def test_a_live_writers_temp_survives_another_write(tmp_path: Path) -> None:
    target = tmp_path / "log.json"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        tio.atomic_write(target, b"mine")
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(temps) == 1  # the other process is still writing it
        proc.stdin.close()  # let it finish: its rename wins, as the last writer
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert target.read_bytes() == b"x" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["log.json"]
