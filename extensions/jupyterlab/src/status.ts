/**
 * The status bar item: device, steps/s of the running training loop, NaN tracer armed / last event (click: jump to
 * the cell and line), deterministic mode, cell checkpoint HEAD and store size, for the active notebook's kernel.
 */
import { Widget } from '@lumino/widgets';

import { ITracked, statusParts } from './logic';

export class StatusItem extends Widget {
  constructor(private readonly _onNaNClick: () => void) {
    super();
    this.addClass('tg-StatusItem');
    this.node.dataset.tgStatus = 'none';
    this.node.title = 'tinygrad_nb';
  }

  update_(tracked: ITracked | null): void {
    const node = this.node;
    node.textContent = '';
    const state = tracked?.state ?? null;
    node.dataset.tgStatus = state ? (state.busy ? 'busy' : 'idle') : 'none';
    if (!state) {
      return;
    }
    const logo = document.createElement('span');
    logo.className = 'tg-StatusItem-logo';
    logo.textContent = 'tg';
    node.appendChild(logo);
    for (const part of statusParts(state)) {
      const span = document.createElement('span');
      span.className = `tg-StatusItem-part tg-StatusItem-${part.key}`;
      span.dataset.tgPart = part.key;
      span.textContent = part.text;
      span.title = part.title;
      if (part.key === 'nan' && state.nan.last) {
        span.classList.add('tg-mod-error');
        span.addEventListener('click', event => {
          event.stopPropagation();
          this._onNaNClick();
        });
      }
      if (part.key === 'training' && state.training?.status === 'nan') {
        span.classList.add('tg-mod-error');
      }
      node.appendChild(span);
    }
  }
}
