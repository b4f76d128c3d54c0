/**
 * tinygrad_nb in JupyterLab: a status bar item for the active notebook's kernel, a runs sidebar with a comparison
 * panel, a cell history panel, and commands (palette and cell context menu). See docs/jupyterlab.md.
 *
 * Coupling is kept to a few stable JupyterLab 4 interfaces (INotebookTracker, IStatusBar, ICommandPalette, the
 * kernel's comm API, ServerConnection); all views are plain DOM in Lumino widgets, styled with theme variables.
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, Notification } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';

import { runCellWith, jumpToCell, runMagic } from './actions';
import { asTimeline, fetchCommits } from './api';
import { HistoryPanel } from './history';
import { KernelTracker } from './kernel';
import { ITimelineEntry, nanTarget } from './logic';
import { ComparisonPanel, RunsSidebar } from './runs';
import { StatusItem } from './status';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">' +
  '<g class="jp-icon3" fill="#616161"><rect x="1" y="9" width="3" height="6"/><rect x="6" y="5" width="3" height="10"/>' +
  '<rect x="11" y="1" width="3" height="14"/></g></svg>';
const HISTORY_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">' +
  '<g class="jp-icon3" fill="#616161"><circle cx="4" cy="3" r="2"/><circle cx="4" cy="13" r="2"/>' +
  '<circle cx="12" cy="8" r="2"/><rect x="3.3" y="3" width="1.4" height="10"/><path d="M4 6 Q4 8 10 8 v1.2 Q3 9 3 6z"/></g></svg>';

export const runsIcon = new LabIcon({ name: 'tinygrad-nb:runs', svgstr: ICON_SVG });
export const historyIcon = new LabIcon({ name: 'tinygrad-nb:history', svgstr: HISTORY_SVG });

export const CommandIDs = {
  runWithNaNTracer: 'tinygrad-nb:run-cell-nantrace',
  profileCell: 'tinygrad-nb:profile-cell',
  toggleCheckpoints: 'tinygrad-nb:toggle-checkpoints',
  replayVerify: 'tinygrad-nb:replay-verify',
  openRuns: 'tinygrad-nb:open-runs',
  openHistory: 'tinygrad-nb:open-history',
  jumpToNaN: 'tinygrad-nb:jump-to-nan',
  undo: 'tinygrad-nb:undo',
  checkout: 'tinygrad-nb:checkout'
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'tinygrad-nb-lab:plugin',
  description: 'tinygrad_nb: status bar, runs sidebar, cell history and commands',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IStatusBar, ICommandPalette, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    labShell: ILabShell | null
  ) => {
    const trackers = new Map<NotebookPanel, KernelTracker>();
    const current = (): NotebookPanel | null => notebooks.currentWidget;
    const trackerOf = (panel: NotebookPanel | null): KernelTracker | null =>
      panel ? trackers.get(panel) ?? null : null;

    // -- views --------------------------------------------------------------------------------------------------
    const comparisons = new Map<string, MainAreaWidget>();
    const status = new StatusItem(() => void app.commands.execute(CommandIDs.jumpToNaN));
    const runs = new RunsSidebar(
      () => {
        const panel = current();
        return panel ? PathExt.dirname(panel.context.path) : '';
      },
      (dir, ids) => {
        const id = `tinygrad-nb-compare-${ids.join('-')}`;
        const open = comparisons.get(id);
        if (open && !open.isDisposed) {
          app.shell.activateById(id); // the same comparison again: show the one that is open
          return;
        }
        const content = new ComparisonPanel(dir, ids);
        const widget = new MainAreaWidget({ content });
        comparisons.set(id, widget);
        widget.disposed.connect(() => comparisons.delete(id));
        widget.id = id;
        widget.title.label = `Compare: ${ids.join(', ')}`;
        widget.title.icon = runsIcon;
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
      }
    );
    runs.title.icon = runsIcon;
    const history = new HistoryPanel({
      toggle: () => void app.commands.execute(CommandIDs.toggleCheckpoints),
      undo: () => void app.commands.execute(CommandIDs.undo),
      replay: () => void app.commands.execute(CommandIDs.replayVerify),
      checkout: seq => void app.commands.execute(CommandIDs.checkout, { seq }),
      goto: (entry: ITimelineEntry) => {
        const panel = current();
        if (panel) {
          jumpToCell(panel, { cellId: entry.cell_id, executionCount: entry.execution_count, line: 0 });
        }
      }
    });
    history.title.icon = historyIcon;
    app.shell.add(runs, 'left', { rank: 600 });
    app.shell.add(history, 'right', { rank: 600 });

    let stored: ITimelineEntry[] = [];
    let storedFor: string | null = null;
    const renderHistory = () => {
      const panel = current();
      history.show_(panel ? panel.context.path : null, trackerOf(panel)?.tracked ?? null, stored);
    };
    const refreshStored = async () => {
      const panel = current();
      const path = panel ? panel.context.path : null;
      storedFor = path;
      stored = [];
      if (path && history.isVisible) {
        try {
          const reply = await fetchCommits(path);
          if (storedFor === path) {
            stored = asTimeline(reply);
          }
        } catch {
          stored = [];
        }
      }
      renderHistory();
    };
    const renderAll = () => {
      const tracker = trackerOf(current());
      status.update_(tracker?.tracked ?? null);
      renderHistory();
    };

    let lastRun: string | null = null;
    notebooks.widgetAdded.connect((_, panel) => {
      const tracker = new KernelTracker(panel.sessionContext);
      trackers.set(panel, tracker);
      tracker.changed.connect((_, tracked) => {
        if (panel !== current()) {
          return;
        }
        renderAll();
        const run = tracked.state?.training?.run_id ?? null;
        if (run !== lastRun) {
          lastRun = run;
          if (runs.isVisible) {
            void runs.refresh();
          }
        }
      });
      panel.disposed.connect(() => {
        tracker.dispose();
        trackers.delete(panel);
      });
    });
    notebooks.currentChanged.connect(() => {
      renderAll();
      void refreshStored();
      if (runs.isVisible) {
        void runs.refresh();
      }
    });
    if (labShell) {
      labShell.layoutModified.connect(() => {
        if (history.isVisible && storedFor !== (current()?.context.path ?? null)) {
          void refreshStored();
        }
      });
    }

    if (statusBar) {
      statusBar.registerStatusItem('tinygrad-nb:status', {
        item: status,
        align: 'left',
        rank: 4,
        isActive: () => Boolean(trackerOf(current())?.tracked.state),
        activeStateChanged: undefined
      });
    }

    // -- commands -----------------------------------------------------------------------------------------------
    const needsNotebook = () => current() !== null;
    const afterCkptChange = () => setTimeout(() => void refreshStored(), 500);
    app.commands.addCommand(CommandIDs.runWithNaNTracer, {
      label: 'Run Cell with the NaN Tracer',
      caption: 'run the active cell as written with the NaN/inf tracer on (as %%tg_nantrace): where NaN/inf first appeared',
      isEnabled: needsNotebook,
      execute: async () => {
        const panel = current();
        if (panel) {
          await runCellWith(panel, 'nantrace', trackerOf(panel));
        }
      }
    });
    app.commands.addCommand(CommandIDs.profileCell, {
      label: 'Profile Cell',
      caption: 'run the active cell as written under the profiler (as %%tg_profile) and show the per-op table',
      isEnabled: needsNotebook,
      execute: async () => {
        const panel = current();
        if (panel) {
          await runCellWith(panel, 'profile', trackerOf(panel));
        }
      }
    });
    app.commands.addCommand(CommandIDs.toggleCheckpoints, {
      label: 'Toggle Cell Checkpoints',
      caption: '%tg_ckpt on|off in the active notebook\'s kernel',
      isEnabled: needsNotebook,
      execute: async () => {
        const panel = current();
        if (!panel) {
          return;
        }
        const ckpt = trackerOf(panel)?.tracked.state?.ckpt;
        await runMagic(panel, ckpt && ckpt.enabled ? '%tg_ckpt off' : '%tg_ckpt on');
        afterCkptChange();
      }
    });
    app.commands.addCommand(CommandIDs.replayVerify, {
      label: 'Replay and Verify the Notebook',
      caption: 'replay every recorded cell from the first commit to HEAD and verify it bitwise (%tg_replay --verify)',
      isEnabled: needsNotebook,
      execute: async () => {
        const panel = current();
        if (!panel) {
          return;
        }
        const timeline = trackerOf(panel)?.tracked.timeline ?? [];
        if (!timeline.length) {
          Notification.warning('replay: no cell checkpoints recorded in this kernel yet', { autoClose: 4000 });
          return;
        }
        await runMagic(panel, `%tg_replay #${timeline[0].seq}..HEAD --verify`);
      }
    });
    app.commands.addCommand(CommandIDs.undo, {
      label: 'Undo the Last Cell (Cell Checkpoints)',
      isEnabled: needsNotebook,
      execute: async () => {
        const panel = current();
        if (panel) {
          await runMagic(panel, '%tg_undo');
        }
      }
    });
    app.commands.addCommand(CommandIDs.checkout, {
      label: args => (args.seq !== undefined ? `Check Out Commit #${args.seq}` : 'Check Out a Commit'),
      isEnabled: needsNotebook,
      execute: async args => {
        const panel = current();
        const seq = Number(args.seq);
        if (panel && Number.isInteger(seq)) {
          await runMagic(panel, `%tg_checkout #${seq}`);
        }
      }
    });
    app.commands.addCommand(CommandIDs.openRuns, {
      label: 'Open the Runs Sidebar',
      execute: () => app.shell.activateById(runs.id)
    });
    app.commands.addCommand(CommandIDs.openHistory, {
      label: 'Open the Cell History Panel',
      execute: () => {
        app.shell.activateById(history.id);
        void refreshStored();
      }
    });
    app.commands.addCommand(CommandIDs.jumpToNaN, {
      label: 'Jump to the Last NaN Event',
      isEnabled: () => Boolean(trackerOf(current())?.tracked.state?.nan.last),
      execute: () => {
        const panel = current();
        const tracker = trackerOf(panel);
        const target = nanTarget(tracker?.tracked.state?.nan.last ?? null);
        if (panel && target) {
          app.shell.activateById(panel.id);
          jumpToCell(panel, target);
        }
      }
    });
    if (palette) {
      const category = 'tinygrad_nb';
      for (const command of [
        CommandIDs.runWithNaNTracer,
        CommandIDs.profileCell,
        CommandIDs.toggleCheckpoints,
        CommandIDs.replayVerify,
        CommandIDs.undo,
        CommandIDs.openRuns,
        CommandIDs.openHistory,
        CommandIDs.jumpToNaN
      ]) {
        palette.addItem({ command, category });
      }
    }
    const selector = '.jp-Notebook .jp-CodeCell';
    app.contextMenu.addItem({ type: 'separator', selector, rank: 60 });
    app.contextMenu.addItem({ command: CommandIDs.runWithNaNTracer, selector, rank: 61 });
    app.contextMenu.addItem({ command: CommandIDs.profileCell, selector, rank: 62 });
    app.contextMenu.addItem({ command: CommandIDs.toggleCheckpoints, selector, rank: 63 });
    app.contextMenu.addItem({ command: CommandIDs.replayVerify, selector, rank: 64 });
    app.contextMenu.addItem({ command: CommandIDs.openRuns, selector, rank: 65 });
    renderAll();
  }
};

export default plugin;
