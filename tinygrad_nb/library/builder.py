"""Compiling C plugins with the system C compiler, into a private cache.

``build(source)`` compiles C source (text or a ``.c`` path) against ``extensions/c_abi/tgnb_plugin.h`` into a shared
library and loads it with :func:`~.plugin.load_plugin`. The result is cached under
``$TINYGRAD_NB_CACHE_DIR`` (default ``$XDG_CACHE_HOME/tinygrad_nb/plugins``, i.e. ``~/.cache/...``):

* the key is a SHA-256 of the source, the header, the flags and defines, the host's ABI version and the compiler's
  identity (its resolved path and ``--version`` line), so changing any of them compiles again;
* the library and a small JSON record (the library's xxh3-128 hash) are written with :func:`tinygrad_nb.io.atomic_write`,
  and on every read the hash is checked before the library is loaded;
* the cache folder must be a real folder owned by this user with mode 0700 (no group/other access): a library
  someone else could have written is never loaded, and a folder that fails the check is refused, not used.

Compiler errors raise :class:`CompileError` with the compiler's messages; the source is compiled under a ``#line``
directive, so the messages name the caller's file (a notebook cell, ``cell [3]``) and its own line numbers.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import xxhash

from ..io import atomic_write
from .plugin import HOST_ABI_MAJOR, HOST_ABI_MINOR, Plugin, PluginError, load_plugin

HEADER_DIR = Path(__file__).resolve().parents[2] / "extensions" / "c_abi"
DEFAULT_FLAGS = ("-std=c99", "-O3", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall")
FORMAT_VERSION = 1


class CompileError(PluginError):
    """The C compiler rejected the source; ``str(e)`` holds its messages, with the caller's file and line numbers."""


class CacheError(PluginError):
    """The plugin cache folder is not private to this user, or a cached library does not match its recorded hash."""


def header_dir() -> Path:
    """The folder holding ``tgnb_plugin.h`` (a source checkout's ``extensions/c_abi``; ``$TGNB_PLUGIN_INCLUDE``
    overrides it, e.g. for an installed tinygrad_nb without the source tree)."""
    override = os.environ.get("TGNB_PLUGIN_INCLUDE")
    folder = Path(override) if override else HEADER_DIR
    if not (folder / "tgnb_plugin.h").is_file():
        raise PluginError(f"tgnb_plugin.h not found in {folder}; set TGNB_PLUGIN_INCLUDE to its folder")
    return folder


