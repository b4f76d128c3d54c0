"""The JupyterLab extension in a real browser: JupyterLab on 127.0.0.1 (temp config), headless Debian chromium via
playwright, the fixture notebook tests/browser/lab_extension.ipynb.

The test checks the extension is listed as enabled, runs the fixture's cells: two runs appear in the runs sidebar,
the comparison panel overlays their curves and lists their config differences; a NaN planted in a cell run with the
"run with the NaN tracer" command shows in the status bar, and clicking it jumps to the cell and line; toggling cell
checkpoints from the command palette shows in the history panel (and stops new commits). Screenshots in the light
and the dark theme go to ``artifacts/browser/`` (``$TINYGRAD_NB_ARTIFACTS`` overrides), and to docs/images/ when
``TINYGRAD_NB_DOCS_IMAGES=1`` (how docs/jupyterlab.md's pictures are made).

Never downloads a browser; skipped, with the reason, when chromium, playwright, jupyterlab or the installed
extension (``pip install -e .``) is missing.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import CHROMIUM, OPEN_NOTEBOOK_READY, RUN_CELLS, jupyterlab, lab_env, missing

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "browser" / "lab_extension.ipynb"
ARTIFACTS = Path(os.environ.get("TINYGRAD_NB_ARTIFACTS", ROOT / "artifacts")) / "browser"
DOCS_IMAGES = ROOT / "docs" / "images"
TOKEN = "tinygrad-nb-lab-browser-test"
CELLS = 6


pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("jupyterlab_ext")
    root = tmp / "root"
    root.mkdir()
    shutil.copy(FIXTURE, root / FIXTURE.name)
    listed = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], env=lab_env(tmp),
                            capture_output=True, text=True, timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    if "tinygrad-nb-lab" not in text:
        pytest.skip("the Lab extension is not installed here (pip install -e .)")
    assert re.search(r"tinygrad-nb-lab v\d+\.\d+\.\d+ enabled OK", text), text
    with jupyterlab(tmp, root, TOKEN, start_timeout=90) as base:
        yield base, root


COMMAND = "async ([id, args]) => { await window.jupyterapp.commands.execute(id, args || {}); }"
IDLE = "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'"


def _shot(page: Any, name: str, docs: str | None = None) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))
    if docs and os.environ.get("TINYGRAD_NB_DOCS_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMAGES / docs))


def _dismiss_notifications(page: Any) -> None:
    """Wait for the magics' notifications to close (they auto-close after 3 s), so screenshots show the views."""
    try:
        page.wait_for_function("() => !document.querySelector('.Toastify__toast')", timeout=10_000)
    except Exception:  # noqa: BLE001 - only cosmetic: a screenshot with a toast still shows the views
        pass


def _status(page: Any) -> str:
    return page.evaluate("() => document.querySelector('.tg-StatusItem')?.textContent ?? ''")


