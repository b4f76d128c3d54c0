"""The local executor: a pool of worker processes on this machine, fed by the driver through pipes.

Each worker runs one trial at a time (:func:`~.worker.run_trial`) and sends back, over its pipe, its process's
fingerprint as the trial starts (``("fingerprint", trial, dict)``, computed once per worker), every record the
trial logs (``("log", trial, records)``), epoch ends, and for each value of the sweep's metric a question
(``("report", trial, step, value)``) that the driver answers with True (stop: the pruner said so) or False. The
driver waits on all pipes and process sentinels at once (``multiprocessing.connection.wait``), so a worker that dies
(killed, out of memory, a crash in C) is noticed at once: its trial is retried once on a fresh worker, then
recorded failed.

Workers start with ``fork`` where the platform has it, so a ``train_fn`` defined in a notebook cell needs no
pickling; with ``spawn``/``forkserver`` it is pickled (cloudpickle when installed, which handles notebook
functions). Workers ignore SIGINT: Ctrl-C reaches the driver, which stops the workers and keeps the finished trials.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
from collections import deque
from typing import Any

from .worker import TrialSpec, run_trial


class _PipeChannel:
    def __init__(self, conn: Any, trial: int, ask: bool):
        self.conn, self.trial, self.ask = conn, trial, ask

    def log(self, records: list[tuple[int, float, dict[str, float]]]) -> None:
        self.conn.send(("log", self.trial, records))

    def epoch(self, summary: dict[str, dict[str, float]], step: int) -> None:
        self.conn.send(("epoch", self.trial, summary, step))

    def fingerprint(self, fingerprint: dict[str, Any]) -> None:
        self.conn.send(("fingerprint", self.trial, fingerprint))

    def should_stop(self, step: int, value: float) -> bool:
        if not self.ask:
            return False
        self.conn.send(("report", self.trial, step, value))
        return bool(self.conn.recv())


def _worker_main(conn: Any, train_fn: Any, code: dict[str, Any] | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    if isinstance(train_fn, bytes):
        try:
            import cloudpickle as loader  # noqa: PLC0415
        except ImportError:
            loader = pickle
        train_fn = loader.loads(train_fn)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        spec, ask = task
        status, error = run_trial(train_fn, spec, _PipeChannel(conn, spec.trial, ask), code)
        conn.send(("done", spec.trial, status, error))


class _Worker:
    def __init__(self, context: Any, train_fn: Any, code: dict[str, Any] | None):
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(target=_worker_main, args=(child, train_fn, code), daemon=True,
                                       name="tinygrad_nb-sweep-worker")
        self.process.start()
        child.close()
        self.spec: TrialSpec | None = None

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


class LocalExecutor:
    """Runs trials in ``max_concurrent`` worker processes (default: the CPU count)."""

    name = "local"

    def __init__(self, max_concurrent: int | None = None, start_method: str | None = None):
        self.max_concurrent = max(1, int(max_concurrent or os.cpu_count() or 1))
        methods = multiprocessing.get_all_start_methods()
        self.start_method = start_method or ("fork" if "fork" in methods else "spawn")
        if self.start_method not in methods:
            raise ValueError(f"sweep: start_method must be one of {methods}, got {self.start_method!r}")

    def run(self, driver: Any) -> None:
        context = multiprocessing.get_context(self.start_method)
        train_fn: Any = driver.train_fn
        if self.start_method != "fork":
            try:
                import cloudpickle as dumper  # noqa: PLC0415
            except ImportError:
                dumper = pickle
            train_fn = dumper.dumps(train_fn)
        total = driver.search.total
        size = self.max_concurrent if total is None else max(1, min(self.max_concurrent, total))
        driver_code = driver.code_fingerprint
        workers = [_Worker(context, train_fn, driver_code) for _ in range(size)]
        retries: deque[TrialSpec] = deque()
        exhausted = False
        try:
            while True:
                for w in workers:
                    if w.spec is None and (retries or not exhausted):
                        spec = retries.popleft() if retries else driver.next_spec()
                        if spec is None:
                            exhausted = True
                            continue
                        w.spec = spec
                        w.conn.send((spec, driver.pruning is not None))
                busy = [w for w in workers if w.spec is not None]
                if not busy:
                    break
                ready = set(multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel
                                                                                       for w in busy]))
                for i, w in enumerate(workers):
                    if w.spec is None or (w.conn not in ready and w.process.sentinel not in ready):
                        continue
                    if not self._drain(w, driver):
                        spec, w.spec = w.spec, None
                        code = w.process.exitcode
                        w.kill()
                        workers[i] = _Worker(context, train_fn, driver_code)
                        retry = driver.on_lost(spec, f"its worker process died (exit code {code})")
                        if retry is not None:
                            retries.append(retry)
        except BaseException:
            for w in workers:
                w.kill()
            driver.on_interrupted([w.spec for w in workers if w.spec is not None])
            raise
        for w in workers:
            w.stop()

    @staticmethod
    def _drain(w: _Worker, driver: Any) -> bool:
        """Handle every message waiting on ``w``'s pipe; False when the worker is gone (EOF or dead)."""
        while w.spec is not None:
            try:
                if not w.conn.poll():
                    return w.process.is_alive() or w.conn.poll()
                message = w.conn.recv()
            except (EOFError, OSError):
                return False
            kind = message[0]
            if kind == "log":
                driver.on_log(w.spec, message[2])
            elif kind == "fingerprint":
                driver.on_fingerprint(w.spec, message[2])
            elif kind == "epoch":
                driver.on_epoch(w.spec, message[2], message[3])
            elif kind == "report":
                w.conn.send(driver.should_prune(w.spec, message[2], message[3]))
            elif kind == "done":
                spec, w.spec = w.spec, None
                driver.on_end(spec, message[2], message[3])
        return True
