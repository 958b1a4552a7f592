"""Progress of long loops: a Rich bar on a terminal, plain lines when output goes to a file or a pipe.

``RFTWIN_PROGRESS=0`` (or ``enabled=False``) switches progress off (CI, ``--json``).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

PLAIN_EVERY_S = 10.0  # plain mode: at most one line per this many seconds (plus start, every 10 % and the end)


def enabled_default() -> bool:
    return os.environ.get("RFTWIN_PROGRESS", "1") != "0"


def _plain(items: Iterable[T], description: str, total: int | None) -> Iterator[T]:
    """One line at the start, at every 10 % step (or every ``PLAIN_EVERY_S`` s) and at the end, on stderr."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    t0 = last = time.monotonic()
    step = max(1, (total or 0) // 10)
    of = f"/{total}" if total else ""
    print(f"{description}: 0{of}", file=sys.stderr, flush=True)
    n = 0
    for n, x in enumerate(items, 1):
        yield x
        now = time.monotonic()
        if (total and n % step == 0 and n < total) or now - last >= PLAIN_EVERY_S:
            print(f"{description}: {n}{of} ({now - t0:.0f} s)", file=sys.stderr, flush=True)
            last = now
    print(f"{description}: done, {n}{of} in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)


def track(items: Iterable[T], description: str, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    if not (enabled and enabled_default()):
        yield from items
        return
    if not sys.stderr.isatty():
        yield from _plain(items, description, total)
        return
    from rich.progress import track as _track  # noqa: PLC0415

    yield from _track(items, description=description, total=total, transient=True)
