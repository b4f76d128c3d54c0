// Unit tests of the pure logic (src/logic.ts), run by `npm test` with node's built-in test runner.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import {
  differences,
  EMPTY,
  extent,
  filterRuns,
  flatten,
  formatBytes,
  formatDuration,
  formatRate,
  formatValue,
  IKernelState,
  IRun,
  metricNames,
  findComm,
  nanTarget,
  pathData,
  reduceState,
  statusParts,
  timelineLabel
} from '../src/logic';

function state(over: Partial<IKernelState> = {}): IKernelState {
  return {
    busy: false,
    device: { name: 'cpu', description: 'numpy', memory_total: null, memory_used: null },
    training: null,
    nan: { armed: false, count: 0, last: null },
    deterministic: 'off',
    ckpt: { loaded: true, enabled: true, head: 3, commits: 3, bytes: 2048, root: '.tinygrad_nb/checkpoints/nb' },
    ...over
  };
}

const entry = (seq: number) => ({
  seq, execution_count: seq + 1, cell_id: `c${seq}`, ok: true, lost: [], bytes: 10, head: false, replay: null,
  source: `x = ${seq}`
});

test('formatBytes uses binary units with one decimal', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(3 * 1024 ** 2), '3.0 MiB');
  assert.equal(formatBytes(80 * 1024 ** 3), '80.0 GiB');
  assert.equal(formatBytes(null), '?');
});

test('formatRate, formatDuration and formatValue', () => {
  assert.equal(formatRate(null), '-');
  assert.equal(formatRate(0.25), '0.3 steps/s');
  assert.equal(formatRate(42.4), '42 steps/s');
  assert.equal(formatRate(1234), '1.2k steps/s');
  assert.equal(formatDuration(45), '45 s');
  assert.equal(formatDuration(185), '3 min 5 s');
  assert.equal(formatDuration(7440), '2 h 4 min');
  assert.equal(formatDuration(-1), '-');
  assert.equal(formatValue(null), 'NaN');
  assert.equal(formatValue(3), '3');
  assert.equal(formatValue(0.123456), '0.1235');
  assert.equal(formatValue(1.5e-7), '1.500e-7');
  assert.equal(formatValue('x'), 'x');
});

test('reduceState takes state messages and keeps the timeline when a message has none', () => {
  const timeline = [entry(1), entry(2)];
  const first = reduceState(EMPTY, { protocol: 1, state: state({ ckpt: { loaded: true, timeline } }) });
  assert.equal(first.updates, 1);
  assert.deepEqual(first.timeline, timeline);
  const second = reduceState(first, { type: 'state', state: state() });
  assert.equal(second.updates, 2);
  assert.deepEqual(second.timeline, timeline); // no timeline in the message: the last one stays
  assert.equal(second.state!.ckpt.head, 3);
});

test('reduceState ignores malformed and unknown messages', () => {
  const known = reduceState(EMPTY, { type: 'state', state: state() });
  for (const bad of [null, 3, 'x', {}, { state: 5 }, { type: 'other', state: state() }, { state: { device: {} } }]) {
    assert.equal(reduceState(known, bad), known);
  }
});

test('statusParts lists device, training, NaN, determinism and checkpoints', () => {
  const parts = statusParts(state({
    device: { name: 'cuda:0', description: 'H100', memory_total: 80 * 1024 ** 3, memory_used: 1024 ** 3 },
    training: { run_id: 'ab12', name: 'mlp', step: 120, status: 'running', steps_per_s: 55.2, store: null },
    nan: {
      armed: true, count: 2,
      last: { op: 'Log', phase: 'forward', cell: 7, line: 3, nan: 1, inf: 0, cell_id: 'c', where: 'cell [7], line 3' }
    },
    deterministic: 'on'
  }));
  assert.deepEqual(parts.map(p => [p.key, p.text]), [
    ['device', 'cuda:0 1.0 GiB/80.0 GiB'],
    ['training', '55 steps/s'],
    ['nan', 'NaN: Log [7]:3'],
    ['det', 'det on'],
    ['ckpt', 'ckpt #3 2.0 KiB']
  ]);
  assert.match(parts[2].title, /^2 non-finite event\(s\); last: Log \(forward\) at cell \[7\], line 3/);
  const quiet = statusParts(state({ nan: { armed: true, count: 0, last: null }, ckpt: { loaded: false } }));
  assert.deepEqual(quiet.map(p => p.text), ['cpu', 'NaN tracer armed']);
  const off = statusParts(state({ ckpt: { loaded: true, enabled: false, head: null, commits: 0, bytes: null } }));
  assert.deepEqual(off.map(p => p.key), ['device']);
});

test('statusParts names a fit() without a tracked run by its loop', () => {
  const parts = statusParts(state({
    training: { run_id: null, name: 'fit', step: 40, status: 'running', steps_per_s: 3.25, store: null },
    ckpt: { loaded: false }
  }));
  assert.deepEqual(parts.map(p => [p.key, p.text, p.title]), [
    ['device', 'cpu', 'default device: cpu (numpy)'],
    ['training', '3.3 steps/s', 'fit (no tracked run): step 40, running']
  ]);
});

