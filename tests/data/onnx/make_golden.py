"""Make the golden ONNX files: exported by this version of tinygrad_nb, kept so every later version proves that it
still loads them and reproduces their outputs bit for bit (tests/test_runtime.py::test_golden_files_*).

    python tests/data/onnx/make_golden.py

The weights are multiples of 1/16 and the inputs multiples of 1/4, so every product and sum in the matrix products
is exact in float32: the outputs do not depend on the BLAS kernel's summation order, and the remaining roundings
(division, square root) are IEEE correctly rounded. Bit-for-bit comparison is then meaningful on any CPU.
``golden_expected.safetensors`` holds each model's input and output (as computed by the runtime when written).
Never re-run this to "fix" a failing golden test: that would hide the incompatibility the test exists to catch.
"""
from __future__ import annotations

import os

import numpy as np
from safetensors.numpy import save

import tinygrad_nb as tg
from tinygrad_nb import nn
from tinygrad_nb.export import onnx as export_onnx
from tinygrad_nb.io import atomic_write
from tinygrad_nb.runtime import load

HERE = os.path.dirname(os.path.abspath(__file__))


def dyadic(model: nn.Module, rng: np.random.Generator) -> None:
    """Every parameter and buffer becomes small multiples of 1/16 (running_var: 1, 4 or 16)."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.dtype.kind != "f":
            continue
        if name.endswith("running_var"):
            t.data[...] = rng.choice([1.0, 4.0, 16.0], size=t.shape)
        else:
            t.data[...] = rng.integers(-16, 17, size=t.shape) / 16.0


class GoldenMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return self.bn(self.fc2(self.fc1(x).relu()))


class GoldenCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * 3 * 3, 3)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return self.fc(self.pool(self.conv(x).relu()).flatten(1))


class GoldenSeq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.fc = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, tokens: tg.Tensor) -> tg.Tensor:
        return self.norm(self.fc(self.embed(tokens).sum(1)))


def main() -> None:
    rng = np.random.default_rng(13)
    arrays: dict[str, np.ndarray] = {}
    cases = {
        "mlp": (GoldenMLP(), (rng.integers(-8, 9, size=(6, 8)) / 4.0).astype(np.float32), 18),
        "cnn": (GoldenCNN(), (rng.integers(-8, 9, size=(6, 1, 6, 6)) / 4.0).astype(np.float32), 18),
        "seq": (GoldenSeq(), rng.integers(0, 10, size=(6, 5)).astype(np.int64), 18),
        "mlp_opset13": (GoldenMLP(), (rng.integers(-8, 9, size=(6, 8)) / 4.0).astype(np.float32), 13),
    }
    for name, (model, x, opset) in cases.items():
        dyadic(model, rng)
        path = os.path.join(HERE, f"golden_{name}.onnx")
        export_onnx(model, tg.tensor(x), path, opset=opset, verbose=False)
        arrays[f"{name}.input"] = x
        arrays[f"{name}.output"] = load(path)(x)
    atomic_write(os.path.join(HERE, "golden_expected.safetensors"),
                 save(arrays, metadata={"tinygrad_nb": tg.__version__}))


if __name__ == "__main__":
    main()
