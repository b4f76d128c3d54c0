/**
 * The cell history panel (right side) of the active notebook: the cell checkpoint timeline, with which variables a
 * commit could not keep (lost) and the verdict of the last replay (bitwise / diverged / ...), and buttons that run
 * the magics: toggle checkpoints (`%tg_ckpt on|off`), undo (`%tg_undo`), replay and verify (`%tg_replay #A..HEAD
 * --verify`), and per commit check out (`%tg_checkout #S`) and go to its cell.
 *
 * The kernel sends the timeline through the comm (it alone knows HEAD and the replay verdicts); without a kernel that
 * has tinygrad_nb loaded the panel shows what the server reads from the store's manifests.
 */
import { Widget } from '@lumino/widgets';

import { formatBytes, ITimelineEntry, ITracked, replayBadge, timelineLabel } from './logic';

export interface IHistoryActions {
  toggle(): void;
  undo(): void;
  replay(first: number): void;
  checkout(seq: number): void;
  goto(entry: ITimelineEntry): void;
}

function button(label: string, title: string, action: () => void, name: string): HTMLButtonElement {
  const b = document.createElement('button');
  b.className = 'tg-History-button jp-mod-styled';
  b.textContent = label;
  b.title = title;
  b.dataset.tgAction = name;
  b.addEventListener('click', event => {
    event.stopPropagation();
    action();
  });
  return b;
}

export class HistoryPanel extends Widget {
  constructor(private readonly _actions: IHistoryActions) {
    super();
    this.id = 'tinygrad-nb-history';
    this.addClass('tg-History');
    this.title.caption = 'tinygrad_nb cell history';
    this._header = document.createElement('div');
    this._header.className = 'tg-History-header';
    this._list = document.createElement('div');
    this._list.className = 'tg-History-list';
    this.node.append(this._header, this._list);
    this.show_(null, null, []);
  }

  /** Show the kernel's state (`tracked`, may be null) for `notebook`, or the stored commits `fallback`. */
  show_(notebook: string | null, tracked: ITracked | null, fallback: ITimelineEntry[]): void {
    const ckpt = tracked?.state?.ckpt;
    const live = Boolean(ckpt && ckpt.loaded);
    const timeline = live ? tracked!.timeline : fallback;
    this.node.dataset.tgCommits = String(timeline.length);
    this.node.dataset.tgHead = String(ckpt?.head ?? '');
    this.node.dataset.tgEnabled = live ? String(Boolean(ckpt!.enabled)) : 'unknown';
    const header = this._header;
    header.textContent = '';
    const title = document.createElement('h2');
    title.textContent = 'Cell history';
    header.appendChild(title);
    const info = document.createElement('div');
    info.className = 'tg-History-info';
    if (!notebook) {
      info.textContent = 'open a notebook';
    } else if (live) {
      info.textContent = `${notebook}: checkpoints ${ckpt!.enabled ? 'on' : 'off'}` +
        (ckpt!.head !== null && ckpt!.head !== undefined ? `, HEAD #${ckpt!.head}` : '') +
        (ckpt!.bytes !== null && ckpt!.bytes !== undefined ? `, ${formatBytes(ckpt!.bytes)}` : '');
    } else {
      info.textContent = `${notebook}: stored commits (no tinygrad_nb kernel attached)`;
    }
    header.appendChild(info);
    if (notebook) {
      const bar = document.createElement('div');
      bar.className = 'tg-History-toolbar';
      bar.append(
        button(live && ckpt!.enabled ? 'turn off' : 'turn on', 'toggle cell checkpoints (%tg_ckpt on|off)',
          () => this._actions.toggle(), 'toggle'),
        button('undo', 'restore the namespace to before the last recorded cell (%tg_undo)',
          () => this._actions.undo(), 'undo'),
        button('replay & verify', 'replay every recorded cell and verify it bitwise (%tg_replay --verify)',
          () => timeline.length && this._actions.replay(timeline[0].seq), 'replay')
      );
      for (const b of bar.querySelectorAll('button')) {
        (b as HTMLButtonElement).disabled = !live || (b.dataset.tgAction !== 'toggle' && !timeline.length);
      }
      header.appendChild(bar);
    }
    const list = this._list;
    list.textContent = '';
    if (!timeline.length) {
      const empty = document.createElement('div');
      empty.className = 'tg-History-empty';
      empty.textContent = notebook ? 'no commits recorded' : '';
      list.appendChild(empty);
      return;
    }
    for (const entry of timeline) {
      list.appendChild(this._row(entry, live));
    }
  }

  private _row(entry: ITimelineEntry, live: boolean): HTMLElement {
    const row = document.createElement('div');
    row.className = 'tg-Commit';
    row.dataset.tgSeq = String(entry.seq);
    if (entry.head) {
      row.classList.add('tg-mod-head');
    }
    if (!entry.ok) {
      row.classList.add('tg-mod-error');
    }
    const label = document.createElement('div');
    label.className = 'tg-Commit-label';
    label.textContent = timelineLabel(entry);
    label.title = 'go to the cell';
    label.addEventListener('click', () => this._actions.goto(entry));
    row.appendChild(label);
    const badges = document.createElement('div');
    badges.className = 'tg-Commit-badges';
    const badge = (text: string, kind: string, title = '') => {
      const b = document.createElement('span');
      b.className = `tg-Badge tg-Badge-${kind}`;
      b.textContent = text;
      b.title = title;
      b.dataset.tgBadge = kind;
      badges.appendChild(b);
    };
    if (entry.head) {
      badge('HEAD', 'head');
    }
    if (!entry.ok) {
      badge('error', 'error', 'the cell raised an error');
    }
    if (entry.lost.length) {
      badge(`lost: ${entry.lost.join(', ')}`, 'lost', 'variables this commit could not keep (not picklable)');
    }
    const verdict = replayBadge(entry.replay);
    if (verdict) {
      badge(verdict, verdict === 'bitwise' ? 'bitwise' : verdict === 'ran' ? 'ran' : 'diverged',
        `last replay: ${entry.replay}`);
    }
    badge(formatBytes(entry.bytes), 'bytes', 'bytes this commit added to the store');
    if (live && !entry.head) {
      const b = button('check out', `restore the namespace to after this cell (%tg_checkout #${entry.seq})`,
        () => this._actions.checkout(entry.seq), 'checkout');
      b.classList.add('tg-History-checkout');
      badges.appendChild(b);
    }
    row.appendChild(badges);
    return row;
  }

  private _header: HTMLElement;
  private _list: HTMLElement;
}
