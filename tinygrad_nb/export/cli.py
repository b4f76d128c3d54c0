"""``tinygrad-nb export CKPT --model module:Class --to model.onnx``: a checkpoint to a validated ONNX file.

The model class is imported and built without arguments (``--kwargs '{"hidden": 64}'`` passes some), the
checkpoint's model state is loaded into it (hashes verified), and it is exported with an example input of
``--example-shape`` (default: (1, in_features) of the first Linear layer), then validated.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by tg.save(path, model=...)")
    parser.add_argument("--model", required=True, metavar="MODULE:CLASS", help="the model class, e.g. mypkg.nets:MLP")
    parser.add_argument("--to", required=True, metavar="PATH", help="the ONNX file to write")
    parser.add_argument("--kwargs", default="{}", help="JSON keyword arguments for the model class")
    parser.add_argument("--example-shape", default=None, help="the example input's shape, e.g. 1,784 or 1,1,28,28")
    parser.add_argument("--dtype", default="float32", help="the example input's dtype (float32, int64, ...)")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--fixed-batch", action="store_true", help="keep the example's batch size in the file")
    parser.add_argument("--no-validate", action="store_true", help="skip the checker and the runtime comparison")


def model_class(spec: str) -> Any:
    """``module:Class`` (or ``module.Class``) -> the class."""
    module_name, sep, name = spec.partition(":")
    if not sep:
        module_name, _, name = spec.rpartition(".")
    if not module_name or not name:
        raise ValueError(f"--model must look like module:Class, got {spec!r}")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, name)
    except AttributeError:
        raise ValueError(f"--model: module {module_name!r} has no {name!r}") from None


def example_shape(model: Any, text: str | None) -> tuple[int, ...]:
    if text:
        return tuple(int(n) for n in text.replace("x", ",").split(",") if n.strip())
    from ..nn import Linear  # noqa: PLC0415

    first = next((m for m in model.modules() if isinstance(m, Linear)), None)
    if first is None:
        raise ValueError("pass --example-shape: the model's first layer is not a Linear layer, so the input shape "
                         "cannot be guessed")
    return (1, first.in_features)


def main(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415

    from .. import checkpoint  # noqa: PLC0415
    from ..tensor import Tensor  # noqa: PLC0415
    from . import ExportError, onnx  # noqa: PLC0415

    try:
        model = model_class(args.model)(**json.loads(args.kwargs))
        checkpoint.load(args.checkpoint, model=model, restore_rng=False)
        shape = example_shape(model, args.example_shape)
        rng = np.random.default_rng(0)
        if np.dtype(args.dtype).kind in "iu":
            example = np.zeros(shape, dtype=args.dtype)
        else:
            example = rng.standard_normal(shape).astype(args.dtype)
        result = onnx(model, Tensor(example), args.to, opset=args.opset, dynamic_batch=not args.fixed_batch,
                      validate=not args.no_validate)
    except (ExportError, ValueError, ImportError, checkpoint.CheckpointError) as e:
        print(f"tinygrad-nb export: {e}", file=sys.stderr)
        return 1
    print(f"wrote {result.path}: {len(result.model.graph.node)} nodes, opset {args.opset}"
          + ("" if result.validation is None else ", validated"))
    return 0
