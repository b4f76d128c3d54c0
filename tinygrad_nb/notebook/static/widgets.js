// Live views of tinygrad_nb.notebook: LossCurve, GradHistograms, ActivationInspector, NaNTracer.
// One hand-written ES module for anywidget: no build step, no imports, canvas 2D drawing.
//
// Protocol (tinygrad_nb/notebook/widgets/base.py): Python sends custom messages
//   {kind: "data", series: [{name, start, width, ...meta}], latest: [{name, shape, ...meta}], records: {start, items}}
// with one float32 buffer per series (rows of `width` numbers) and then one per latest array. Rows are appended in
// order, so every point logged in Python ends up here. If a message starts past what we hold (or we start empty
// after a page reload) we ask for the rest: {kind: "sync", have: {name: rows}, records: n}. The first view rendered
// sends one such request too: it tells Python a browser shows the widget (see "swap" below).
// LossCurve.set_series_style sends {kind: "style", name, style} (also kept in the series' meta, so resends carry it).
//
// Look: colours and fonts come from JupyterLab's theme variables (light, dark, high contrast); every panel has its
// title, then its legend, then the plot, so legends never cover data; axes carry labels. Interaction: hover shows
// every series at the cursor, drag zooms the step axis (shift-drag pans), double-click resets. Choices (log scale,
// smoothing, selected parameter, zoomed range) are synced traits, so the static image Python draws shows them too.
//
// Swap: when a run ends Python replaces the output with the static PNG (what the notebook saves) and tells us which
// image that is. While the kernel lives we put an interactive view back over it (hidden, not removed); when the model
// goes away (kernel restart, re-run) the image shows again.

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
const FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
// fallbacks when the page has no JupyterLab theme variables; figures.py's THEMES hold the same values
const THEMES = {
  light: { bg: "#ffffff", fg: "#212121", fg2: "#616161", grid: "#e0e0e0", axis: "#9e9e9e", error: "#d32f2f" },
  dark: { bg: "#111111", fg: "#e0e0e0", fg2: "#a8a8a8", grid: "#3a3a3a", axis: "#757575", error: "#f44336" },
};
const BOUNDED = /acc|accuracy|precision|recall|f1|auc|iou|frac|ratio|prob/i; // no log scale for these panels
const TITLE_H = 22, LEGEND_H = 18, PAD_L = 66, PAD_R = 16, PAD_B = 44;

// ---- the per-model store -----------------------------------------------------------------------------------------
function floats(buf) {
  // a DataView or ArrayBuffer as an aligned Float32Array copy
  const bytes = buf.buffer ? buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) : buf.slice(0);
  return new Float32Array(bytes);
}

function createStore() {
  return { series: new Map(), latest: new Map(), records: [], styles: new Map(), received: false, listeners: new Set() };
}

// {color: "#rrggbb", dashed, alpha in [0, 1], label_suffix}; bad fields dropped. By name: may precede the rows.
function setStyle(store, name, raw) {
  if (typeof name != "string" || !raw || typeof raw != "object" || Array.isArray(raw)) return false;
  const o = {}, c = raw.color, a = raw.alpha, f = raw.label_suffix;
  if (typeof c == "string" && /^#[0-9a-f]{6}$/i.test(c)) o.color = c;
  if (typeof raw.dashed == "boolean") o.dashed = raw.dashed;
  if (typeof a == "number" && a >= 0 && a <= 1) o.alpha = a;
  if (typeof f == "string") o.suffix = f.slice(0, 80);
  store.styles.set(name, o);
  return true;
}

function have(store) {
  const counts = {};
  for (const [name, s] of store.series) counts[name] = s.n;
  return counts;
}

function appendRows(store, item, rows) {
  let s = store.series.get(item.name);
  if (!s) {
    s = { name: item.name, meta: item, width: item.width, data: new Float32Array(256 * item.width), n: 0 };
    store.series.set(item.name, s);
  }
  if ("style" in item) setStyle(store, item.name, item.style);
  const w = s.width, count = rows.length / w;
  if (item.start > s.n) return false; // a gap: keep what we have, ask for the rest
  const skip = s.n - item.start; // rows we already hold (a resend overlapping what arrived)
  if (skip >= count) return true;
  const need = (item.start + count) * w;
  if (need > s.data.length) {
    const grown = new Float32Array(Math.max(need, 2 * s.data.length));
    grown.set(s.data.subarray(0, s.n * w));
    s.data = grown;
  }
  s.data.set(rows.subarray(skip * w), s.n * w);
  s.n = item.start + count;
  return true;
}

function applyData(store, msg, buffers) {
  let b = 0, complete = true;
  for (const item of msg.series) complete = appendRows(store, item, floats(buffers[b++])) && complete;
  for (const item of msg.latest) store.latest.set(item.name, { meta: item, data: floats(buffers[b++]) });
  const rec = msg.records;
  if (rec.start > store.records.length) complete = false;
  else store.records.push(...rec.items.slice(store.records.length - rec.start));
  store.received = true;
  return complete;
}

// ---- theme, numbers, ticks ---------------------------------------------------------------------------------------
function theme(el) {
  const dark = document.body.dataset.jpThemeLight === "false", base = THEMES[dark ? "dark" : "light"];
  const cs = getComputedStyle(el), v = (name, fallback) => cs.getPropertyValue(name).trim() || fallback;
  return {
    dark, bg: v("--jp-layout-color0", base.bg), fg: v("--jp-ui-font-color1", base.fg),
    fg2: v("--jp-ui-font-color2", base.fg2), grid: v("--jp-border-color2", base.grid),
    axis: v("--jp-border-color1", base.axis), error: v("--jp-error-color1", base.error),
    font: v("--jp-ui-font-family", FONT),
  };
}

function fmt(v) {
  // tick labels; figures.fmt is the same function
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e6 || a < 1e-3) {
    const e = Math.floor(Math.log10(a)), m = +(v / Math.pow(10, e)).toPrecision(2);
    return (m === 1 ? "" : m === -1 ? "-" : m + "×") + "1e" + e;
  }
  if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
  return String(+v.toPrecision(3));
}

