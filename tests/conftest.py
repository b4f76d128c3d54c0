"""Shared fixtures: every op test runs on every available device.

CI has no GPU, so besides "cpu" the suite always runs on the test-only "cpu:sim" device (numpy-backed but a distinct
device), which exercises transfers, device-mismatch errors and cross-device loading. "cuda" joins when cupy sees a GPU.
"""
from __future__ import annotations

import pytest

import tinygrad_nb as tg
from tinygrad_nb import device as device_module

device_module.enable_sim_device()

DEVICES = ["cpu", "cpu:sim"] + (["cuda"] if device_module.is_cuda_available() else [])


@pytest.fixture(params=DEVICES)
def dev(request: pytest.FixtureRequest) -> str:
    """Each available device name in turn."""
    return request.param


@pytest.fixture(autouse=True)
def _fresh_seed() -> None:
    """Every test starts from the same RNG state, so tests are independent of their order."""
    tg.manual_seed(0)
