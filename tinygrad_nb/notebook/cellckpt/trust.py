"""Who wrote a cell checkpoint: a per-user secret key, and the HMAC-SHA256 signature of every commit's manifest.

A commit's skeleton is a pickle, and unpickling runs code; a commit's cell source is code too (``%tg_replay`` runs
it). A store is a folder next to the notebook, so it travels with it (a zip, a shared folder, a repository). Like
Jupyter's notebook trust, a commit is used only when this user wrote it: its manifest is signed with a secret key
kept outside any notebook folder, and the manifest names the SHA-256 of the skeleton's bytes, so the signature
covers the pickle too (see docs/cell_checkpoints.md, "Trust and integrity").

The key (32 random bytes) lives in ``$TINYGRAD_NB_SECRET_FILE`` when that is set, else in
``$XDG_DATA_HOME/tinygrad_nb/ckpt_secret``, else ``~/.local/share/tinygrad_nb/ckpt_secret``. It is created on first
use, readable by this user only (mode 0600), written atomically and never replaced: two processes creating it at
once agree on the one that got there first.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any

from ...io import atomic_write

SECRET_ENV = "TINYGRAD_NB_SECRET_FILE"
KEY_BYTES = 32
ALGORITHM = "hmac-sha256"
_DOMAIN = b"tinygrad_nb.cell_checkpoint manifest\n"  # signatures made here mean nothing anywhere else

_keys: dict[Path, bytes] = {}
_lock = threading.Lock()


class CheckpointStoreError(ValueError):
    """A cell checkpoint store cannot give what was asked: a blob that is missing or does not match its key, a
    damaged manifest or RNG state. The message names the store, the pack file and the blob."""


class CheckpointTrustError(CheckpointStoreError):
    """A commit that is not authenticated as written by this user: it is never unpickled nor replayed."""


def secret_path() -> Path:
    """Where this user's key lives (see the module docstring)."""
    explicit = os.environ.get(SECRET_ENV)
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data_home) / "tinygrad_nb" / "ckpt_secret"


def secret_key() -> bytes:
    """This user's key, created (atomically, mode 0600) the first time it is needed."""
    path = secret_path()
    with _lock:
        key = _keys.get(path)
        if key is None:
            key = _keys[path] = _read_or_create(path)
        return key


def _read_or_create(path: Path) -> bytes:
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    candidate = path.with_name(f".{path.name}.{secrets.token_hex(6)}.new")
    atomic_write(candidate, secrets.token_bytes(KEY_BYTES))  # atomic_open creates files with mode 0600
    try:
        os.link(candidate, path)  # never replaces: another process's key, made a moment ago, wins
    except FileExistsError:
        pass
    except OSError:  # a filesystem without hard links: a rename (which may replace a key made a moment ago)
        if not path.exists():
            os.replace(candidate, path)
    finally:
        candidate.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) < 16:
        raise CheckpointTrustError(f"the cell checkpoint key {path} holds {len(key)} bytes, too few to be a key: "
                                   "remove it (a new one is made, and your stores must then be trusted again)")
    return key


def key_id(key: bytes) -> str:
    """A short public name of a key (which key signed a manifest, for the messages); reveals nothing of it."""
    return hashlib.sha256(b"tinygrad_nb key id\n" + key).hexdigest()[:16]


def sign(body: bytes) -> bytes:
    """The signature line that follows a manifest's JSON ``body`` in its file."""
    key = secret_key()
    mac = hmac.new(key, _DOMAIN + body, hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"alg": ALGORITHM, "key": key_id(key), "mac": mac}},
                      separators=(",", ":")).encode()


def verify(body: bytes, line: bytes | None) -> str | None:
    """None when ``line`` is this user's valid signature of ``body``; else why not (for the error message)."""
    if not line:
        return "it is not signed (copied from elsewhere, or written before tinygrad_nb signed its checkpoints)"
    try:
        signature: Any = json.loads(line)["signature"]
        alg, who, mac = signature["alg"], signature["key"], signature["mac"]
    except (ValueError, KeyError, TypeError):
        return "its signature line is damaged"
    key = secret_key()
    if alg != ALGORITHM or not isinstance(mac, str):
        return f"it is signed with an unknown method {alg!r}"
    expected = hmac.new(key, _DOMAIN + body, hashlib.sha256).hexdigest()
    if hmac.compare_digest(expected, mac):
        return None
    if who != key_id(key):
        return "it was signed with another user's key (or before your key was replaced)"
    return "its signature does not match its manifest (the manifest was changed after it was written)"


def skeleton_digest(skeleton: bytes | memoryview) -> str:
    """The SHA-256 hex digest of a skeleton's bytes, as a signed manifest names it (``skeleton_sha256``)."""
    return hashlib.sha256(skeleton).hexdigest()
