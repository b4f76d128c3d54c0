"""Real-browser tests of the widgets: JupyterLab on 127.0.0.1 driven by headless Debian chromium via playwright.

The first fixture notebook (tests/browser/live_widgets.ipynb) logs 2,000 + 20 points to a LossCurve and plants a NaN
under a NaNTracer. The test runs those cells and reads the widgets' DOM (``data-points``, ``data-events``), runs the
cell that finishes them, saves, restarts the kernel, reloads the page and checks the static image is still there.
The second (tests/browser/history_widget.ipynb) records three cells and opens ``%tg_log --widget``: the test reads
HEAD's details, picks an earlier commit and clicks "check out".
Screenshots go to ``artifacts/browser/`` (git-ignored; ``$TINYGRAD_NB_ARTIFACTS`` overrides the folder).

Never downloads a browser: it uses the system chromium (``$TINYGRAD_NB_CHROMIUM``, default /usr/bin/chromium) and is
skipped, with the reason, when chromium, playwright or jupyterlab is missing.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("TINYGRAD_NB_CHROMIUM", "/usr/bin/chromium")
FIXTURE = Path(__file__).resolve().parent / "browser" / "live_widgets.ipynb"
HISTORY_FIXTURE = FIXTURE.with_name("history_widget.ipynb")
ARTIFACTS = Path(os.environ.get("TINYGRAD_NB_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts")) / \
    "browser"
TOKEN = "tinygrad-nb-browser-test"
POINTS = 2000 + 20  # what the fixture's first cell logs: 2,000 losses and 20 validation losses


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (.ci/run installs Debian's chromium; set $TINYGRAD_NB_CHROMIUM)"
    for module in ("playwright", "jupyterlab", "ipykernel"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[dev]')"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A JupyterLab server with throw-away config, data, runtime, settings and workspace folders; yields
    (base url, root folder holding a copy of the fixture notebook)."""
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "root"
    root.mkdir()
    for notebook in (FIXTURE, HISTORY_FIXTURE):
        shutil.copy(notebook, root / notebook.name)
    config = tmp / "config"
    (config / "labconfig").mkdir(parents=True)
    # no "receive Jupyter news?" prompt: the announcements plugin is off
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(tmp / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), PYTHONWARNINGS="ignore")
    port = _free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
               "--LabApp.extension_manager=readonly", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate"]
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - closed at teardown
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            _api(base, "/api/status")
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start; log:\n{(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
    yield base, root
    try:
        for kernel in _api(base, "/api/kernels"):
            _api(base, f"/api/kernels/{kernel['id']}", method="DELETE")
    except OSError:
        pass
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


OPEN_NOTEBOOK_READY = """(cells) => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return Boolean(kernel && kernel.status === "idle" && panel.content && panel.content.widgets.length === cells);
}"""

RUN_CELLS = """async ([first, last]) => {
  const app = window.jupyterapp, notebook = app.shell.currentWidget.content;
  for (let i = first; i <= last; i++) {
    notebook.activeCellIndex = i;
    await app.commands.execute("notebook:run-cell");
  }
}"""


def _dataset(page: Any, kind: str, key: str) -> str | None:
    return page.evaluate(f"() => document.querySelector('[data-tg-widget={kind}]')?.dataset.{key} ?? null")


def test_live_widgets_in_jupyterlab(lab: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only when the test runs

    base, root = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        try:
            page.goto(f"{base}/lab/tree/{FIXTURE.name}?token={TOKEN}&reset")
            page.wait_for_function(OPEN_NOTEBOOK_READY, arg=4, timeout=60_000)

            # 1. the live views: run the logging cell and the planted-NaN cell
            page.evaluate(RUN_CELLS, [1, 2])
            try:
                page.wait_for_function(
                    f"() => document.querySelector('[data-tg-widget=loss]')?.dataset.points === '{POINTS}'",
                    timeout=30_000)
                page.wait_for_function(
                    "() => document.querySelector('[data-tg-widget=nan]')?.dataset.events === '1'", timeout=15_000)
            finally:
                page.screenshot(path=str(ARTIFACTS / "1_live.png"), full_page=True)
            assert _dataset(page, "loss", "points") == str(POINTS)  # every point logged reached the browser
            nan_text = page.inner_text("[data-tg-widget=nan]")
            assert "Log" in nan_text and "forward" in nan_text, nan_text
            assert "cell [" in nan_text, nan_text  # the pointer to the cell and line

            # 2. the static swap: finishing replaces the live outputs in place
            page.evaluate(RUN_CELLS, [3, 3])
            page.wait_for_selector(".jp-OutputArea-output img[src^='data:image/png']", timeout=30_000)
            page.wait_for_function("() => !document.querySelector('[data-tg-widget=loss]')", timeout=15_000)
            page.screenshot(path=str(ARTIFACTS / "2_static.png"), full_page=True)

            # 3. save, restart the kernel, reload: the static image is part of the notebook now
            page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:save'); }")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                                   timeout=15_000)
            page.evaluate("async () => { await window.jupyterapp.shell.currentWidget.sessionContext.session"
                          ".kernel.restart(); }")
            page.reload()
            page.wait_for_function(OPEN_NOTEBOOK_READY, arg=4, timeout=60_000)
            image = page.locator(".jp-OutputArea-output img[src^='data:image/png']").first
            image.wait_for(state="visible", timeout=15_000)
            box = image.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 50, box
            assert page.locator(".jp-OutputArea-output img[src^='data:image/png']").count() == 2  # curve, NaN table
            page.screenshot(path=str(ARTIFACTS / "3_after_restart_reload.png"), full_page=True)
        finally:
            browser.close()
            print(f"screenshots in {ARTIFACTS}")
            if console:
                print("browser console:\n  " + "\n  ".join(console[-30:]))

    saved = json.loads((root / FIXTURE.name).read_text())
    outputs = saved["cells"][1]["outputs"]
    bundles = [o["data"] for o in outputs if "data" in o]
    assert any("image/png" in b and "".join(b["text/plain"]) == "LossCurve: training curves" for b in bundles), bundles


def test_history_widget_in_jupyterlab(lab: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only when the test runs

    base, _root = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            page.goto(f"{base}/lab/tree/{HISTORY_FIXTURE.name}?token={TOKEN}&reset")
            page.wait_for_function(OPEN_NOTEBOOK_READY, arg=5, timeout=60_000)
            page.evaluate(RUN_CELLS, [1, 4])
            picker = page.locator(".jp-OutputArea-output .widget-dropdown select")
            details = page.locator(".jp-OutputArea-output .widget-html-content").first
            try:
                picker.wait_for(state="visible", timeout=30_000)
                page.locator(".jp-OutputArea-output img.widget-image").wait_for(state="visible", timeout=15_000)
                # HEAD is picked first: the last recorded cell, with what changed since its parent
                page.wait_for_function("() => [...document.querySelectorAll('.widget-html-content')]"
                                       ".some(e => e.textContent.includes('x.mul_(2)'))", timeout=15_000)
                options = [o.replace("\xa0", " ") for o in picker.locator("option").all_inner_texts()]
                assert options == ["#1 In[1] ok", "#2 In[2] ok", "#3 In[3] ok (HEAD)"], options
                assert "note added" in details.inner_text() and "x changed" in details.inner_text()
                # pick the commit of x = tg.ones(3), then check it out
                picker.select_option(index=1)
                page.wait_for_function("() => [...document.querySelectorAll('.widget-html-content')]"
                                       ".some(e => e.textContent.includes('x = tg.ones(3)'))", timeout=15_000)
                page.get_by_role("button", name="check out").click()
                page.wait_for_function("() => [...document.querySelectorAll('.widget-html-content')]"
                                       ".some(e => e.textContent.startsWith('checked out #2'))", timeout=15_000)
                page.wait_for_function("() => document.querySelector('.widget-dropdown select').options[1]"
                                       ".text.includes('(HEAD)')", timeout=15_000)
                options = [o.replace("\xa0", " ") for o in picker.locator("option").all_inner_texts()]
                assert options == ["#1 In[1] ok", "#2 In[2] ok (HEAD)", "#3 In[3] ok"], options
            finally:
                page.screenshot(path=str(ARTIFACTS / "4_history_widget.png"), full_page=True)
        finally:
            browser.close()