def test_lab_extension_in_a_real_browser(lab: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only when the test runs

    base, root = lab
    console: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        try:
            page.goto(f"{base}/lab/tree/{FIXTURE.name}?token={TOKEN}&reset")
            page.wait_for_function(OPEN_NOTEBOOK_READY, arg=CELLS, timeout=90_000)
            plugins = page.evaluate("() => window.jupyterapp.hasPlugin('tinygrad-nb-lab:plugin')")
            assert plugins is True

            # 1. before %load_ext the kernel has no comm: no status item; after it, the extension finds the dormant
            # comm (comm_info after the execution), says hello, and the status bar item shows the kernel's device
            time.sleep(1.0)
            assert page.evaluate("() => document.querySelector('.tg-StatusItem')?.dataset.tgStatus") in (None, "none")
            page.evaluate(RUN_CELLS, [1, 1])
            page.wait_for_function("() => document.querySelector('.tg-StatusItem')?.dataset.tgStatus === 'idle'",
                                   timeout=30_000)
            assert _status(page).startswith("tgcpu"), _status(page)

            # 2. two runs, live in the runs sidebar
            page.evaluate(COMMAND, ["tinygrad-nb:open-runs", None])
            page.wait_for_selector("#tinygrad-nb-runs", state="visible", timeout=10_000)
            page.evaluate(RUN_CELLS, [2, 2])
            page.wait_for_function("() => document.querySelectorAll('#tinygrad-nb-runs .tg-RunRow').length === 2 &&"
                                   " [...document.querySelectorAll('#tinygrad-nb-runs .tg-RunRow')]"
                                   ".every(r => r.dataset.tgStatus === 'finished')", timeout=30_000)
            names = page.locator("#tinygrad-nb-runs .tg-RunRow-name").all_inner_texts()
            assert names == ["sgd lr=0.5", "sgd lr=0.1"], names  # newest first
            metrics = page.locator("#tinygrad-nb-runs .tg-RunRow-metrics").first.inner_text()
            assert metrics.startswith("acc ") and " loss " in metrics, metrics
            page.fill(".tg-RunsSidebar-search", "lr=0.1")
            page.wait_for_function("() => document.querySelector('#tinygrad-nb-runs').dataset.tgShown === '1'")
            page.fill(".tg-RunsSidebar-search", "")
            page.wait_for_function("() => document.querySelector('#tinygrad-nb-runs').dataset.tgShown === '2'")

            # 3. the comparison: curves overlaid per metric, config differences as a table
            for box in page.locator("#tinygrad-nb-runs .tg-RunRow-check").all():
                box.check()
            page.click(".tg-RunsSidebar-compare")
            page.wait_for_selector(".tg-Comparison .tg-Chart", timeout=30_000)
            charts = page.evaluate("() => [...document.querySelectorAll('.tg-Chart')].map(c => c.dataset.tgMetric)")
            assert charts == ["acc", "loss"], charts
            points = page.evaluate("() => [...document.querySelectorAll('.tg-Chart[data-tg-metric=loss] path"
                                   ".tg-Chart-line')].map(p => p.dataset.tgPoints)")
            assert points == ["60", "60"], points
            config = page.locator(".tg-Comparison-section[data-tg-table=config] tr").all_inner_texts()
            assert [re.sub(r"\s+", " ", row).strip() for row in config] == ["key sgd lr=0.5 sgd lr=0.1",
                                                                             "lr 0.5 0.1"], config
            _shot(page, "lab_1_runs_compare_light.png", "jupyterlab_runs_compare.png")

            # 3b. a run in progress: its row in the sidebar and the status bar's steps/s follow it while it trains
            page.evaluate("() => { const app = window.jupyterapp; const nb = app.shell.widgets('main').next().value;"
                          " app.shell.activateById(nb.id); nb.content.activeCellIndex = 5;"
                          " app.commands.execute('notebook:run-cell'); }")
            page.wait_for_function("() => document.querySelector('#tinygrad-nb-runs .tg-RunRow')?.dataset.tgStatus"
                                   " === 'running'", timeout=30_000)
            page.wait_for_function("() => /steps\\/s$/.test(document.querySelector('.tg-StatusItem-training')"
                                   "?.textContent ?? '')", timeout=30_000)
            steps = []
            for _ in range(2):  # two updates of the same row, each within about a second of the store's flush
                page.wait_for_function("(last) => { const m = (document.querySelector('#tinygrad-nb-runs .tg-RunRow"
                                       "-meta')?.textContent ?? '').match(/step (\\d+)/); return m && Number(m[1])"
                                       " > last; }", arg=steps[-1] if steps else -1, timeout=15_000)
                text = page.inner_text("#tinygrad-nb-runs .tg-RunRow-meta")
                steps.append(int(re.search(r"step (\d+)", text).group(1)))
            assert steps[0] < steps[1] < 49, steps  # seen while it trained (its last step is 49)
            _shot(page, "lab_1b_live_run_light.png", "jupyterlab_live_run.png")
            page.wait_for_function("() => document.querySelector('#tinygrad-nb-runs .tg-RunRow')?.dataset.tgStatus"
                                   " === 'finished'", timeout=30_000)
            page.wait_for_function(IDLE, timeout=30_000)
            page.wait_for_function("() => !document.querySelector('.tg-StatusItem-training')", timeout=10_000)

            # 4. a NaN planted in a cell run with the NaN tracer command: status bar, then jump to cell and line
            page.evaluate("() => { const app = window.jupyterapp; const nb = app.shell.widgets('main').next().value;"
                          " app.shell.activateById(nb.id); nb.content.activeCellIndex = 3; }")
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.activeCellIndex === 3")
            page.evaluate(COMMAND, ["tinygrad-nb:run-cell-nantrace", None])
            page.wait_for_function("() => document.querySelector('.tg-StatusItem-nan.tg-mod-error')",
                                   timeout=30_000)
            nan_text = page.inner_text(".tg-StatusItem-nan")
            count = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets[3]"
                                  ".model.executionCount")
            assert nan_text == f"NaN: Log [{count}]:2", nan_text  # y = x.log() is the user's line 2
            output = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets[3].outputArea"
                                   ".node.textContent")
            assert "NaN/inf started in 1 op" in output and f"cell [{count}], line 2" in output, output
            source = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets[3].model"
                                   ".sharedModel.getSource()")
            assert source.splitlines()[1] == "y = x.log()", source  # the cell ran as written
            page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 1; }")
            page.click(".tg-StatusItem-nan")
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.activeCellIndex === 3")
            line = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCell.editor"
                                 ".getCursorPosition().line")
            assert line == 1, line  # y = x.log() is the cell's second line
            _shot(page, "lab_2_nan_status_light.png", "jupyterlab_status_nan.png")

            # 5. the cell history panel; checkpoints toggled from the command palette
            page.evaluate(COMMAND, ["tinygrad-nb:open-history", None])
            page.wait_for_selector("#tinygrad-nb-history", state="visible", timeout=10_000)
            page.evaluate(RUN_CELLS, [4, 4])
            page.wait_for_function("() => document.querySelector('#tinygrad-nb-history').dataset.tgEnabled === 'true'"
                                   " && [...document.querySelectorAll('.tg-Commit-label')].pop()?.textContent"
                                   ".endsWith('total = float(x.sum().item())')", timeout=30_000)
            commits = int(page.get_attribute("#tinygrad-nb-history", "data-tg-commits"))
            head = page.get_attribute("#tinygrad-nb-history", "data-tg-head")
            assert head == str(commits)
            labels = page.locator(".tg-Commit-label").all_inner_texts()
            assert labels[-1].endswith("total = float(x.sum().item())"), labels
            assert page.locator(".tg-Commit.tg-mod-head").count() == 1
            _shot(page, "lab_3_history_light.png")
            page.keyboard.press("Control+Shift+C")
            page.wait_for_selector(".lm-CommandPalette-input", state="visible", timeout=10_000)
            page.fill(".lm-CommandPalette-input", "Toggle Cell Checkpoints")
            page.keyboard.press("Enter")
            page.wait_for_function("() => document.querySelector('#tinygrad-nb-history').dataset.tgEnabled === "
                                   "'false'", timeout=30_000)
            assert page.inner_text("#tinygrad-nb-history [data-tg-action=toggle]") == "turn on"
            page.wait_for_function(IDLE, timeout=30_000)
            page.evaluate(RUN_CELLS, [4, 4])
            page.wait_for_function(IDLE, timeout=30_000)
            time.sleep(1.5)  # updates come at most twice a second: give a (wrong) new commit the time to show
            assert int(page.get_attribute("#tinygrad-nb-history", "data-tg-commits")) == commits
            page.click("#tinygrad-nb-history [data-tg-action=toggle]")
            page.wait_for_function("() => document.querySelector('#tinygrad-nb-history').dataset.tgEnabled === "
                                   "'true'", timeout=30_000)

            # 6. replay and verify from the panel: every commit gets its verdict
            page.wait_for_function(IDLE, timeout=30_000)
            page.click("#tinygrad-nb-history [data-tg-action=replay]")
            page.wait_for_function("(n) => document.querySelectorAll('#tinygrad-nb-history .tg-Commit .tg-Badge')"
                                   ".length && [...document.querySelectorAll('#tinygrad-nb-history .tg-Commit')]"
                                   ".filter(c => c.querySelector('[data-tg-badge=bitwise], [data-tg-badge=diverged],"
                                   " [data-tg-badge=ran]')).length === n", arg=commits, timeout=60_000)
            verdicts = page.evaluate("() => [...document.querySelectorAll('#tinygrad-nb-history .tg-Commit')].map(c =>"
                                     " c.querySelector('[data-tg-badge=bitwise], [data-tg-badge=diverged],"
                                     " [data-tg-badge=ran]').textContent)")
            print("replay verdicts:", verdicts)
            assert verdicts[-1] == "bitwise", verdicts  # total = float(x.sum().item()): same bits again
            _dismiss_notifications(page)
            _shot(page, "lab_4_history_replayed_light.png", "jupyterlab_history.png")

            # check out a commit from the panel, then undo: HEAD follows (%tg_checkout #2, then %tg_undo)
            page.click("#tinygrad-nb-history .tg-Commit[data-tg-seq='2'] [data-tg-action=checkout]")
            page.wait_for_function("() => document.querySelector('#tinygrad-nb-history').dataset.tgHead === '2'",
                                   timeout=30_000)
            assert page.locator(".tg-Commit.tg-mod-head").get_attribute("data-tg-seq") == "2"
            page.wait_for_function(IDLE, timeout=30_000)
            page.click("#tinygrad-nb-history [data-tg-action=undo]")
            page.wait_for_function("() => document.querySelector('#tinygrad-nb-history').dataset.tgHead === '1'",
                                   timeout=30_000)
            page.wait_for_function(IDLE, timeout=30_000)

            # the cell context menu has the commands
            page.click(".jp-Notebook .jp-CodeCell .jp-InputArea-editor >> nth=1", button="right")
            page.wait_for_selector(".lm-Menu", state="visible", timeout=10_000)
            menu = page.inner_text(".lm-Menu")
            for label in ("Run Cell with the NaN Tracer", "Profile Cell", "Toggle Cell Checkpoints",
                          "Replay and Verify the Notebook", "Open the Runs Sidebar"):
                assert label in menu, menu
            page.keyboard.press("Escape")

            # 7. the same views in the dark theme
            page.evaluate(COMMAND, ["apputils:change-theme", {"theme": "JupyterLab Dark"}])
            page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
            time.sleep(1.0)  # the theme's stylesheet applies after the attribute flips
            _dismiss_notifications(page)
            _shot(page, "lab_5_history_dark.png", "jupyterlab_history_dark.png")
            page.evaluate(COMMAND, ["tinygrad-nb:open-runs", None])
            page.evaluate("() => { const w = [...window.jupyterapp.shell.widgets('main')]"
                          ".find(w => w.id.startsWith('tinygrad-nb-compare')); window.jupyterapp.shell"
                          ".activateById(w.id); }")
            time.sleep(0.5)
            _shot(page, "lab_6_runs_compare_dark.png", "jupyterlab_runs_compare_dark.png")

            # 8. a page reload: the extension re-attaches to the kernel's open comm and gets the whole state again
            page.reload()
            page.wait_for_function(OPEN_NOTEBOOK_READY, arg=CELLS, timeout=90_000)
            page.wait_for_function("() => document.querySelector('.tg-StatusItem-nan')?.textContent === "
                                   f"{nan_text!r}", timeout=30_000)
            page.evaluate(COMMAND, ["tinygrad-nb:open-history", None])
            page.wait_for_function("(n) => document.querySelector('#tinygrad-nb-history')?.dataset.tgCommits === "
                                   "String(n) && document.querySelector('#tinygrad-nb-history').dataset.tgEnabled "
                                   "=== 'true'", arg=commits, timeout=30_000)
        except Exception:
            _shot(page, "lab_failure.png")
            raise
        finally:
            browser.close()
            print(f"screenshots in {ARTIFACTS}")
            if console:
                print("browser console:\n  " + "\n  ".join(console[-30:]))
