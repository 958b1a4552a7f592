"""Tracing many solver calls does not grow the process: Dr.Jit compiled kernels specialised to each call and kept
them all in memory (a 10^5-link predict grew by 1 GiB), so every call releases its kernels
(:func:`rftwin.trace.kernel_cache.release_kernels`). Real Sionna traces of the room; resident memory read
from the kernel (psutil)."""
import gc

import numpy as np
import psutil

from rftwin.scene import load
from rftwin.trace.tracer import SolverSettings, iter_trace


def _rss_mib() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def test_resident_memory_stays_flat_over_solver_calls_of_other_links():
    """Ten calls of 1 024 other links each: before, every call added ~8 MiB of kernels (+33.7 MiB from the third to
    the seventh); the cache is now released every KERNEL_RELEASE_PAIRS = 2 048 pairs."""
    twin = load("room")
    rng = np.random.default_rng(3)
    n = 1024
    tx = np.tile([0.0, 0.0, 2.5], (n, 1))
    rss = []
    for _ in range(10):  # every call other receivers, so other path counts and array sizes
        rx = np.c_[rng.uniform(-4.5, 4.5, (n, 2)), rng.uniform(0.5, 2.5, n)]
        shards = list(iter_trace(twin, tx, rx, SolverSettings(max_depth=2, samples_per_src=1000), cache_dir=False,
                                 progress=False))
        assert len(shards) == 1 and shards[0].pathset.num_paths > 5 * n
        del shards
        rss.append(_rss_mib())
    growth = max(rss[3:]) - rss[2]  # after three calls every allocator has its working set
    assert growth < 25.0, f"resident memory grew by {growth:.1f} MiB over 7 solver calls: {rss}"
