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

# issue 21: the rest of the layers that real model code uses (PyTorch's names, parameters and state-dict keys)
from . import utils  # noqa: E402 - nn.utils.clip_grad_norm_, parameters_to_vector, ...
from .activation import (CELU, ELU, GLU, SELU, Hardshrink, Hardsigmoid, Hardswish, Hardtanh,  # noqa: E402
                         LeakyReLU, LogSigmoid, Mish, PReLU, ReLU6, SiLU, Softmin, Softplus, Softshrink, Softsign,
                         Tanhshrink, Threshold)
from .conv import Conv1d, Conv3d, ConvTranspose1d, ConvTranspose2d  # noqa: E402
from .pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool1d, AvgPool2d,  # noqa: E402
                      AvgPool3d, MaxPool1d, MaxUnpool2d)
from .attention import MultiheadAttention  # noqa: E402
from .rnn import GRU, LSTM, RNN, LSTMCell  # noqa: E402
from .transformer import (Transformer, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,  # noqa: E402
                          TransformerEncoderLayer)
from .upsampling import PixelShuffle, PixelUnshuffle, Upsample, UpsamplingBilinear2d, UpsamplingNearest2d  # noqa: E402

__all__ += ["AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
            "CELU", "Conv1d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ELU", "GLU", "GRU", "Hardshrink",
            "Hardsigmoid", "Hardswish", "Hardtanh", "LSTM", "LSTMCell", "LeakyReLU", "LogSigmoid", "MaxPool1d",
            "MaxUnpool2d", "Mish", "MultiheadAttention", "PReLU", "PixelShuffle", "PixelUnshuffle", "RNN", "ReLU6",
            "SELU", "SiLU", "Softmin", "Softplus", "Softshrink", "Softsign", "Tanhshrink", "Threshold", "Transformer",
            "TransformerDecoder", "TransformerDecoderLayer", "TransformerEncoder", "TransformerEncoderLayer",
            "Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d", "utils"]
