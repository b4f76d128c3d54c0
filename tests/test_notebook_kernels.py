"""The notebooks' kernels (started by nbval) listen on Unix sockets in folders of their own, never on TCP ports.

notebooks/conftest.py sets this up so that the two notebook passes `.ci/run` runs side by side can never take each
other's ports; this test starts kernels the way nbval does and checks where they really listen.
"""
from __future__ import annotations

import importlib.util
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

nbval_kernel = pytest.importorskip("nbval.kernel")

NOTEBOOKS_CONFTEST = Path(__file__).resolve().parent.parent / "notebooks" / "conftest.py"


def _load_notebooks_conftest() -> Any:
    spec = importlib.util.spec_from_file_location("tgnb_notebooks_conftest", NOTEBOOKS_CONFTEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nbval_kernels_listen_on_their_own_unix_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Loading the conftest again replaces nbval's KernelManager with a class whose socket folder this test removes;
    # the monkeypatch puts back the one the notebooks use (or nbval's own) afterwards.
    monkeypatch.setattr(nbval_kernel, "KernelManager", nbval_kernel.KernelManager)
    conftest = _load_notebooks_conftest()
    start = lambda _: nbval_kernel.RunningKernel(nbval_kernel.CURRENT_ENV_KERNEL_NAME, cwd=str(tmp_path))
    kernels = []
    try:
        with ThreadPoolExecutor(2) as pool:  # two at once, as the two CI passes start theirs
            kernels = list(pool.map(start, range(2)))
        infos = [kernel.km.get_connection_info() for kernel in kernels]
        for info in infos:
            assert info["transport"] == "ipc"
            assert Path(info["ip"]).is_absolute()  # the kernel runs in the notebook's folder, the client elsewhere
            for port_name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
                socket_file = Path(f"{info['ip']}-{info[port_name]}")
                assert stat.S_ISSOCK(socket_file.stat().st_mode), socket_file
        assert Path(infos[0]["ip"]).parent != Path(infos[1]["ip"]).parent

        for number, kernel in enumerate(kernels):  # and each one really answers over them
            msg_id = kernel.execute_cell_input(f"print({number} * 7)", allow_stdin=False)
            outputs = []
            while True:
                message = kernel.get_message(stream="iopub", timeout=30)
                if message["parent_header"].get("msg_id") != msg_id:
                    continue
                if message["msg_type"] == "stream":
                    outputs.append(message["content"]["text"])
                if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                    break
            assert "".join(outputs) == f"{number * 7}\n"
    finally:
        for kernel in kernels:
            kernel.stop()
        shutil.rmtree(conftest._SOCKET_ROOT)
