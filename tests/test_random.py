"""The central Philox RNG: known answers, reproducibility, plain-data state, identical streams on every device."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers import to_np

import tinygrad_nb as tg
from tinygrad_nb.random import Generator, philox4x32


def test_philox_known_answer() -> None:
    """Random123's published known-answer test for Philox-4x32-10 with counter 0 and key 0."""
    words = philox4x32(np.array([0], dtype=np.uint64), np.array([0], dtype=np.uint64), 0)
    assert [int(w[0]) for w in words] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


def test_same_seed_same_numbers_and_state_is_json() -> None:
    tg.manual_seed(123)
    a = to_np(tg.randn(5))
    state = tg.get_rng_state()
    assert json.loads(json.dumps(state)) == state
    b = to_np(tg.rand(4))
    tg.manual_seed(123)
    np.testing.assert_array_equal(to_np(tg.randn(5)), a)
    tg.set_rng_state(state)
    np.testing.assert_array_equal(to_np(tg.rand(4)), b)
    tg.manual_seed(124)
    assert not np.array_equal(to_np(tg.randn(5)), a)


def test_fork_rng_restores_the_stream() -> None:
    before = tg.get_rng_state()
    with tg.fork_rng():
        tg.randn(100)
    assert tg.get_rng_state() == before


def test_stream_is_splittable_by_offset() -> None:
    """Drawing 8 words at once equals drawing 4 then 4: the state is just (seed, offset)."""
    g1, g2 = Generator(7), Generator(7)
    whole = g1.random_bits(8)
    parts = np.concatenate([g2.random_bits(4), g2.random_bits(4)])
    np.testing.assert_array_equal(whole, parts)


def test_every_device_draws_the_same_numbers(dev: str) -> None:
    tg.manual_seed(5)
    on_cpu = [to_np(tg.randn(3, 4)), to_np(tg.rand(7, dtype=tg.float64)), to_np(tg.randint(0, 10, (6,))),
              to_np(tg.randperm(9))]
    tg.manual_seed(5)
    on_dev = [to_np(tg.randn(3, 4, device=dev)), to_np(tg.rand(7, dtype=tg.float64, device=dev)),
              to_np(tg.randint(0, 10, (6,), device=dev)), to_np(tg.randperm(9, device=dev))]
    for a, b in zip(on_cpu, on_dev):
        np.testing.assert_array_equal(a, b)


def test_distributions_have_the_right_moments() -> None:
    tg.manual_seed(0)
    z = to_np(tg.randn(200_000, dtype=tg.float64))
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    u = to_np(tg.rand(200_000, dtype=tg.float64))
    assert abs(u.mean() - 0.5) < 0.005 and u.min() >= 0 and u.max() < 1
    counts = np.bincount(to_np(tg.randint(0, 4, (40_000,))), minlength=4)
    assert counts.min() > 9_500 and counts.max() < 10_500


@given(seed=st.integers(0, 2**64 - 1), n=st.integers(1, 50))
@settings(max_examples=30, deadline=None)
def test_randperm_is_a_permutation(seed: int, n: int) -> None:
    perm = Generator(seed).randperm(n)
    assert sorted(perm.tolist()) == list(range(n))


def test_bad_seed_and_state_are_explained() -> None:
    with pytest.raises(TypeError, match="manual_seed: seed must be an int, got float"):
        tg.manual_seed(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"set_rng_state: expected \{'seed': int, 'offset': int\}"):
        tg.set_rng_state({"seed": 1})
    with pytest.raises(ValueError, match="randint: high \\(3\\) must be greater than low \\(3\\)"):
        tg.randint(3, 3, (2,))
