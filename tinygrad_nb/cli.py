"""The ``tinygrad-nb`` command.

Each subcommand lives in its own module with two functions, ``add_arguments(parser)`` and ``main(args) -> int``;
this table maps names to modules, which are imported only when their subcommand runs.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "demo": ("tinygrad_nb.demo", "train a small MLP on the bundled 8x8 digits with a live progress line"),
    "train": ("tinygrad_nb.data.train", "train an MLP classifier or regressor on any CSV file"),
    "runs": ("tinygrad_nb.track.cli", "list, show and compare tracked runs"),
    "export": ("tinygrad_nb.export.cli", "export a checkpoint to a validated ONNX file"),
    "predict": ("tinygrad_nb.runtime.cli", "run every row of a CSV file through an ONNX model"),
    "serve": ("tinygrad_nb.serve.cli", "serve an ONNX model over HTTP under memory and latency limits"),
    "sweep": ("tinygrad_nb.sweep.cli", "run a grid or search of training trials from a TOML file (local or Ray)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tinygrad-nb", description="tinygrad_nb: notebook-native deep learning")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("tinygrad_nb"):
                continue  # a subcommand whose module is not written yet is simply not offered
            raise
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(modules[args.command].main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
