"""Output destinations of every command: checked before any work, written only when every step succeeded.

``check_output_file`` / ``check_output_dir`` run before loading or tracing anything, so a wrong ``--out`` costs
nothing. ``staged_dir`` collects a command's outputs in a hidden sibling folder and moves them into place at the
end; an error or Ctrl-C leaves the destination as it was.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from rftwin.cli.common import fail
from rftwin.io import staged_dir


def _check_parent(path: Path, option: str) -> None:
    for anc in path.absolute().parents:
        if anc.exists():
            if not anc.is_dir():
                fail(f"{option} {path}: {anc} is a file, not a folder")
            if not os.access(anc, os.W_OK | os.X_OK):
                fail(f"{option} {path}: the folder {anc} is not writable")
            return


def check_output_file(path: Path | None, option: str = "--out", suffixes: Iterable[str] | None = None) -> None:
    """A file to (over)write: not a folder, below folders only, with one of ``suffixes`` (lower case)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        fail(f"{option} {path}: is a folder; expected a file name")
    if path.exists() and not path.is_file():
        fail(f"{option} {path}: exists and is not a regular file")
    if suffixes is not None and path.suffix.lower() not in tuple(suffixes):
        fail(f"{option} {path}: unsupported file type '{path.suffix}'; expected {', '.join(suffixes)}")
    _check_parent(path, option)


def check_output_dir(path: Path, option: str = "--out", owned: Iterable[str] = ()) -> None:
    """A folder to write into: absent, empty, or already holding this command's outputs (one of ``owned``).

    A non-empty folder of something else is refused: rftwin never mixes its files into (or overwrites files of)
    an unrelated folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        fail(f"{option} {path}: is a file; expected a folder (absent, empty, or an earlier output of this command)")
    if path.is_dir():
        entries = {p.name for p in path.iterdir()}
        if entries and not entries & set(owned):
            shown = ", ".join(sorted(entries)[:5]) + (" ..." if len(entries) > 5 else "")
            fail(f"{option} {path}: the folder is not empty ({shown}) and holds no earlier output of this command "
                 f"({', '.join(owned)}); choose a new or empty folder")
        if not os.access(path, os.W_OK | os.X_OK):
            fail(f"{option} {path}: the folder is not writable")
        return
    _check_parent(path, option)


def check_input_file(path: Path | None, option: str) -> None:
    """An input file named by ``option`` must exist (a typo costs no loading); its content is checked later."""
    if path is not None and not Path(path).exists():
        fail(f"{option} {path}: no such file")


def check_cache() -> None:
    """The path cache ($RFTWIN_CACHE or ~/.cache/rftwin/paths) must be a writable folder: checked up front."""
    from rftwin.runtime import default_cache_dir  # noqa: PLC0415
    from rftwin.trace.cache import CacheError, check_cache_dir  # noqa: PLC0415

    try:
        check_cache_dir(default_cache_dir())
    except CacheError as exc:
        fail(str(exc))


__all__ = ["check_cache", "check_input_file", "check_output_dir", "check_output_file", "staged_dir"]