function fmtv(v) {
  // readout values: more digits than ticks
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e6 || a < 1e-4) ? v.toExponential(4) : String(+v.toPrecision(5));
}

function niceTicks(lo, hi, n) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / Math.max(1, n), mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

function logTicks(lo, hi, room) {
  // decades inside [lo, hi] (every k-th when crowded); 1-2-5 within a decade or two; linear ticks below that
  const e0 = Math.floor(Math.log10(lo)), e1 = Math.ceil(Math.log10(hi));
  const k = Math.max(1, Math.ceil((e1 - e0) / Math.max(2, room)));
  const pick = (mults) => {
    const out = [];
    for (let e = e0; e <= e1; e += mults.length > 1 ? 1 : k) for (const m of mults) out.push(m * Math.pow(10, e));
    return out.filter((v) => v >= lo * 0.9999 && v <= hi * 1.0001);
  };
  let t = pick([1]);
  if (t.length < 2) t = pick([1, 2, 5]);
  if (t.length < 2) t = niceTicks(lo, hi, 3).filter((v) => v > 0);
  return t;
}

function extent(values, positive) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v) && (!positive || v > 0)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (lo > hi) return positive ? [0.1, 1] : [0, 1];
  if (lo === hi) return positive ? [lo / 2, hi * 2] : [lo - 0.5, hi + 0.5];
  if (positive) return [lo / 1.15, hi * 1.15];
  const pad = 0.05 * (hi - lo);
  return [lo - pad, hi + pad];
}

function columns(width, panels, minWidth) {
  return Math.max(1, Math.min(panels, Math.floor(width / minWidth)));
}

function clip(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let t = text;
  while (t.length > 1 && ctx.measureText(t + "…").width > width) t = t.slice(0, -1);
  return t + "…";
}

// Debiased exponential moving average, the same as figures.ema in Python.
function ema(values, weight) {
  if (weight <= 0) return values;
  const out = new Float32Array(values.length);
  let last = 0, count = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) { out[i] = v; continue; }
    last = last * weight + (1 - weight) * v;
    count += 1;
    out[i] = last / (1 - Math.pow(weight, count));
  }
  return out;
}

function column(s, j) {
  const out = new Float32Array(s.n);
  for (let i = 0; i < s.n; i++) out[i] = s.data[i * s.width + j];
  return out;
}

function nearest(xs, x) {
  // index of the row whose step is closest to x (steps ascend)
  let lo = 0, hi = xs.length - 1;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (xs[mid] < x) lo = mid; else hi = mid; }
  return Math.abs(xs[hi] - x) < Math.abs(xs[lo] - x) ? hi : lo;
}

// ---- panels: title, legend, axes ---------------------------------------------------------------------------------
function line(ctx, x0, y0, x1, y1) {
  ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
}

function swatch(ctx, item, x, y) {
  ctx.save();
  if (item.band) { ctx.globalAlpha = item.band; ctx.fillStyle = item.color; ctx.fillRect(x, y - 5, 16, 10); }
  else {
    ctx.strokeStyle = item.color; ctx.lineWidth = 2; ctx.setLineDash(item.dash || []); ctx.globalAlpha = item.alpha ?? 1;
    line(ctx, x, y, x + 16, y);
  }
  ctx.restore();
}

// Title, then legend rows, then the plot box below them: a legend never covers data. `g` is the panel's geometry
// (what tests read from data-geometry).
function frame(ctx, th, cell, title, legend, rightPad) {
  const x = cell.x + PAD_L, right = cell.x + cell.w - (rightPad || PAD_R);
  const g = { title: null, legend: [], plot: null, last: [] };
  ctx.font = `600 13px ${th.font}`;
  ctx.fillStyle = th.fg; ctx.textAlign = "left"; ctx.textBaseline = "top";
  const t = clip(ctx, title, right - x);
  ctx.fillText(t, x, cell.y + 4);
  g.title = [x, cell.y + 4, ctx.measureText(t).width, 15];
  g.titleText = t;
  ctx.font = `12px ${th.font}`;
  let lx = x, ly = cell.y + TITLE_H;
  for (const item of legend) {
    const label = clip(ctx, item.label, right - x - 22), w = 22 + ctx.measureText(label).width;
    if (lx + w > right && lx > x) { lx = x; ly += LEGEND_H; }
    swatch(ctx, item, lx, ly + 8);
    ctx.fillStyle = th.fg2; ctx.textBaseline = "middle";
    ctx.fillText(label, lx + 21, ly + 8);
    g.legend.push([lx, ly + 1, w, 14]);
    lx += w + 14;
  }
  const top = ly + (legend.length ? LEGEND_H : 0) + 4;
  const box = { x, y: top, w: Math.max(20, right - x), h: Math.max(20, cell.y + cell.h - PAD_B - top) };
  g.plot = [box.x, box.y, box.w, box.h];
  return { box, g };
}

