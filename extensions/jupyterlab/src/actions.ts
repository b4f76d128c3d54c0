/**
 * What the commands do in a notebook: run the active cell under a cell magic (its outputs go to the cell, as if it
 * had been typed there), run a line magic without touching any cell, jump to a cell and line.
 */
import { Notification } from '@jupyterlab/apputils';
import { Cell, CodeCell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';
import { OutputArea } from '@jupyterlab/outputarea';
import { KernelMessage } from '@jupyterlab/services';

import { KernelTracker } from './kernel';

/**
 * Run the active code cell with `magic` (e.g. `%%tg_nantrace`) as its first line, leaving its source as it is.
 * The kernel's line numbers count the added line; the tracker remembers that for the cell's In[N].
 */
export async function runCellWith(panel: NotebookPanel, magic: string, tracker: KernelTracker | null): Promise<void> {
  const cell = panel.content.activeCell;
  if (!cell || cell.model.type !== 'code') {
    Notification.warning(`${magic}: select a code cell first`, { autoClose: 4000 });
    return;
  }
  const codeCell = cell as CodeCell;
  const source = codeCell.model.sharedModel.getSource();
  const code = `${magic}\n${source}`;
  codeCell.outputArea.model.clear();
  codeCell.setPrompt('*');
  try {
    const reply = await OutputArea.execute(code, codeCell.outputArea, panel.sessionContext, {
      cellId: codeCell.model.sharedModel.getId(),
      deletedCells: [],
      recordTiming: false
    });
    const count = reply?.content.execution_count ?? null;
    codeCell.model.executionCount = count;
    if (count !== null && tracker) {
      tracker.lineOffsets.set(count, magic.split('\n').length);
    }
  } catch (e) {
    codeCell.setPrompt('');
    throw e;
  }
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
