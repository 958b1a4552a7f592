"""Size of Sionna's specular-chain hash tables, per solver call.

Sionna 2.2's deterministic shoot-and-bounce keeps each specular chain once per (source, target): it hashes (chain,
target) into two tables of ``max_num_paths_per_src`` slots per source and keeps a candidate only where its thread is
the lowest of all threads that hashed to its slot, in both tables. A candidate that shares a slot with another chain
(or with the same chain for another target) and loses is dropped, and with it a path. The tables fill with the
receivers of the call, so the paths of a link depended on how many other receivers were traced with it: with
Sionna's default 10^6 slots, the room traced 256-512 receivers per call lost about 1 % of its paths against the same
links traced four at a time (figures in ``benchmarks/results/dedup_table.json``), and sizes that are powers of two
lost paths even at low load (the hash's low bits collide). ``benchmarks/bench_dedup_table.py`` measures it.

With ``RFTWIN_CHAIN_TABLES=sized`` every call gets tables sized from the candidates it is expected to store
(``TARGET_LOAD`` candidates per slot, a prime number of slots), and a call whose tables were fuller than
``MAX_LOAD`` is traced again with larger ones. The expected candidates per solver lane are learnt per scene and
solver settings in this process. Sionna sizes the tables as max(``max_num_paths_per_src``,
``SBCandidateGenerator.MIN_SPEC_COUNT_SIZE``); :func:`sized_tables` sets the latter for one call.
``max_num_paths_per_src`` itself stays the per-source path cap: Sionna allocates its path records for that many
paths (about 120 bytes each), so it cannot be the knob.

The default (``RFTWIN_CHAIN_TABLES=sionna``) keeps Sionna's tables. With sized tables the demo recovers its
materials on 3 of 14 truth draws instead of 13, with a loss floor of 1e-5 to 1e-3 dB^2 that says that its re-traces
no longer reproduce the simulated data; why is not yet known (docs/scale.md).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

#: candidates per slot a table is sized for; below about 1e-3 no path of the benchmark's cases was lost
TARGET_LOAD = 5e-4
#: a call whose tables ended fuller than this is traced again with tables sized from its count
MAX_LOAD = 2e-3
#: solver calls at most for one set of links (the first and up to two with larger tables)
MAX_ATTEMPTS = 3
#: candidates per solver lane (depth x samples x targets) assumed before a call of the scene was traced
#: (measured 3e-4 to 3.4e-3 in the room, depth 2-4)
FIRST_CANDIDATES_PER_LANE = 1e-3
#: Sionna asserts the tables' index fits 32 bits
MAX_SLOTS = 2**32 - 1

POLICIES = ("sionna", "sized")

_candidates_per_lane: dict[object, float] = {}


def policy() -> str:
    """``RFTWIN_CHAIN_TABLES``: "sionna" (Sionna's 10^6 slots, the default) or "sized" (per call, this module)."""
    value = os.environ.get("RFTWIN_CHAIN_TABLES", "sionna").strip().lower() or "sionna"
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


def candidates_per_lane(key: object) -> float:
    """Expected candidates per solver lane of the scene and settings ``key`` (the largest seen in this process)."""
    return _candidates_per_lane.get(key, FIRST_CANDIDATES_PER_LANE)


def slots_per_lane(key: object) -> float:
    """Table slots per solver lane a call of ``key`` will get (for the memory budget; 0 with Sionna's tables,
    whose fixed size is part of the measured cost per lane)."""
    return candidates_per_lane(key) / TARGET_LOAD if policy() == "sized" else 0.0


def table_slots(key: object, lanes_per_source: int, num_sources: int, min_slots: int,
                candidates: int | None = None) -> int:
    """Slots per source of a call with ``lanes_per_source`` lanes (depth x samples x targets) per source: a prime
    >= ``min_slots`` (Sionna takes the larger of it and ``max_num_paths_per_src``) holding the expected (or,
    given, the counted) ``candidates`` per source at ``TARGET_LOAD``."""
    want = (candidates_per_lane(key) * lanes_per_source if candidates is None else candidates) / TARGET_LOAD
    cap = MAX_SLOTS // max(1, num_sources)
    return min(next_prime(max(int(min_slots), math.ceil(want))), cap)


def record(key: object, candidates: int, lanes_per_source: int) -> None:
    """Learn from a finished call: ``candidates`` stored by its fullest source of ``lanes_per_source`` lanes."""
    if lanes_per_source > 0:
        rate = candidates / lanes_per_source
        _candidates_per_lane[key] = max(rate, _candidates_per_lane.get(key, 0.0))


def too_full(candidates: int, slots: int) -> bool:
    return candidates > MAX_LOAD * slots and slots < MAX_SLOTS


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


__all__ = ["MAX_ATTEMPTS", "MAX_LOAD", "POLICIES", "TARGET_LOAD", "candidates_per_lane", "next_prime", "policy",
           "record",
           "sized_tables", "slots_per_lane", "table_slots", "too_full"]
