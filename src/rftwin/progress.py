"""Rich progress bars that switch off when not wanted (CI, --json)."""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled_default() -> bool:
    return os.environ.get("RFTWIN_PROGRESS", "1") != "0"


def track(items: Iterable[T], description: str, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    if not (enabled and enabled_default()):
        yield from items
        return
    from rich.progress import track as _track  # noqa: PLC0415

    yield from _track(items, description=description, total=total, transient=True)
