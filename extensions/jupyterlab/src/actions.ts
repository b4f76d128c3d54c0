/**
 * What the commands do in a notebook: run the active cell with a tool armed in the kernel (its outputs go to the
 * cell), run a line magic without touching any cell, jump to a cell and line.
 */
import { Notification } from '@jupyterlab/apputils';
import { Cell, CodeCell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';
import { KernelMessage } from '@jupyterlab/services';

import { KernelTracker } from './kernel';

/**
 * Run the active code cell exactly as written, with `tool` (`nantrace`: the NaN/inf tracer of `%%tg_nantrace`;
 * `profile`: the profiler of `%%tg_profile`) armed in the kernel for that one execution through the comm. Nothing
 * is added to the cell's code, so every line number the kernel reports is the user's own.
 */
export async function runCellWith(
  panel: NotebookPanel,
  tool: 'nantrace' | 'profile',
  tracker: KernelTracker | null
): Promise<void> {
  const label = tool === 'nantrace' ? 'Run Cell with the NaN Tracer' : 'Profile Cell';
  const cell = panel.content.activeCell;
  if (!cell || cell.model.type !== 'code') {
    Notification.warning(`${label}: select a code cell first`, { autoClose: 4000 });
    return;
  }
  if (!tracker || !tracker.attached) {
    Notification.warning(`${label}: the kernel has not loaded tinygrad_nb (run %load_ext tinygrad_nb first)`, {
      autoClose: 6000
    });
    return;
  }
  const codeCell = cell as CodeCell;
  tracker.arm(tool, codeCell.model.sharedModel.getId());
  await CodeCell.execute(codeCell, panel.sessionContext, { deletedCells: [], recordTiming: false });
}

/**
 * Run a line magic (`%tg_ckpt off`) in the notebook's kernel without touching a cell; what it prints is shown as a
 * notification (errors as error notifications). Returns the printed text.
 */
export async function runMagic(panel: NotebookPanel, code: string): Promise<string> {
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel) {
    Notification.warning(`${code}: the notebook has no kernel`, { autoClose: 4000 });
    return '';
  }
  const future = kernel.requestExecute({ code, silent: false, store_history: false, allow_stdin: false });
  let text = '';
  let error = '';
  future.onIOPub = (msg: KernelMessage.IIOPubMessage) => {
    if (KernelMessage.isStreamMsg(msg)) {
      text += msg.content.text;
    } else if (KernelMessage.isErrorMsg(msg)) {
      error = `${msg.content.ename}: ${msg.content.evalue}`;
    } else if (KernelMessage.isExecuteResultMsg(msg) || KernelMessage.isDisplayDataMsg(msg)) {
      const plain = (msg.content.data as Record<string, unknown>)['text/plain'];
      if (typeof plain === 'string') {
        text += plain + '\n';
      }
    }
  };
  await future.done;
  if (error) {
    Notification.error(`${code}\n${error}`, { autoClose: 8000 });
    return error;
  }
  const shown = text.trim();
  Notification.info(shown ? `${code}\n${shown.slice(0, 600)}` : code, { autoClose: 3000 });
  return shown;
}

/** Make the cell with this id (else this In[N]) active, scroll to it and put the cursor on `line` (0-based). */
export function jumpToCell(
  panel: NotebookPanel,
  target: { cellId: string | null; executionCount: number | null; line: number }
): boolean {
  const notebook = panel.content;
  let index = -1;
  if (target.cellId) {
    index = notebook.widgets.findIndex(c => c.model.id === target.cellId);
  }
  if (index < 0 && target.executionCount !== null) {
    index = notebook.widgets.findIndex(
      c => c.model.type === 'code' && (c as CodeCell).model.executionCount === target.executionCount
    );
  }
  if (index < 0) {
    Notification.warning(`cell In[${target.executionCount ?? '?'}] is not in this notebook any more`, {
      autoClose: 4000
    });
    return false;
  }
  notebook.activeCellIndex = index;
  notebook.deselectAll();
  const cell: Cell = notebook.widgets[index];
  void notebook.scrollToItem(index).then(() => {
    notebook.mode = 'edit';
    const editor = cell.editor;
    if (editor) {
      const line = Math.min(target.line, Math.max(0, editor.lineCount - 1));
      editor.setCursorPosition({ line, column: 0 });
      editor.focus();
    }
  });
  cell.node.dataset.tgJumped = String(target.line);
  return true;
}
