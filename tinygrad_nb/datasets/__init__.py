"""Small datasets shipped inside the package (no downloads), loaded as :class:`tinygrad_nb.data.Table`.

    from tinygrad_nb import datasets
    table = datasets.load("iris")          # target "species" is preset
    X, y = table.to_tensors()

* ``iris`` -- 150 rows: 4 measurements (float) and ``species`` (category, 3 classes; the target);
* ``digits`` -- 1797 rows: 8x8 pixel intensities ``px0``..``px63`` (int 0-16) and ``digit`` (0-9; the target);
* ``diabetes`` -- 442 rows: 10 clinical measurements and ``progression`` (int, regression target);
* ``sequences`` -- 400 rows: ``tokens`` (2-40 space-separated digits, str) and ``label`` (parity of the digit sum);
  :func:`sequences` returns them as token tensors;
* ``shakespeare`` -- a text, not a table: the first 250 KB (62 distinct characters) of the plays collected in
  "tiny Shakespeare"; :func:`text` returns it as one string (for character-level language models).

See SOURCES.md in this folder for where each file comes from.
"""
from __future__ import annotations

from importlib import resources

import numpy as np

from ..data import Table, read_csv
from ..tensor import Tensor, tensor

DATASETS = {
    "iris": ("iris.csv", "species", {}),
    "digits": ("digits.csv", "digit", {}),
    "diabetes": ("diabetes.csv", "progression", {}),
    "sequences": ("sequences.csv", "label", {"tokens": "str"}),
}


TEXTS = {"shakespeare": "shakespeare.txt"}


def names() -> list[str]:
    """The names :func:`load` accepts."""
    return list(DATASETS)


def text(name: str) -> str:
    """A bundled text as one string (UTF-8, newlines kept)."""
    if name not in TEXTS:
        raise ValueError(f"datasets.text: unknown text {name!r}; choose one of {', '.join(TEXTS)}")
    return (resources.files(__package__) / TEXTS[name]).read_text(encoding="utf-8")


def load(name: str) -> Table:
    """A bundled dataset as a Table with its target column set."""
    if name not in DATASETS:
        raise ValueError(f"datasets.load: unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    filename, target, dtypes = DATASETS[name]
    with resources.as_file(resources.files(__package__) / filename) as path:
        return read_csv(path, target=target, dtypes=dtypes)


def sequences() -> tuple[list[Tensor], Tensor]:
    """The toy sequence set as (list of int64 token tensors of lengths 2-40, int64 labels)."""
    table = load("sequences")
    seqs = [tensor(np.array(text.split(), dtype=np.int64)) for text in table["tokens"]]
    return seqs, tensor(table["label"])
