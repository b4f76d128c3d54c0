"""The JupyterLab side of tinygrad_nb: a jupyter_server extension (read-only REST handlers over the run store and
the cell checkpoint store) and the built Lab extension it ships with (``labextension/``, made from
``extensions/jupyterlab/``).

``pip install tinygrad_nb`` installs the built Lab extension to ``share/jupyter/labextensions/tinygrad-nb-lab`` and a
``jupyter_server_config.d`` file that enables this module, so no Node is needed at install time. See
docs/jupyterlab.md.

Loading the server extension also sets ``TINYGRAD_NB_LAB_COMM=1`` in the server's environment, which every kernel it
starts inherits: only then does the kernel side (:mod:`tinygrad_nb.notebook.lab_comm`) open its comm to the Lab
extension. Kernels started any other way (nbclient, nbval, VS Code, a plain ``jupyter notebook`` without this
package) never send a message.
"""
from __future__ import annotations

import os
from typing import Any

COMM_ENV = "TINYGRAD_NB_LAB_COMM"  # set in the server's environment: kernels it starts may talk to the Lab extension
LABEXTENSION_NAME = "tinygrad-nb-lab"  # the npm package name in extensions/jupyterlab/package.json


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "tinygrad_nb.labext"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """For ``jupyter labextension develop``: where the built extension lives inside this package."""
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .handlers import setup_handlers  # noqa: PLC0415 - tornado and jupyter_server only inside a server

    setup_handlers(serverapp.web_app, serverapp.root_dir)
    os.environ[COMM_ENV] = "1"
    serverapp.log.info("tinygrad_nb: REST handlers at %stinygrad-nb/api/ (read-only); kernels may open the Lab comm",
                       serverapp.web_app.settings.get("base_url", "/"))


# the name older jupyter_server / notebook versions look for
load_jupyter_server_extension = _load_jupyter_server_extension