// Grid, ticks, axis lines and labels in box; returns the data <-> pixel maps.
function axes(ctx, th, box, xr, yr, log, xlabel, ylabel, g, fixed) {
  const f = log ? Math.log10 : (v) => v, y0 = f(yr[0]), y1 = f(yr[1]), xspan = xr[1] - xr[0] || 1;
  const sx = (v) => box.x + ((v - xr[0]) / xspan) * box.w;
  const ix = (p) => xr[0] + ((p - box.x) / box.w) * xspan;
  const sy = (v) => box.y + box.h - ((f(v) - y0) / (y1 - y0 || 1)) * box.h;
  ctx.font = `12px ${th.font}`;
  ctx.lineWidth = 1;
  const yt = fixed ? fixed.map((t) => t[0]) : log ? logTicks(yr[0], yr[1], Math.floor(box.h / 26))
    : niceTicks(yr[0], yr[1], Math.max(2, Math.floor(box.h / 38)));
  const label = (v, i) => (fixed ? fixed[i][1] : fmt(v));
  let labelWidth = 0;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  g.yticks = [];
  yt.forEach((v, i) => {
    const p = Math.round(sy(v)) + 0.5;
    if (p < box.y - 0.5 || p > box.y + box.h + 0.5) return;
    if (!fixed) { ctx.strokeStyle = th.grid; line(ctx, box.x, p, box.x + box.w, p); }
    ctx.fillStyle = th.fg2; ctx.fillText(label(v, i), box.x - 6, p);
    labelWidth = Math.max(labelWidth, ctx.measureText(label(v, i)).width);
    g.yticks.push(label(v, i));
  });
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  g.xticks = [];
  for (const v of niceTicks(xr[0], xr[1], Math.max(2, Math.floor(box.w / 90)))) {
    if (v < xr[0] - 1e-9 * xspan || v > xr[1] + 1e-9 * xspan) continue;
    const p = Math.round(sx(v)) + 0.5;
    ctx.strokeStyle = th.grid; line(ctx, p, box.y, p, box.y + box.h);
    ctx.fillStyle = th.fg2; ctx.fillText(fmt(v), p, box.y + box.h + 5);
    g.xticks.push(fmt(v));
  }
  ctx.strokeStyle = th.axis;
  line(ctx, box.x + 0.5, box.y, box.x + 0.5, box.y + box.h);
  line(ctx, box.x, box.y + box.h + 0.5, box.x + box.w, box.y + box.h + 0.5);
  ctx.fillStyle = th.fg2;
  ctx.fillText(xlabel, box.x + box.w / 2, box.y + box.h + 23);
  if (ylabel) {
    ctx.save();
    ctx.translate(Math.max(box.x - PAD_L + 8, box.x - labelWidth - 16), box.y + box.h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText(clip(ctx, ylabel, box.h), 0, 0);
    ctx.restore();
  }
  g.xlabel = xlabel; g.ylabel = ylabel || ""; g.xr = xr; g.yr = yr;
  return { sx, sy, ix, xr, yr, box };
}

// A polyline through (xs[i], ys[i]); non-finite values break it and get a mark at the top.
function polyline(ctx, th, m, xs, ys, color, dash, alpha, width) {
  const box = m.box;
  ctx.save();
  ctx.beginPath(); ctx.rect(box.x, box.y - 1, box.w + 1, box.h + 2); ctx.clip();
  ctx.strokeStyle = color; ctx.globalAlpha = alpha; ctx.lineWidth = width || 1.6; ctx.setLineDash(dash || []);
  ctx.beginPath();
  let pen = false;
  for (let i = 0; i < xs.length; i++) {
    const v = ys[i];
    if (!Number.isFinite(v)) { pen = false; continue; }
    const px = m.sx(xs[i]), py = m.sy(v);
    if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
    pen = true;
  }
  if (xs.length === 1 && Number.isFinite(ys[0])) ctx.arc(m.sx(xs[0]), m.sy(ys[0]), 2.5, 0, 7);
  ctx.stroke();
  ctx.fillStyle = th.error; ctx.globalAlpha = 1;
  for (let i = 0; i < xs.length; i++) if (!Number.isFinite(ys[i])) ctx.fillRect(m.sx(xs[i]) - 1, box.y, 2, 7);
  ctx.restore();
}

function band(ctx, m, xs, lo, hi, color, alpha) {
  ctx.save();
  ctx.beginPath(); ctx.rect(m.box.x, m.box.y, m.box.w, m.box.h); ctx.clip();
  ctx.fillStyle = color; ctx.globalAlpha = alpha;
  ctx.beginPath();
  for (let i = 0; i < xs.length; i++) ctx.lineTo(m.sx(xs[i]), m.sy(hi[i]));
  for (let i = xs.length - 1; i >= 0; i--) ctx.lineTo(m.sx(xs[i]), m.sy(lo[i]));
  ctx.fill();
  ctx.restore();
}

function zoomed(model, full) {
  // the step range zoomed to in the browser (synced, so the static image shows it too), within the data's range
  const r = model.get("x_range") || [];
  if (r.length !== 2) return full;
  const a = Math.max(full[0], r[0]), b = Math.min(full[1], r[1]);
  return b > a ? [a, b] : full;
}

function visible(xs, ys, xr) {
  const out = [];
  for (let i = 0; i < xs.length; i++) if (xs[i] >= xr[0] && xs[i] <= xr[1]) out.push(ys[i]);
  return out;
}

// A time-series panel's readout at step x: step, then each line's value at the nearest row.
function seriesReadout(x, lines, unit) {
  const out = [];
  let step = null;
  for (const l of lines) {
    if (!l.xs.length) continue;
    const i = nearest(l.xs, x);
    if (step === null) { step = l.xs[i]; out.push(`${unit} ${fmtv(step)}`); }
    out.push(`${l.label}: ${fmtv(l.ys[i])}` + (l.sm && l.sm !== l.ys ? ` (smoothed ${fmtv(l.sm[i])})` : ""));
  }
  return out;
}

function histogramPanel(ctx, th, cell, latest, title, color, xlabel) {
  const counts = latest.data, lo = latest.meta.lo, hi = latest.meta.hi === lo ? lo + 1 : latest.meta.hi;
  const { box, g } = frame(ctx, th, cell, title, []);
  const m = axes(ctx, th, box, [lo, hi], [0, Math.max(1, ...counts) * 1.05], false, xlabel, "count", g);
  const w = (hi - lo) / counts.length;
  ctx.fillStyle = color;
  for (let i = 0; i < counts.length; i++) {
    const x0 = m.sx(lo + i * w), x1 = m.sx(lo + (i + 1) * w), y = m.sy(counts[i]);
    ctx.fillRect(x0, y, Math.max(1, x1 - x0 - 1), box.y + box.h - y);
  }
  const readout = (x) => {
    const i = Math.min(counts.length - 1, Math.max(0, Math.floor((x - lo) / w)));
    return [`${fmtv(lo + i * w)} … ${fmtv(lo + (i + 1) * w)}`, `count: ${fmtv(counts[i])}`];
  };
  return { g, m, readout };
}

function diverging(t, th) {
  // blue - background - red, the same map as figures.diverging
  const c = th.dark ? [17, 17, 17] : [255, 255, 255], end = t >= 0 ? [214, 39, 40] : [31, 119, 180], a = Math.min(1, Math.abs(t));
  return `rgb(${c.map((v, i) => Math.round(v + (end[i] - v) * a)).join(",")})`;
}

function heatmapPanel(ctx, th, cell, latest, title) {
  const [rows, cols] = latest.meta.shape, data = latest.data;
  let amax = 0;
  for (const v of data) if (Number.isFinite(v)) amax = Math.max(amax, Math.abs(v));
  const { box, g } = frame(ctx, th, cell, title, [], 70);
  const m = axes(ctx, th, box, [0, cols], [0, rows], false, "column", "row", g); // row 0 at the bottom
  const cw = box.w / cols, ch = box.h / rows;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = data[r * cols + c];
      ctx.fillStyle = Number.isFinite(v) ? diverging(amax ? v / amax : 0, th) : th.grid;
      ctx.fillRect(box.x + c * cw, box.y + box.h - (r + 1) * ch, Math.ceil(cw), Math.ceil(ch));
    }
  }
  // the colour scale: -max |a| .. 0 .. max |a|
  const bar = { x: box.x + box.w + 14, y: box.y, w: 12, h: box.h };
  for (let i = 0; i < bar.h; i++) { ctx.fillStyle = diverging(1 - (2 * i) / bar.h, th); ctx.fillRect(bar.x, bar.y + i, bar.w, 1.5); }
  ctx.strokeStyle = th.axis; ctx.strokeRect(bar.x + 0.5, bar.y + 0.5, bar.w, bar.h);
  ctx.fillStyle = th.fg2; ctx.textAlign = "left"; ctx.textBaseline = "middle"; ctx.font = `12px ${th.font}`;
  const labels = [[amax, bar.y], [0, bar.y + bar.h / 2], [-amax, bar.y + bar.h]];
  for (const [v, y] of labels) ctx.fillText(fmt(v), bar.x + bar.w + 4, y);
  g.colorbar = [bar.x, bar.y, bar.w, bar.h];
  const readout = (x, py) => {
    const c = Math.min(cols - 1, Math.max(0, Math.floor(x))), r = Math.min(rows - 1, Math.max(0, Math.floor((box.y + box.h - py) / ch)));
    return [`row ${r}, column ${c}`, `value: ${fmtv(data[r * cols + c])}`];
  };
  return { g, m, readout };
}

