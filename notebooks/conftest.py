"""nbval's notebook kernels talk to pytest over Unix sockets, each kernel in its own folder, never over TCP ports.

Why: `.ci/run` executes the notebooks in two pytest processes side by side (one per BLAS kernel). jupyter_client
chooses a kernel's five TCP ports by binding probe sockets to port 0 and closing them; the kernel binds those ports
only after its Python has started. Anything else on the machine that opens a socket in between (the other pass's
kernels, a notebook's own loopback clients in 14_serving) can take one of them, and the kernel then exits at start:
every cell of the notebook fails with "Kernel died before replying to kernel_info" (it happened in CI, to notebook 04
under Haswell). A Unix socket is a file; giving every kernel a fresh folder makes a collision impossible.

nbval builds its `KernelManager` itself, with no configuration hook, so the class it uses is replaced here.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nbval.kernel
from jupyter_client.manager import KernelManager
from traitlets import default

if not hasattr(nbval.kernel, "KernelManager"):  # a newer nbval: fail loudly rather than fall back to TCP ports
    raise ImportError("nbval.kernel no longer names KernelManager; notebooks/conftest.py needs updating")

_SOCKET_ROOT = Path(tempfile.mkdtemp(prefix="tgnb-kernels-"))


class UnixSocketKernelManager(KernelManager):
    """A KernelManager whose kernel listens on Unix sockets `<fresh folder>/k-1` ... `k-5`.

    The path is absolute (the kernel runs in the notebook's folder, pytest in the repository root) and short (a Unix
    socket path must fit in 107 bytes).
    """

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"

    @default("ip")
    def _default_ip(self) -> str:
        return str(Path(tempfile.mkdtemp(dir=_SOCKET_ROOT)) / "k")


nbval.kernel.KernelManager = UnixSocketKernelManager


def pytest_unconfigure() -> None:
    """Remove the sockets' folders once the run is over (the kernels have been shut down by then)."""
    shutil.rmtree(_SOCKET_ROOT, ignore_errors=True)
