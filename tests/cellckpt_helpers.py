"""What the cell checkpoint test modules share: a recording IPython shell and ways to run cells in it."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tinygrad_nb.notebook import cellckpt, extension, ownership


def recording_shell(ipython: Any, tmp_path: Path) -> Iterator[Any]:
    """For a ``shell`` fixture (``yield from`` it): the shell with the extension loaded, recording into
    tmp_path / "ckpt", and an emptied namespace; the extension is unloaded afterwards."""
    ip = ipython
    hidden = set(ip.user_ns_hidden)
    for name in [n for n in ip.user_ns if not n.startswith("_") and n not in hidden]:
        del ip.user_ns[name]
    extension.load_ipython_extension(ip)
    rec = cellckpt.recorder(ip)
    rec.set_root(tmp_path / "ckpt")
    rec.enabled, rec.every = True, 1
    yield ip
    ownership.registry.release_all()
    extension.unload_ipython_extension(ip)
    assert cellckpt.recorder(ip) is None


def run(ip: Any, source: str) -> Any:
    return ip.run_cell(source, store_history=True)


def run_ok(ip: Any, source: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a cell that must succeed without a checkpoint warning; what it printed."""
    capsys.readouterr()
    result = run(ip, source)
    out = capsys.readouterr()
    assert result.success, f"{source!r} failed: {result.error_in_exec!r}\n{out.err}"
    assert "cell checkpoint" not in out.err, out.err
    return out.out
