/**
 * The browser end of the kernel comm (target `tinygrad_nb.lab`): one tracker per notebook session.
 *
 * The kernel never opens the comm: `%load_ext tinygrad_nb` only creates its end dormant (listed by comm_info, silent).
 * The tracker asks the kernel for comm_info when it connects and after each execution until it finds that comm,
 * then attaches to it and says hello; only then does the kernel send its state. So kernels nobody with this
 * extension is looking at (nbclient in a terminal, ...) never send anything. A reloaded page attaches the same way.
 */
import { ISessionContext } from '@jupyterlab/apputils';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { EMPTY, findComm, ITracked, reduceState } from './logic';

export const TARGET = 'tinygrad_nb.lab';
export const PROTOCOL = 2;

export class KernelTracker {
  constructor(readonly sessionContext: ISessionContext) {
    sessionContext.kernelChanged.connect(this._onKernelChanged, this);
    sessionContext.statusChanged.connect(this._onStatus, this);
    sessionContext.iopubMessage.connect(this._onIOPub, this);
    this._connect(sessionContext.session?.kernel ?? null);
  }

  /** The last state the kernel sent (EMPTY until it sends one). */
  get tracked(): ITracked {
    return this._tracked;
  }

  get changed(): ISignal<this, ITracked> {
    return this._changed;
  }

  /** Whether the kernel's tinygrad_nb comm is attached (the kernel has loaded tinygrad_nb). */
  get attached(): boolean {
    return this._comm !== null;
  }

  /**
   * Arm a tool (`nantrace`, `profile`) for the next run of the cell `cellId`: the kernel wraps that one execution,
   * so the cell runs unmodified. Comm messages and execute requests travel in order on the shell channel: send this
   * right before executing the cell. False when no comm is attached.
   */
  arm(tool: 'nantrace' | 'profile', cellId: string): boolean {
    if (!this._comm) {
      return false;
    }
    this._comm.send({ type: 'arm', tool, cell_id: cellId });
    return true;
  }

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
      this._set(EMPTY);
    }
  }

  /** After each execution (its idle status) while not attached: look for the comm again (a `%load_ext`). */
  private _onIOPub(_: ISessionContext, msg: KernelMessage.IMessage): void {
    if (this._comm || msg.header.msg_type !== 'status') {
      return;
    }
    if ((msg as KernelMessage.IStatusMsg).content.execution_state !== 'idle') {
      return;
    }
    if ((msg.parent_header as Partial<KernelMessage.IHeader>)?.msg_type === 'execute_request') {
      const kernel = this.sessionContext.session?.kernel;
      if (kernel) {
        this._probe(kernel);
      }
    }
  }

  private _connect(kernel: Kernel.IKernelConnection | null): void {
    this._comm = null;
    this._set(EMPTY);
    if (kernel) {
      this._probe(kernel); // a kernel that loaded tinygrad_nb before this page (a reload, a shared kernel)
    }
  }

  /** One comm_info request for the target; attach to the kernel's comm when it lists one. */
  private _probe(kernel: Kernel.IKernelConnection): void {
    if (this._probing) {
      this._again = true; // asked while one is in flight (maybe sent before the load): ask once more after it
      return;
    }
    this._probing = true;
    void kernel
      .requestCommInfo({ target_name: TARGET })
      .then(reply => {
        const content = reply.content as KernelMessage.ICommInfoReplyMsg['content'];
        if (content.status !== 'ok' || this._comm || this.sessionContext.session?.kernel !== kernel) {
          return;
        }
        const id = findComm(content.comms, TARGET);
        if (id === null) {
          return;
        }
        const comm = kernel.hasComm(id) ? null : kernel.createComm(TARGET, id);
        if (!comm) {
          return; // another tracker of this page (a second view of the notebook) has it
        }
        this._attach(comm);
        comm.send({ type: 'hello', protocol: PROTOCOL });
      })
      .catch(() => undefined)
      .finally(() => {
        this._probing = false;
        if (this._again) {
          this._again = false;
          if (!this._comm && this.sessionContext.session?.kernel === kernel) {
            this._probe(kernel);
          }
        }
      });
  }

  private _attach(comm: Kernel.IComm): void {
    this._comm = comm;
    comm.onMsg = msg => this._receive(msg.content.data);
    comm.onClose = () => {
      if (this._comm === comm) {
        this._comm = null;
        this._set(EMPTY);
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
  private _probing = false;
  private _again = false;
  private _tracked: ITracked = EMPTY;
  private _changed = new Signal<this, ITracked>(this);
}
