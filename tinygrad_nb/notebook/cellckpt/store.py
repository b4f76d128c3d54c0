"""The on-disk store of cell checkpoints: content-addressed blobs in safetensors packs, one JSON manifest per commit.

Layout under ``.tinygrad_nb/checkpoints/<notebook>/``::

    packs/p000012.safetensors   the blobs first written by commit 12, each a 1-D uint8 tensor named by the
                                xxh3-128 hex digest of its raw bytes (dtype and shape live in the manifests that
                                use the blob); ``__metadata__["codecs"]`` names the ones stored compressed
    commits/c000012.json.gz     one gzip-compressed manifest per commit: a line of JSON (``format_version``, cell,
                                RNG states, namespace, ``skeleton_sha256`` and ``blobs``: every blob the commit
                                needs, with its pack), then a line holding its signature (:mod:`.trust`)

A blob is written once: a later commit whose tensor hashes to a known key only names it. The RNG states of numpy and
Python (~7 KB of JSON each, before and after every cell, and rarely changed by a cell) are blobs too: a manifest
names them ``{"$blob": key}``, so an unchanged state costs one key. Format 1 stores (plain ``.json`` manifests with
the RNG states inline) and format 2 ones (no signature, no ``skeleton_sha256``) are still read, but not trusted until
:meth:`Store.trust` re-signs them.

Every blob is checked against its key when it is read (the xxh3-128 of its raw bytes), and a skeleton also against
the SHA-256 its signed manifest names, before it is unpickled: a damaged or swapped pack raises
:class:`~.trust.CheckpointStoreError` naming the pack and the blob, never restores wrong bytes.

A blob is stored compressed when that pays: its bytes are byte-shuffled by item size (the first bytes of every
element together, then the second bytes, ...: floats with few distinct values, zeros after a ReLU, small integers,
make long runs) and zlib-compressed at level 1, if compressing the first 64 KB saves at least a fifth and the whole
at least a tenth. Fresh random weights are not compressible, so they are stored raw and cost only the sample.

Garbage collection keeps the newest commits (and the current one) within the byte budget and deletes, or repacks,
packs whose blobs no kept commit reaches. Every file goes through :func:`tinygrad_nb.io.atomic_open` (not fsynced: this is a cache).
"""
from __future__ import annotations

import functools
import gzip
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from ...checkpoint import read_safetensors, write_safetensors
from ...io import atomic_open, atomic_write
from . import trust
from .trust import CheckpointStoreError, CheckpointTrustError

FORMAT_VERSION = 3
FORMAT_NAME = "tinygrad_nb.cell_checkpoint"
DEFAULT_BUDGET = 2 * 1024**3
RNG_INLINE_LIMIT = 256  # a generator's state longer than this (as JSON) goes to a blob
COMPRESS_SAMPLE = 1 << 16  # bytes compressed first, to see whether compressing the rest pays


def blob_key(data: np.ndarray) -> str:
    """The xxh3-128 hex digest of a C-contiguous array's raw bytes."""
    return xxhash.xxh3_128_hexdigest(memoryview(data.reshape(-1).view(np.uint8)))


