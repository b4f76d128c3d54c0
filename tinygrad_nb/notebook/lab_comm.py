"""The kernel side of the JupyterLab extension: one comm (target ``tinygrad_nb.lab``) carrying the kernel's state to
the status bar item and the cell history panel (see docs/jupyterlab.md).

The kernel never opens the comm itself: the Lab extension attaches to it. :func:`load` (run by ``%load_ext
tinygrad_nb`` inside a kernel) only creates the kernel's end of the comm *dormant*: registered with the kernel's comm
manager, so a ``comm_info_request`` for the target lists it, but never announced (no ``comm_open``), with no thread
and no event handler. The Lab extension asks for ``comm_info`` when it connects to a kernel and after each execution
until it finds the comm, then sends ``{"type": "hello"}`` on it; only then does the kernel start its thread and
handlers and send state. So a kernel run by anything else (nbclient in a Lab terminal, nbval, VS Code, a browser
without the extension) never sends a message and pays nothing per cell or op. If the frontend closes the comm, the
kernel stops sending and waits dormant again for the next frontend.

The extension's "Run Cell with the NaN Tracer" / "Profile Cell" commands arm a tool for one cell through the comm
(``{"type": "arm", "tool": "nantrace" | "profile", "cell_id": ...}``) and then run the cell unmodified: the
``pre_run_cell`` handler starts the tracer (or profiler) for that cell and ``post_run_cell`` stops it and prints the
same table as ``%%tg_nantrace`` / ``%%tg_profile``. Nothing is prepended, so every line number (tracer events,
tracebacks, the status bar) is the user's own.

What is sent is the whole state each time (a few hundred bytes; the checkpoint timeline only when it changed), by one
daemon thread, at most every ``INTERVAL`` (0.5 s, so <= 2 updates/s) and only when something changed:

* ``device``: the default device, its description and memory (total; used, for cuda, from cupy's pool)
* ``training``: the newest unfinished ``track.Run`` of this process, or else the newest running ``fit()`` without a
  run (:func:`loop_started`): step and steps/s (from its step counter sampled by the thread: the training loop pays
  nothing), status
* ``nan``: whether a NaN tracer is armed, how many events, the last one (op, phase, cell In[N] and its cell id, line)
* ``deterministic`` mode, and ``ckpt``: cell checkpoints on/off, HEAD, commits, bytes of the store, the timeline

Nothing here runs on the op hot path: NaN tracers are noticed through ``dispatch.observer_listeners`` (called only
when an observer is added), the cell events cost a few attribute reads per cell.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

TARGET = "tinygrad_nb.lab"
INTERVAL = 0.5  # seconds between updates at least: <= 2 updates/s
IDLE_INTERVAL = 2.0  # seconds between looks when nothing runs (a run started by a thread outside any cell)
RATE_WINDOW = 3.0  # steps/s is measured over about this many seconds
TIMELINE_LIMIT = 200  # commits of the checkpoint timeline sent at most (the newest)
PROTOCOL = 2  # 2: the frontend attaches to the kernel's dormant comm (hello) and arms tools per cell (arm)
TOOLS = ("nantrace", "profile")  # what an "arm" message may ask for

_active: dict[int, LabComm] = {}
_attached = 0  # how many LabComms have a frontend attached: fit() reports its steps only when > 0


def load(ipython: Any) -> LabComm | None:
    """Create the dormant end of the comm for ``ipython`` inside a kernel (outside one: do nothing, return None).

    Dormant: listed by ``comm_info`` for the Lab extension to find, but silent (see the module docstring)."""
    if getattr(ipython, "kernel", None) is None:
        return None
    existing = _active.get(id(ipython))
    if existing is not None and not existing.closed:
        return existing
    lab = LabComm(ipython)
    lab.open()
    _active[id(ipython)] = lab
    return lab


def unload(ipython: Any) -> None:
    lab = _active.pop(id(ipython), None)
    if lab is not None:
        lab.close()


class TrainingLoop:
    """A training loop with no ``track.Run`` (``fit()`` without ``run=``): its step counter, which the sender thread
    samples for steps/s. The loop writes ``loop.step`` once per step; nothing else."""

    __slots__ = ("id", "name", "step", "start_time", "status")

    def __init__(self, name: str):
        self.id = f"loop-{next(_loop_ids)}"
        self.name = name
        self.step = 0
        self.start_time = time.time()
        self.status = "running"


_loop_ids = itertools.count(1)
_loops: list[TrainingLoop] = []


def loop_started(name: str) -> TrainingLoop | None:
    """A step counter for a training loop without a run, or None when no Lab frontend is attached (one check)."""
    if not _attached:
        return None
    loop = TrainingLoop(name)
    _loops.append(loop)
    for lab in _active.values():
        lab._wake.set()  # noqa: SLF001 - the sender looks sooner than its idle interval
    return loop


def loop_finished(loop: TrainingLoop | None) -> None:
    if loop is not None and loop in _loops:
        _loops.remove(loop)


def _cell_of(location: Any) -> tuple[int | None, int | None]:
    """``(In[N] number, line)`` of a tracer location ``(filename, lineno)``; Nones when it is not a notebook cell."""
    if not location:
        return None, None
    from ..debug.provenance import cell_number  # noqa: PLC0415

    filename, lineno = location[0], location[1]
    return cell_number(str(filename)), int(lineno) if lineno is not None else None


class LabComm:
    """The comm, its sender thread and the kernel-side bookkeeping behind the state it sends."""

    def __init__(self, shell: Any, interval: float = INTERVAL):
        self.shell = shell
        self.interval = interval
        self.comm: Any = None
        self.closed = False
        self.busy = False
        self.sent = 0  # messages sent (tests and the benchmark read it)
        self.attached = False  # a frontend said hello: handlers and thread run, state is sent
        self._armed: dict[str, Any] | None = None  # a tool for the next run of one cell ({"tool", "cell_id"})
        self._tool: Any = None  # the tool running in the current cell (_CellTool)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_sent: dict[str, Any] | None = None
        self._last_time = 0.0
        self._timeline_key: Any = None
        self._force = True
        self._tracers: list[Any] = []  # tracers added since the last cell ended (strong refs until harvested)
        self._seen: dict[int, int] = {}  # id(tracer) -> events already counted
        self._nan_count = 0
        self._last_nan: dict[str, Any] | None = None
        self._cell_ids: dict[int, str] = {}  # In[N] -> the notebook's cell id (from the execute request)
        self._rates: dict[str, list[tuple[float, int]]] = {}  # run id -> recent (time, step) samples
        self._device_info: dict[str, Any] = {}

    # -- life cycle -------------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Create the dormant comm: registered for ``comm_info`` to list, never announced; nothing else runs yet."""
        import comm as comm_package  # noqa: PLC0415 - ipykernel's comm implementation once a kernel runs

        made = comm_package.create_comm(target_name=TARGET, primary=False)  # primary=False: no comm_open is sent
        comm_package.get_comm_manager().register_comm(made)
        made.on_msg(self._on_msg)
        made.on_close(self._on_close)
        self.comm = made

    def _attach(self) -> None:
        """A frontend said hello: register the handlers, start the sender thread (once)."""
        global _attached
        if self.attached or self.closed:
            return
        from .. import dispatch  # noqa: PLC0415

        self.attached = True
        _attached += 1
        self._last_time = 0.0
        events = self.shell.events
        events.register("pre_run_cell", self.pre_run_cell)
        events.register("post_run_cell", self.post_run_cell)
        dispatch.observer_listeners.append(self._observer_added)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(self._stop,), name="tinygrad_nb-lab-comm",
                                        daemon=True)
        self._thread.start()

    def _detach(self) -> None:
        """Stop the thread and remove the handlers (idempotent): back to dormant."""
        global _attached
        if not self.attached:
            return
        self.attached = False
        _attached -= 1
        self._stop.set()
        self._wake.set()
        from .. import dispatch  # noqa: PLC0415

        if self._observer_added in dispatch.observer_listeners:
            dispatch.observer_listeners.remove(self._observer_added)
        events = self.shell.events
        for name, handler in (("pre_run_cell", self.pre_run_cell), ("post_run_cell", self.post_run_cell)):
            if handler in events.callbacks[name]:
                events.unregister(name, handler)
        self._armed = None
        self._last_sent = None
        self._force = True

    def close(self) -> None:
        """Stop the thread, remove the handlers and the comm (idempotent). A comm no frontend attached to is only
        unregistered: nothing is sent for it, ever."""
        if self.closed:
            return
        self.closed = True
        was_attached = self.attached
        self._detach()
        comm, self.comm = self.comm, None
        if comm is None:
            return
        try:
            if was_attached:
                comm.close()
            else:
                import comm as comm_package  # noqa: PLC0415

                comm_package.get_comm_manager().unregister_comm(comm)
                comm._closed = True  # noqa: SLF001 - or its __del__ would send a comm_close nobody expects
        except Exception:  # noqa: BLE001 - a kernel shutting down
            pass

    def _on_close(self, msg: Any) -> None:
        """The frontend closed the comm (the kernel's comm manager has dropped it): stop sending and wait dormant,
        with a fresh comm, for the next frontend."""
        self.comm = None
        self._detach()
        if not self.closed:
            self.open()

    def _on_msg(self, msg: Any) -> None:
        data = (msg.get("content") or {}).get("data") or {}
        kind = data.get("type")
        if kind in ("hello", "refresh"):  # a frontend attached (or a reloaded page): send everything
            self._force = True
            self._timeline_key = None
            self._attach()
            self._wake.set()
        elif kind == "arm" and self.attached:
            tool = data.get("tool")
            if tool not in TOOLS:
                raise ValueError(f"tinygrad_nb.lab comm: unknown tool {tool!r} in an arm message; "
                                 f"expected one of {', '.join(TOOLS)}")
            self._armed = {"tool": tool, "cell_id": data.get("cell_id") or None}

    # -- kernel events (cheap: run once per cell) -------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        self.busy = True
        armed = self._armed
        if armed is not None:
            cell_id = getattr(info, "cell_id", None)
            if armed["cell_id"] is None or cell_id == armed["cell_id"]:
                self._armed = None
                tool = _CellTool(armed["tool"], self.shell)
                tool.start()  # (if it raises, IPython shows the error and the cell runs without the tool)
                self._tool = tool
            elif cell_id is not None:  # another cell ran first: the arm was for a run that did not come
                self._armed = None
        self._wake.set()

    def post_run_cell(self, result: Any) -> None:
        self.busy = False
        tool, self._tool = self._tool, None
        if tool is not None:
            tool.finish(result)
        info = getattr(result, "info", None)
        count = getattr(result, "execution_count", None)
        cell_id = getattr(info, "cell_id", None)
        if count is not None and cell_id:
            self._cell_ids[count] = cell_id
            last = self._last_nan
            if last is not None and last["cell"] == count and last["cell_id"] is None:  # read while the cell ran
                self._last_nan = dict(last, cell_id=cell_id)
        self._harvest(getattr(result, "error_in_exec", None))
        self._wake.set()

    def _observer_added(self, handle: Any) -> None:
        """``dispatch.observer_listeners``: keep NaN tracers alive until the cell ends, to read their events."""
        from ..debug.anomaly import AnomalyTracer  # noqa: PLC0415

        observer = getattr(handle, "observer", None)
        if isinstance(observer, AnomalyTracer):
            with self._lock:
                if all(t is not observer for t in self._tracers):
                    self._tracers.append(observer)
            self._wake.set()

    def _harvest(self, error: BaseException | None) -> None:
        """At the end of a cell: take the last event of the tracers it used (and a NonFiniteError it raised), drop
        the tracers that are off."""
        from ..debug.anomaly import NonFiniteError  # noqa: PLC0415

        with self._lock:
            self._read_tracers()
            self._tracers = [t for t in self._tracers if t.enabled]
            self._seen = {id(t): len(t.events) for t in self._tracers}
        if isinstance(error, NonFiniteError):
            self._nan_count += 1
            self._last_nan = self._event(error.op, error.phase, error.location, None, None)

    def _read_tracers(self) -> None:
        seen = self._seen
        for tracer in self._tracers:
            events = tracer.events
            new = len(events) - seen.get(id(tracer), 0)
            if new > 0:
                self._nan_count += new
                e = events[-1]
                self._last_nan = self._event(e.op, e.phase, e.location, e.nan, e.inf)
                seen[id(tracer)] = len(events)
        self._seen = seen

    def _event(self, op: str, phase: str, location: Any, nan: int | None, inf: int | None) -> dict[str, Any]:
        cell, line = _cell_of(location)
        from ..debug.provenance import format_location  # noqa: PLC0415

        return {"op": op, "phase": phase, "cell": cell, "line": line, "nan": nan, "inf": inf,
                "cell_id": self._cell_ids.get(cell) if cell is not None else None,
                "where": format_location(location, source=False) if location else ""}

    # -- the state --------------------------------------------------------------------------------------------------
    def state(self, full: bool = False) -> dict[str, Any]:
        """What the status bar and the history panel show, as JSON-ready data (see the module docstring)."""
        from .. import determinism  # noqa: PLC0415
        from ..debug.anomaly import is_anomaly_enabled  # noqa: PLC0415

        with self._lock:
            self._read_tracers()
        mode = determinism.state()["mode"]
        out = {"busy": self.busy, "device": self._device(), "training": self._training(),
               "nan": {"armed": is_anomaly_enabled(), "count": self._nan_count, "last": self._last_nan},
               "deterministic": {True: "on", False: "off"}.get(mode, str(mode)),
               "ckpt": self._ckpt(full)}
        return out

    def _device(self) -> dict[str, Any]:
        from .. import device as tg_device  # noqa: PLC0415

        name = str(tg_device.get_default_device())
        info = self._device_info.get(name)
        if info is None:  # devices() may probe the GPU: once per device name
            found = {d.name: d for d in tg_device.devices()}
            d = found.get(name) or found.get(name + ":0" if ":" not in name else name)
            info = self._device_info[name] = {"name": name, "description": d.description if d else "",
                                              "memory_total": d.memory_bytes if d else None}
        out = dict(info, memory_used=None)
        if name.startswith("cuda"):
            try:
                import cupy  # noqa: PLC0415

                out["memory_used"] = int(cupy.get_default_memory_pool().used_bytes())
            except Exception:  # noqa: BLE001 - no cupy: memory use unknown
                pass
        return out

    def _training(self) -> dict[str, Any] | None:
        from ..track.run import active_runs  # noqa: PLC0415

        runs: list[Any] = [r for r in active_runs() if r.store is not None or r.sinks]
        runs += [loop for loop in _loops if loop.status == "running"]  # fit() without a run
        live = {r.id for r in runs}
        for stale in [k for k in self._rates if k not in live]:
            del self._rates[stale]
        if not runs:
            return None
        run = max(runs, key=lambda r: r.start_time)
        now = time.monotonic()
        samples = self._rates.setdefault(run.id, [])
        if not samples or samples[-1][1] != run.step or now - samples[-1][0] > RATE_WINDOW:
            samples.append((now, run.step))
        while len(samples) > 2 and now - samples[1][0] > RATE_WINDOW:
            samples.pop(0)
        rate = None
        if len(samples) >= 2 and samples[-1][0] > samples[0][0]:
            rate = (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])
            if run.step == samples[-1][1] and now - samples[-1][0] > 1.0:  # stalled since the last sample
                rate = (samples[-1][1] - samples[0][1]) / (now - samples[0][0])
        is_run = not isinstance(run, TrainingLoop)
        store = run.store if is_run else None
        return {"run_id": run.id if is_run else None, "name": run.name, "step": run.step, "status": run.status,
                "steps_per_s": None if rate is None else round(rate, 1),
                "store": str(store.path) if store is not None else None}

    def _ckpt(self, full: bool) -> dict[str, Any]:
        from . import cellckpt  # noqa: PLC0415

        rec = cellckpt.recorder(self.shell)
        if rec is None:
            return {"loaded": False}
        out: dict[str, Any] = {"loaded": True, "enabled": bool(rec.enabled), "head": rec.head, "commits": None,
                               "bytes": None, "root": None}
        store = rec._store  # noqa: SLF001 - never create a store just to show its size
        pending = rec._pending  # noqa: SLF001 - a commit being written: read the store after it
        if store is None or (pending is not None and not pending.done()):
            out["writing"] = store is not None
            return out
        try:
            commits = sorted(store.commits.items())
            out.update(commits=len(commits), bytes=store.total_bytes(), root=self._relative(store.root))
        except (RuntimeError, OSError):  # the store changed under us: the next update has it
            return out
        verdicts = {row.get("seq"): row.get("result") for row in rec.last_replay or []}
        key = (rec.head, tuple(s for s, _ in commits), id(rec.last_replay))
        if full or key != self._timeline_key:
            self._timeline_key = key
            timeline = []
            for seq, commit in commits[-TIMELINE_LIMIT:]:
                m = commit.manifest
                cell = m.get("cell") or {}
                source = str(cell.get("source") or "")
                timeline.append({"seq": seq, "execution_count": cell.get("execution_count"),
                                 "cell_id": cell.get("id"), "ok": bool(cell.get("success")),
                                 "lost": sorted(m.get("lost") or {}), "bytes": int(commit.size),
                                 "head": seq == rec.head, "replay": verdicts.get(seq),
                                 "source": next((x.strip() for x in source.splitlines() if x.strip()), "")[:80]})
            out["timeline"] = timeline
        return out

    @staticmethod
    def _relative(path: Any) -> str:
        try:
            return os.path.relpath(path)
        except ValueError:
            return str(path)

    # -- the sender thread ------------------------------------------------------------------------------------------
    def _watching(self) -> bool:
        """Whether the state can change without a cell event: a run is training, a tracer is armed, a cell runs."""
        from ..track.run import active_runs  # noqa: PLC0415

        return self.busy or bool(self._tracers) or bool(_loops) or bool(active_runs())

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.wait(timeout=self.interval if self._watching() else IDLE_INTERVAL)
            self._wake.clear()
            if stop.is_set():
                return
            delay = self._last_time + self.interval - time.monotonic()
            if delay > 0:  # throttle: at most one update per interval
                time.sleep(delay)
            try:
                self.send_if_changed()
            except Exception:  # noqa: BLE001 - the status bar must never break the kernel
                pass

    def send_if_changed(self) -> bool:
        """Send the state when it differs from the last one sent (or a refresh was asked for)."""
        force, self._force = self._force, False
        state = self.state(full=force)
        compared = {k: v for k, v in state.items() if k != "ckpt"}
        compared["ckpt"] = {k: v for k, v in state["ckpt"].items() if k != "timeline"}
        if not force and compared == self._last_sent and "timeline" not in state["ckpt"]:
            return False
        comm = self.comm
        if comm is None or not self.attached:
            return False
        self._last_sent = compared
        self._last_time = time.monotonic()
        comm.send({"type": "state", "state": state})
        self.sent += 1
        return True


