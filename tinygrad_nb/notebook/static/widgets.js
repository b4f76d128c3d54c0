// Live views of tinygrad_nb.notebook: LossCurve, GradHistograms, ActivationInspector, NaNTracer.
// One hand-written ES module for anywidget: no build step, no imports, canvas 2D drawing.
//
// Protocol (tinygrad_nb/notebook/widgets/base.py): Python sends custom messages
//   {kind: "data", series: [{name, start, width, ...meta}], latest: [{name, shape, ...meta}], records: {start, items}}
// with one float32 buffer per series (rows of `width` numbers) and then one per latest array. Rows are appended in
// order, so every point logged in Python ends up here. If a message starts past what we hold (or we start empty
// after a page reload) we ask for the rest: {kind: "sync", have: {name: rows}, records: n}.

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
const FONT = "11px sans-serif";

// ---- the per-model store -----------------------------------------------------------------------------------------
function floats(buf) {
  // a DataView or ArrayBuffer as an aligned Float32Array copy
  const bytes = buf.buffer ? buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) : buf.slice(0);
  return new Float32Array(bytes);
}

function createStore() {
  return { series: new Map(), latest: new Map(), records: [], received: false, listeners: new Set() };
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

// ---- drawing helpers ---------------------------------------------------------------------------------------------
function prepare(canvas, width, height) {
  const r = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(width * r) || canvas.height !== Math.round(height * r)) {
    canvas.width = Math.round(width * r);
    canvas.height = Math.round(height * r);
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(r, 0, 0, r, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = FONT;
  return ctx;
}

function niceTicks(lo, hi, n) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

function decades(e0, e1) {
  // powers of ten covering [10^e0, 10^e1], at most ~5 of them
  const lo = Math.floor(e0), hi = Math.ceil(e1), step = Math.max(1, Math.ceil((hi - lo) / 4)), out = [];
  for (let e = lo; e <= hi; e += step) out.push(Math.pow(10, e));
  return out;
}

function fmt(v) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e4 || a < 1e-3) return v.toExponential(0);
  return String(+v.toPrecision(3));
}

function extent(values, positive) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v) && (!positive || v > 0)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (lo > hi) return positive ? [0.1, 1] : [0, 1];
  if (lo === hi) return positive ? [lo / 2, hi * 2] : [lo - 0.5, hi + 0.5];
  if (positive) return [lo / 1.1, hi * 1.1];
  const pad = 0.05 * (hi - lo);
  return [lo - pad, hi + pad];
}

// Axes in box {x, y, w, h}: grid, tick labels and a title; returns the data -> pixel maps.
function axes(ctx, box, xr, yr, log, title) {
  const f = (v) => (log ? Math.log10(v) : v);
  const y0 = f(yr[0]), y1 = f(yr[1]);
  const sx = (v) => box.x + ((v - xr[0]) / (xr[1] - xr[0] || 1)) * box.w;
  const sy = (v) => box.y + box.h - ((f(v) - y0) / (y1 - y0 || 1)) * box.h;
  const yTicks = log ? decades(y0, y1) : niceTicks(yr[0], yr[1], 4);
  ctx.lineWidth = 1;
  ctx.fillStyle = "#666";
  ctx.strokeStyle = "#eee";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of yTicks) {
    const p = sy(v);
    if (p < box.y - 1 || p > box.y + box.h + 1) continue;
    ctx.beginPath(); ctx.moveTo(box.x, p); ctx.lineTo(box.x + box.w, p); ctx.stroke();
    ctx.fillText(fmt(v), box.x - 4, p);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const v of niceTicks(xr[0], xr[1], Math.max(2, Math.floor(box.w / 70)))) {
    if (v >= xr[0] && v <= xr[1]) ctx.fillText(fmt(v), sx(v), box.y + box.h + 3);
  }
  ctx.strokeStyle = "#bbb";
  ctx.strokeRect(box.x, box.y, box.w, box.h);
  ctx.fillStyle = "#333";
  ctx.textAlign = "left";
  ctx.textBaseline = "bottom";
  ctx.fillText(title, box.x, box.y - 3);
  return { sx, sy };
}

