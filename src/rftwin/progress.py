"""Progress of long loops: a Rich bar on a terminal, plain lines when output goes to a file or a pipe.

``RFTWIN_PROGRESS=0`` (or ``enabled=False``) switches progress off (CI, ``--json``).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

PLAIN_EVERY_S = 10.0  # plain mode: at most one line per this many seconds (plus start, every 10 % and the end)


def enabled_default() -> bool:
    return os.environ.get("RFTWIN_PROGRESS", "1") != "0"


def _plain(items: Iterable[T], description: str, total: int | None) -> Iterator[T]:
    """One line at the start, at every 10 % step (or every ``PLAIN_EVERY_S`` s) and at the end, on stderr; a loop
    left early (an optimiser that converged, an error) ends with "stopped" and the count it reached."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    t0 = last = time.monotonic()
    step = max(1, (total or 0) // 10)
    of = f"/{total}" if total else ""
    print(f"{description}: 0{of}", file=sys.stderr, flush=True)
    n, finished = 0, False
    try:
        for n, x in enumerate(items, 1):
            yield x
            now = time.monotonic()
            if (total and n % step == 0 and n < total) or now - last >= PLAIN_EVERY_S:
                print(f"{description}: {n}{of} ({now - t0:.0f} s)", file=sys.stderr, flush=True)
                last = now
        finished = True
    finally:
        print(f"{description}: {'done' if finished else 'stopped'}, {n}{of} in {time.monotonic() - t0:.1f} s",
              file=sys.stderr, flush=True)


def track(items: Iterable[T], description: str, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    if not (enabled and enabled_default()):
        yield from items
        return
    if not sys.stderr.isatty():
        yield from _plain(items, description, total)
        return
    from rich.progress import track as _track  # noqa: PLC0415

    yield from _track(items, description=description, total=total, transient=True)


@dataclass
class Stopwatch:
    """Wall time [s] of named stages, in the order they ran (``stages``: one dict per stage with ``stage``,
    ``seconds`` and ``cpu_seconds``, the CPU time of all the process's threads: on a shared machine it varies less
    than the wall time). ``probe``: called at the start (to reset) and at the end of every stage; the dict it returns at
    the end is added to the stage's record (e.g. :func:`rftwin.runtime.jit_times`: Dr.Jit compile and kernel time)."""

    probe: Callable[[], dict] | None = None
    stages: list[dict] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.probe is not None:
            self.probe()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            rec = {"stage": name, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
            self.stages.append(rec | (self.probe() if self.probe is not None else {}))


@contextmanager
def timed(watch: Stopwatch | None, name: str) -> Iterator[None]:
    """``watch.stage(name)``, or nothing without a stopwatch."""
    if watch is None:
        yield
    else:
        with watch.stage(name):
            yield
