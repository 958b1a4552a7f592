"""Size of Sionna's specular-chain hash tables, per solver call.

Sionna 2.2's deterministic shoot-and-bounce keeps each specular chain once per (source, target): it hashes (chain,
target) into two tables of ``max_num_paths_per_src`` counters per source, and a candidate is new only where its
counter was still zero in both (the first ray to reach a slot takes it). A candidate whose slot another chain (or
the same chain for another target) took first is dropped, and with it a path. The tables fill with the receivers
of the call, so the paths of a link depended on how many other receivers were traced with it: with
Sionna's default 10^6 slots, the room traced 256-512 receivers per call lost about 1 % of its paths against the same
links traced four at a time (figures in ``benchmarks/results/dedup_table.json``), and sizes that are powers of two
lost paths even at low load (the hash's low bits collide). ``benchmarks/bench_dedup_table.py`` measures it.

By default (``RFTWIN_CHAIN_TABLES=sized``) every call gets tables of a prime number of slots, at least
``SLOTS_PER_LANE`` per solver lane (about ``TARGET_LOAD`` candidates per slot), and a call whose tables ended fuller
than ``MAX_LOAD`` is traced again with tables sized from its count. Sionna sizes the tables as
max(``max_num_paths_per_src``, ``SBCandidateGenerator.MIN_SPEC_COUNT_SIZE``); :func:`sized_tables` sets the latter
for one call. Large tables cost time (random counter increments miss the caches: the depth-3 case of the
benchmark took 8.0 s against 2.8 s with Sionna's tables).
``max_num_paths_per_src`` itself stays the per-source path cap: Sionna allocates its path records for that many
paths (about 120 bytes each), so it cannot be the knob.

The size depends on the call alone. A first version learnt the candidates per lane in the process and sized later
calls from that: the demo's re-traces then had other tables than its simulation, the few collisions left at that
load differed, and the demo recovered its materials on 3 of 14 truth draws (loss floor 1e-5 to 1e-3 dB^2) instead
of 13. ``RFTWIN_CHAIN_TABLES=sionna`` keeps Sionna's tables (docs/scale.md).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

#: candidates per slot a table is sized for; below about 1e-3 few paths of the benchmark's cases were lost
TARGET_LOAD = 5e-4
#: a call whose tables ended fuller than this is traced again with tables sized from its count
MAX_LOAD = 2e-3
#: solver calls at most for one set of links (the first and up to two with larger tables)
MAX_ATTEMPTS = 3
#: table slots per solver lane (depth x samples x targets): candidates per lane measured 3e-4 to 3.4e-3 in the
#: room (depth 2-4), so 1e-3 / TARGET_LOAD. A constant, not learnt: the size must depend on the call alone, or
#: the rare collisions left differ between two traces of the same links (see the module docstring)
SLOTS_PER_LANE = 2.0
#: table sizes per doubling (each a prime just above 2^(k / STEPS_PER_OCTAVE)): few sizes, few compiled kernels
STEPS_PER_OCTAVE = 4
#: Sionna asserts the tables' index fits 32 bits
MAX_SLOTS = 2**32 - 1

POLICIES = ("sionna", "sized")


def policy() -> str:
    """``RFTWIN_CHAIN_TABLES``: "sized" (per call, this module; the default) or "sionna" (Sionna's 10^6 slots)."""
    value = os.environ.get("RFTWIN_CHAIN_TABLES", "sized").strip().lower() or "sized"
    if value not in POLICIES:
        raise ValueError(f"RFTWIN_CHAIN_TABLES={value!r}: expected one of {', '.join(POLICIES)}")
    return value


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def next_prime(n: int) -> int:
    """The smallest prime >= ``n`` (a few thousand trial divisions for table sizes up to 2^32)."""
    n = max(2, int(n))
    while not _is_prime(n):
        n += 1
    return n


def slots_per_lane() -> float:
    """Table slots per solver lane a call will get (for the memory budget; 0 with Sionna's tables, whose fixed size
    is part of the measured cost per lane)."""
    return SLOTS_PER_LANE if policy() == "sized" else 0.0


def table_slots(lanes_per_source: int, num_sources: int, min_slots: int, candidates: int | None = None) -> int:
    """Slots per source of a call with ``lanes_per_source`` lanes (depth x samples x targets) per source: at least
    ``min_slots`` (Sionna takes the larger of it and ``max_num_paths_per_src``) and ``SLOTS_PER_LANE`` per lane,
    or, given the ``candidates`` a call stored per source, enough for them at ``TARGET_LOAD``; rounded up to the
    first prime above a power of 2^(1/:data:`STEPS_PER_OCTAVE`).

    The rounding keeps the sizes few: Sionna compiles the table size into its kernels as a literal, so every other
    size compiled the solver anew (about a second of LLVM per call on an empty kernel cache)."""
    want = max(int(min_slots), math.ceil(SLOTS_PER_LANE * lanes_per_source if candidates is None
                                         else candidates / TARGET_LOAD), 2)
    step = math.ceil(STEPS_PER_OCTAVE * math.log2(want) - 1e-9)
    cap = MAX_SLOTS // max(1, num_sources)
    return min(next_prime(math.ceil(2 ** (step / STEPS_PER_OCTAVE))), cap)


def too_full(candidates: int, slots: int) -> bool:
    return candidates > MAX_LOAD * slots


@contextmanager
def sized_tables(slots: int) -> Iterator[None]:
    """Sionna's specular-chain tables get (at least) ``slots`` slots per source in the solver calls inside."""
    from sionna.rt.path_solvers.sb_candidate_generator import SBCandidateGenerator  # noqa: PLC0415

    before = SBCandidateGenerator.MIN_SPEC_COUNT_SIZE
    SBCandidateGenerator.MIN_SPEC_COUNT_SIZE = int(slots)
    try:
        yield
    finally:
        SBCandidateGenerator.MIN_SPEC_COUNT_SIZE = before


__all__ = ["MAX_ATTEMPTS", "MAX_LOAD", "POLICIES", "SLOTS_PER_LANE", "TARGET_LOAD", "next_prime", "policy",
           "sized_tables", "slots_per_lane", "table_slots", "too_full"]
