"""Memory budget of tracing: how many (transmitter, receiver) pairs one Sionna PathSolver call may hold.

The constants are measured, not derived from Sionna's record sizes (which underestimate the real cost several
times): ``benchmarks/measure_trace_memory.py`` runs single solver calls in child processes, polls their peak RSS
from the parent and fits ``peak - base = BYTES_PER_LANE * lanes + BYTES_PER_PATH * paths`` with
lanes = max(depth, 1) x samples_per_src x transmitters x receivers (results in
``benchmarks/results/trace_memory.json``).

The budget bounds the peak resident memory of the tracing process: a call may use what is left of the budget
above the process's resident memory when tracing starts. Pairs per call are rounded down to a power of two, so
that small fluctuations of the resident memory rarely change how links are split (finished shards of any split
are reused anyway: :func:`rftwin.trace.tracer.iter_trace`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import psutil

GIB = 2**30
MIB = 2**20
#: measured 37 B (benchmarks/measure_trace_memory.py: room, depth 2-4, 1e4-1e5 rays, 1-1000 receivers), +30 %
BYTES_PER_LANE = 48.0
#: Sionna's two specular-chain tables: two uint32 per slot (rftwin.trace.dedup_table)
BYTES_PER_SLOT = 8
#: measured 3.8 kB per returned path (raw buffer, geometry records, antenna vectors, PathSet), x 2
BYTES_PER_PATH = 8192.0
#: paths per (tx, rx) pair assumed when sizing a call (the count is unknown before tracing)
PATHS_PER_PAIR = 64
#: most of the machine's memory a default budget takes, and its cap
DEFAULT_SHARE = 0.5
DEFAULT_CAP = 4 * GIB
#: Sionna's deterministic solver indexes lanes with 32 bits (segfault above 2^32): never more per call
MAX_SOLVER_LANES = 2**29


class BudgetError(ValueError):
    """The memory budget cannot hold the smallest possible solver call."""


def fmt_bytes(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"


def parse_budget(text: str | int | float) -> int:
    """``"4GiB"``, ``"512MiB"``, ``"1.5G"``, ``"800M"`` or a plain number of bytes -> bytes."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]?)(i?B?)\s*", str(text))
        if not m:
            raise ValueError(f"memory budget '{text}' is not a size: expected e.g. 4GiB, 512MiB, 1.5G or bytes")
        value = float(m.group(1)) * {"": 1, "K": 2**10, "M": MIB, "G": GIB, "T": 2**40}[m.group(2)]
    if not value > 0:
        raise ValueError(f"memory budget must be positive, got '{text}'")
    return int(value)


_override: int | None = None


def use_budget(nbytes: int | None) -> None:
    """Make ``nbytes`` the budget of every trace that is given none (the CLI's ``--memory-budget``; None resets)."""
    global _override
    _override = None if nbytes is None else int(nbytes)


def default_budget() -> int:
    """The budget set by :func:`use_budget`, else half of the memory available now, at most 4 GiB."""
    if _override is not None:
        return _override
    return int(min(DEFAULT_CAP, DEFAULT_SHARE * psutil.virtual_memory().available))


def current_rss() -> int:
    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int | None:
    """Peak resident memory of this process so far (Linux ``VmHWM``, bytes), or None where unknown. Not reset
    here (that would also reset what ``getrusage`` reports to whoever measures this process)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


#: per-call memory beyond the lane and path costs, learned from the first solver call of a scene and settings in
#: this process (bytes), keyed by (id of the Sionna scene, solver settings): e.g. Sionna's diffraction records of a
#: city scene, over a GiB whatever the call's size
_learned_fixed: dict[tuple, float] = {}
#: margin on the learned value: calls of other transmitters of the same scene needed up to ~20 % more
FIXED_MARGIN = 1.25


def learned_fixed(key: tuple) -> float | None:
    """The per-call memory learned for ``key`` (bytes), None before a call taught it."""
    return _learned_fixed.get(key)


def learn_fixed(key: tuple, rss_before: int, rss_after: int, peak: int | None, call_cost: float) -> float | None:
    """Learn the memory a solver call needs beyond ``call_cost`` (its lanes and paths) from its ``peak`` resident
    memory (None: a call that set no new peak of the process, whose own peak is unknown: nothing learned) above
    the resident memory it started from or left behind once its buffers were given back (whichever is larger: what
    stays resident, such as the scene's diffraction records, is part of the next call's starting point, not of its
    cost). Returns the learned value (x :data:`FIXED_MARGIN`, at least 0)."""
    if peak is not None:
        _learned_fixed[key] = max(float(peak - max(rss_before, rss_after) - call_cost), 0.0) * FIXED_MARGIN
    return learned_fixed(key)


@dataclass(frozen=True)
class CallSizer:
    """Sizes solver calls: ``lanes_per_pair`` = max(depth, 1) x samples_per_src."""

    budget: int
    lanes_per_pair: int
    resident: int
    paths_per_pair: int = PATHS_PER_PAIR
    lane_limit: int = MAX_SOLVER_LANES
    #: slots of Sionna's specular-chain tables per lane when sized per call (rftwin.trace.dedup_table), 8 B each
    slots_per_lane: float = 0.0
    #: bytes every call needs whatever its size (learned from earlier calls: :func:`learn_fixed`)
    fixed: float = 0.0

    @property
    def pair_cost(self) -> float:
        """Bytes one (tx, rx) pair adds to a call."""
        return ((BYTES_PER_LANE + BYTES_PER_SLOT * self.slots_per_lane) * self.lanes_per_pair
                + BYTES_PER_PATH * self.paths_per_pair)

    @property
    def allowance(self) -> float:
        return self.budget - self.resident - self.fixed

    def max_pairs(self) -> int:
        """Pairs per call: the largest power of two whose cost fits the allowance (and Sionna's lane limit)."""
        n = self.fitting_pairs()
        return 1 << (max(n, 1).bit_length() - 1)

    def fitting_pairs(self) -> int:
        """The most pairs whose cost fits the allowance (and Sionna's lane limit), not rounded."""
        if self.allowance < self.pair_cost:
            raise BudgetError(
                f"--memory-budget {fmt_bytes(self.budget)} is too small: the smallest solver call (1 transmitter x "
                f"1 receiver, {self.lanes_per_pair:.3g} lanes = depth x samples per source) needs about "
                f"{fmt_bytes(self.pair_cost + self.fixed)} on top of the {fmt_bytes(self.resident)} this process "
                f"already uses; give at least {fmt_bytes(self.resident + self.fixed + self.pair_cost)} (or lower "
                "--samples-per-src / --max-depth)")
        return max(int(min(self.allowance // self.pair_cost, max(1, self.lane_limit // self.lanes_per_pair))), 1)

    def max_lanes(self) -> int:
        return self.max_pairs() * self.lanes_per_pair


__all__ = ["BYTES_PER_LANE", "BYTES_PER_PATH", "BYTES_PER_SLOT", "BudgetError", "CallSizer", "MAX_SOLVER_LANES",
           "current_rss", "default_budget", "fmt_bytes", "learn_fixed", "learned_fixed", "parse_budget", "peak_rss",
           "use_budget"]
