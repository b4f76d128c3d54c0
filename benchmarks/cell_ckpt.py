"""Cell checkpoint overhead with a ~100 MB model in the namespace (in-process IPython shell, cpu).

Prints: the median extra time of a no-op cell (recording on vs off, including the wait for the background write);
for a cell that changes all ~100 MB, the time the cell is blocked before the background write and the background
write itself; checkout of the previous cell when ~10 MB differ; and storage against a full dump of the namespace
(its pickle plus every tensor's bytes) after every cell, for a synthetic run of 20 cells around the 100 MB model
(2 of them train it) and for the real teaching notebooks in notebooks/ (each run under nbclient with checkpoints on).

The synthetic run's ratio is fixed by its shape: a training step rewrites all weights and all gradients, so 20 cells
of which 2 train store 2 x (weights + grads) and the full dumps 20 x: 10x. The notebooks are the tutorial measure.

    python benchmarks/cell_ckpt.py [--mb 100] [--repeat 30] [--no-notebooks]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from tinygrad_nb.notebook import cellckpt, extension
from tinygrad_nb.notebook.cellckpt.store import Store

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def storage(store: Store) -> tuple[int, int]:
    """(bytes stored: packs and manifests, bytes of a full dump after every commit: pickle plus tensor bytes)."""
    full = 0
    for commit in store.commits.values():
        m = commit.manifest
        full += m["skeleton_bytes"] + sum(math.prod(t["shape"]) * np.dtype(t["dtype"]).itemsize
                                          for t in m["tensors"].values())
    stored = store.total_bytes() + sum(c.path.stat().st_size for c in store.commits.values())
    return stored, full


def teaching_notebooks(tmp: Path) -> None:
    try:
        import nbclient
        import nbformat
    except ImportError:
        print("teaching notebooks: skipped (nbclient is not installed)")
        return
    print("teaching notebooks (stored vs full dumps after every cell):")
    total_stored = total_full = 0
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        root = tmp / path.stem
        nb = nbformat.read(path, as_version=4)
        nb.cells = [nbformat.v4.new_code_cell(f"%load_ext tinygrad_nb\n%tg_ckpt dir={root} on")] + \
            [c for c in nb.cells if c.cell_type == "code"]
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        store = Store(root)
        stored, full = storage(store)
        total_stored, total_full = total_stored + stored, total_full + full
        print(f"  {path.stem:38} {len(store.commits):3d} commits  {stored / 1e6:8.2f} MB vs {full / 1e6:8.2f} MB "
              f"({full / stored:5.1f}x smaller)")
    print(f"  all notebooks: {total_stored / 1e6:.1f} MB vs {total_full / 1e6:.1f} MB "
          f"({total_full / total_stored:.1f}x smaller)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-notebooks", action="store_true", help="skip the teaching notebooks' storage")
    args = parser.parse_args()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    extension.load_ipython_extension(ip)
    rec = cellckpt.recorder(ip)
    tmp = tempfile.TemporaryDirectory()
    rec.set_root(Path(tmp.name) / "ckpt")

    def cell(source: str) -> float:
        start = time.perf_counter()
        result = ip.run_cell(source, store_history=True)
        rec.wait()  # what the next cell's pre_run_cell would wait for
        elapsed = time.perf_counter() - start
        assert result.success, result.error_in_exec
        return elapsed

    layers = max(1, args.mb // 10)  # ten ~10 MB Linear layers (1600 x 1600 float32 = 10.24 MB)
    cell("import tinygrad_nb as tg, numpy as np\ntg.manual_seed(0)\n"
         f"model = tg.nn.Sequential(*[tg.nn.Linear(1600, 1600) for _ in range({layers})])\n"
         "opt = tg.optim.SGD(model.parameters(), lr=1e-6)\nx = tg.randn(4, 1600)")
    total = sum(p.numel() * 4 for p in ip.user_ns["model"].parameters())
    print(f"model: {total / 1e6:.1f} MB in {layers} layers")

    on = [cell("y = 1") for _ in range(args.repeat)]
    rec.enabled = False
    off = [cell("y = 1") for _ in range(args.repeat)]
    rec.enabled = True
    print(f"no-op cell: median {statistics.median(on) * 1e3:.2f} ms recording, "
          f"{statistics.median(off) * 1e3:.2f} ms off: +{(statistics.median(on) - statistics.median(off)) * 1e3:.2f} "
          "ms per cell")

    blocking, background = [], []
    for _ in range(5):
        start = time.perf_counter()
        # mul_, not add_: shifting every weight by a constant makes the 10-layer stack blow up in the tutorial run
        ip.run_cell("with tg.no_grad():\n    for p in model.parameters():\n        p.mul_(0.999)",
                    store_history=True)
        blocking.append(rec.last_blocking_s)
        t = time.perf_counter()
        rec.wait()
        background.append(time.perf_counter() - t)
    print(f"cell changing all {total / 1e6:.0f} MB: blocked {statistics.median(blocking) * 1e3:.1f} ms before the "
          f"background write; background hash+write {statistics.median(background) * 1e3:.1f} ms (median of 5)")

    times = []
    for _ in range(5):
        cell("with tg.no_grad():\n    model[0].weight.add_(0.5)")  # ~10 MB differ from the commit before
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            ip.run_cell("%tg_checkout HEAD~1", store_history=True)
        times.append(time.perf_counter() - start)
    print(f"checkout of the previous cell (~10 MB differ): median {statistics.median(times) * 1e3:.1f} ms")

    # a tutorial-like run: 2 training cells that change the model, 18 that look at things or change small values
    rec.set_root(Path(tmp.name) / "tutorial")
    sources = ["loss = (model(x) ** 2).mean()\nopt.zero_grad(); loss.backward(); opt.step()"] * 2 + \
              [f"metric_{i} = float(loss.item()) * {i}\nsample = x[:{i % 4 + 1}].numpy()" for i in range(18)]
    for source in sources:
        cell(source)
    rec.wait()
    stored, full = storage(rec.store)
    print(f"synthetic run of {len(sources)} cells (2 train): stored {stored / 1e6:.1f} MB vs full dumps "
          f"{full / 1e6:.1f} MB ({full / stored:.1f}x smaller)")
    extension.unload_ipython_extension(ip)
    if not args.no_notebooks:
        teaching_notebooks(Path(tmp.name) / "notebooks")
    tmp.cleanup()


if __name__ == "__main__":
    main()
