/**
 * The pure logic of the extension (no DOM, no JupyterLab imports): the kernel state the comm carries and how a
 * message updates it, formatting for the status bar and tables, run filtering, config/fingerprint differences,
 * where a NaN event points to, and chart scaling. Unit tested with `node --test` (test/logic.test.ts).
 */

export interface IDeviceState {
  name: string;
  description: string;
  memory_total: number | null;
  memory_used: number | null;
}

export interface ITrainingState {
  run_id: string | null; // null: a fit() without a tracked run
  name: string;
  step: number;
  status: string;
  steps_per_s: number | null;
  store: string | null;
}

export interface INaNEvent {
  op: string;
  phase: string;
  cell: number | null;
  line: number | null;
  nan: number | null;
  inf: number | null;
  cell_id: string | null;
  where: string;
}

export interface ITimelineEntry {
  seq: number;
  execution_count: number | null;
  cell_id: string | null;
  ok: boolean;
  lost: string[];
  bytes: number;
  head: boolean;
  replay: string | null;
  source: string;
}

export interface ICkptState {
  loaded: boolean;
  enabled?: boolean;
  head?: number | null;
  commits?: number | null;
  bytes?: number | null;
  root?: string | null;
  writing?: boolean;
  timeline?: ITimelineEntry[];
}

export interface IKernelState {
  busy: boolean;
  device: IDeviceState;
  training: ITrainingState | null;
  nan: { armed: boolean; count: number; last: INaNEvent | null };
  deterministic: string;
  ckpt: ICkptState;
}

/** What the extension keeps per kernel: the last state, the last timeline (sent only when it changes). */
export interface ITracked {
  state: IKernelState | null;
  timeline: ITimelineEntry[];
  updates: number;
}

export const EMPTY: ITracked = { state: null, timeline: [], updates: 0 };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Apply one comm message (`{type: "state", state}`, or the comm_open data `{protocol, state}`) to what is known.
 * Anything malformed leaves the tracked state as it was (a newer kernel side must not break the status bar).
 */
export function reduceState(prev: ITracked, data: unknown): ITracked {
  if (!isObject(data) || !isObject(data.state)) {
    return prev;
  }
  if (data.type !== undefined && data.type !== 'state') {
    return prev;
  }
  const s = data.state as Record<string, unknown>;
  if (!isObject(s.device) || !isObject(s.nan) || !isObject(s.ckpt)) {
    return prev;
  }
  const state = s as unknown as IKernelState;
  const timeline = Array.isArray(state.ckpt.timeline) ? state.ckpt.timeline : prev.timeline;
  return { state, timeline, updates: prev.updates + 1 };
}

/** `0 B`, `512 B`, `1.5 KiB`, `3.0 MiB`, `2.0 GiB` (binary units, one decimal). */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !isFinite(n)) {
    return '?';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${value} B` : `${value.toFixed(1)} ${units[i]}`;
}

/** `0.5 steps/s`, `42 steps/s`, `1.2k steps/s`; `-` when unknown. */
export function formatRate(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !isFinite(rate)) {
    return '-';
  }
  if (rate >= 1000) {
    return `${(rate / 1000).toFixed(1)}k steps/s`;
  }
  return rate >= 10 ? `${Math.round(rate)} steps/s` : `${rate.toFixed(1)} steps/s`;
}

/** `45 s`, `3 min 5 s`, `2 h 4 min`. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds) || seconds < 0) {
    return '-';
  }
  const s = Math.round(seconds);
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min ${s % 60} s`;
  }
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A metric value for a table: 4 significant digits, `NaN` for a non-finite value (sent as null). */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined) {
    return 'NaN';
  }
  if (typeof value === 'number') {
    if (Number.isInteger(value)) {
      return String(value);
    }
    const abs = Math.abs(value);
    return abs !== 0 && (abs < 1e-3 || abs >= 1e5) ? value.toExponential(3) : String(Number(value.toPrecision(4)));
  }
  if (typeof value === 'string') {
    return value;
  }
  return JSON.stringify(value);
}

/** The device part of the status bar: `cpu`, `cuda:0 1.2/80.0 GiB`. */
export function deviceText(device: IDeviceState): string {
  if (device.memory_used !== null && device.memory_total !== null) {
    return `${device.name} ${formatBytes(device.memory_used)}/${formatBytes(device.memory_total)}`;
  }
  return device.name;
}