test('nanTarget maps an event to a cell and a 0-based line', () => {
  const event = { op: 'Log', phase: 'forward', cell: 7, line: 3, nan: 1, inf: 0, cell_id: 'cid', where: '' };
  assert.deepEqual(nanTarget(event), { cellId: 'cid', executionCount: 7, line: 2 });
  assert.deepEqual(nanTarget({ ...event, cell_id: null }), { cellId: null, executionCount: 7, line: 2 });
  assert.deepEqual(nanTarget({ ...event, line: null }), { cellId: 'cid', executionCount: 7, line: 0 });
  assert.equal(nanTarget(null), null);
  assert.equal(nanTarget({ ...event, cell: null, cell_id: null }), null);
});

test('findComm picks the comm of the target from a comm_info reply', () => {
  const comms = { w1: { target_name: 'jupyter.widget' }, tg9: { target_name: 'tinygrad_nb.lab' } };
  assert.equal(findComm(comms, 'tinygrad_nb.lab'), 'tg9');
  assert.equal(findComm({ w1: { target_name: 'jupyter.widget' } }, 'tinygrad_nb.lab'), null);
  assert.equal(findComm({}, 'tinygrad_nb.lab'), null);
  assert.equal(findComm(null, 'tinygrad_nb.lab'), null);
  assert.equal(findComm({ bad: 'x' }, 'tinygrad_nb.lab'), null);
});

const run = (id: string, over: Partial<IRun> = {}): IRun => ({
  id, name: `run-${id}`, project: null, status: 'finished', start_time: 1, end_time: 2, config: {}, last: {},
  last_step: null, nonfinite: [], fingerprint: null, digest: null, damage: [], ...over
});

test('flatten and filterRuns', () => {
  assert.deepEqual(flatten({ opt: { lr: 0.1, name: 'sgd' }, e: {}, n: null }), {
    e: '{}', n: 'null', 'opt.lr': '0.1', 'opt.name': 'sgd'
  });
  const runs = [
    run('aa11', { config: { lr: 0.1 }, digest: 'fp123' }),
    run('bb22', { config: { lr: 0.5 }, status: 'nan', project: 'ablation' }),
    run('cc33', { name: 'baseline', status: 'running' })
  ];
  const ids = (q: string, s = '') => filterRuns(runs, q, s).map(r => r.id);
  assert.deepEqual(ids(''), ['aa11', 'bb22', 'cc33']);
  assert.deepEqual(ids('lr=0.5'), ['bb22']);
  assert.deepEqual(ids('lr=0.'), []); // key=value matches whole entries
  assert.deepEqual(ids('lr'), ['aa11', 'bb22']);
  assert.deepEqual(ids('status:nan'), ['bb22']);
  assert.deepEqual(ids('', 'running'), ['cc33']);
  assert.deepEqual(ids('BASE'), ['cc33']);
  assert.deepEqual(ids('fp12'), ['aa11']);
  assert.deepEqual(ids('ablation lr=0.5'), ['bb22']);
  assert.deepEqual(ids('ablation lr=0.1'), []);
});

test('differences lists keys whose values differ, missing keys included', () => {
  const rows = differences([
    { lr: 0.1, opt: { name: 'sgd' }, seed: 1 },
    { lr: 0.5, opt: { name: 'sgd' }, seed: 1, wd: 0.01 },
    null
  ]);
  assert.deepEqual(rows, [
    { key: 'lr', values: ['0.1', '0.5', null] },
    { key: 'opt.name', values: ['sgd', 'sgd', null] },
    { key: 'seed', values: ['1', '1', null] },
    { key: 'wd', values: [null, '0.01', null] }
  ]);
  assert.deepEqual(differences([{ a: 1 }, { a: 1 }]), []);
});

test('metricNames, extent and pathData (NaN breaks the line)', () => {
  assert.deepEqual(metricNames([{ metrics: { loss: 1, 'loss/epoch_mean': 1 } }, { metrics: { acc: 1 } }]),
    ['acc', 'loss', 'loss/epoch_mean']);
  assert.deepEqual(extent([[1, null, 3], [2]]), [1, 3]);
  assert.deepEqual(extent([[2, 2]]), [1, 3]);
  assert.deepEqual(extent([[null]]), [0, 1]);
  assert.equal(pathData([0, 1, 2, 3], [0, 1, null, 0], [0, 3], [0, 1], 30, 10), 'M0.0,10.0L10.0,0.0M30.0,10.0');
});

test('timelineLabel', () => {
  assert.equal(timelineLabel(entry(2)), '#2 In[3] x = 2');
  assert.equal(timelineLabel({ ...entry(4), execution_count: null, source: '' }), '#4');
});
