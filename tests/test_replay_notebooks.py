"""Replay of every teaching notebook in deterministic mode is bitwise on CPU (issue 8).

Each notebook in notebooks/ runs under nbclient (cwd = notebooks/, store_history on as in Jupyter) behind a first
cell that loads the extension, records into tmp_path and turns deterministic mode on; a last cell runs
``%tg_replay 1..HEAD --verify`` (from the first cell's commit to HEAD) and every cell must come back ``bitwise``:
every tensor and array byte for byte, every other value equal.

Values that belong to one run and cannot be made again (a temporary directory's random name, a run's random id, the
wall-clock times in a run, a profile, a checkpoint's manifest) are "run-bound": replay re-makes them and names them in
its report (see docs/cell_checkpoints.md). Which variables that happens to is checked here, so that nothing else
slips into that category unnoticed.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# notebook -> the variables its replay reports as run-bound (every other notebook: none)
RUN_BOUND: dict[str, set[str]] = {
    "02_building_models.ipynb": {"path"},  # a Path in a temporary directory
    "03_csv_to_training.ipynb": {"tmp", "problem"},  # a temporary directory; a CSV problem naming a file in it
    # a temporary directory; a loaded checkpoint (its path, its manifest's save time); bytes declared by the cell
    "04_checkpoints_and_resume.ipynb": {"tmp", "ckpt", "damaged"},
    # tracked runs (ids, times), a comparison table (ids, durations), JSONL log records declared by the cell
    "09_ablations_runs_and_metrics.ipynb": {"tmp", "run", "records", "table", "wider", "crashed"},
    # profiles, a summary and a row of it (measured times), a Chrome trace declared by the cell
    "12_profiling.ipynb": {"tmp", "prof", "summary", "row", "prof2", "sampled", "trace"},
    # a temporary directory; an export result (its path in it, the time export took)
    "13_export_and_inference.ipynb": {"tmp", "result"},
    # a store in a temporary directory; a sweep (its random id, its trials' run ids), its runs, a replayed trial's run
    "19_ablation_sweeps.ipynb": {"store", "result", "runs", "again"},
}
# notebooks whose subject is wall-clock behaviour, so their state cannot replay bitwise: named with the reason
NOT_REPLAYABLE = {
    "14_serving.ipynb": "a live HTTP server: its latencies, p99 alerts, metrics and responses are wall-clock "
                        "measurements, and concurrent answers arrive in completion order",
}
# notebook 10 records into its own store in a temporary directory (%tg_ckpt dir=..., then off, then deletes it):
# the replay switches back to ours and replays what was recorded there (the cells before that switch)
SWITCH_BACK = {"10_reproducibility.ipynb"}

ROW = re.compile(r"^#(\d+)\s+In\[(\d+)\]\s+(bitwise|outputs differ|diverged)\s*(.*)$")
RE_MADE = re.compile(r"(?:run-bound, re-made: |\), )([A-Za-z_]\w*) \(")


def _text(cell: object) -> str:
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell.outputs)


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_replays_bitwise(name: str, tmp_path: Path) -> None:
    if name in NOT_REPLAYABLE:
        pytest.skip(f"{name}: {NOT_REPLAYABLE[name]}")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    ckpt = tmp_path / "ckpt"
    first = (f"%load_ext tinygrad_nb\n%tg_ckpt dir={ckpt} on\n"
             "import tinygrad_nb as tg\ntg.deterministic(True)")
    last = ([f"%tg_ckpt dir={ckpt}"] if name in SWITCH_BACK else []) + ["%tg_replay 1..HEAD --verify"]
    nb.cells = [nbformat.v4.new_code_cell(first)] + [c for c in nb.cells if c.cell_type == "code"] + \
        [nbformat.v4.new_code_cell(s) for s in last]
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    out = _text(nb.cells[-1])
    rows = [m.groups() for m in map(ROW.match, out.splitlines()) if m]
    summary = re.search(r"^(\d+)/(\d+) cells bitwise$", out, re.MULTILINE)
    assert rows and summary and int(summary.group(2)) == len(rows), out
    assert rows[0][:3] == ("1", "1", "bitwise"), out  # the replay started at the first cell
    assert summary.group(1) == summary.group(2), out  # every cell bitwise
    assert {var for row in rows for var in RE_MADE.findall(row[3])} == RUN_BOUND.get(name, set()), out
