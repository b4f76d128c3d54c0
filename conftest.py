"""Suite-wide setup, for tests/ and the notebooks alike: the cell checkpoint signing key (see
docs/cell_checkpoints.md, "Trust and integrity") lives in a temporary folder for the run, so running the tests
never creates a key in the user's home. Notebook kernels started by nbval inherit the variable."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_key_dir: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _key_dir
    if "TINYGRAD_NB_SECRET_FILE" not in os.environ:
        _key_dir = tempfile.mkdtemp(prefix="tinygrad_nb-test-key-")
        os.environ["TINYGRAD_NB_SECRET_FILE"] = os.path.join(_key_dir, "ckpt_secret")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _key_dir is not None:
        os.environ.pop("TINYGRAD_NB_SECRET_FILE", None)
        shutil.rmtree(_key_dir, ignore_errors=True)