def compiler() -> list[str]:
    """The C compiler command: ``$CC`` when set, else ``cc`` or ``gcc`` from PATH."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return [found]
    raise PluginError("no C compiler found (looked for $CC, cc, gcc, clang); install one to build plugins, or load a "
                      "prebuilt plugin with tg.library.load_plugin(path), which needs none")


@functools.lru_cache(maxsize=8)
def compiler_identity(command: tuple[str, ...]) -> str:
    """The compiler's resolved path and the first line of its ``--version`` (part of the cache key)."""
    path = shutil.which(command[0]) or command[0]
    try:
        version = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60).stdout
    except OSError as e:
        raise PluginError(f"cannot run the C compiler {command[0]}: {e}") from e
    first = version.splitlines()[0] if version else "unknown version"
    return f"{os.path.realpath(path)} {' '.join(command[1:])} | {first}"


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The plugin cache folder, created with mode 0700 and checked to be private to this user (:class:`CacheError`
    otherwise)."""
    if path is None:
        env = os.environ.get("TINYGRAD_NB_CACHE_DIR")
        base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tinygrad_nb"
        path = base / "plugins"
    folder = Path(path)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private(folder)
    return folder


def check_private(folder: Path) -> None:
    """Refuse a folder that is a symlink, not ours, or open to group/others (a library there could be foreign)."""
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise CacheError(f"plugin cache {folder} is not a plain folder (a symlink?); refusing to use it")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise CacheError(f"plugin cache {folder} is owned by uid {info.st_uid}, not by this user ({os.getuid()}); "
                         f"refusing to load libraries from it. Use a folder of your own (TINYGRAD_NB_CACHE_DIR)")
    if info.st_mode & 0o077:
        raise CacheError(f"plugin cache {folder} has mode {stat.S_IMODE(info.st_mode):04o}: other users could write "
                         f"libraries into it; refusing to use it. Fix it with: chmod 700 {folder}")


def _read_source(source: str | os.PathLike[str]) -> tuple[str, str]:
    """(C text, display name) of a path or of source text."""
    if isinstance(source, os.PathLike) or ("\n" not in source and source.endswith(".c") and os.path.isfile(source)):
        path = Path(source)
        return path.read_text(encoding="utf-8"), str(path)
    return str(source), "<tg.library.build>"


def cache_key(text: str, flags: Sequence[str], command: Sequence[str]) -> str:
    """SHA-256 over everything that changes the compiled library."""
    h = hashlib.sha256()
    for part in (f"format {FORMAT_VERSION}", f"abi {HOST_ABI_MAJOR}.{HOST_ABI_MINOR}",
                 compiler_identity(tuple(command)), "\0".join(flags),
                 (header_dir() / "tgnb_plugin.h").read_text(encoding="utf-8"), text):
        h.update(part.encode("utf-8"))
        h.update(b"\0\1")
    return h.hexdigest()


def build(source: str | os.PathLike[str], *, name: str = "plugin", flags: Sequence[str] = (),
          defines: Mapping[str, object] | None = None, display_name: str | None = None, first_line: int = 1,
          cache: str | os.PathLike[str] | None = None, load: bool = True, replace: bool = False) -> Plugin | Path:
    """Compile ``source`` (C text or a ``.c`` path) into the cache (or reuse it) and load it as a plugin.

    ``flags``: extra compiler flags; ``defines``: ``-D`` macros. ``display_name`` and ``first_line``: the name and
    number of the source's first line in compiler messages (``%%tg_kernel`` passes ``"cell [3]"`` and 2).
    ``load=False`` returns the library's path instead of loading it.
    """
    text, default_name = _read_source(source)
    command = compiler()
    all_flags = [*DEFAULT_FLAGS, *flags, *(f"-D{k}={v}" for k, v in sorted((defines or {}).items()))]
    shown = display_name or default_name
    unit = f'#line {int(first_line)} "{_c_string(shown)}"\n{text}'
    key = cache_key(unit, all_flags, command)
    folder = cache_dir(cache)
    stem = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:40] or "plugin"
    library = folder / f"{stem}-{key[:24]}.so"
    record = library.with_suffix(".json")
    if not _cached_ok(library, record, key):
        data = _compile(unit, command, all_flags, shown)
        atomic_write(library, data)
        atomic_write(record, json.dumps({"format_version": FORMAT_VERSION, "key": key,
                                         "xxh3_128": xxhash.xxh3_128_hexdigest(data), "compiler": " ".join(command),
                                         "flags": all_flags}, indent=1))
        if not _cached_ok(library, record, key):
            raise CacheError(f"the library just written to {library} does not verify; is the folder shared?")
    return load_plugin(library, replace=replace) if load else library


def _cached_ok(library: Path, record: Path, key: str) -> bool:
    """True when a cached library exists, is ours and not writable by others, and matches its recorded hash."""
    try:
        meta = json.loads(record.read_text(encoding="utf-8"))
        info = os.lstat(library)
        data = library.read_bytes()
    except (OSError, ValueError):
        return False
    if not stat.S_ISREG(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()) \
            or info.st_mode & 0o022:
        raise CacheError(f"cached plugin {library} is not a regular file private to this user; refusing to load it")
    if meta.get("key") != key:
        return False
    if meta.get("xxh3_128") != xxhash.xxh3_128_hexdigest(data):
        return False  # torn or tampered: compile again (the rewrite replaces it atomically)
    return True


def _compile(unit: str, command: Sequence[str], flags: Sequence[str], shown: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="tgnb-build-") as tmp:
        src = Path(tmp) / "plugin.c"
        out = Path(tmp) / "plugin.so"
        src.write_text(unit, encoding="utf-8")
        argv = [*command, *flags, f"-I{header_dir()}", str(src), "-o", str(out), "-lm"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        except OSError as e:
            raise PluginError(f"cannot run the C compiler {command[0]}: {e}") from e
        if done.returncode != 0:
            messages = done.stderr.replace(str(src), shown).strip()
            raise CompileError(f"compiling {shown} failed:\n{messages}")
        return out.read_bytes()


def _c_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
