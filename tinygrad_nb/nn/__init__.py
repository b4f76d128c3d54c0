"""Neural networks: ``Module`` and ``Parameter``, layers, losses, ``init`` and ``functional`` (PyTorch's names).

    import tinygrad_nb as tg
    from tinygrad_nb import nn
    from tinygrad_nb.nn import functional as F

    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    loss = F.cross_entropy(model(x), y)
    loss.backward()

See docs/nn.md for a guide.
"""
from . import functional, init
from .activation import GELU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .container import ModuleDict, ModuleList, Sequential
from .conv import Conv2d, MaxPool2d
from .dropout import Dropout
from .linear import Flatten, Identity, Linear
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from .module import IncompatibleKeys, Module, StateDictKeyError
from .normalization import BatchNorm1d, LayerNorm
from .parameter import Parameter
from .rnn import GRUCell, RNNCell
from .sparse import Embedding

__all__ = ["BCEWithLogitsLoss", "BatchNorm1d", "Conv2d", "CrossEntropyLoss", "Dropout", "Embedding", "Flatten",
           "GELU", "GRUCell", "Identity", "IncompatibleKeys", "L1Loss", "LayerNorm", "Linear", "LogSoftmax",
           "MSELoss", "MaxPool2d", "Module", "ModuleDict", "ModuleList", "NLLLoss", "Parameter", "RNNCell", "ReLU",
           "Sequential", "Sigmoid", "Softmax", "StateDictKeyError", "Tanh", "functional", "init"]