// ---- controls ----------------------------------------------------------------------------------------------------
function element(tag, style, text) {
  const node = document.createElement(tag);
  if (style) node.style.cssText = style;
  if (text !== undefined) node.textContent = text;
  return node;
}

const CONTROL = "margin-left:12px;font:inherit;color:inherit;background:var(--jp-layout-color1,#fff);" +
  "border:1px solid var(--jp-border-color1,#bdbdbd);border-radius:2px";

function picker(model, names) {
  // a <select> bound to the synced "selected" trait (the static image shows the same choice)
  const select = element("select", CONTROL);
  select.update = () => {
    const list = names();
    if (select.options.length !== list.length) select.replaceChildren(...list.map((n) => element("option", "", n)));
    select.value = model.get("selected") || list[0] || "";
  };
  select.onchange = () => { model.set("selected", select.value); model.save_changes(); };
  return select;
}

function drawable(store) {
  return [...store.series.values()].filter((s) => s.n > 0).map((s) => s.name);
}

function selectedName(model, names) {
  const s = model.get("selected");
  return names.includes(s) ? s : names[0];
}

// ---- the four views: each returns draw(begin, width, th) -> [panel {g, m, readout, series, zoom}] --------------------
function lossView(model, el, store, header) {
  const log = element("input");
  log.type = "checkbox";
  log.checked = model.get("log_scale");
  log.onchange = () => { model.set("log_scale", log.checked); model.save_changes(); };
  const slider = element("input", "width:90px;vertical-align:middle;margin-left:4px");
  Object.assign(slider, { type: "range", min: 0, max: 0.99, step: 0.01, value: model.get("smoothing") });
  slider.oninput = () => { model.set("smoothing", Number(slider.value)); model.save_changes(); };
  const label = (text, input) => { const l = element("label", "margin-left:12px"); l.append(input, " " + text); return l; };
  header.append(label("log scale", log), label("smoothing", slider));
  model.on("change:log_scale", () => { log.checked = model.get("log_scale"); });
  model.on("change:smoothing", () => { slider.value = model.get("smoothing"); });
  return (begin, width, th) => {
    const panels = new Map();
    let x0 = Infinity, x1 = -Infinity;
    for (const s of store.series.values()) {
      if (!s.n) continue; // created by a message that came after a gap: nothing to draw until the resend
      if (!panels.has(s.meta.panel)) panels.set(s.meta.panel, []);
      panels.get(s.meta.panel).push(s);
      x0 = Math.min(x0, s.data[0]); x1 = Math.max(x1, s.data[(s.n - 1) * s.width]);
    }
    const weight = Number(model.get("smoothing")), useLog = model.get("log_scale"), ph = 250;
    const cols = columns(width, panels.size, 420), pw = width / cols;
    const ctx = begin(Math.max(1, Math.ceil(panels.size / cols)) * ph);
    if (!panels.size) { ctx.fillStyle = th.fg2; ctx.fillText("waiting for data…", 20, 30); return []; }
    const xr = zoomed(model, [x0, x1 > x0 ? x1 : x0 + 1]); // one step range for every panel: they stay aligned
    const out = [];
    let index = 0;
    for (const [panel, list] of panels) {
      const col = index % cols, row = Math.floor(index++ / cols);
      const lines = list.map((s, i) => {
        const ys = column(s, 1), st = store.styles.get(s.name) || {};
        return { s, label: (s.meta.label || s.name) + (st.suffix || ""), xs: column(s, 0), ys, sm: ema(ys, weight),
          color: st.color || COLORS[(s.meta.color ?? i) % COLORS.length], // RunComparison: a label and a colour per run
          dash: (st.dashed ?? s.meta.role === "val") ? [6, 4] : [], alpha: st.alpha ?? 1 };
      });
      const seen = lines.flatMap((l) => visible(l.xs, l.ys, xr));
      const logged = useLog && !BOUNDED.test(panel) && seen.some((v) => v > 0);
      const legend = lines.map((l) => ({ ...l, label: `${l.label} ${fmtv(l.ys[l.ys.length - 1])}` }));
      const { box, g } = frame(ctx, th, { x: col * pw, y: row * ph, w: pw, h: ph }, panel, legend);
      const m = axes(ctx, th, box, xr, extent(seen, logged), logged, "step", panel + (logged ? " (log)" : ""), g);
      for (const l of lines) {
        if (weight > 0) polyline(ctx, th, m, l.xs, l.ys, l.color, l.dash, 0.3 * l.alpha, 1.2);
        polyline(ctx, th, m, l.xs, l.sm, l.color, l.dash, l.alpha);
        const i = l.xs.length - 1;
        if (Number.isFinite(l.sm[i]) && l.xs[i] <= xr[1]) g.last.push([m.sx(l.xs[i]), m.sy(l.sm[i])]);
      }
      g.log = logged;
      out.push({ g, m, zoom: true, lines, readout: (x) => seriesReadout(x, lines.map((l) => ({ ...l, sm: weight > 0 ? l.sm : null })), "step") });
    }
    return out;
  };
}

