"""``tinygrad-nb sweep config.toml``: run the sweep a TOML file describes (see :mod:`tinygrad_nb.sweep.config`).

Prints a line per ended trial and the trial table; exit status 0 when at least one trial finished, 1 when none did,
2 for a config error (the message names file, line and key), 130 after Ctrl-C (finished trials are kept).
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="the sweep's TOML file ([sweep], [space], optional [mlflow])")
    parser.add_argument("--dry-run", action="store_true", help="print the trial configs of a grid or random search "
                        "and stop")


def main(args: argparse.Namespace) -> int:
    from .config import SweepConfigError, load_config  # noqa: PLC0415 - only when the subcommand runs
    from .space import SpaceError  # noqa: PLC0415

    try:
        kwargs = load_config(args.config)
        if args.dry_run:
            from .search import make_search  # noqa: PLC0415

            search = make_search(kwargs.get("search", "grid"), kwargs["space"], kwargs.get("trials"),
                                 kwargs.get("seed", 0), kwargs.get("mode", "min"))
            while (asked := search.ask()) is not None:
                print(f"trial {asked[0]}: {asked[1]}")
            return 0
        from .driver import sweep  # noqa: PLC0415

        result = sweep(kwargs.pop("train_fn"), kwargs.pop("space"), live=None, **kwargs)  # text lines, then the table
    except (SweepConfigError, SpaceError, ValueError, ImportError) as e:
        print(f"tinygrad-nb sweep: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinygrad-nb sweep: interrupted; finished trials are in the run store", file=sys.stderr)
        return 130
    return 0 if any(t.status == "finished" for t in result.trials) else 1
