/**
 * The runs sidebar (left panel): the runs of the run store next to the active notebook (`.tinygrad_nb/runs.db`),
 * newest first, with status, start time, config, last metrics and fingerprint; a search box and a status filter;
 * tick two or more and "compare" opens a {@link ComparisonPanel} in the main area. While visible it asks the server
 * again every second (the server answers from a cache while the store file is unchanged), so a running run's row
 * follows its training within about a second.
 */
import { Widget } from '@lumino/widgets';

import { fetchRuns, fetchSeries, ISeriesRun } from './api';
import {
  differences,
  extent,
  filterRuns,
  flatten,
  formatDuration,
  formatValue,
  IRun,
  metricNames,
  pathData
} from './logic';

const POLL_MS = 1000;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

function startText(seconds: number | null): string {
  if (seconds === null) {
    return '-';
  }
  const d = new Date(seconds * 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export class RunsSidebar extends Widget {
  constructor(
    private readonly _currentDir: () => string,
    private readonly _openComparison: (dir: string, ids: string[]) => void
  ) {
    super();
    this.id = 'tinygrad-nb-runs';
    this.addClass('tg-RunsSidebar');
    this.title.caption = 'tinygrad_nb runs';
    const header = el('div', 'tg-RunsSidebar-header');
    header.appendChild(el('h2', 'tg-RunsSidebar-title', 'Runs'));
    this._where = el('div', 'tg-RunsSidebar-where');
    header.appendChild(this._where);
    const controls = el('div', 'tg-RunsSidebar-controls');
    this._search = el('input', 'tg-RunsSidebar-search jp-mod-styled');
    this._search.type = 'search';
    this._search.placeholder = 'search: name, id, lr=0.1, status:nan';
    this._search.addEventListener('input', () => this._render());
    this._status = el('select', 'tg-RunsSidebar-status jp-mod-styled');
    for (const status of ['', 'running', 'finished', 'failed', 'nan', 'crashed', 'damaged']) {
      const option = el('option', '', status || 'any status');
      option.value = status;
      this._status.appendChild(option);
    }
    this._status.addEventListener('change', () => this._render());
    this._compare = el('button', 'tg-RunsSidebar-compare jp-mod-styled jp-mod-accept', 'compare');
    this._compare.addEventListener('click', () => {
      const ids = [...this._selected];
      if (ids.length >= 2) {
        this._openComparison(this._dir, ids);
      }
    });
    controls.append(this._search, this._status, this._compare);
    header.appendChild(controls);
    this._list = el('div', 'tg-RunsSidebar-list');
    this.node.append(header, this._list);
  }

  /** Ask the server now (also called when the active notebook changes or its kernel starts a run). */
  async refresh(): Promise<void> {
    const dir = this._currentDir();
    if (dir !== this._dir) {
      this._dir = dir;
      this._selected.clear();
    }
    try {
      const reply = await fetchRuns(dir);
      if (dir !== this._dir) {
        return; // the notebook changed while asking
      }
      this._runs = reply.runs;
      this._error = '';
      this._where.textContent = `${dir ? dir + '/' : ''}${reply.store}${reply.exists ? '' : ' (no runs yet)'}`;
    } catch (e) {
      this._error = String((e as Error).message ?? e);
    }
    this._render();
  }

  protected onAfterShow(): void {
    void this.refresh();
    this._timer = window.setInterval(() => {
      if (this.isVisible) {
        void this.refresh();
      }
    }, POLL_MS);
  }

  protected onAfterHide(): void {
    window.clearInterval(this._timer);
  }

  dispose(): void {
    window.clearInterval(this._timer);
    super.dispose();
  }

  private _render(): void {
    const list = this._list;
    list.textContent = '';
    if (this._error) {
      list.appendChild(el('div', 'tg-RunsSidebar-error', this._error));
    }
    const shown = filterRuns(this._runs, this._search.value, this._status.value);
    for (const id of [...this._selected]) {
      if (!this._runs.some(r => r.id === id)) {
        this._selected.delete(id);
      }
    }
    this._compare.disabled = this._selected.size < 2;
    this._compare.textContent = `compare (${this._selected.size})`;
    this.node.dataset.tgRuns = String(this._runs.length);
    this.node.dataset.tgShown = String(shown.length);
    if (!shown.length) {
      list.appendChild(el('div', 'tg-RunsSidebar-empty', this._runs.length ? 'no run matches' : 'no runs'));
      return;
    }
    for (const run of shown) {
      list.appendChild(this._row(run));
    }
  }

  private _row(run: IRun): HTMLElement {
    const row = el('div', `tg-RunRow tg-status-${run.status}`);
    row.dataset.tgRun = run.id;
    row.dataset.tgStatus = run.status;
    const top = el('label', 'tg-RunRow-top');
    const box = el('input', 'tg-RunRow-check');
    box.type = 'checkbox';
    box.checked = this._selected.has(run.id);
    box.addEventListener('change', () => {
      if (box.checked) {
        this._selected.add(run.id);
      } else {
        this._selected.delete(run.id);
      }
      this._render();
    });
    const dot = el('span', 'tg-RunRow-dot');
    dot.title = run.status;
    top.append(box, dot, el('span', 'tg-RunRow-name', run.name));
    top.appendChild(el('span', 'tg-RunRow-statusText', run.status));
    row.appendChild(top);
    const when = run.end_time !== null && run.start_time !== null ? ` · ${formatDuration(run.end_time - run.start_time)}` : '';
    row.appendChild(el('div', 'tg-RunRow-meta', `${run.id} · ${startText(run.start_time)}${when}` +
      (run.last_step !== null ? ` · step ${run.last_step}` : '')));
    const config = Object.entries(flatten(run.config)).map(([k, v]) => `${k}=${v}`).join('  ');
    if (config) {
      row.appendChild(el('div', 'tg-RunRow-config', config));
    }
    const metrics = Object.entries(run.last)
      .filter(([name]) => !name.includes('/'))
      .map(([name, value]) => `${name} ${formatValue(value)}`)
      .join('  ');
    if (metrics) {
      const m = el('div', 'tg-RunRow-metrics', metrics);
      m.dataset.tgMetrics = metrics;
      row.appendChild(m);
    }
    if (run.digest) {
      const fp = el('div', 'tg-RunRow-fingerprint', `fingerprint ${run.digest.slice(0, 12)}`);
      fp.title = run.digest;
      row.appendChild(fp);
    }
    if (run.damage.length) {
      row.appendChild(el('div', 'tg-RunRow-damage', run.damage.join('; ')));
    }
    return row;
  }

  private _dir = '';
  private _runs: IRun[] = [];
  private _error = '';
  private _selected = new Set<string>();
  private _timer = 0;
  private _where: HTMLElement;
  private _search: HTMLInputElement;
  private _status: HTMLSelectElement;
  private _compare: HTMLButtonElement;
  private _list: HTMLElement;
}

/** Metric curves of the chosen runs overlaid (one chart per metric), then their config and fingerprint differences. */
export class ComparisonPanel extends Widget {
  constructor(readonly dir: string, readonly ids: string[]) {
    super();
    this.addClass('tg-Comparison');
    this.title.label = `Compare ${ids.length} runs`;
    this.title.closable = true;
    this.node.textContent = 'loading…';
    void this.load();
  }

  async load(): Promise<void> {
    try {
      const reply = await fetchSeries(this.dir, this.ids);
      this._render(reply.runs);
    } catch (e) {
      this.node.textContent = `could not load the runs: ${(e as Error).message}`;
    }
  }

  private _render(runs: ISeriesRun[]): void {
    const node = this.node;
    node.textContent = '';
    node.dataset.tgCompare = runs.map(r => r.id).join(',');
    const legend = el('div', 'tg-Comparison-legend');
    runs.forEach((run, i) => {
      const item = el('span', 'tg-Comparison-legendItem');
      const swatch = el('span', 'tg-Comparison-swatch');
      swatch.style.background = COLORS[i % COLORS.length];
      item.append(swatch, document.createTextNode(`${run.name} (${run.id}, ${run.status})`));
      legend.appendChild(item);
    });
    node.appendChild(legend);
    const charts = el('div', 'tg-Comparison-charts');
    for (const name of metricNames(runs).slice(0, 16)) {
      charts.appendChild(this._chart(name, runs));
    }
    node.appendChild(charts);
    node.appendChild(this._table('config differences', runs, differences(runs.map(r => r.config)), 'config'));
    node.appendChild(
      this._table('fingerprint differences', runs, differences(runs.map(r => r.fingerprint)), 'fingerprint')
    );
  }

  private _chart(name: string, runs: ISeriesRun[]): HTMLElement {
    const W = 320;
    const H = 150;
    const box = el('div', 'tg-Chart');
    box.dataset.tgMetric = name;
    box.appendChild(el('div', 'tg-Chart-title', name));
    const series = runs.map(r => r.metrics[name] ?? { steps: [], values: [] });
    const xs = series.flatMap(s => s.steps);
    const xRange: [number, number] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
    const yRange = extent(series.map(s => s.values));
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', `-62 -6 ${W + 70} ${H + 24}`);
    svg.setAttribute('class', 'tg-Chart-svg');
    const axis = document.createElementNS(ns, 'path');
    axis.setAttribute('d', `M0,0V${H}H${W}`);
    axis.setAttribute('class', 'tg-Chart-axis');
    svg.appendChild(axis);
    const label = (x: number, y: number, text: string, anchor: string) => {
      const t = document.createElementNS(ns, 'text');
      t.setAttribute('x', String(x));
      t.setAttribute('y', String(y));
      t.setAttribute('text-anchor', anchor);
      t.setAttribute('class', 'tg-Chart-label');
      t.textContent = text;
      svg.appendChild(t);
    };
    label(-4, 8, formatValue(yRange[1]), 'end');
    label(-4, H, formatValue(yRange[0]), 'end');
    label(0, H + 14, String(xRange[0]), 'start');
    label(W, H + 14, String(xRange[1]), 'end');
    series.forEach((s, i) => {
      const path = document.createElementNS(ns, 'path');
      path.setAttribute('d', pathData(s.steps, s.values, xRange, yRange, W, H));
      path.setAttribute('stroke', COLORS[i % COLORS.length]);
      path.setAttribute('class', 'tg-Chart-line');
      path.dataset.tgRun = runs[i].id;
      path.dataset.tgPoints = String(s.steps.length);
      svg.appendChild(path);
    });
    box.appendChild(svg);
    return box;
  }

  private _table(
    title: string,
    runs: ISeriesRun[],
    rows: { key: string; values: (string | null)[] }[],
    kind: string
  ): HTMLElement {
    const section = el('div', 'tg-Comparison-section');
    section.dataset.tgTable = kind;
    section.dataset.tgRows = String(rows.length);
    section.appendChild(el('h3', '', `${title} (${rows.length})`));
    if (!rows.length) {
      section.appendChild(el('div', 'tg-Comparison-same', 'identical'));
      return section;
    }
    const table = el('table', 'tg-Comparison-table');
    const head = el('tr');
    head.appendChild(el('th', '', 'key'));
    runs.forEach(r => head.appendChild(el('th', '', r.name)));
    table.appendChild(head);
    for (const row of rows) {
      const tr = el('tr');
      tr.appendChild(el('td', 'tg-Comparison-key', row.key));
      row.values.forEach(v => tr.appendChild(el('td', v === null ? 'tg-mod-missing' : '', v ?? '(absent)')));
      table.appendChild(tr);
    }
    section.appendChild(table);
    return section;
  }
}