function gradsView(model, el, store, header) {
  const select = picker(model, () => drawable(store));
  header.append(select);
  return (begin, width, th) => {
    const cols = columns(width, 2, 380), pw = width / cols, ph = 250;
    const ctx = begin(Math.ceil(2 / cols) * ph), names = drawable(store);
    select.update();
    if (!names.length) { ctx.fillStyle = th.fg2; ctx.fillText("waiting for the first backward pass…", 20, 30); return []; }
    const name = selectedName(model, names), s = store.series.get(name), color = COLORS[0];
    const xs = column(s, 0), p = [1, 2, 3, 4, 5, 6, 7].map((j) => column(s, j));
    const xr = zoomed(model, extent([xs[0], xs[s.n - 1]], false));
    const legend = [{ label: "median", color }, { label: "25–75%", color, band: 0.4 }, { label: "10–90%", color, band: 0.25 },
      { label: "min–max", color, band: 0.12 }];
    const { box, g } = frame(ctx, th, { x: 0, y: 0, w: pw, h: ph }, `gradient of ${name}`, legend);
    const m = axes(ctx, th, box, xr, extent([...visible(xs, p[0], xr), ...visible(xs, p[6], xr)], false), false,
      "backward pass", "gradient", g);
    for (const [lo, hi, alpha] of [[0, 6, 0.12], [1, 5, 0.25], [2, 4, 0.4]]) band(ctx, m, xs, p[lo], p[hi], color, alpha);
    polyline(ctx, th, m, xs, p[3], color, [], 1);
    if (xs[s.n - 1] <= xr[1]) g.last.push([m.sx(xs[s.n - 1]), m.sy(p[3][s.n - 1])]);
    const labels = ["min", "10%", "25%", "median", "75%", "90%", "max"];
    const lines = p.map((ys, j) => ({ label: labels[j], xs, ys })).reverse();
    const out = [{ g, m, zoom: true, lines: [{ xs, sm: p[3], color }], readout: (x) => seriesReadout(x, lines, "backward pass") }];
    const latest = store.latest.get("hist/" + name);
    if (latest) {
      const cell = { x: cols > 1 ? pw : 0, y: cols > 1 ? 0 : ph, w: pw, h: ph };
      out.push(histogramPanel(ctx, th, cell, latest, `latest histogram (pass ${latest.meta.step})`, color, "gradient value"));
    }
    return out;
  };
}