// A polyline through (xs[i], ys[i]); non-finite values break it and get a red mark at the top.
function polyline(ctx, m, box, xs, ys, color, dashed, alpha) {
  ctx.save();
  ctx.beginPath();
  ctx.rect(box.x, box.y, box.w, box.h);
  ctx.clip();
  ctx.strokeStyle = color;
  ctx.globalAlpha = alpha;
  ctx.lineWidth = 1.5;
  ctx.setLineDash(dashed ? [5, 3] : []);
  ctx.beginPath();
  let pen = false;
  for (let i = 0; i < xs.length; i++) {
    const v = ys[i];
    if (!Number.isFinite(v)) { pen = false; continue; }
    const px = m.sx(xs[i]), py = m.sy(v);
    if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
    pen = true;
  }
  if (xs.length === 1 && Number.isFinite(ys[0])) ctx.arc(m.sx(xs[0]), m.sy(ys[0]), 2, 0, 7);
  ctx.stroke();
  ctx.restore();
  ctx.fillStyle = "#d62728";
  for (let i = 0; i < xs.length; i++) if (!Number.isFinite(ys[i])) ctx.fillRect(m.sx(xs[i]) - 1, box.y, 2, 6);
}

function column(s, j) {
  const out = new Float32Array(s.n);
  for (let i = 0; i < s.n; i++) out[i] = s.data[i * s.width + j];
  return out;
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

function histogram(ctx, box, latest, title, color) {
  if (!latest) return;
  const counts = latest.data, lo = latest.meta.lo, hi = latest.meta.hi;
  const m = axes(ctx, box, [lo, hi === lo ? lo + 1 : hi], [0, Math.max(1, ...counts) * 1.05], false, title);
  const w = (hi - lo) / counts.length;
  ctx.fillStyle = color;
  for (let i = 0; i < counts.length; i++) {
    const x0 = m.sx(lo + i * w), x1 = m.sx(lo + (i + 1) * w), y = m.sy(counts[i]);
    ctx.fillRect(x0, y, Math.max(1, x1 - x0 - 1), box.y + box.h - y);
  }
}

function heatmap(ctx, box, latest, title) {
  if (!latest) return;
  const [rows, cols] = latest.meta.shape, data = latest.data;
  let amax = 0;
  for (const v of data) if (Number.isFinite(v)) amax = Math.max(amax, Math.abs(v));
  const cw = box.w / cols, ch = box.h / rows;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = data[r * cols + c];
      if (!Number.isFinite(v)) ctx.fillStyle = "#ccc";
      else {
        const t = amax ? v / amax : 0, k = Math.round(255 * (1 - Math.abs(t)));
        ctx.fillStyle = t >= 0 ? `rgb(255,${k},${k})` : `rgb(${k},${k},255)`; // blue - white - red
      }
      ctx.fillRect(box.x + c * cw, box.y + r * ch, Math.ceil(cw), Math.ceil(ch));
    }
  }
  ctx.fillStyle = "#333";
  ctx.textAlign = "left";
  ctx.textBaseline = "bottom";
  ctx.fillText(`${title} (max |a| ${fmt(amax)})`, box.x, box.y - 3);
}

function element(tag, style, text) {
  const node = document.createElement(tag);
  if (style) node.style.cssText = style;
  if (text !== undefined) node.textContent = text;
  return node;
}

