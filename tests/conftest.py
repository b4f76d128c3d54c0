"""Shared fixtures: every op test runs on every available device.

CI has no GPU, so besides "cpu" the suite always runs on the test-only "cpu:sim" device (numpy-backed but a distinct
device), which exercises transfers, device-mismatch errors and cross-device loading. "cuda" joins when cupy sees a GPU.
"""
from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

import pytest

import tinygrad_nb as tg
from tinygrad_nb import device as device_module

device_module.enable_sim_device()


def pytest_report_header() -> list[str]:
    """The BLAS kernel really in use (OPENBLAS_CORETYPE picks it; .ci/run runs the notebooks under several)."""
    try:
        from threadpoolctl import threadpool_info  # noqa: PLC0415 - a dev dependency, only for this line
    except ImportError:
        return []
    import numpy  # noqa: F401, PLC0415 - threadpoolctl sees only the BLAS libraries already loaded

    kernels = [f"{info['internal_api']} {info.get('architecture')}" for info in threadpool_info()
               if info.get("user_api") == "blas"]
    return [f"BLAS: {', '.join(kernels) or 'unknown'}"]


DEVICES = ["cpu", "cpu:sim"] + (["cuda"] if device_module.is_cuda_available() else [])


@pytest.fixture(params=DEVICES)
def dev(request: pytest.FixtureRequest) -> str:
    """Each available device name in turn."""
    return request.param


@pytest.fixture(autouse=True)
def _fresh_seed() -> None:
    """Every test starts from the same RNG state, so tests are independent of their order."""
    tg.manual_seed(0)


@pytest.fixture(scope="module")
def ipython() -> Iterator[Any]:
    """An in-process IPython shell (history in memory), taken down again so later tests see no IPython."""
    from IPython.core.interactiveshell import InteractiveShell  # noqa: PLC0415 - only the notebook tests need it
    from traitlets.config import Config  # noqa: PLC0415

    if InteractiveShell.initialized():  # someone else's shell: use it and leave it be
        yield InteractiveShell.instance()
        return
    builtins_before = set(vars(builtins))
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    yield InteractiveShell.instance(config=config)
    InteractiveShell.clear_instance()
    for name in set(vars(builtins)) - builtins_before:  # IPython adds __IPYTHON__ and display
        delattr(builtins, name)
