"""Print the OpenBLAS kernels (OPENBLAS_CORETYPE values) that CI runs the notebooks under, besides the default one.

A candidate counts when, in a fresh process with OPENBLAS_CORETYPE set to it, threadpoolctl reports that very kernel
in use (so the setting took effect), a matrix product runs (the CPU has the kernel's instructions), and it is not the
kernel of the main test run (already covered). Prints up to ``--count`` names.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

CANDIDATES = ["Haswell", "SkylakeX", "Sandybridge", "Nehalem"]

PROBE = """
import numpy as np
from threadpoolctl import threadpool_info
np.ones((64, 64), dtype=np.float32) @ np.ones((64, 64), dtype=np.float32)
print(",".join(str(i.get("architecture")) for i in threadpool_info() if i.get("user_api") == "blas"))
"""


def kernel_in_use(coretype: str | None) -> str | None:
    env = dict(os.environ)  # None: the kernel of the main test run, whatever this machine's environment sets
    if coretype is not None:
        env["OPENBLAS_CORETYPE"] = coretype
    probe = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    return probe.stdout.strip().lower() if probe.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2)
    count = parser.parse_args().count
    default = kernel_in_use(None)
    chosen = [k for k in CANDIDATES if k.lower() != default and kernel_in_use(k) == k.lower()][:count]
    print(f"default BLAS kernel: {default}; notebooks also run under: {' '.join(chosen) or 'none'}", file=sys.stderr)
    print(" ".join(chosen))


if __name__ == "__main__":
    main()
