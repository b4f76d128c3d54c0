"""Run tracking: metrics, sinks, the SQLite run store, comparison.

    from tinygrad_nb import track
    with track.Run(config={"lr": 0.1}, sinks=[track.StdoutSink()]) as run:
        run.log({"loss": loss})          # cheap: converted and written in batches, off the training thread
        run.epoch_end()
    track.runs()                         # newest first
    print(track.compare([run_a.id, run_b.id]))
"""
from .compare import Comparison, best_direction, compare, runs
from .run import STATUSES, Run
from .sinks import Batch, HistRecord, JSONLSink, StdoutSink, StoreSink, TensorBoardSink
from .store import RunRecord, RunStore, UnknownRunError, default_store_path, flush_all, set_default_store

__all__ = ["STATUSES", "Batch", "Comparison", "HistRecord", "JSONLSink", "Run", "RunRecord", "RunStore",
           "StdoutSink", "StoreSink", "TensorBoardSink", "UnknownRunError", "best_direction", "compare",
           "default_store_path", "flush_all", "runs", "set_default_store"]