/** The parts of the status bar item, in order, each `{key, text, title}` (title: the tooltip). */
export function statusParts(state: IKernelState): { key: string; text: string; title: string }[] {
  const parts = [
    {
      key: 'device',
      text: deviceText(state.device),
      title: `default device: ${state.device.name}${state.device.description ? ` (${state.device.description})` : ''}`
    }
  ];
  if (state.training) {
    const t = state.training;
    parts.push({
      key: 'training',
      text: t.status === 'running' ? formatRate(t.steps_per_s) : t.status,
      title:
        t.run_id !== null
          ? `run ${t.name} (${t.run_id}): step ${t.step}, ${t.status}`
          : `${t.name} (no tracked run): step ${t.step}, ${t.status}`
    });
  }
  const nan = state.nan;
  if (nan.last) {
    parts.push({
      key: 'nan',
      text: `NaN: ${nan.last.op}${nan.last.cell !== null ? ` [${nan.last.cell}]:${nan.last.line}` : ''}`,
      title: `${nan.count} non-finite event(s); last: ${nan.last.op} (${nan.last.phase}) at ${nan.last.where || 'an unknown place'}` +
        ' - click to jump to the cell and line'
    });
  } else if (nan.armed) {
    parts.push({ key: 'nan', text: 'NaN tracer armed', title: 'the NaN/inf tracer is on; no event yet' });
  }
  if (state.deterministic !== 'off') {
    parts.push({ key: 'det', text: `det ${state.deterministic}`, title: `deterministic mode: ${state.deterministic}` });
  }
  const ck = state.ckpt;
  if (ck.loaded && (ck.enabled || ck.commits)) {
    const head = ck.head !== null && ck.head !== undefined ? `#${ck.head}` : 'no commit';
    const size = ck.bytes !== null && ck.bytes !== undefined ? ` ${formatBytes(ck.bytes)}` : '';
    parts.push({
      key: 'ckpt',
      text: `ckpt ${ck.enabled ? '' : 'off '}${head}${size}`,
      title: `cell checkpoints ${ck.enabled ? 'on' : 'off'}: HEAD ${head}, ${ck.commits ?? '?'} commits${size ? `,${size}` : ''}` +
        (ck.root ? ` in ${ck.root}` : '')
    });
  }
  return parts;
}

/**
 * Where a NaN event points in the notebook: the cell (by id when the kernel knew it, else by its In[N]) and the
 * 0-based editor line. The kernel's line is the user's own (the commands run cells unmodified, arming the tracer
 * through the comm), so this is only the 1-based -> 0-based step.
 */
export function nanTarget(
  event: INaNEvent | null
): { cellId: string | null; executionCount: number | null; line: number } | null {
  if (!event || (event.cell === null && !event.cell_id)) {
    return null;
  }
  const line = Math.max(0, (event.line ?? 1) - 1);
  return { cellId: event.cell_id, executionCount: event.cell, line };
}

/** The comm id of the kernel's tinygrad_nb comm in a comm_info reply (`{comm_id: {target_name}}`), else null. */
export function findComm(comms: unknown, target: string): string | null {
  if (!isObject(comms)) {
    return null;
  }
  for (const id of Object.keys(comms)) {
    const info = comms[id];
    if (isObject(info) && info.target_name === target) {
      return id;
    }
  }
  return null;
}

// -- runs ----------------------------------------------------------------------------------------------------------
export interface IRun {
  id: string;
  name: string;
  project: string | null;
  status: string;
  start_time: number | null;
  end_time: number | null;
  config: Record<string, unknown>;
  last: Record<string, number | null>;
  last_step: number | null;
  nonfinite: string[];
  fingerprint: Record<string, unknown> | null;
  digest: string | null;
  damage: string[];
}

