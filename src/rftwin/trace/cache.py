"""The on-disk path cache: one PathSet file per cache key, checked on every read.

Each entry stores its key (``meta['cache_key']``) and a SHA-256 of its arrays (:meth:`PathSet.save`). A read
returns the entry only when the file is intact and holds the requested key; an entry swapped for another trace,
a damaged file or a folder in its place gives a warning and a fresh trace. A cache location that cannot hold
files (it is a file, or not writable) is an error before any tracing.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from rftwin.runtime import CACHE_ENV

if TYPE_CHECKING:  # the command line checks the cache folder before torch loads
    from rftwin.pathset import PathSet


class CacheError(ValueError):
    """The cache location is unusable (named in the message, with the variable that set it)."""


def check_cache_dir(root: str | os.PathLike) -> Path:
    """``root`` as a usable cache folder (created when absent) or :class:`CacheError`."""
    root = Path(root)
    hint = f" (set by ${CACHE_ENV})" if os.environ.get(CACHE_ENV) and Path(os.environ[CACHE_ENV]) == root else ""
    if root.exists() and not root.is_dir():
        raise CacheError(f"path cache {root}{hint}: is a file; expected a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"path cache {root}{hint}: cannot be created ({exc.strerror})") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise CacheError(f"path cache {root}{hint}: the folder is not writable")
    return root


def entry_path(root: Path, key: str) -> Path:
    return root / f"{key}.npz"


def read_entry(path: Path, key: str) -> PathSet | None:
    """The cached PathSet of ``key`` or None (absent, or unusable: then warned about and traced afresh)."""
    if not path.exists():
        return None
    if not path.is_file():
        warnings.warn(f"path cache entry {path} is not a regular file; tracing afresh", RuntimeWarning, stacklevel=3)
        return None
    from rftwin.pathset import PathSet, PathSetFileError  # noqa: PLC0415

    try:
        ps = PathSet.load(path)
    except PathSetFileError as exc:
        warnings.warn(f"ignoring the path cache entry: {exc}; tracing afresh", RuntimeWarning, stacklevel=3)
        return None
    if ps.meta.get("cache_key") != key:
        warnings.warn(f"path cache entry {path} holds another trace (key {ps.meta.get('cache_key')!r}, expected "
                      f"{key!r}); tracing afresh", RuntimeWarning, stacklevel=3)
        return None
    return ps


def write_entry(path: Path, ps: PathSet) -> None:
    """Store ``ps`` (atomically); a folder in the entry's place is left alone (warned about on read)."""
    if path.exists() and not path.is_file():
        return
    ps.save(path)


__all__ = ["CacheError", "check_cache_dir", "entry_path", "read_entry", "write_entry"]
