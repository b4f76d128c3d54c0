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

import base64
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import CHROMIUM, OPEN_NOTEBOOK_READY, RUN_CELLS, jupyterlab, missing

FIXTURE = Path(__file__).resolve().parent / "browser" / "live_widgets.ipynb"
HISTORY_FIXTURE = FIXTURE.with_name("history_widget.ipynb")
VIEWS_FIXTURE = FIXTURE.with_name("live_views.ipynb")
ARTIFACTS = Path(os.environ.get("TINYGRAD_NB_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts")) / \
    "browser"
TOKEN = "tinygrad-nb-browser-test"
POINTS = 2000 + 20  # what the fixture's first cell logs: 2,000 losses and 20 validation losses


pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A JupyterLab server with throw-away config, data, runtime, settings and workspace folders; yields
    (base url, root folder holding a copy of the fixture notebook)."""
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "root"
    root.mkdir()
    for notebook in (FIXTURE, HISTORY_FIXTURE, VIEWS_FIXTURE):
        shutil.copy(notebook, root / notebook.name)
    with jupyterlab(tmp, root, TOKEN, start_timeout=60) as base:
        yield base, root


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

            # 2. the static swap: finishing replaces the live outputs in place with the PNG the notebook saves; while
            # the kernel lives the browser puts a live view back over it (the image is hidden, not removed)
            page.evaluate(RUN_CELLS, [3, 3])
            page.wait_for_selector(".jp-OutputArea-output img[src^='data:image/png']", state="attached",
                                   timeout=30_000)
            page.wait_for_function(
                f"() => document.querySelector('.tg-revived [data-tg-widget=loss]')?.dataset.points === '{POINTS}'",
                timeout=15_000)
            page.wait_for_function("() => document.querySelector('.tg-revived [data-tg-widget=nan]')"
                                   "?.dataset.events === '1'", timeout=15_000)
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


# -- issue 18: the views look and behave like the tools people already use ------------------------------------------
VIEW_CHECKS = """() => [...document.querySelectorAll('[data-tg-widget]:not([data-tg-widget=nan])')].map((el) => {
  const g = JSON.parse(el.dataset.geometry);
  return { kind: el.dataset.tgWidget, revived: Boolean(el.closest('.tg-revived')), width: g.width,
           clientWidth: el.clientWidth, scrollWidth: el.scrollWidth, panels: g.panels,
           canvasWidth: el.querySelector('canvas').getBoundingClientRect().width };
})"""


def _overlap(a: list[float], b: list[float]) -> bool:
    """Whether rectangles [x, y, w, h] overlap (touching edges do not)."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _check_layout(views: list[dict[str, Any]], where: str) -> None:
    """Titles and legends overlap nothing (each other, the plot, the newest points), axes are labelled and ticked,
    and nothing is cut off on the right."""
    assert views, where
    for view in views:
        label = f"{where}: {view['kind']}"
        assert view["scrollWidth"] <= view["clientWidth"] + 1, (label, "cut off on the right")
        assert view["canvasWidth"] <= view["clientWidth"] + 1, label
        for panel in view["panels"]:
            boxes = [("title", panel["title"])] + [(f"legend {i}", b) for i, b in enumerate(panel["legend"])]
            for i, (name_a, a) in enumerate(boxes):
                assert _overlap(a, panel["plot"]) is False, (label, name_a, "covers the plot", panel)
                for name_b, b in boxes[i + 1:]:
                    assert not _overlap(a, b), (label, name_a, name_b, panel)
                for x, y in panel["last"]:
                    assert not _overlap(a, [x - 3, y - 3, 6, 6]), (label, name_a, "covers the newest point")
            px, py, pw, ph = panel["plot"]
            assert px + pw <= view["width"] + 1 and pw >= 150, (label, "plot too narrow or cut off", panel)
            assert panel["xlabel"] and panel["ylabel"], (label, "axis labels", panel)
            assert len(panel["xticks"]) >= 2 and len(panel["yticks"]) >= 2, (label, "ticks", panel)
            for x, y in panel["last"]:
                assert px - 1 <= x <= px + pw + 1 and py - 1 <= y <= py + ph + 1, (label, "last point", panel)


