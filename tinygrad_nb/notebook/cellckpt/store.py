"""The on-disk store of cell checkpoints: content-addressed blobs in safetensors packs, one JSON manifest per commit.

Layout under ``.tinygrad_nb/checkpoints/<notebook>/``::

    packs/p000012.safetensors   the blobs first written by commit 12, each a 1-D uint8 tensor named by the
                                xxh3-128 hex digest of its raw bytes (dtype and shape live in the manifests that
                                use the blob); ``__metadata__["codecs"]`` names the ones stored compressed
    commits/c000012.json.gz     one gzip-compressed JSON manifest per commit (``format_version``, cell, RNG
                                states, namespace, and ``blobs``: every blob the commit needs, with its pack)

A blob is written once: a later commit whose tensor hashes to a known key only names it. The RNG states of numpy and
Python (~7 KB of JSON each, before and after every cell, and rarely changed by a cell) are blobs too: a manifest
names them ``{"$blob": key}``, so an unchanged state costs one key. Format 1 stores (plain ``.json`` manifests with
the RNG states inline) are still read.

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

FORMAT_VERSION = 2
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
    """The raw bytes of a blob stored by :func:`encode_blob`."""
    if codec is None:
        return stored
    name, _, size = codec.partition(":")
    if name != "zlib" or not size.isdigit():
        raise ValueError(f"unknown blob codec {codec!r} (written by a newer tinygrad_nb?)")
    data = np.frombuffer(zlib.decompress(memoryview(stored)), dtype=np.uint8)
    itemsize = int(size)
    return data if itemsize == 1 else np.ascontiguousarray(data.reshape(itemsize, -1).T).reshape(-1)


def _shuffle(data: np.ndarray, itemsize: int) -> np.ndarray:
    return data if itemsize == 1 else np.ascontiguousarray(data.reshape(-1, itemsize).T).reshape(-1)


def raw_bytes(array: np.ndarray) -> np.ndarray:
    """``array``'s bytes as a 1-D uint8 array (a view when it is C-contiguous)."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


@dataclass
class Commit:
    """One recorded cell: what its manifest holds (the ``namespace`` and ``tensors`` tables decoded lazily)."""

    seq: int
    manifest: dict[str, Any]
    path: Path
    size: int = 0  # bytes of the blobs this commit wrote (its own pack)

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
                data = path.read_bytes()
                manifest = json.loads(gzip.decompress(data) if path.suffix == ".gz" else data)
                if manifest.get("format") != FORMAT_NAME:
                    continue
            except (OSError, ValueError, EOFError):  # gzip raises BadGzipFile (an OSError) or EOFError
                continue  # a damaged manifest is skipped, not fatal
            seq = int(manifest["seq"])
            self.commits[seq] = Commit(seq, manifest, path, int(manifest.get("pack_bytes", 0)))
            for key, info in manifest.get("blobs", {}).items():
                self.where.setdefault(key, info["pack"])

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
        text = json.dumps(manifest, separators=(",", ":")).encode()
        atomic_write(path, gzip.compress(text, compresslevel=6, mtime=0), durable=False)
        commit = Commit(seq, manifest, path, size)
        self.commits[seq] = commit
        return commit

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
        """The raw bytes of blob ``key`` (for a blob stored raw, a read-only-in-spirit view into a copy-on-write map
        of its pack; for a compressed one, a new array)."""
        seq = self.where.get(key)
        if seq is None:
            raise KeyError(f"cell checkpoint store {self.root}: blob {key} is not stored (garbage collected?)")
        pack = self._packs.get(seq)
        if pack is None:
            pack, self._codecs[seq] = self._open_pack(seq)
            self._packs[seq] = pack
        try:
            return decode_blob(pack[key], self._codecs[seq].get(key))
        except zlib.error as e:
            raise ValueError(f"cell checkpoint store {self.root}: blob {key} in {self.pack_path(seq).name} is "
                             f"damaged ({e})") from None

    def rng(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """A manifest's ``rng_before``/``rng_after`` with every ``{"$blob": key}`` read back (see :func:`encode_rng`)."""
        if value is None:
            return None
        return {name: json.loads(zlib.decompress(self.read_blob(state["$blob"]).tobytes()))
                if isinstance(state, dict) and set(state) == {"$blob"} else state for name, state in value.items()}

    def array(self, key: str, dtype: str, shape: list[int]) -> np.ndarray:
        """Blob ``key`` as a fresh (owned, writable) array of ``dtype`` and ``shape``."""
        return self.read_blob(key).view(np.dtype(dtype)).reshape(shape).copy()

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


def notebook_name(user_ns: dict[str, Any]) -> str:
    """The notebook's name (file stem) when the session knows it, else ``"session"``."""
    name = user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME") or ""
    stem = Path(str(name)).stem if name else ""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return safe or "session"
