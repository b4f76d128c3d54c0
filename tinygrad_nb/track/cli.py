"""``tinygrad-nb runs``: list, show, compare and export tracked runs from the terminal.

    tinygrad-nb runs ls [--project P] [--status S] [--limit N]
    tinygrad-nb runs show ID
    tinygrad-nb runs compare ID ID ... [--csv out.csv]
    tinygrad-nb runs export ID [--csv out.csv] [--long]

Every form takes ``--store PATH`` (default ``./.tinygrad_nb/runs.db``). IDs may be unique prefixes or run names. An
unknown id prints the close matches and exits with status 2.

A run whose data cannot be read lists as "damaged" (``ls`` adds a ``damage`` column with the first reason), and
``show`` prints what can be read followed by what is damaged; both exit 0. ``compare`` and ``export`` refuse a damaged
run (status 1) rather than leave values out. A run whose process died without finishing lists as "crashed".
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import time
from typing import Any

from ..io import atomic_write
from .compare import Comparison, compare
from .store import READ_STATUSES, DamagedRunError, RunRecord, RunStore, UnknownRunError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=None, help="run store file (default ./.tinygrad_nb/runs.db)")
    sub = parser.add_subparsers(dest="runs_command", metavar="ACTION")
    store_opt = {"default": argparse.SUPPRESS, "help": "run store file (default ./.tinygrad_nb/runs.db)"}

    ls = sub.add_parser("ls", help="list runs, newest first")
    ls.add_argument("--store", **store_opt)
    ls.add_argument("--project", default=None)
    ls.add_argument("--status", default=None, choices=list(READ_STATUSES))
    ls.add_argument("--limit", type=int, default=None)

    show = sub.add_parser("show", help="config, status and metric summary of one run")
    show.add_argument("--store", **store_opt)
    show.add_argument("run_id")

    cmp = sub.add_parser("compare", help="config differences and final/best metrics of several runs")
    cmp.add_argument("--store", **store_opt)
    cmp.add_argument("run_ids", nargs="+")
    cmp.add_argument("--csv", default=None, help="also write the table to this CSV file")

    export = sub.add_parser("export", help="a run's metrics as CSV (one row per step, one column per metric)")
    export.add_argument("--store", **store_opt)
    export.add_argument("run_id")
    export.add_argument("--csv", default=None, help="output file (default: print to stdout)")
    export.add_argument("--long", action="store_true", help="one row per logged value: step,name,value,time")


def main(args: argparse.Namespace) -> int:
    store = RunStore(args.store)
    action = getattr(args, "runs_command", None) or "ls"
    try:
        if action == "ls":
            return _ls(store, getattr(args, "project", None), getattr(args, "status", None),
                       getattr(args, "limit", None))
        if action == "show":
            return _show(store, args.run_id)
        if action == "compare":
            table = compare(args.run_ids, store=store)
            print(table)
            if args.csv:
                table.to_csv(args.csv)
                print(f"wrote {args.csv}")
            return 0
        if action == "export":
            return _export(store, args.run_id, args.csv, args.long)
    except UnknownRunError as e:
        print(f"tinygrad-nb runs: error: {e}", file=sys.stderr)
        return 2
    except DamagedRunError as e:
        print(f"tinygrad-nb runs: error: {e}", file=sys.stderr)
        return 1
    print(f"tinygrad-nb runs: unknown action {action!r}", file=sys.stderr)
    return 2


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _ls(store: RunStore, project: str | None, status: str | None, limit: int | None) -> int:
    records = store.runs(project=project, status=status, limit=limit)
    if not records:
        print(f"no runs in {store.path}")
        return 0
    columns = ["id", "name", "project", "status", "started", "duration s"]
    rows = [{"id": r.id, "name": r.name, "project": r.project or "-", "status": r.status,
             "started": _when(r.start_time), "duration s": None if r.duration is None else round(r.duration, 2),
             "damage": _first_problem(r)} for r in records]
    if any(r.damage for r in records):
        columns.append("damage")
    print(Comparison(columns, rows))
    return 0


def _first_problem(r: RunRecord) -> str:
    if not r.damage:
        return ""
    return r.damage[0] + (f" (+{len(r.damage) - 1} more)" if len(r.damage) > 1 else "")


def _status_line(r: RunRecord) -> str:
    if r.status == "crashed":
        return f"crashed (recorded {r.recorded_status}, but process {r.pid} on {r.host} is gone)"
    if r.status == "damaged":
        return f"damaged (recorded {r.recorded_status or '-'})"
    return r.status


def _show(store: RunStore, run_id: str) -> int:
    r = store.get(run_id)
    lines = [f"run {r.id}", f"  name       {r.name}", f"  project    {r.project or '-'}",
             f"  status     {_status_line(r)}", f"  started    {_when(r.start_time)}",
             f"  ended      {_when(r.end_time)}",
             f"  duration   {'-' if r.duration is None else f'{r.duration:.2f} s'}",
             f"  host/pid   {r.host}/{r.pid}"]
    if r.fingerprint:
        lines.append(f"  fingerprint {r.fingerprint.get('digest', '?')}")
    lines.append("config:" if r.config else "config: (none)")
    lines += [f"  {k} = {v!r}" for k, v in sorted(r.config.items())]
    summary = store.summary(r.id, skip_damaged=True)
    if summary:
        rows = [{"metric": n, "final": s["final"], "min": s["min"], "max": s["max"], "count": s["count"],
                 "last step": s["last_step"]} for n, s in sorted(summary.items())]
        lines.append("metrics:")
        lines += ["  " + line for line in str(Comparison(["metric", "final", "min", "max", "count", "last step"],
                                                         rows)).splitlines()]
    else:
        lines.append("metrics: (none)")
    hists = {n for _, n, _, _, _ in store.hists(r.id, skip_damaged=True)}
    if hists:
        lines.append(f"histograms: {', '.join(sorted(hists))}")
    damage = store.damage(r.id)
    if damage:
        lines.append("damage:")
        lines += [f"  {problem}" for problem in damage]
    print("\n".join(lines))
    return 0


def _export(store: RunStore, run_id: str, path: str | None, long: bool) -> int:
    r = store.get(run_id)
    rows = store.metrics(r.id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if long:
        writer.writerow(["step", "name", "value", "time"])
        writer.writerows(rows)
    else:
        names = sorted({n for _, n, _, _ in rows})
        by_step: dict[int, dict[str, Any]] = {}
        for step, name, value, _ in rows:
            by_step.setdefault(step, {})[name] = value
        writer.writerow(["step"] + names)
        for step in sorted(by_step):
            values = by_step[step]
            writer.writerow([step] + [_csv_value(values.get(n)) for n in names])
    if path is None:
        sys.stdout.write(buffer.getvalue())
    else:
        atomic_write(path, buffer.getvalue())
        print(f"wrote {len(rows)} values of run {r.id} to {path}")
    return 0


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    return "nan" if isinstance(value, float) and math.isnan(value) else value
