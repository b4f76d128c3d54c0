"""The JupyterLab side of tinygrad_nb: a jupyter_server extension (read-only REST handlers over the run store and
the cell checkpoint store) and the built Lab extension it ships with (``labextension/``, made from
``extensions/jupyterlab/``).

``pip install tinygrad_nb`` installs the built Lab extension to ``share/jupyter/labextensions/tinygrad-nb-lab`` and a
``jupyter_server_config.d`` file that enables this module, so no Node is needed at install time. See
docs/jupyterlab.md.

The kernel side (:mod:`tinygrad_nb.notebook.lab_comm`) does not depend on this server extension: the Lab extension
in the browser attaches to a kernel's dormant comm itself, so a kernel nobody with the Lab extension looks at (nbclient
in a Lab terminal, nbval, VS Code) never sends a message, whichever server started it.
"""
from __future__ import annotations

from typing import Any

LABEXTENSION_NAME = "tinygrad-nb-lab"  # the npm package name in extensions/jupyterlab/package.json


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "tinygrad_nb.labext"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """For ``jupyter labextension develop``: where the built extension lives inside this package."""
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .handlers import setup_handlers  # noqa: PLC0415 - tornado and jupyter_server only inside a server

    setup_handlers(serverapp.web_app, serverapp.root_dir)
    serverapp.log.info("tinygrad_nb: REST handlers at %stinygrad-nb/api/ (read-only)",
                       serverapp.web_app.settings.get("base_url", "/"))


# the name older jupyter_server / notebook versions look for
load_jupyter_server_extension = _load_jupyter_server_extension