def _known_panel(page: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """The known curve's loss panel geometry and its canvas's page position."""
    info = page.evaluate("""() => {
      const el = [...document.querySelectorAll('[data-tg-widget=loss]')].find((e) => e.textContent.includes('known'));
      const r = el.querySelector('canvas').getBoundingClientRect();
      return { g: JSON.parse(el.dataset.geometry).panels[0], x: r.x, y: r.y };
    }""")
    return info["g"], {"x": info["x"], "y": info["y"]}


def _step_to_page(panel: dict[str, Any], origin: dict[str, float], step: float) -> float:
    px, _py, pw, _ph = panel["plot"]
    x0, x1 = panel["xr"]
    return origin["x"] + px + (step - x0) / (x1 - x0) * pw


def test_views_look_and_behave(lab: tuple[str, Path]) -> None:
    """fit()'s dashboard, a LossCurve with a known series, a NaNTracer and %tg_log --widget: layout in light and dark
    theme at two widths, hover readout, zoom, controls reflected in the static image, and after a kernel restart and
    reload every view shows its static image (no "model not found")."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only when the test runs

    base, root = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    known = "[data-tg-widget=loss]:has-text('known')"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            page.goto(f"{base}/lab/tree/{VIEWS_FIXTURE.name}?token={TOKEN}&reset")
            page.wait_for_function(OPEN_NOTEBOOK_READY, arg=9, timeout=60_000)
            page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
            page.evaluate(RUN_CELLS, [1, 3])
            page.evaluate(RUN_CELLS, [8, 8])  # a ProfileTimeline (static first, interactive over its image)
            # fit() finished: its dashboard is the static PNG, with the three live views put back over it
            for kind in ("loss", "grads", "acts"):
                page.wait_for_selector(f".tg-revived [data-tg-widget={kind}]", timeout=60_000)
            page.wait_for_function(f"() => document.querySelector(\"{known}\".replace(':has-text(\\'known\\')', ''))",
                                   timeout=30_000)
            page.wait_for_function("""() => [...document.querySelectorAll('[data-tg-widget=loss]')]
              .some((e) => e.textContent.includes('known') && e.dataset.points === '110')""", timeout=30_000)
            page.wait_for_selector(".tg-revived [data-tg-widget=nan][data-events='1']", timeout=30_000)
            page.wait_for_function("() => JSON.parse(document.querySelector('.tg-revived [data-tg-widget=timeline]')"
                                   "?.dataset.geometry || '{\"panels\": []}').panels.length === 1", timeout=30_000)
            timeline = page.locator(".tg-revived [data-tg-widget=timeline]")
            timeline.scroll_into_view_if_needed()
            plot = json.loads(timeline.get_attribute("data-geometry"))["panels"][0]["plot"]
            origin = timeline.locator("canvas").bounding_box()
            page.mouse.move(origin["x"] + plot[0] + 5, origin["y"] + plot[1] + 11)  # the first "step" region
            tip = timeline.locator(".tg-readout")
            tip.wait_for(state="visible", timeout=5_000)
            assert tip.inner_text().startswith("region step\nstart "), tip.inner_text()
            timeline.screenshot(path=str(ARTIFACTS / "view_timeline_hover.png"))
            page.mouse.move(0, 0)

            # hover: the readout shows step, and each series' value at the cursor
            page.locator(known).scroll_into_view_if_needed()
            panel, origin = _known_panel(page)
            y_mid = origin["y"] + panel["plot"][1] + panel["plot"][3] / 2
            page.mouse.move(_step_to_page(panel, origin, 50), y_mid)
            readout = page.locator(f"{known} .tg-readout")
            readout.wait_for(state="visible", timeout=5_000)
            text = readout.inner_text()
            # loss = 1 + 0.5 * 50; val_loss is logged every 10 steps: the nearest, step 49, has 2 + 0.5 * 49
            assert "step 50" in text and "loss: 26" in text and "val_loss: 26.5" in text, text
            page.screenshot(path=str(ARTIFACTS / "5_hover.png"), full_page=False)
            page.locator(f".jp-OutputArea-output:has({known})").screenshot(path=str(ARTIFACTS / "view_hover.png"))

            # zoom: drag from step 20 to step 60; double-click resets
            page.mouse.move(_step_to_page(panel, origin, 20), y_mid)
            page.mouse.down()
            page.mouse.move(_step_to_page(panel, origin, 40), y_mid, steps=4)
            page.mouse.move(_step_to_page(panel, origin, 60), y_mid, steps=4)
            page.mouse.up()
            page.wait_for_function(f"() => JSON.parse(document.querySelector(\"{known.split(':')[0]}\") && "
                                   "[...document.querySelectorAll('[data-tg-widget=loss]')].find((e) => "
                                   "e.textContent.includes('known')).dataset.xRange).length === 2", timeout=5_000)
            zoomed_panel, _ = _known_panel(page)
            x0, x1 = zoomed_panel["xr"]
            assert abs(x0 - 20) < 1.5 and abs(x1 - 60) < 1.5, zoomed_panel["xr"]
            page.mouse.dblclick(_step_to_page(zoomed_panel, origin, 40), y_mid)
            page.wait_for_function("() => [...document.querySelectorAll('[data-tg-widget=loss]')].find((e) => "
                                   "e.textContent.includes('known')).dataset.xRange === '[]'", timeout=5_000)

            # controls changed during the run: log scale, smoothing 0.5, zoom to steps 10-90
            page.locator(f"{known} input[type=checkbox]").check()
            page.locator(f"{known} input[type=range]").fill("0.5")
            panel, origin = _known_panel(page)
            page.mouse.move(_step_to_page(panel, origin, 10), y_mid)
            page.mouse.down()
            page.mouse.move(_step_to_page(panel, origin, 90), y_mid, steps=6)
            page.mouse.up()
            page.mouse.move(0, 0)

            # layout in both themes at two widths
            for theme in ("JupyterLab Light", "JupyterLab Dark"):
                page.evaluate("(theme) => window.jupyterapp.commands.execute('apputils:change-theme', {theme})", theme)
                page.wait_for_function(f"() => document.body.dataset.jpThemeName === '{theme}'", timeout=15_000)
                for width in (1280, 900):
                    page.set_viewport_size({"width": width, "height": 1000})
                    page.wait_for_timeout(800)  # ResizeObserver + requestAnimationFrame redraws
                    views = page.evaluate(VIEW_CHECKS)
                    assert {v["kind"] for v in views} >= {"loss", "grads", "acts", "timeline"}, views
                    _check_layout(views, f"{theme} {width}px")
                    slug = f"{'dark' if 'Dark' in theme else 'light'}_{width}"
                    page.screenshot(path=str(ARTIFACTS / f"6_views_{slug}.png"), full_page=True)
                    if width == 1280:  # each view on its own, for docs/notebook.md
                        for name, selector in (("dashboard", "[data-tg-widget=acts]"), ("curve", known),
                                               ("nan", "[data-tg-widget=nan]")):
                            output = page.locator(f".jp-OutputArea-output:has({selector})").first
                            output.scroll_into_view_if_needed()
                            output.screenshot(path=str(ARTIFACTS / f"view_{name}_{slug}.png"))
            # (dark theme and 900 px are current: the static image of the known curve is made now)
            page.evaluate(RUN_CELLS, [4, 4])
            header = page.locator(".jp-OutputArea-output pre:has-text('known')")
            header.wait_for(timeout=15_000)
            assert header.inner_text().startswith("known · log scale · smoothing 0.50 · steps 10 to 90"), \
                header.inner_text()
            page.wait_for_selector(f".tg-revived {known}", timeout=15_000)  # interactive again over its image
            page.screenshot(path=str(ARTIFACTS / "7_finished_dark.png"), full_page=True)

            # %tg_log --widget: the saved output is the timeline PNG; the live box is put over it
            page.evaluate(RUN_CELLS, [5, 7])
            page.wait_for_selector(".tg-revived .widget-dropdown select", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "8_history_live.png"), full_page=True)
            page.wait_for_timeout(2000)  # the box's figure is redrawn in the page's theme (the host reports it)
            history = page.locator(".jp-OutputArea-output:has(.tg-revived .widget-dropdown)")
            history.scroll_into_view_if_needed()
            history.screenshot(path=str(ARTIFACTS / "view_history_live_dark.png"))

            # save, restart the kernel, reload: every view is its static image, nothing says "model not found"
            page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:save'); }")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                                   timeout=15_000)
            page.evaluate("async () => { await window.jupyterapp.shell.currentWidget.sessionContext.session"
                          ".kernel.restart(); }")
            page.reload()
            page.wait_for_function(OPEN_NOTEBOOK_READY, arg=9, timeout=60_000)
            images = page.locator(".jp-OutputArea-output img[src^='data:image/png']")
            images.first.wait_for(state="visible", timeout=15_000)
            page.wait_for_timeout(1500)
            assert images.count() == 5  # dashboard, known curve, NaN table, history timeline, profile timeline
            assert all(images.nth(i).is_visible() for i in range(5))
            assert "model not found" not in page.inner_text(".jp-Notebook")
            for theme in ("dark", "light"):
                if theme == "light":
                    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                                  "{theme: 'JupyterLab Light'})")
                    page.wait_for_timeout(1000)
                page.screenshot(path=str(ARTIFACTS / f"9_after_restart_reload_{theme}.png"), full_page=True)
            images.nth(3).scroll_into_view_if_needed()
            images.nth(3).screenshot(path=str(ARTIFACTS / "static_history_light.png"))
        finally:
            browser.close()
            print(f"screenshots in {ARTIFACTS}")

    from PIL import Image  # noqa: PLC0415

    saved = json.loads((root / VIEWS_FIXTURE.name).read_text())
    pngs = {}
    for index in (1, 2):  # the dashboard (finished in light theme at 1280 px) and the known curve (dark, 900 px)
        data = next(o["data"] for o in saved["cells"][index]["outputs"] if "image/png" in o.get("data", {}))
        pngs[index] = Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("RGB")
    assert pngs[1].getpixel((2, 2)) == (255, 255, 255) and pngs[1].size[1] >= 3 * 250  # every widget's panels
    assert pngs[2].getpixel((2, 2)) == (17, 17, 17)  # drawn in the theme the user looked at
    assert pngs[1].size[0] > pngs[2].size[0]  # at the width the browser reported (1280 px vs 900 px windows)


# -- issue 22: a series restyled after it is drawn (the sweep view greys a pruned trial's curve) --------------------
STYLE_FIXTURE = FIXTURE.with_name("series_style.ipynb")
ORANGE, BLUE, GREY = (255, 127, 14), (31, 119, 180), (158, 158, 158)  # COLORS[1], COLORS[0], set_series_style's
STROKES = """([index, values, step]) => {
  // per value: the canvas pixel with the most ink in a 13 px column around where the flat line at that value is,
  // at the given step; the canvas's own (un-composited) RGBA, read back with getImageData
  const el = document.querySelectorAll('[data-tg-widget=loss]')[index];
  const canvas = el.querySelector('canvas'), r = canvas.width / canvas.getBoundingClientRect().width;
  const p = JSON.parse(el.dataset.geometry).panels[0], [bx, by, bw, bh] = p.plot, [x0, x1] = p.xr, [y0, y1] = p.yr;
  const ctx = canvas.getContext('2d'), x = bx + (step - x0) / (x1 - x0) * bw;
  return values.map((v) => {
    const y = by + bh - (v - y0) / (y1 - y0) * bh;
    let best = null;
    for (let dy = -6; dy <= 6; dy++) {
      const rgba = [...ctx.getImageData(Math.round(x * r), Math.round((y + dy) * r), 1, 1).data];
      if (!best || rgba[3] > best.rgba[3]) best = { rgba, x: Math.round(x), y: Math.round(y + dy) };
    }
    return best;
  });
}"""


def _near(rgb: list[int] | tuple[int, ...], want: tuple[int, int, int], tolerance: int) -> bool:
    return all(abs(int(a) - b) <= tolerance for a, b in zip(rgb, want))


def test_series_style_update_restyles_a_drawn_curve(lab: tuple[str, Path]) -> None:
    """A LossCurve draws "loss" (blue) and "train_loss" (orange) as flat lines; ``set_series_style`` turns the
    orange one into the sweep view's pruned look (grey, alpha 0.8) with a " (pruned)" label. Read from the canvas
    in light and dark theme: the stroke was orange, is grey now, the blue one is untouched; on screen the grey line
    stands out from the background; the hover readout has the new label; a second display made later and a reloaded
    page (the kernel still running, so everything is sent again) draw it grey too. Screenshots: ``style_*.png`` in
    the artifacts folder."""
    from PIL import Image  # noqa: PLC0415
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only when the test runs

    base, root = lab
    shutil.copy(STYLE_FIXTURE, root / STYLE_FIXTURE.name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    step = 17.5  # between x grid lines (ticks every 5 or 10 steps); 1.13 and 1.87 lie between y grid lines

    def strokes(page: Any, index: int = 0) -> list[dict[str, Any]]:
        page.mouse.move(0, 0)  # no hover guide over the curves
        page.wait_for_timeout(300)
        return page.evaluate(STROKES, [index, [1.13, 1.87], step])

    def on_screen(page: Any, index: int, theme: str, at: dict[str, Any],
                  background: tuple[int, ...]) -> tuple[int, ...]:
        """What the user sees near a canvas pixel (the element screenshot, composited over the theme's background):
        the pixel farthest from the background within 2 px above or below (the canvas may sit at a half pixel)."""
        canvas = page.locator("[data-tg-widget=loss] canvas").nth(index)
        canvas.scroll_into_view_if_needed()
        path = ARTIFACTS / f"style_{theme}.png"
        page.locator(".jp-OutputArea-output:has([data-tg-widget=loss])").nth(index).screenshot(path=str(path))
        shot = Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")
        column = [shot.getpixel((at["x"], at["y"] + dy)) for dy in range(-2, 3)]
        return max(column, key=lambda rgb: sum(abs(c - b) for c, b in zip(rgb, background)))

    def set_theme(page: Any, name: str) -> None:
        page.evaluate("(theme) => window.jupyterapp.commands.execute('apputils:change-theme', {theme})", name)
        page.wait_for_function(f"() => document.body.dataset.jpThemeName === '{name}'", timeout=15_000)
        page.wait_for_timeout(800)  # the MutationObserver's redraw

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        try:
            page.goto(f"{base}/lab/tree/{STYLE_FIXTURE.name}?token={TOKEN}&reset")
            page.wait_for_function(OPEN_NOTEBOOK_READY, arg=4, timeout=60_000)
            page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
            page.evaluate(RUN_CELLS, [1, 1])
            page.wait_for_function("() => document.querySelector('[data-tg-widget=loss]')?.dataset.points === '80'",
                                   timeout=30_000)
            for theme in ("JupyterLab Light", "JupyterLab Dark"):  # before: orange, opaque
                set_theme(page, theme)
                blue, orange = strokes(page)
                assert _near(blue["rgba"], BLUE, 3) and blue["rgba"][3] >= 190, (theme, blue)
                assert _near(orange["rgba"], ORANGE, 3) and orange["rgba"][3] >= 190, (theme, orange)
            page.locator(".jp-OutputArea-output:has([data-tg-widget=loss])").first.screenshot(
                path=str(ARTIFACTS / "style_before_dark.png"))

            page.evaluate(RUN_CELLS, [2, 2])  # curve.set_series_style("train_loss", color="#9e9e9e", alpha=0.8, ...)
            page.wait_for_function(f"() => ({STROKES})([0, [1.87], {step}])[0].rgba[0] < 200", timeout=15_000)
            for theme, background in (("JupyterLab Dark", (17, 17, 17)), ("JupyterLab Light", (255, 255, 255))):
                set_theme(page, theme)
                blue, grey = strokes(page)
                assert _near(blue["rgba"], BLUE, 3) and blue["rgba"][3] >= 190, (theme, blue)  # untouched
                assert _near(grey["rgba"], GREY, 4), (theme, grey)
                assert 140 <= grey["rgba"][3] <= 206, (theme, grey)  # alpha 0.8 of the line's coverage
                seen = on_screen(page, 0, "light" if "Light" in theme else "dark", grey, background)
                alpha = grey["rgba"][3] / 255
                expected = [round(alpha * g + (1 - alpha) * b) for g, b in zip(GREY, background)]
                assert _near(seen, tuple(expected), 12), (theme, seen, expected)  # composited over the page
                assert sum(abs(s - b) for s, b in zip(seen, background)) >= 150, (theme, seen)  # visible
            # the hover readout carries the label suffix
            canvas = page.locator("[data-tg-widget=loss] canvas").first
            box = canvas.bounding_box()
            page.mouse.move(box["x"] + grey["x"], box["y"] + grey["y"])
            tip = page.locator("[data-tg-widget=loss] .tg-readout").first
            tip.wait_for(state="visible", timeout=5_000)
            assert "train_loss (pruned): 1.87" in tip.inner_text() and "loss: 1.13" in tip.inner_text(), \
                tip.inner_text()
            page.mouse.move(0, 0)

            # a view made after the change (the same widget displayed again) starts grey
            page.evaluate(RUN_CELLS, [3, 3])
            page.wait_for_function("() => document.querySelectorAll('[data-tg-widget=loss]')[1]?.dataset.points"
                                   " === '80'", timeout=30_000)
            blue, grey = strokes(page, 1)
            assert _near(grey["rgba"], GREY, 4) and 140 <= grey["rgba"][3] <= 206, grey
            assert _near(blue["rgba"], BLUE, 3), blue

            # a reloaded page (saved first, so the outputs name the widget; the kernel runs on): its views ask for
            # everything, and the resend carries the style
            page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:save'); }")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                                   timeout=15_000)
            page.reload()
            page.wait_for_function(OPEN_NOTEBOOK_READY, arg=4, timeout=60_000)
            page.wait_for_function("() => document.querySelector('[data-tg-widget=loss]')?.dataset.points === '80'",
                                   timeout=30_000)
            blue, grey = strokes(page)
            assert _near(grey["rgba"], GREY, 4) and 140 <= grey["rgba"][3] <= 206, grey
            assert _near(blue["rgba"], BLUE, 3), blue
            page.locator(".jp-OutputArea-output:has([data-tg-widget=loss])").first.screenshot(
                path=str(ARTIFACTS / "style_after_reload.png"))
        finally:
            browser.close()
            print(f"screenshots in {ARTIFACTS}")