function actsView(model, el, store, header) {
  const select = picker(model, () => drawable(store));
  header.append(select);
  return (begin, width, th) => {
    const cols = columns(width, 3, 330), pw = width / cols, ph = 250;
    const ctx = begin(Math.ceil(3 / cols) * ph), names = drawable(store);
    select.update();
    if (!names.length) { ctx.fillStyle = th.fg2; ctx.fillText("waiting for a forward pass…", 20, 30); return []; }
    const name = selectedName(model, names), s = store.series.get(name), color = COLORS[2];
    const cell = (i) => ({ x: (i % cols) * pw, y: Math.floor(i / cols) * ph, w: pw, h: ph });
    const xs = column(s, 0), mean = column(s, 1), std = column(s, 2), lo = column(s, 3), hi = column(s, 4);
    const xr = zoomed(model, extent([xs[0], xs[s.n - 1]], false));
    const legend = [{ label: "mean", color }, { label: "mean ± std", color, band: 0.25 }, { label: "min / max", color, dash: [2, 3] }];
    const { box, g } = frame(ctx, th, cell(0), `activations of ${name}`, legend);
    const m = axes(ctx, th, box, xr, extent([...visible(xs, lo, xr), ...visible(xs, hi, xr)], false), false,
      "forward call", "activation", g);
    band(ctx, m, xs, mean.map((v, i) => v - std[i]), mean.map((v, i) => v + std[i]), color, 0.25);
    polyline(ctx, th, m, xs, mean, color, [], 1);
    polyline(ctx, th, m, xs, lo, color, [2, 3], 0.8, 1.2);
    polyline(ctx, th, m, xs, hi, color, [2, 3], 0.8, 1.2);
    if (xs[s.n - 1] <= xr[1]) g.last.push([m.sx(xs[s.n - 1]), m.sy(mean[s.n - 1])]);
    const lines = [["max", hi], ["mean", mean], ["std", std], ["min", lo]].map(([label, ys]) => ({ label, xs, ys }));
    const out = [{ g, m, zoom: true, lines: [{ xs, sm: mean, color }], readout: (x) => seriesReadout(x, lines, "forward call") }];
    const hist = store.latest.get("hist/" + name), map = store.latest.get("map/" + name);
    if (hist) out.push(histogramPanel(ctx, th, cell(1), hist, `latest histogram (call ${hist.meta.step})`, color, "activation"));
    if (map) out.push(heatmapPanel(ctx, th, cell(2), map, `one sample (call ${map.meta.step})`));
    return out;
  };
}

function nanView(model, el, store, header) {
  const count = element("span", "margin-left:12px;color:var(--jp-ui-font-color2,#616161)");
  header.append(count);
  const wrap = element("div", "overflow-x:auto");
  const table = element("table", "border-collapse:collapse;font-size:13px;margin-top:4px;white-space:nowrap");
  wrap.append(table);
  el.append(wrap);
  const cell = (tag, text, style) => element(tag, "text-align:left;padding:3px 10px;" + (style || ""), text);
  return () => {
    const n = store.records.length;
    count.textContent = n ? `${n} non-finite event${n > 1 ? "s" : ""} (click a row for the report)` : "no non-finite values yet";
    if (table.rows.length === n + 1) return [];
    const head = element("tr", "border-bottom:1px solid var(--jp-border-color1,#bdbdbd)");
    head.append(...["op", "phase", "NaN", "inf", "where", "source"].map((t) => cell("th", t)));
    const rows = store.records.map((r) => {
      const tr = element("tr", "cursor:pointer;border-top:1px solid var(--jp-border-color2,#e0e0e0)");
      tr.append(cell("td", r.op), cell("td", r.phase), cell("td", r.nan ?? ""), cell("td", r.inf ?? ""),
        cell("td", r.where, "color:var(--jp-content-link-color,#1976d2);text-decoration:underline"),
        cell("td", r.source, "font-family:var(--jp-code-font-family,monospace)"));
      tr.title = r.report;
      tr.onclick = () => {
        const next = tr.nextSibling;
        if (next && next.isReport) { next.remove(); return; }
        const report = element("tr");
        report.isReport = true;
        const td = cell("td", "", "background:var(--jp-layout-color2,#f5f5f5)");
        td.colSpan = 6;
        td.append(element("pre", "margin:0;font-size:12px;white-space:pre-wrap", r.report));
        report.append(td);
        tr.after(report);
      };
      return tr;
    });
    table.replaceChildren(head, ...rows);
    return [];
  };
}

function timelineView(model, el, store) {
  // an icicle chart of a profile: regions by depth, then ops; time across (ProfileTimeline in timeline.py)
  return (begin, width, th) => {
    const s = store.series.get("events"), rows = s ? s.meta.rows : 1, rowH = 22, ph = Math.max(120, 90 + rowH * rows);
    const ctx = begin(ph);
    if (!s || !s.n) { ctx.fillStyle = th.fg2; ctx.fillText("waiting for the profile…", 20, 30); return []; }
    const start = column(s, 0), dur = column(s, 1), row = column(s, 2), name = column(s, 3), phase = column(s, 4);
    let x0 = Infinity, x1 = -Infinity;
    for (let i = 0; i < s.n; i++) { x0 = Math.min(x0, start[i]); x1 = Math.max(x1, start[i] + dur[i]); }
    const xr = zoomed(model, [x0, x1 > x0 ? x1 : x0 + 1]);
    const { box, g } = frame(ctx, th, { x: 0, y: 0, w: width, h: ph }, "regions and ops", []);
    box.h = rowH * rows;
    g.plot[3] = box.h;
    const fixed = [...Array(rows).keys()].map((r) => [rows - r - 0.5, r === rows - 1 ? "ops" : `depth ${r}`]);
    const m = axes(ctx, th, box, xr, [0, rows], false, "time (ms)", "nesting", g, fixed);
    ctx.save();
    ctx.beginPath(); ctx.rect(box.x, box.y, box.w, box.h); ctx.clip();
    ctx.textBaseline = "middle"; ctx.textAlign = "left";
    for (let i = 0; i < s.n; i++) {
      const a = Math.max(m.sx(start[i]), box.x - 1), b = Math.min(m.sx(start[i] + dur[i]), box.x + box.w + 1);
      if (b < box.x || a > box.x + box.w) continue;
      const label = s.meta.names[name[i]], y = box.y + row[i] * rowH;
      ctx.globalAlpha = phase[i] === 1 ? 0.55 : 1;
      ctx.fillStyle = phase[i] === 2 ? th.axis : COLORS[s.meta.colors[name[i]] % COLORS.length];
      ctx.fillRect(a, y + 1, Math.max(1, b - a - 1), rowH - 2); // 1 px gap
      ctx.globalAlpha = 1;
      if (b - a > ctx.measureText(label).width + 8) {
        ctx.fillStyle = phase[i] === 2 ? th.fg : "#ffffff";
        ctx.fillText(label, a + 4, y + rowH / 2);
      }
    }
    ctx.restore();
    const readout = (x, py) => {
      const r = Math.floor((py - box.y) / rowH);
      let best = -1;
      for (let i = 0; i < s.n; i++) {
        if (row[i] === r && start[i] <= x && x <= start[i] + dur[i] && (best < 0 || dur[i] < dur[best])) best = i;
      }
      if (best < 0) return [`${fmtv(x)} ms`];
      const rec = store.records[best];
      return [rec ? rec.detail : s.meta.names[name[best]], `start ${fmtv(start[best])} ms`, `duration ${fmtv(dur[best])} ms`];
    };
    return [{ g, m, zoom: true, lines: [], readout }];
  };
}