/** `{"a": {"b": 1}}` -> `{"a.b": "1"}`: values as text, for tables and search. */
export function flatten(value: unknown, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  if (isObject(value)) {
    const keys = Object.keys(value).sort();
    if (keys.length === 0 && prefix) {
      out[prefix] = '{}';
    }
    for (const key of keys) {
      Object.assign(out, flatten(value[key], prefix ? `${prefix}.${key}` : key));
    }
  } else if (prefix) {
    out[prefix] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  return out;
}

/**
 * The runs matching a search and a status filter. The query is words, all of which must match: `key=value` matches
 * a config entry exactly (`lr=0.1`), `status:nan` a status, any other word a substring of the name, id, project,
 * fingerprint digest or a config entry (`key=value` text).
 */
export function filterRuns(runs: IRun[], query: string, status = ''): IRun[] {
  const words = query.trim().toLowerCase().split(/\s+/).filter(w => w);
  return runs.filter(run => {
    if (status && run.status !== status) {
      return false;
    }
    const config = flatten(run.config);
    const entries = Object.entries(config).map(([k, v]) => `${k}=${v}`.toLowerCase());
    const text = [run.name, run.id, run.project ?? '', run.digest ?? ''].join(' ').toLowerCase();
    return words.every(word => {
      if (word.startsWith('status:')) {
        return run.status === word.slice(7);
      }
      if (word.includes('=')) {
        return entries.includes(word);
      }
      return text.includes(word) || entries.some(e => e.includes(word));
    });
  });
}

export interface IDiffRow {
  key: string;
  values: (string | null)[];
}

/** The keys whose values differ between the given flattened dicts (a missing key counts as different), sorted. */
export function differences(items: (Record<string, unknown> | null)[]): IDiffRow[] {
  const flat = items.map(item => (item ? flatten(item) : {}));
  const keys = new Set<string>();
  flat.forEach(f => Object.keys(f).forEach(k => keys.add(k)));
  const rows: IDiffRow[] = [];
  for (const key of [...keys].sort()) {
    const values = flat.map(f => (key in f ? f[key] : null));
    if (values.some(v => v !== values[0])) {
      rows.push({ key, values });
    }
  }
  return rows;
}

/** Metric names present in any of the runs, sorted; epoch aggregates (`loss/epoch_mean`) after the plain ones. */
export function metricNames(runs: { metrics?: Record<string, unknown> }[]): string[] {
  const names = new Set<string>();
  runs.forEach(r => Object.keys(r.metrics ?? {}).forEach(n => names.add(n)));
  return [...names].sort((a, b) => Number(a.includes('/')) - Number(b.includes('/')) || a.localeCompare(b));
}

/** The finite [min, max] over several series (a flat range widened by one unit; [0, 1] when there is none). */
export function extent(series: (number | null)[][]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of series) {
    for (const v of s) {
      if (v !== null && isFinite(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
  }
  if (lo === Infinity) {
    return [0, 1];
  }
  return lo === hi ? [lo - 1, hi + 1] : [lo, hi];
}

/**
 * SVG path data for one curve in a `width` x `height` box: x from `xRange`, y from `yRange` (up is larger).
 * A null value (non-finite) breaks the line, so NaN shows as a gap.
 */
export function pathData(
  xs: number[],
  ys: (number | null)[],
  xRange: [number, number],
  yRange: [number, number],
  width: number,
  height: number
): string {
  const sx = (x: number) => ((x - xRange[0]) / (xRange[1] - xRange[0] || 1)) * width;
  const sy = (y: number) => height - ((y - yRange[0]) / (yRange[1] - yRange[0] || 1)) * height;
  let d = '';
  let pen = false;
  for (let i = 0; i < xs.length; i++) {
    const y = ys[i];
    if (y === null || !isFinite(y)) {
      pen = false;
      continue;
    }
    d += `${pen ? 'L' : 'M'}${sx(xs[i]).toFixed(1)},${sy(y).toFixed(1)}`;
    pen = true;
  }
  return d;
}

/** How the history panel labels a commit: `#3 In[4] x = f(x)`, with markers for HEAD, errors, lost, replay. */
export function timelineLabel(entry: ITimelineEntry): string {
  const cell = entry.execution_count !== null ? ` In[${entry.execution_count}]` : '';
  return `#${entry.seq}${cell} ${entry.source}`.trim();
}

/** The replay verdict as shown on a badge: `bitwise`, `ran`, `error`, `diverged`, `outputs differ`; '' if none. */
export function replayBadge(verdict: string | null): string {
  return verdict ? String(verdict) : '';
}
