"""``tg.save(obj, path)`` / ``tg.load(path)``: PyTorch's call order, next to the bundle API (issue 21).

The object is stored in the same safetensors + JSON-manifest file as a bundle (never pickle); ``tg.load`` gives it
back as ``torch.load`` does, without touching the RNGs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

import tinygrad_nb as tg
from tinygrad_nb import nn
from tinygrad_nb.checkpoint import Checkpoint, CheckpointError


def test_state_dict_round_trip_byte_for_byte(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    path = tmp_path / "model.safetensors"
    assert tg.save(model.state_dict(), path) == path
    state = tg.load(path)
    assert list(state) == list(model.state_dict())
    for key, value in model.state_dict().items():
        assert state[key].dtype == value.dtype and state[key].shape == value.shape
        assert state[key].numpy().tobytes() == value.numpy().tobytes()
    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    fresh.load_state_dict(tg.load(str(path)))
    x = tg.randn(5, 3)
    fresh.eval()
    model.eval()
    np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())
    # an ordinary safetensors file: any reader sees the tensors under "object/<key>"
    assert sorted(safetensors.numpy.load_file(str(path))) == sorted(f"object/{k}" for k in state)


def test_any_supported_object_round_trips(tmp_path: Path) -> None:
    obj = {"epoch": 3, "lr": 0.5, "name": "run", "none": None, "pair": (1, "a"), "list": [tg.ones(2), 7],
           "array": np.arange(3, dtype=np.int16), "scalar": np.float32(2.5), 5: "int key"}
    tg.save(obj, tmp_path / "obj.safetensors")
    back = tg.load(tmp_path / "obj.safetensors")
    assert back["epoch"] == 3 and back["lr"] == 0.5 and back["name"] == "run" and back["none"] is None
    assert back["pair"] == (1, "a") and back[5] == "int key"
    assert back["list"][0].numpy().tolist() == [1.0, 1.0] and back["list"][1] == 7
    assert back["array"].dtype == np.int16 and back["array"].tolist() == [0, 1, 2]
    assert back["scalar"] == np.float32(2.5) and back["scalar"].dtype == np.float32
    tg.save(tg.arange(4), tmp_path / "t.safetensors")
    t = tg.load(tmp_path / "t.safetensors", weights_only=True)
    assert t.dtype == np.int64 and t.tolist() == [0, 1, 2, 3]


def test_optimizer_state_dict_round_trip(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    opt = tg.optim.Adam(model.parameters(), lr=0.1)
    model(tg.randn(3, 2)).sum().backward()
    opt.step()
    tg.save(opt.state_dict(), tmp_path / "opt.safetensors")
    other = tg.optim.Adam(model.parameters(), lr=0.1)
    other.load_state_dict(tg.load(tmp_path / "opt.safetensors"))
    ours, theirs = opt.state_dict(), other.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    for key, state in ours["state"].items():
        for name, value in state.items():
            got = theirs["state"][key][name]
            assert np.array_equal(np.asarray(got.numpy() if isinstance(got, tg.Tensor) else got),
                                  np.asarray(value.numpy() if isinstance(value, tg.Tensor) else value))


def test_object_load_leaves_the_rng_alone(tmp_path: Path) -> None:
    tg.manual_seed(0)
    tg.save({"w": tg.ones(1)}, tmp_path / "obj.safetensors")
    first = tg.randn(3).numpy()
    tg.load(tmp_path / "obj.safetensors")
    assert not np.array_equal(tg.randn(3).numpy(), first)  # the generator moved on, as after torch.load
    tg.manual_seed(0)
    tg.save(tmp_path / "bundle.safetensors", model=nn.Linear(1, 1))  # the bundle API restores the RNG
    first = tg.randn(3).numpy()
    ckpt = tg.load(tmp_path / "bundle.safetensors")
    assert isinstance(ckpt, Checkpoint)
    np.testing.assert_array_equal(tg.randn(3).numpy(), first)


def test_object_save_errors(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"save: a Linear object cannot be saved whole \(that needs pickle"):
        tg.save(model, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"save\(obj, f\): f must be a path"):
        with open(tmp_path / "f", "wb") as f:
            tg.save(model.state_dict(), f)
    with pytest.raises(CheckpointError, match=r"object\[.f.\] is a builtin_function_or_method, which a checkpoint"):
        tg.save({"f": len}, tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()
    tg.save(model.state_dict(), tmp_path / "sd.safetensors")
    with pytest.raises(CheckpointError, match=r"holds one object saved with tg.save\(obj, path\), not a training "
                                              r"bundle, so load\(model=...\) has nothing to restore"):
        tg.load(tmp_path / "sd.safetensors", model=model)


def test_object_file_is_verified(tmp_path: Path) -> None:
    path = tmp_path / "sd.safetensors"
    tg.save({"w": tg.ones(64)}, path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip a bit of the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"tensor 'object/w' is corrupt"):
        tg.load(path)


def test_torch_save_files_get_a_hint(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match=r"it looks like a torch.save file, which is a pickle: tinygrad_nb never "
                                              r"unpickles files"):
        tg.load(path)


def test_torch_state_dict_through_tg_save(tmp_path: Path) -> None:
    """A torch model's weights, as numpy arrays in a dict, saved with tg.save and loaded into our twin module."""
    torch = pytest.importorskip("torch")
    theirs = torch.nn.LSTM(3, 4, num_layers=2)
    tg.save({k: v.detach().numpy() for k, v in theirs.state_dict().items()}, tmp_path / "lstm.safetensors")
    ours = nn.LSTM(3, 4, num_layers=2)
    ours.load_state_dict({k: tg.tensor(v) for k, v in tg.load(tmp_path / "lstm.safetensors").items()})
    x = np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(tg.tensor(x))[0].numpy(), theirs(torch.tensor(x))[0].detach().numpy(),
                               rtol=1e-5, atol=1e-6)
