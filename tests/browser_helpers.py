"""JupyterLab for the real-browser tests (test_browser.py, test_lab_browser.py): one server on 127.0.0.1 with
throw-away config, data, runtime, settings and workspace folders, so the developer's own Jupyter setup neither
changes what the tests see nor gets written to; the system chromium that playwright drives; and the two page
scripts both files use to wait for an opened notebook and to run its cells.

Never downloads a browser: ``CHROMIUM`` is ``$TINYGRAD_NB_CHROMIUM``, default Debian's /usr/bin/chromium, and
:func:`missing` gives the reason to skip when it, playwright, jupyterlab or ipykernel is not there.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("TINYGRAD_NB_CHROMIUM", "/usr/bin/chromium")

# page.wait_for_function(OPEN_NOTEBOOK_READY, arg=<cells>): the opened notebook shows its <cells> cells and its kernel
# is idle (window.jupyterapp exists because the server runs with --LabApp.expose_app_in_browser)
OPEN_NOTEBOOK_READY = """(cells) => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return Boolean(kernel && kernel.status === "idle" && panel.content && panel.content.widgets.length === cells);
}"""

# page.evaluate(RUN_CELLS, [first, last]): run cells first..last of the open notebook, in order, as the user would
RUN_CELLS = """async ([first, last]) => {
  const app = window.jupyterapp, notebook = app.shell.currentWidget.content;
  for (let i = first; i <= last; i++) {
    notebook.activeCellIndex = i;
    await app.commands.execute("notebook:run-cell");
  }
}"""


def missing() -> str | None:
    """Why the browser tests cannot run here (for ``pytest.mark.skipif``'s reason), or None."""
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (.ci/run installs Debian's chromium; set $TINYGRAD_NB_CHROMIUM)"
    for module in ("playwright", "jupyterlab", "ipykernel"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[dev]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, token: str, method: str = "GET") -> Any:
    request = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


def lab_env(tmp: Path) -> dict[str, str]:
    """The environment of a Jupyter process whose config, data, runtime, settings and workspace folders are under
    ``tmp``. The config turns the announcements plugin off: its "receive Jupyter news?" prompt would cover the page.
    Calling it again for the same ``tmp`` gives the same environment (e.g. for ``jupyter labextension list`` before
    :func:`jupyterlab` starts the server)."""
    labconfig = tmp / "config" / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    (labconfig / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    return dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
                JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
                JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), PYTHONWARNINGS="ignore")


@contextmanager
def jupyterlab(tmp: Path, root: Path, token: str, start_timeout: float) -> Iterator[str]:
    """A JupyterLab server on a free port of 127.0.0.1 serving ``root``, with :func:`lab_env`'s folders under
    ``tmp`` and its log in ``tmp/server.log``; yields its base url once ``/api/status`` answers (the test fails with
    the log's end when it has not within ``start_timeout`` seconds, or exits). Afterwards its kernels are shut down
    and the server stopped (killed if it has not exited 15 s after the terminate)."""
    port = _free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
               "--LabApp.extension_manager=readonly", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate"]
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - closed at teardown
    server = subprocess.Popen(command, cwd=root, env=lab_env(tmp), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + start_timeout
    while True:
        try:
            _api(base, "/api/status", token)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                log.close()
                pytest.fail(f"JupyterLab did not start; log:\n{(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
    try:
        yield base
    finally:
        try:
            for kernel in _api(base, "/api/kernels", token):
                _api(base, f"/api/kernels/{kernel['id']}", token, method="DELETE")
        except OSError:
            pass
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