const VIEWS = { loss: lossView, grads: gradsView, acts: actsView, nan: nanView, timeline: timelineView };

// ---- one view: header, canvas, hover readout, zoom ---------------------------------------------------------------
function mount(model, el, store) {
  const kind = model.get("kind");
  el.dataset.tgWidget = kind;
  el.style.cssText = "position:relative;font:13px var(--jp-ui-font-family," + FONT + ");color:var(--jp-ui-font-color1,#212121);" +
    "padding:4px 0;min-width:300px";
  const header = element("div", "margin-bottom:2px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis");
  header.append(element("b", "", model.get("title")));
  el.append(header);
  const hint = element("span", "margin-left:12px;color:var(--jp-ui-font-color2,#616161)");
  const canvas = element("canvas", "display:block;cursor:crosshair;touch-action:none");
  const tip = element("div", "position:absolute;display:none;pointer-events:none;z-index:2;padding:4px 8px;" +
    "font-size:12px;line-height:1.45;white-space:pre;background:var(--jp-layout-color1,#fff);" +
    "color:var(--jp-ui-font-color1,#212121);border:1px solid var(--jp-border-color1,#bdbdbd);" +
    "box-shadow:0 1px 4px rgba(0,0,0,.25);border-radius:3px");
  tip.className = "tg-readout";
  const draw = VIEWS[kind](model, el, store, header);
  header.append(hint);
  if (kind !== "nan") el.append(canvas, tip);
  let queued = false, panels = [], hover = null, drag = null;
  const count = () => {
    // what tests (and curious users) can read from the DOM: rows received in total, and records (NaN events)
    let rows = 0;
    for (const s of store.series.values()) rows += s.n;
    el.dataset.points = String(rows);
    el.dataset.events = String(store.records.length);
  };
  const redraw = () => {
    queued = false;
    const width = Math.max(300, Math.min(el.clientWidth || 640, 1600)), th = theme(el);
    let ctx = null, height = 0;
    panels = draw((h) => {
      const r = window.devicePixelRatio || 1;
      height = h;
      if (canvas.width !== Math.round(width * r) || canvas.height !== Math.round(h * r)) {
        canvas.width = Math.round(width * r); canvas.height = Math.round(h * r);
        canvas.style.width = width + "px"; canvas.style.height = h + "px";
      }
      ctx = canvas.getContext("2d");
      ctx.setTransform(r, 0, 0, r, 0, 0);
      ctx.clearRect(0, 0, width, h);
      ctx.font = `12px ${th.font}`;
      return ctx;
    }, width, th) || [];
    if (ctx) overlay(ctx, th, height);
    el.dataset.geometry = JSON.stringify({ width, panels: panels.map((p) => p.g) });
    el.dataset.xRange = JSON.stringify(model.get("x_range") || []);
    hint.textContent = panels.some((p) => p.zoom) ? ((model.get("x_range") || []).length
      ? "zoomed: double-click to reset" : "drag to zoom, shift-drag to pan") : "";
    // what the static image needs from this page: the theme and the width (so it lays out the same columns)
    const name = th.dark ? "dark" : "light", w = Math.round(width / 10) * 10;
    if (model.get("theme") !== name || model.get("view_width") !== w) {
      model.set("theme", name); model.set("view_width", w); model.save_changes();
    }
  };
  const overlay = (ctx, th, height) => {
    // hover guide and readout, drag selection
    tip.style.display = "none";
    if (drag && drag.moved) {
      const b = drag.panel.m.box, a = Math.max(b.x, Math.min(drag.x0, drag.x1)), z = Math.min(b.x + b.w, Math.max(drag.x0, drag.x1));
      ctx.save(); ctx.fillStyle = th.fg; ctx.globalAlpha = 0.12; ctx.fillRect(a, b.y, z - a, b.h); ctx.restore();
      return;
    }
    if (!hover) return;
    const p = panels[hover.panel];
    if (!p) return;
    const x = p.m.ix(hover.px);
    for (const q of panels) {
      if (!q.zoom || !p.zoom) continue;
      const b = q.m.box, px = Math.round(q.m.sx(x)) + 0.5;
      if (px < b.x || px > b.x + b.w) continue;
      ctx.strokeStyle = th.fg2; ctx.setLineDash([3, 3]); line(ctx, px, b.y, px, b.y + b.h); ctx.setLineDash([]);
      for (const l of q.lines || []) {
        if (!l.xs.length) continue;
        const i = nearest(l.xs, x), v = l.sm[i];
        if (!Number.isFinite(v)) continue;
        ctx.fillStyle = l.color; ctx.beginPath(); ctx.arc(q.m.sx(l.xs[i]), q.m.sy(v), 3.5, 0, 7); ctx.fill();
      }
    }
    tip.textContent = p.readout(x, hover.py).join("\n");
    tip.style.display = "block";
    const left = hover.px + 16 + tip.offsetWidth > el.clientWidth ? hover.px - 16 - tip.offsetWidth : hover.px + 16;
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = canvas.offsetTop + Math.min(height - tip.offsetHeight, hover.py + 12) + "px";
  };
  const schedule = () => {
    count();
    if (!queued) { queued = true; requestAnimationFrame(redraw); }
  };
  const at = (event) => {
    const r = canvas.getBoundingClientRect(), px = event.clientX - r.left, py = event.clientY - r.top;
    const panel = panels.findIndex((p) => { const b = p.m.box; return px >= b.x && px <= b.x + b.w && py >= b.y && py <= b.y + b.h; });
    return { px, py, panel };
  };
  canvas.onpointermove = (event) => {
    const h = at(event);
    if (drag) {
      drag.x1 = h.px;
      drag.moved = drag.moved || Math.abs(drag.x1 - drag.x0) > 4;
      if (drag.pan && drag.moved) {
        const m = drag.panel.m, d = m.ix(drag.x0) - m.ix(drag.x1);
        model.set("x_range", [drag.xr[0] + d, drag.xr[1] + d]);
      }
    }
    hover = h.panel >= 0 ? h : null;
    schedule();
  };
  canvas.onpointerleave = () => { hover = null; schedule(); };
  canvas.onpointerdown = (event) => {
    const h = at(event), p = panels[h.panel];
    if (!p || !p.zoom) return;
    canvas.setPointerCapture(event.pointerId);
    drag = { panel: p, x0: h.px, x1: h.px, moved: false, pan: event.shiftKey, xr: p.m.xr.slice() };
  };
  canvas.onpointerup = () => {
    const d = drag;
    drag = null;
    if (d && d.moved) {
      if (!d.pan) {
        const a = d.panel.m.ix(Math.min(d.x0, d.x1)), b = d.panel.m.ix(Math.max(d.x0, d.x1));
        model.set("x_range", [a, b]);
      }
      model.save_changes();
    }
    schedule();
  };
  canvas.ondblclick = () => { model.set("x_range", []); model.save_changes(); schedule(); };
  store.listeners.add(schedule);
  for (const name of ["log_scale", "smoothing", "selected", "x_range"]) model.on("change:" + name, schedule);
  const resize = new ResizeObserver(schedule);
  resize.observe(el);
  const themeWatch = new MutationObserver(schedule); // JupyterLab switches theme by changing body attributes
  themeWatch.observe(document.body, { attributes: true });
  count();
  redraw();
  return () => {
    store.listeners.delete(schedule); resize.disconnect(); themeWatch.disconnect();
    for (const name of ["log_scale", "smoothing", "selected", "x_range"]) model.off("change:" + name, schedule);
  };
}

