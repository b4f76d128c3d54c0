"""The REST handlers (all GET, all read-only), under ``<base_url>tinygrad-nb/api/``:

    runs?dir=REL                          the runs of REL/.tinygrad_nb/runs.db, newest first
    runs/series?dir=REL&ids=A,B[&points=N] their metric curves, config and fingerprint, for a comparison
    checkpoints?notebook=REL.ipynb        the commits of that notebook's cell checkpoint store
    checkpoints?store=REL                 ... of the store folder REL (a kernel that ran ``%tg_ckpt dir=``)

Every handler requires an authenticated user (``tornado.web.authenticated``) who is authorized to read contents
(jupyter_server's ``authorized`` with resource "contents", action "read"): these endpoints expose what the contents
API would. Paths are confined to the server's root directory (403 otherwise). Nothing is unpickled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from . import readers


class _Base(APIHandler):
    auth_resource = "contents"  # reading runs and checkpoints is reading files under the root directory

    def initialize(self, root_dir: str) -> None:
        self.root_dir = root_dir

    def _inside(self, name: str, default: str | None = None) -> Path:
        value = self.get_query_argument(name, default)
        if value is None:
            raise web.HTTPError(400, f"missing query parameter {name!r}")
        try:
            return readers.resolve_inside(self.root_dir, value, name)
        except readers.PathRefused as e:
            raise web.HTTPError(403, str(e)) from None

    def _send(self, payload: Any) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish(_dumps(payload))


def _dumps(payload: Any) -> str:
    import json  # noqa: PLC0415

    return json.dumps(payload, allow_nan=False, separators=(",", ":"))


class RunsHandler(_Base):
    @web.authenticated
    @authorized
    def get(self) -> None:
        folder = self._inside("dir", "")
        db = folder / readers.RUNS_DB
        self._send({"dir": self.get_query_argument("dir", ""), "store": str(readers.RUNS_DB),
                    "exists": db.is_file(), "runs": readers.list_runs(db)})


class SeriesHandler(_Base):
    @web.authenticated
    @authorized
    def get(self) -> None:
        from ..track.store import UnknownRunError  # noqa: PLC0415

        folder = self._inside("dir", "")
        ids = [i for i in self.get_query_argument("ids", "").split(",") if i]
        if not ids:
            raise web.HTTPError(400, "ids: name at least one run id (ids=a1b2,c3d4)")
        if len(ids) > readers.MAX_COMPARED:
            raise web.HTTPError(400, f"ids: at most {readers.MAX_COMPARED} runs can be compared, got {len(ids)}")
        try:
            points = int(self.get_query_argument("points", str(readers.MAX_POINTS)))
        except ValueError:
            raise web.HTTPError(400, "points: expected an integer") from None
        try:
            runs = readers.run_series(folder / readers.RUNS_DB, ids, max(2, min(points, readers.MAX_POINTS)))
        except UnknownRunError as e:
            raise web.HTTPError(404, str(e)) from None
        self._send({"runs": runs})


class CheckpointsHandler(_Base):
    @web.authenticated
    @authorized
    def get(self) -> None:
        if self.get_query_argument("store", None) is not None:
            store = self._inside("store")
        else:
            store = readers.checkpoint_dir(self._inside("notebook"))
            try:  # the default store folder is derived, so check it too (a symlinked .tinygrad_nb)
                readers.resolve_inside(self.root_dir, str(store.relative_to(Path(self.root_dir).resolve())))
            except (ValueError, readers.PathRefused) as e:
                raise web.HTTPError(403, f"checkpoint store outside the server's root directory: {e}") from None
        self._send(readers.list_commits(store))


def setup_handlers(web_app: Any, root_dir: str) -> None:
    base = url_path_join(web_app.settings.get("base_url", "/"), "tinygrad-nb", "api")
    args = {"root_dir": str(Path(root_dir).expanduser())}
    web_app.add_handlers(".*$", [(url_path_join(base, "runs"), RunsHandler, args),
                                 (url_path_join(base, "runs", "series"), SeriesHandler, args),
                                 (url_path_join(base, "checkpoints"), CheckpointsHandler, args)])
