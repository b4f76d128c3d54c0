"""The kernel side of the JupyterLab extension: one comm (target ``tinygrad_nb.lab``) carrying the kernel's state to
the status bar item and the cell history panel (see docs/jupyterlab.md).

The comm is opened only when the Lab extension is there: the jupyter_server extension that ships with it
(:mod:`tinygrad_nb.labext`) sets ``TINYGRAD_NB_LAB_COMM=1`` in the server's environment, which the kernels it starts
inherit. Without it :func:`load` returns at its first line: no comm, no thread, no event handler, no message. (If the
server extension is on but the browser lacks the Lab extension, the browser closes the comm at once and nothing more
is sent.)

What is sent is the whole state each time (a few hundred bytes; the checkpoint timeline only when it changed), by one
daemon thread, at most every ``INTERVAL`` (0.5 s, so <= 2 updates/s) and only when something changed:

* ``device``: the default device, its description and memory (total; used, for cuda, from cupy's pool)
* ``training``: the newest unfinished ``track.Run`` of this process: step and steps/s (from its step counter sampled
  by the thread: the training loop pays nothing), status
* ``nan``: whether a NaN tracer is armed, how many events, the last one (op, phase, cell In[N] and its cell id, line)
* ``deterministic`` mode, and ``ckpt``: cell checkpoints on/off, HEAD, commits, bytes of the store, the timeline

Nothing here runs on the op hot path: NaN tracers are noticed through ``dispatch.observer_listeners`` (called only
when an observer is added), the cell events cost a few attribute reads per cell.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any

TARGET = "tinygrad_nb.lab"
COMM_ENV = "TINYGRAD_NB_LAB_COMM"  # set by the server extension (tinygrad_nb.labext) for the kernels it starts
INTERVAL = 0.5  # seconds between updates at least: <= 2 updates/s
IDLE_INTERVAL = 2.0  # seconds between looks when nothing runs (a run started by a thread outside any cell)
RATE_WINDOW = 3.0  # steps/s is measured over about this many seconds
TIMELINE_LIMIT = 200  # commits of the checkpoint timeline sent at most (the newest)
PROTOCOL = 1

_active: dict[int, LabComm] = {}


def enabled() -> bool:
    """True when this kernel was started by a server with the tinygrad_nb Lab extension."""
    return os.environ.get(COMM_ENV, "") not in ("", "0")


def load(ipython: Any) -> LabComm | None:
    """Open the comm for ``ipython`` when the Lab extension is present (else do nothing and return None)."""
    if not enabled() or getattr(ipython, "kernel", None) is None:
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
        from comm import create_comm  # noqa: PLC0415 - ipykernel's comm implementation once a kernel runs

        from .. import dispatch  # noqa: PLC0415

        self.comm = create_comm(target_name=TARGET, data={"protocol": PROTOCOL, "state": self.state(True)})
        self.comm.on_msg(self._on_msg)
        self.comm.on_close(self._on_close)
        self._last_time = time.monotonic()
        events = self.shell.events
        events.register("pre_run_cell", self.pre_run_cell)
        events.register("post_run_cell", self.post_run_cell)
        dispatch.observer_listeners.append(self._observer_added)
        self._thread = threading.Thread(target=self._loop, name="tinygrad_nb-lab-comm", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread, remove the handlers and close the comm (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._wake.set()
        from .. import dispatch  # noqa: PLC0415

        if self._observer_added in dispatch.observer_listeners:
            dispatch.observer_listeners.remove(self._observer_added)
        events = self.shell.events
        for name, handler in (("pre_run_cell", self.pre_run_cell), ("post_run_cell", self.post_run_cell)):
            if handler in events.callbacks[name]:
                events.unregister(name, handler)
        if self.comm is not None:
            try:
                self.comm.close()
            except Exception:  # noqa: BLE001 - a kernel shutting down
                pass

    def _on_close(self, msg: Any) -> None:
        """The browser closed the comm (it has no Lab extension, or the kernel was detached): stop everything."""
        self.comm = None
        for key, lab in list(_active.items()):
            if lab is self:
                del _active[key]
        self.close()

    def _on_msg(self, msg: Any) -> None:
        data = (msg.get("content") or {}).get("data") or {}
        if data.get("type") == "refresh":  # a reloaded page attached to this comm: send everything again
            self._force = True
            self._timeline_key = None
            self._wake.set()

    # -- kernel events (cheap: run once per cell) -------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        self.busy = True
        self._wake.set()

    def post_run_cell(self, result: Any) -> None:
        self.busy = False
        info = getattr(result, "info", None)
        count = getattr(result, "execution_count", None)
        cell_id = getattr(info, "cell_id", None)
        if count is not None and cell_id:
            self._cell_ids[count] = cell_id
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

        runs = [r for r in active_runs() if r.store is not None or r.sinks]
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
        return {"run_id": run.id, "name": run.name, "step": run.step, "status": run.status,
                "steps_per_s": None if rate is None else round(rate, 1),
                "store": str(run.store.path) if run.store is not None else None}

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

        return self.busy or bool(self._tracers) or bool(active_runs())

    def _loop(self) -> None:
        while not self.closed:
            self._wake.wait(timeout=self.interval if self._watching() else IDLE_INTERVAL)
            self._wake.clear()
            if self.closed:
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
        if comm is None:
            return False
        self._last_sent = compared
        self._last_time = time.monotonic()
        comm.send({"type": "state", "state": state})
        self.sent += 1
        return True
