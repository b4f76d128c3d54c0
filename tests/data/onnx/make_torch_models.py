"""Make the PyTorch-exported ONNX files the runtime tests load (run once; the small files are committed).

    python tests/data/onnx/make_torch_models.py

Needs torch (CPU); uses PyTorch's TorchScript-based exporter (``dynamo=False``: it needs no onnxscript) at opset 17
with a dynamic batch dimension. Writes three models and ``torch_expected.safetensors``, which holds each model's
example input and PyTorch's output for it (the tests compare the runtime with those outputs). Nothing is pickled.
"""
from __future__ import annotations

import io
import os
import warnings

import numpy as np
import torch
from safetensors.numpy import save

from tinygrad_nb.io import atomic_write

HERE = os.path.dirname(os.path.abspath(__file__))


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16),
                                       torch.nn.Tanh(), torch.nn.Linear(16, 10), torch.nn.LogSoftmax(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(8 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return torch.softmax(self.fc(torch.flatten(x, 1)), dim=1)


class SequenceModel(torch.nn.Module):
    """GRU-free: token embedding, a 1-D convolution over time, mean over time, a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 16)
        self.conv = torch.nn.Conv1d(16, 16, 3, padding=1)
        self.norm = torch.nn.LayerNorm(16)
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens).transpose(1, 2)  # (N, 16, T)
        h = torch.relu(self.conv(h)).mean(dim=2)
        return self.fc(self.norm(h))


def export(model: torch.nn.Module, example: torch.Tensor, name: str, dynamic: dict[int, str]) -> np.ndarray:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=17, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": dynamic, "output": {0: "batch"}})
    atomic_write(os.path.join(HERE, f"torch_{name}.onnx"), buffer.getvalue())
    with torch.no_grad():
        return model(example).numpy()


def main() -> None:
    torch.manual_seed(0)
    arrays: dict[str, np.ndarray] = {}
    examples = {
        "mlp": (MLP().eval(), torch.randn(5, 20), {0: "batch"}),
        "cnn": (SmallCNN().eval(), torch.randn(5, 1, 8, 8), {0: "batch"}),
        "seq": (SequenceModel().eval(), torch.randint(0, 50, (5, 12)), {0: "batch", 1: "time"}),
    }
    for name, (model, example, dynamic) in examples.items():
        arrays[f"{name}.input"] = example.numpy()
        arrays[f"{name}.output"] = export(model, example, name, dynamic)
    atomic_write(os.path.join(HERE, "torch_expected.safetensors"),
                 save(arrays, metadata={"torch": torch.__version__, "opset": "17"}))


if __name__ == "__main__":
    main()
