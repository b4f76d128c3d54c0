"""``tinygrad-nb predict model.onnx data.csv --out predictions.csv``: run every row of a CSV file through a model.

The CSV is read with ``data.read_csv`` (its errors name file, line, column and value); the feature columns (every
column except ``--target`` and datetime/str columns, categories as their codes) form a float32 row per sample, run
in batches through :meth:`Session.map`. The output file has one line per input row: the output's values
(``output_0, output_1, ...``) and, for a multi-class output, the index of the largest (``predicted``).
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an ONNX file")
    parser.add_argument("data", help="a CSV file with one sample per row")
    parser.add_argument("--out", required=True, help="where to write the predictions (CSV)")
    parser.add_argument("--target", default=None, help="a column to leave out of the features (e.g. the label)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=128)


def main(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415

    from ..data import CSVError, read_csv  # noqa: PLC0415
    from ..io import atomic_open  # noqa: PLC0415
    from . import InputError, ModelFormatError, load  # noqa: PLC0415

    try:
        sess = load(args.model, max_batch=args.max_batch)
        table = read_csv(args.data)
        features = table.feature_names(args.target)
        X = np.column_stack([table.columns[f].astype(np.float32) for f in features]).astype(np.float32)
        if len(sess.inputs) != 1:
            raise InputError(f"the model has {len(sess.inputs)} inputs; predict feeds one (the CSV's rows)")
        dtype = sess.inputs[0].dtype
        rows = sess.map(X.astype(dtype, copy=False), batch_size=args.batch_size)
        with atomic_open(args.out, "w") as f:
            header_done = False
            for row in rows:
                values = np.atleast_1d(np.asarray(row[0] if isinstance(row, tuple) else row)).reshape(-1)
                if not header_done:
                    names = [f"output_{i}" for i in range(values.size)] + (["predicted"] if values.size > 1 else [])
                    f.write(",".join(names) + "\n")
                    header_done = True
                cells = [repr(float(v)) for v in values] + ([str(int(values.argmax()))] if values.size > 1 else [])
                f.write(",".join(cells) + "\n")
    except (CSVError, InputError, ModelFormatError, OSError, ValueError) as e:
        print(f"tinygrad-nb predict: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(X)} predictions to {args.out} ({', '.join(features)} -> {', '.join(sess.output_names)})")
    return 0
