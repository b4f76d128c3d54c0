"""Builds the plugin's shared library with the system C compiler (through setuptools' Extension machinery).

The library is a plain C shared object exporting ``tgnb_plugin_init`` (not a Python extension module: tinygrad_nb
opens it with ctypes). The header comes from ``../c_abi`` (this folder sits in tinygrad_nb's source tree) or from
``$TGNB_PLUGIN_INCLUDE``. Build and install with ``pip install --no-build-isolation extensions/tgnb_fused_ops``.
"""
import os
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
INCLUDE = os.environ.get("TGNB_PLUGIN_INCLUDE") or str(HERE.parent / "c_abi")
if not (Path(INCLUDE) / "tgnb_plugin.h").is_file():
    raise SystemExit(f"tgnb_plugin.h not found in {INCLUDE}; set TGNB_PLUGIN_INCLUDE to the folder that holds it")

setup(
    ext_modules=[
        Extension(
            "tgnb_fused_ops._fused_ops",
            sources=["src/tgnb_fused_ops/fused_ops.c"],
            include_dirs=[INCLUDE],
            extra_compile_args=["-std=c99", "-O3", "-fvisibility=hidden"],
            libraries=["m"],
        )
    ],
)