// After the swap: Python sets `static_mark` (a piece of the static PNG's base64) and `slot`. Every image showing that
// PNG gets a live view put over it (the image is hidden, not removed: it is what the notebook saves); views of one
// dashboard share one box, in slot order. A "host" model (%tg_log --widget) shows its ipywidgets box there instead.
function revive(model, store, img, cleanups) {
  const out = img.parentElement, slot = model.get("slot") || 0;
  let box = out.querySelector(":scope > .tg-revived");
  if (!box) {
    box = element("div");
    box.className = "tg-revived";
    out.append(box);
    img.style.display = "none";
  }
  const el = element("div");
  el.dataset.slot = String(slot);
  box.insertBefore(el, [...box.children].find((c) => Number(c.dataset.slot) > slot) || null);
  let stop = () => {};
  if (model.get("kind") === "host") {
    const manager = model.widget_manager;
    manager.get_model(model.get("child")).then((child) => manager.create_view(child)).then((view) => {
      el.append(view.el);
      stop = () => view.remove();
      const name = theme(el).dark ? "dark" : "light"; // Python redraws the box's figure in this theme
      if (model.get("theme") !== name) { model.set("theme", name); model.save_changes(); }
    });
  } else stop = mount(model, el, store);
  cleanups.push(() => { stop(); el.remove(); if (!box.children.length) { box.remove(); img.style.display = ""; } });
}

function watchStatic(model, store, cleanups, done) {
  const mark = model.get("static_mark");
  if (!mark) return;
  const attempt = () => {
    let found = false;
    for (const img of document.querySelectorAll(`img[src*="${mark}"]`)) {
      found = true;
      if (!done.has(img)) { done.add(img); revive(model, store, img, cleanups); }
    }
    return found;
  };
  if (attempt()) return;
  const watch = new MutationObserver(() => { if (attempt()) watch.disconnect(); });
  watch.observe(document.body, { childList: true, subtree: true });
  setTimeout(() => watch.disconnect(), 15000);
}

export default () => {
  const store = createStore(); // one per widget model: every view of it draws from the same rows
  const cleanups = []; // revived views, removed when the model goes (kernel restart, cell re-run)
  let told = false;

  function initialize({ model }) {
    const sync = () => model.send({ kind: "sync", have: have(store), records: store.records.length });
    model.on("msg:custom", (msg, buffers) => {
      if (msg.kind === "style" ? !setStyle(store, msg.name, msg.style) : msg.kind !== "data") return;
      if (msg.kind === "data" && !applyData(store, msg, buffers)) sync();
      for (const listener of store.listeners) listener();
    });
    // a page reloaded while the kernel runs: nothing arrives by itself, so ask for everything so far
    if (model.get("kind") !== "host") setTimeout(() => { if (!store.received) sync(); }, 1000);
    store.tell = () => { if (!told) { told = true; sync(); } }; // "a browser shows this widget"
    const done = new WeakSet();
    model.on("change:static_mark", () => watchStatic(model, store, cleanups, done));
    watchStatic(model, store, cleanups, done);
    return () => { for (const stop of cleanups.splice(0)) stop(); };
  }

  function render({ model, el }) {
    if (store.tell) store.tell();
    if (!VIEWS[model.get("kind")]) return () => {}; // a host is never displayed itself
    return mount(model, el, store);
  }

  return { initialize, render };
};