def encode_rng(state: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    """``(manifest value, {key: blob})`` for RNG states: each generator's state longer than ``RNG_INLINE_LIMIT`` as
    JSON becomes a zlib-compressed blob named ``{"$blob": key}``; short ones (ours: seed and offset) stay inline."""
    if state is None:
        return None, {}
    out: dict[str, Any] = {}
    blobs: dict[str, np.ndarray] = {}
    for name, value in state.items():
        text = json.dumps(value, separators=(",", ":"))
        if len(text) <= RNG_INLINE_LIMIT:
            out[name] = value
            continue
        key, data = _state_blob(text)
        blobs[key] = data
        out[name] = {"$blob": key}
    return out, blobs


@functools.lru_cache(maxsize=16)
def _state_blob(text: str) -> tuple[str, np.ndarray]:
    """A state's blob, remembered: most cells leave numpy's and Python's RNG alone, so the same text comes back."""
    data = np.frombuffer(zlib.compress(text.encode(), 6), dtype=np.uint8)
    return blob_key(data), data


def encode_blob(data: np.ndarray, itemsize: int = 1) -> tuple[np.ndarray, str | None]:
    """``(bytes to store, codec)``: zlib over the bytes shuffled by ``itemsize`` when that saves enough, with codec
    ``"zlib:<itemsize>"``; else ``(data, None)``."""
    if itemsize < 1 or data.size % itemsize:
        itemsize = 1
    if data.size < 512:
        return data, None
    head = data[:COMPRESS_SAMPLE - COMPRESS_SAMPLE % itemsize]
    if len(zlib.compress(_shuffle(head, itemsize), 1)) > 0.8 * head.size:
        return data, None
    packed = zlib.compress(_shuffle(data, itemsize), 1)
    if len(packed) > 0.9 * data.size:
        return data, None
    return np.frombuffer(packed, dtype=np.uint8), f"zlib:{itemsize}"


def decode_blob(stored: np.ndarray, codec: str | None) -> np.ndarray:
    """The raw bytes of a blob stored by :func:`encode_blob` (``zlib.error`` when the stored bytes are damaged)."""
    if codec is None:
        return stored
    name, _, size = codec.partition(":")
    if name != "zlib" or not size.isdigit() or int(size) < 1:
        raise ValueError(f"unknown blob codec {codec!r} (written by a newer tinygrad_nb?)")
    data = np.frombuffer(zlib.decompress(memoryview(stored)), dtype=np.uint8)
    itemsize = int(size)
    return data if itemsize == 1 else np.ascontiguousarray(data.reshape(itemsize, -1).T).reshape(-1)


def _shuffle(data: np.ndarray, itemsize: int) -> np.ndarray:
    return data if itemsize == 1 else np.ascontiguousarray(data.reshape(-1, itemsize).T).reshape(-1)


def raw_bytes(array: np.ndarray) -> np.ndarray:
    """``array``'s bytes as a 1-D uint8 array (a view when it is C-contiguous)."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


NOT_WRITTEN = "its manifest has not been written (yet)"


@dataclass
class Commit:
    """One recorded cell: what its manifest holds (the ``namespace`` and ``tensors`` tables decoded lazily)."""

    seq: int
    manifest: dict[str, Any]
    path: Path
    size: int = 0  # bytes of the blobs this commit wrote (its own pack)
    untrusted: str | None = NOT_WRITTEN  # why it is not authenticated as written by this user; None when it is

    @property
    def trusted(self) -> bool:
        """True when this user's key signed the manifest (or this process wrote it)."""
        return self.untrusted is None

    @property
    def parent(self) -> int | None:
        return self.manifest.get("parent")

    @property
    def execution_count(self) -> int | None:
        return self.manifest["cell"].get("execution_count")


@dataclass
class Store:
    """Packs and manifests of one notebook; an in-memory index of which pack holds which blob."""

    root: Path
    budget: int = DEFAULT_BUDGET
    commits: dict[int, Commit] = field(default_factory=dict)
    where: dict[str, int] = field(default_factory=dict)  # blob key -> seq of the pack holding it
    _packs: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # open (mmapped) packs
    _codecs: dict[int, dict[str, str]] = field(default_factory=dict)  # pack -> {key: codec} of its compressed blobs

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        (self.root / "commits").mkdir(parents=True, exist_ok=True)
        (self.root / "packs").mkdir(parents=True, exist_ok=True)
        paths = list((self.root / "commits").glob("c*.json")) + list((self.root / "commits").glob("c*.json.gz"))
        for path in sorted(paths):
            try:
                body, signature = _read_manifest_file(path)
                manifest = json.loads(body)
                if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
                    continue
                seq = int(manifest["seq"])
                commit = Commit(seq, manifest, path, int(manifest.get("pack_bytes", 0)))
                blobs = {key: int(info["pack"]) for key, info in manifest.get("blobs", {}).items()}
            except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
                continue  # a damaged manifest is skipped, not fatal (gzip raises BadGzipFile, an OSError, or EOFError)
            commit.untrusted = trust.verify(body, signature)
            self.commits[seq] = commit
            if commit.trusted:  # a foreign manifest's claims about which pack holds a blob are not used
                for key, pack in blobs.items():
                    self.where.setdefault(key, pack)

    # -- writing -------------------------------------------------------------------------------------------------
    def next_seq(self) -> int:
        return max(self.commits, default=0) + 1

    def pack_path(self, seq: int) -> Path:
        return self.root / "packs" / f"p{seq:06d}.safetensors"

    def manifest_path(self, seq: int) -> Path:
        return self.root / "commits" / f"c{seq:06d}.json.gz"

    def write_commit(self, seq: int, manifest: dict[str, Any], new_blobs: dict[str, np.ndarray],
                     itemsizes: dict[str, int] | None = None) -> Commit:
        """Write ``new_blobs`` (key -> uint8 bytes; ``itemsizes``: the element size of the arrays they hold, for
        :func:`encode_blob`) as commit ``seq``'s pack, then its manifest."""
        stored: dict[str, np.ndarray] = {}
        codecs: dict[str, str] = {}
        for key, data in new_blobs.items():
            if key in self.where:
                continue
            stored[key], codec = encode_blob(data, (itemsizes or {}).get(key, 1))
            if codec is not None:
                codecs[key] = codec
        size = sum(int(v.nbytes) for v in stored.values())
        if stored:
            self._write_pack(seq, stored, codecs)
            for key in stored:
                self.where[key] = seq
        for key, info in manifest["blobs"].items():
            info["pack"] = self.where[key]
        manifest.update(format=FORMAT_NAME, format_version=FORMAT_VERSION, seq=seq, pack_bytes=size)
        path = self.manifest_path(seq)
        self._write_manifest(path, manifest)
        commit = Commit(seq, manifest, path, size, untrusted=None)
        self.commits[seq] = commit
        return commit

    @staticmethod
    def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
        """The manifest's JSON on one line, then its signature (see :mod:`.trust`); gzipped unless ``.json``."""
        body = json.dumps(manifest, separators=(",", ":")).encode()  # no newline: escaped inside strings
        data = body + b"\n" + trust.sign(body) + b"\n"
        atomic_write(path, data if path.suffix == ".json" else gzip.compress(data, compresslevel=6, mtime=0),
                     durable=False)

    def _write_pack(self, seq: int, stored: dict[str, np.ndarray], codecs: dict[str, str]) -> None:
        metadata = {"format": FORMAT_NAME, "commit": str(seq)}
        if codecs:
            metadata["codecs"] = json.dumps(codecs, sort_keys=True)
        with atomic_open(self.pack_path(seq), durable=False) as f:
            write_safetensors(f, stored, metadata)
        self._packs.pop(seq, None)
        self._codecs.pop(seq, None)

    def _open_pack(self, seq: int, use_mmap: bool = True) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        metadata, pack = read_safetensors(self.pack_path(seq), use_mmap=use_mmap)
        return pack, json.loads(metadata.get("codecs", "{}"))

    # -- reading -------------------------------------------------------------------------------------------------
    def read_blob(self, key: str) -> np.ndarray:
        """The raw bytes of blob ``key``, checked against the key (for a blob stored raw, a read-only-in-spirit view
        into a copy-on-write map of its pack; for a compressed one, a new array).

        Raises :class:`CheckpointStoreError` naming the pack and the blob when it is not stored, its pack is missing
        or unreadable, or its bytes do not hash to ``key`` (a flipped bit, a pack swapped for another).
        """
        seq = self.where.get(key)
        if seq is None:
            raise CheckpointStoreError(f"cell checkpoint store {self.root}: blob {key} is not stored (garbage "
                                       "collected, or named only by commits that are not trusted?)")
        blob = f"blob {key} in {self.pack_path(seq).name}"
        try:
            pack = self._packs.get(seq)
            if pack is None:
                pack, self._codecs[seq] = self._open_pack(seq)
                self._packs[seq] = pack
            stored = pack[key]
        except FileNotFoundError:
            raise CheckpointStoreError(f"cell checkpoint store {self.root}: {blob}: the pack file is missing"
                                       ) from None
        except KeyError:
            raise CheckpointStoreError(f"cell checkpoint store {self.root}: {blob}: the pack does not hold it"
                                       ) from None
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointStoreError(f"cell checkpoint store {self.root}: {blob}: the pack file is damaged "
                                       f"({type(e).__name__}: {e})") from None
        try:
            data = decode_blob(stored, self._codecs[seq].get(key))
        except (zlib.error, ValueError) as e:
            raise CheckpointStoreError(f"cell checkpoint store {self.root}: {blob} is damaged ({e})") from None
        if blob_key(data) != key:
            raise CheckpointStoreError(f"cell checkpoint store {self.root}: {blob} is damaged: its bytes do not "
                                       "hash to its key")
        return data

    def rng(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """A manifest's ``rng_before``/``rng_after`` with every ``{"$blob": key}`` read back (see :func:`encode_rng`);
        :class:`CheckpointStoreError` when one cannot be read back."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise CheckpointStoreError(f"cell checkpoint store {self.root}: a manifest's RNG states are damaged "
                                       f"(a {type(value).__name__}, not a table)")
        out = {}
        for name, state in value.items():
            if isinstance(state, dict) and set(state) == {"$blob"}:
                key = state["$blob"]
                data = self.read_blob(key)
                try:
                    state = json.loads(zlib.decompress(data.tobytes()))
                except (zlib.error, ValueError) as e:
                    raise CheckpointStoreError(f"cell checkpoint store {self.root}: the {name} RNG state (blob {key} "
                                               f"in {self.pack_path(self.where[key]).name}) is damaged ({e})"
                                               ) from None
            out[name] = state
        return out

    def array(self, key: str, dtype: str, shape: list[int]) -> np.ndarray:
        """Blob ``key`` as a fresh (owned, writable) array of ``dtype`` and ``shape``."""
        data = self.read_blob(key)
        try:
            return data.view(np.dtype(dtype)).reshape(shape).copy()
        except (TypeError, ValueError) as e:
            raise CheckpointStoreError(f"cell checkpoint store {self.root}: blob {key} in "
                                       f"{self.pack_path(self.where[key]).name} ({data.nbytes} bytes) is not a "
                                       f"{dtype} array of shape {shape} ({e})") from None

    # -- trust -----------------------------------------------------------------------------------------------------
    def require_trusted(self, commit: Commit) -> None:
        """Raise :class:`CheckpointTrustError` unless ``commit`` is authenticated as written by this user."""
        if commit.untrusted is not None:
            raise CheckpointTrustError(
                f"commit #{commit.seq} in {self.root} is not trusted: {commit.untrusted}. Its variables are pickles "
                "and its cell is code: restoring or replaying it would run that code. If you trust where this store "
                "came from, run %tg_ckpt trust (it signs the store's commits with your key: you accept that their "
                "code may run); else record elsewhere (%tg_ckpt dir=PATH)")

    def skeleton(self, commit: Commit) -> bytes:
        """The skeleton pickle of a trusted ``commit``, checked against its signed SHA-256: the only bytes that may
        be unpickled (:class:`CheckpointTrustError` for a commit that is not trusted)."""
        self.require_trusted(commit)
        m = commit.manifest
        try:
            key, digest = m["skeleton"], m["skeleton_sha256"]
        except KeyError as e:
            raise CheckpointStoreError(f"cell checkpoint store {self.root}: the manifest of commit #{commit.seq} "
                                       f"names no {e.args[0]}") from None
        data = self.read_blob(key).tobytes()
        if trust.skeleton_digest(data) != digest:
            raise CheckpointStoreError(f"cell checkpoint store {self.root}: blob {key} in "
                                       f"{self.pack_path(self.where[key]).name} (the skeleton of commit "
                                       f"#{commit.seq}) does not match the SHA-256 its signed manifest names")
        return data

    def untrusted(self) -> list[Commit]:
        """The commits not authenticated as written by this user, oldest first."""
        return [self.commits[seq] for seq in sorted(self.commits) if self.commits[seq].untrusted is not None]

    def trust(self) -> tuple[list[int], dict[int, str]]:
        """Sign every commit that is not trusted with this user's key, after naming its skeleton's SHA-256 in its
        manifest: the user accepts that their pickles and cells may run. Nothing is unpickled here.

        Returns ``(seqs now trusted, {seq: why it could not be})`` (a commit whose skeleton blob is missing or does
        not match its key cannot be vouched for).
        """
        done: list[int] = []
        refused: dict[int, str] = {}
        for commit in self.untrusted():
            if commit.untrusted == NOT_WRITTEN:
                continue  # this session's own commit whose write failed: nothing on disk to trust
            for key, info in commit.manifest.get("blobs", {}).items():  # its blobs, as it names them
                self.where.setdefault(key, int(info["pack"]))
            try:
                skeleton = self.read_blob(commit.manifest["skeleton"])
            except (CheckpointStoreError, KeyError, TypeError) as e:
                refused[commit.seq] = f"its skeleton cannot be read ({e})"
                continue
            manifest = dict(commit.manifest, skeleton_sha256=trust.skeleton_digest(skeleton.tobytes()))
            self._write_manifest(commit.path, manifest)
            commit.manifest, commit.untrusted = manifest, None
            done.append(commit.seq)
        return done, refused

    # -- size and garbage collection -------------------------------------------------------------------------------
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.root / "packs").glob("p*.safetensors"))

    def gc(self, keep: set[int]) -> dict[str, int]:
        """Drop the oldest commits (never those in ``keep``) until the packs fit the budget; remove unreachable data.

        Reachability: a blob is live when a remaining commit names it. A pack with no live blob is deleted; a pack
        with some is rewritten with only those. Returns counts of what was removed.
        """
        dropped = 0
        packs_before = len(list((self.root / "packs").glob("p*.safetensors")))
        total = self.total_bytes()
        for seq in sorted(self.commits):
            if total <= self.budget:
                break
            if seq in keep:
                continue
            commit = self.commits.pop(seq)
            commit.path.unlink(missing_ok=True)
            dropped += 1
            total = self._collect()
        removed = packs_before - len(list((self.root / "packs").glob("p*.safetensors")))
        return {"commits_dropped": dropped, "packs_removed": removed, "bytes": total}

    def _collect(self) -> int:
        live: dict[int, set[str]] = {}
        for commit in self.commits.values():
            for key, info in commit.manifest.get("blobs", {}).items():
                live.setdefault(info["pack"], set()).add(key)
        for path in list((self.root / "packs").glob("p*.safetensors")):
            seq = int(path.stem[1:])
            keys = live.get(seq, set())
            self._packs.pop(seq, None)
            self._codecs.pop(seq, None)
            if not keys:
                path.unlink(missing_ok=True)
                for key in [k for k, s in self.where.items() if s == seq]:
                    del self.where[key]
                continue
            arrays, codecs = self._open_pack(seq, use_mmap=False)
            if set(arrays) != keys:  # repack with the live blobs only, as they are stored
                self._write_pack(seq, {k: arrays[k] for k in keys}, {k: c for k, c in codecs.items() if k in keys})
                for key in set(arrays) - keys:
                    self.where.pop(key, None)
        return self.total_bytes()

    def close(self) -> None:
        self._packs.clear()
        self._codecs.clear()


def _read_manifest_file(path: Path) -> tuple[bytes, bytes | None]:
    """``(manifest JSON, signature line or None)`` of a manifest file (gzipped, or plain ``.json``)."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    body, _, rest = data.strip().partition(b"\n")
    return body, rest.strip() or None


def notebook_name(user_ns: dict[str, Any]) -> str:
    """The notebook's name (file stem) when the session knows it, else ``"session"``."""
    name = user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME") or ""
    stem = Path(str(name)).stem if name else ""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return safe or "session"