function picker(model, names) {
  // a <select> bound to the synced "selected" trait (the static image shows the same choice)
  const select = element("select", "margin-left:8px;font-size:12px");
  select.update = () => {
    const list = names();
    if (select.options.length !== list.length) {
      select.replaceChildren(...list.map((n) => element("option", "", n)));
    }
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

// ---- the four views ----------------------------------------------------------------------------------------------
function lossView(model, el, store, header) {
  const log = element("input");
  log.type = "checkbox";
  log.checked = model.get("log_scale");
  log.onchange = () => { model.set("log_scale", log.checked); model.save_changes(); };
  const slider = element("input", "width:90px;vertical-align:middle");
  Object.assign(slider, { type: "range", min: 0, max: 0.99, step: 0.01, value: model.get("smoothing") });
  slider.oninput = () => { model.set("smoothing", Number(slider.value)); model.save_changes(); };
  const label = (text, input) => { const l = element("label", "margin-left:10px"); l.append(input, " " + text); return l; };
  header.append(label("log scale", log), label("smoothing", slider));
  return (begin, width) => {
    const panels = new Map();
    for (const s of store.series.values()) {
      if (!s.n) continue; // created by a message that came after a gap: nothing to draw until the resend
      if (!panels.has(s.meta.panel)) panels.set(s.meta.panel, []);
      panels.get(s.meta.panel).push(s);
    }
    const weight = Number(model.get("smoothing")), useLog = model.get("log_scale"), h = 200;
    const cols = panels.size > 1 && width >= 760 ? 2 : 1, pw = width / cols; // panels side by side when wide
    const ctx = begin(Math.max(1, Math.ceil(panels.size / cols)) * h);
    let index = 0;
    for (const [panel, list] of panels) {
      const col = index % cols, row = Math.floor(index++ / cols);
      const box = { x: col * pw + 52, y: row * h + 18, w: pw - 70, h: h - 50 };
      const lines = list.map((s) => {
        const ys = column(s, 1);
        return { s, xs: column(s, 0), raw: ys, ys: ema(ys, weight) };
      });
      const positive = useLog && lines.every((l) => l.raw.some((v) => v > 0));
      const x0 = Math.min(...lines.map((l) => l.xs[0])), x1 = Math.max(...lines.map((l) => l.xs[l.xs.length - 1]));
      const yr = extent(lines.flatMap((l) => Array.from(weight > 0 ? l.raw : l.ys)), positive);
      const m = axes(ctx, box, [x0, x1 > x0 ? x1 : x0 + 1], yr, positive, panel);
      lines.forEach((l, i) => {
        const color = COLORS[i % COLORS.length], dashed = l.s.meta.role === "val";
        if (weight > 0) polyline(ctx, m, box, l.xs, l.raw, color, dashed, 0.25);
        polyline(ctx, m, box, l.xs, l.ys, color, dashed, 1);
        const legend = `${l.s.name} ${fmt(l.raw[l.raw.length - 1])}`, x = box.x + box.w - 4, y = box.y + 4 + 14 * i;
        ctx.fillStyle = "rgba(255,255,255,0.85)"; // keep the legend readable over the lines
        const w = ctx.measureText(legend).width;
        ctx.fillRect(x - w - 2, y - 1, w + 4, 14);
        ctx.fillStyle = color;
        ctx.textAlign = "right";
        ctx.textBaseline = "top";
        ctx.fillText(legend, x, y);
      });
    }
    if (!panels.size) ctx.fillText("waiting for data...", 20, 30);
  };
}

function gradsView(model, el, store, header) {
  const select = picker(model, () => drawable(store));
  header.append(select);
  return (begin, width) => {
    const ctx = begin(200), names = drawable(store);
    select.update();
    if (!names.length) { ctx.fillText("waiting for the first backward pass...", 20, 30); return; }
    const name = selectedName(model, names), s = store.series.get(name);
    const half = (width - 40) / 2, box = { x: 52, y: 18, w: half - 60, h: 150 };
    const xs = column(s, 0), p = [1, 2, 3, 4, 5, 6, 7].map((j) => column(s, j));
    const m = axes(ctx, box, extent([xs[0], xs[s.n - 1]], false), extent([...p[0], ...p[6]], false), false,
      `percentiles of grad ${name}`);
    for (const [lo, hi, alpha] of [[0, 6, 0.12], [1, 5, 0.22], [2, 4, 0.35]]) {
      ctx.fillStyle = COLORS[0];
      ctx.globalAlpha = alpha;
      ctx.beginPath();
      for (let i = 0; i < s.n; i++) ctx.lineTo(m.sx(xs[i]), m.sy(p[hi][i]));
      for (let i = s.n - 1; i >= 0; i--) ctx.lineTo(m.sx(xs[i]), m.sy(p[lo][i]));
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    polyline(ctx, m, box, xs, p[3], COLORS[0], false, 1);
    histogram(ctx, { x: half + 52, y: 18, w: half - 60, h: 150 }, store.latest.get("hist/" + name), "latest histogram", COLORS[0]);
  };
}

function actsView(model, el, store, header) {
  const select = picker(model, () => drawable(store));
  header.append(select);
  return (begin, width) => {
    const ctx = begin(200), names = drawable(store);
    select.update();
    if (!names.length) { ctx.fillText("waiting for a forward pass...", 20, 30); return; }
    const name = selectedName(model, names), s = store.series.get(name);
    const third = (width - 20) / 3, box = { x: 52, y: 18, w: third - 60, h: 150 };
    const xs = column(s, 0), mean = column(s, 1), std = column(s, 2), lo = column(s, 3), hi = column(s, 4);
    const m = axes(ctx, box, extent([xs[0], xs[s.n - 1]], false), extent([...lo, ...hi], false), false, `layer ${name}`);
    ctx.fillStyle = COLORS[2];
    ctx.globalAlpha = 0.25;
    ctx.beginPath();
    for (let i = 0; i < s.n; i++) ctx.lineTo(m.sx(xs[i]), m.sy(mean[i] + std[i]));
    for (let i = s.n - 1; i >= 0; i--) ctx.lineTo(m.sx(xs[i]), m.sy(mean[i] - std[i]));
    ctx.fill();
    ctx.globalAlpha = 1;
    polyline(ctx, m, box, xs, mean, COLORS[2], false, 1);
    polyline(ctx, m, box, xs, lo, COLORS[2], true, 0.6);
    polyline(ctx, m, box, xs, hi, COLORS[2], true, 0.6);
    histogram(ctx, { x: third + 52, y: 18, w: third - 60, h: 150 }, store.latest.get("hist/" + name), "latest histogram", COLORS[2]);
    heatmap(ctx, { x: 2 * third + 30, y: 18, w: third - 40, h: 150 }, store.latest.get("map/" + name), "one sample");
  };
}

function nanView(model, el, store, header) {
  const count = element("span", "margin-left:8px;color:#666");
  header.append(count);
  const table = element("table", "border-collapse:collapse;font-size:12px;margin-top:4px");
  el.append(table);
  const cell = (tag, text, style) => element(tag, "text-align:left;padding:2px 8px;" + (style || ""), text);
  return () => {
    const n = store.records.length;
    count.textContent = n ? `${n} non-finite event${n > 1 ? "s" : ""} (click a row for the report)` : "no non-finite values yet";
    if (table.rows.length === n + 1) return;
    const head = element("tr");
    head.append(...["op", "phase", "NaN", "inf", "where", "source"].map((t) => cell("th", t)));
    const rows = store.records.map((r) => {
      const tr = element("tr", "cursor:pointer;border-top:1px solid #eee");
      tr.append(cell("td", r.op), cell("td", r.phase), cell("td", r.nan ?? ""), cell("td", r.inf ?? ""),
        cell("td", r.where, "color:#1a5fb4;text-decoration:underline"), cell("td", r.source, "font-family:monospace"));
      tr.title = r.report;
      tr.onclick = () => {
        const next = tr.nextSibling;
        if (next && next.isReport) { next.remove(); return; }
        const report = element("tr");
        report.isReport = true;
        const td = cell("td", "", "background:#fafafa");
        td.colSpan = 6;
        td.append(element("pre", "margin:0;font-size:11px;white-space:pre-wrap", r.report));
        report.append(td);
        tr.after(report);
      };
      return tr;
    });
    table.replaceChildren(head, ...rows);
  };
}

const VIEWS = { loss: lossView, grads: gradsView, acts: actsView, nan: nanView };

export default () => {
  const store = createStore(); // one per widget model: every view of it draws from the same rows

  function initialize({ model }) {
    const sync = () => model.send({ kind: "sync", have: have(store), records: store.records.length });
    model.on("msg:custom", (msg, buffers) => {
      if (msg.kind !== "data") return;
      if (!applyData(store, msg, buffers)) sync();
      for (const listener of store.listeners) listener();
    });
    // a page reloaded while the kernel runs: nothing arrives by itself, so ask for everything so far
    setTimeout(() => { if (!store.received) sync(); }, 1000);
  }

  function render({ model, el }) {
    const kind = model.get("kind");
    el.dataset.tgWidget = kind;
    el.style.cssText = "font:12px sans-serif;padding:4px 0;min-width:300px";
    const header = element("div", "margin-bottom:4px");
    header.append(element("b", "", model.get("title")));
    el.append(header);
    const canvas = element("canvas", "display:block");
    const draw = VIEWS[kind](model, el, store, header);
    if (kind !== "nan") el.append(canvas);
    let queued = false;
    const count = () => {
      // what tests (and curious users) can read from the DOM: rows received in total, and records (NaN events)
      let rows = 0;
      for (const s of store.series.values()) rows += s.n;
      el.dataset.points = String(rows);
      el.dataset.events = String(store.records.length);
    };
    const redraw = () => {
      queued = false;
      const width = Math.max(320, Math.min(el.clientWidth || 640, 1200));
      draw((height) => prepare(canvas, width, height), width);
    };
    const schedule = () => {
      count();
      if (!queued) { queued = true; requestAnimationFrame(redraw); }
    };
    store.listeners.add(schedule);
    model.on("change:log_scale", schedule);
    model.on("change:smoothing", schedule);
    model.on("change:selected", schedule);
    const resize = new ResizeObserver(schedule);
    resize.observe(el);
    count();
    redraw();
    return () => { store.listeners.delete(schedule); resize.disconnect(); };
  }

  return { initialize, render };
};
