/**
 * The server extension's read-only REST API (tinygrad_nb/labext/handlers.py), through JupyterLab's authenticated
 * ServerConnection (token and XSRF handled there).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IRun, ITimelineEntry } from './logic';

export interface ISeriesRun extends IRun {
  metrics: Record<string, { steps: number[]; values: (number | null)[] }>;
}

export interface ICommitsReply {
  commits: {
    seq: number;
    parent: number | null;
    cell_id: string | null;
    execution_count: number | null;
    ok: boolean;
    error: string | null;
    source: string;
    lost: Record<string, number | null>;
    variables: number;
    bytes: number;
  }[];
  damaged: { file: string; why: string }[];
  bytes: number;
}

async function get<T>(path: string, query: Record<string, string>): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'tinygrad-nb', 'api', path) + URLExt.objectToQueryString(query);
  const response = await ServerConnection.makeRequest(url, {}, settings);
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try {
      message = JSON.parse(text).message ?? text;
    } catch {
      // not JSON: keep the text
    }
    throw new Error(`${response.status}: ${message}`);
  }
  return JSON.parse(text) as T;
}

export function fetchRuns(dir: string): Promise<{ dir: string; store: string; exists: boolean; runs: IRun[] }> {
  return get('runs', { dir });
}

export function fetchSeries(dir: string, ids: string[]): Promise<{ runs: ISeriesRun[] }> {
  return get('runs/series', { dir, ids: ids.join(','), points: '1000' });
}

export function fetchCommits(notebook: string): Promise<ICommitsReply> {
  return get('checkpoints', { notebook });
}

/** The REST commits in the shape of the kernel's timeline (HEAD and replay verdicts are only known to a kernel). */
export function asTimeline(reply: ICommitsReply): ITimelineEntry[] {
  return reply.commits.map(c => ({
    seq: c.seq,
    execution_count: c.execution_count,
    cell_id: c.cell_id,
    ok: c.ok,
    lost: Object.keys(c.lost).sort(),
    bytes: c.bytes,
    head: false,
    replay: null,
    source: c.source
  }));
}