class _CellTool:
    """What ``%%tg_nantrace`` / ``%%tg_profile`` (default options) do around a cell, split into the part before the
    cell (:meth:`start`, from ``pre_run_cell``) and the part after it (:meth:`finish`, from ``post_run_cell``), so an
    armed cell runs exactly as written. The printed tables are the magics' own."""

    def __init__(self, tool: str, shell: Any):
        self.tool = tool
        self.shell = shell
        self.context: Any = None  # the tracer or the profile
        self.errstate: Any = None
        self.widget: Any = None

    def start(self) -> None:
        if self.tool == "profile":
            from ..profiler import profile  # noqa: PLC0415

            self.context = profile(every=1)
            self.context.__enter__()
            return
        import numpy as np  # noqa: PLC0415

        from ..debug import detect_anomaly  # noqa: PLC0415
        from . import ownership  # noqa: PLC0415
        from .magics import nantracer_widget  # noqa: PLC0415

        self.context = detect_anomaly(strict=False, check_inf=True)
        self.context.__enter__()
        self.errstate = np.errstate(divide="ignore", over="ignore", invalid="ignore")  # the tracer says it better
        self.errstate.__enter__()
        widget_class = nantracer_widget()
        if widget_class is not None:
            self.widget = ownership.own(widget_class(self.context, show=True), label="NaNTracer widget (Lab command)")

    def finish(self, result: Any) -> None:
        """Stop the tool and print its table (in the cell's output: ``post_run_cell`` runs before the reply)."""
        failed = getattr(result, "error_in_exec", None) is not None or getattr(result, "error_before_exec", None)
        if self.errstate is not None:
            self.errstate.__exit__(None, None, None)
        self.context.__exit__(None, None, None)
        if self.tool == "profile":
            if not failed:  # as %%tg_profile: the table when the cell ran to its end
                print(self.context.summary(sort_by="total", limit=None))
            return
        from . import ownership  # noqa: PLC0415
        from .magics import event_table  # noqa: PLC0415

        widget = self.widget
        if widget is not None:
            widget.stop()
            widget.finish()  # the live table becomes a static one
            ownership.disown(widget)
        if not failed or (widget is None and self.context.events):  # as %%tg_nantrace
            print(event_table(self.context.events))
