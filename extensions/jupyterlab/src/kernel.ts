/**
 * The browser end of the kernel comm (target `tinygrad_nb.lab`): one tracker per notebook session. The kernel opens
 * the comm (it only does so when the server extension says this extension is here); the tracker registers the target
 * on every kernel connection, and after a page reload re-attaches to the comm the kernel already has (comm_info) and
 * asks it for a full state.
 */
import { ISessionContext } from '@jupyterlab/apputils';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { EMPTY, ITracked, reduceState } from './logic';

export const TARGET = 'tinygrad_nb.lab';

export class KernelTracker {
  constructor(readonly sessionContext: ISessionContext) {
    sessionContext.kernelChanged.connect(this._onKernelChanged, this);
    sessionContext.statusChanged.connect(this._onStatus, this);
    this._connect(sessionContext.session?.kernel ?? null);
  }

  /** The last state the kernel sent (EMPTY until it sends one). */
  get tracked(): ITracked {
    return this._tracked;
  }

  get changed(): ISignal<this, ITracked> {
    return this._changed;
  }

  /** In[N] -> lines the extension put in front of the cell when it ran it (see logic.nanTarget). */
  readonly lineOffsets = new Map<number, number>();

  dispose(): void {
    this._comm = null;
    Signal.clearData(this);
  }

  private _onKernelChanged(_: ISessionContext, change: { newValue: Kernel.IKernelConnection | null }): void {
    this._connect(change.newValue);
  }

  private _onStatus(_: ISessionContext, status: Kernel.Status): void {
    if (status === 'restarting' || status === 'dead' || status === 'autorestarting') {
      this._comm = null;
      this.lineOffsets.clear();
      this._set(EMPTY);
    }
  }

  private _connect(kernel: Kernel.IKernelConnection | null): void {
    this._comm = null;
    this._set(EMPTY);
    if (!kernel) {
      return;
    }
    kernel.registerCommTarget(TARGET, (comm, msg) => {
      this._attach(comm);
      this._receive(msg.content.data);
    });
    // a page reload: the kernel's comm is still open; attach to it without opening a new one
    void kernel
      .requestCommInfo({ target_name: TARGET })
      .then(reply => {
        const content = reply.content as KernelMessage.ICommInfoReplyMsg['content'];
        if (content.status !== 'ok' || this._comm) {
          return;
        }
        for (const id of Object.keys(content.comms)) {
          if (content.comms[id].target_name !== TARGET || kernel.hasComm(id)) {
            continue;
          }
          const comm = kernel.createComm(TARGET, id);
          this._attach(comm);
          comm.send({ type: 'refresh' });
          break;
        }
      })
      .catch(() => undefined);
  }

  private _attach(comm: Kernel.IComm): void {
    this._comm = comm;
    comm.onMsg = msg => this._receive(msg.content.data);
    comm.onClose = () => {
      if (this._comm === comm) {
        this._comm = null;
      }
    };
  }

  private _receive(data: unknown): void {
    this._set(reduceState(this._tracked, data));
  }

  private _set(tracked: ITracked): void {
    if (tracked !== this._tracked) {
      this._tracked = tracked;
      this._changed.emit(tracked);
    }
  }

  private _comm: Kernel.IComm | null = null;
  private _tracked: ITracked = EMPTY;
  private _changed = new Signal<this, ITracked>(this);
}
