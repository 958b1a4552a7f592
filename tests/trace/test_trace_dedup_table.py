"""Sionna's specular-chain tables sized per solver call (rftwin.trace.dedup_table): with Sionna's fixed 10^6 slots a
call of many receivers lost paths that the same links traced a few at a time keep. Real Sionna traces of the room."""
import numpy as np
import pytest

from rftwin.scene import load
from rftwin.scene.sampling import random_positions
from rftwin.trace import dedup_table as D
from rftwin.trace.budget import GIB
from rftwin.trace.simulate import reference_path_gain_db
from rftwin.trace.tracer import SolverSettings, trace

S = SolverSettings(max_depth=2, samples_per_src=20_000, seed=5)
R = 192


@pytest.fixture(autouse=True)
def sized(monkeypatch):
    monkeypatch.setenv("RFTWIN_CHAIN_TABLES", "sized")


@pytest.fixture(scope="module")
def links():
    twin = load("room")
    rx = random_positions(twin, R, np.random.default_rng(0), (0.3, 2.7))
    return twin, np.tile([0.0, 0.0, 2.5], (R, 1)), rx


@pytest.fixture(scope="module")
def small_calls(links):
    """The links traced 8 receivers per call: tables far from full."""
    twin, tx, rx = links
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RFTWIN_CHAIN_TABLES", "sized")
        parts = [trace(twin, tx[i:i + 8], rx[i:i + 8], S, cache_dir=False, progress=False) for i in range(0, R, 8)]
    return np.concatenate([np.bincount(p.link.numpy(), minlength=8) for p in parts]), \
        np.concatenate([reference_path_gain_db(p) for p in parts])


def _calls(monkeypatch) -> list[int]:
    """Records the table slots of every solver call."""
    seen = []
    real = D.sized_tables

    def recording(slots):
        seen.append(int(slots))
        return real(slots)

    monkeypatch.setattr(D, "sized_tables", recording)
    return seen


def test_one_call_of_many_receivers_finds_the_paths_of_small_calls(links, small_calls, monkeypatch):
    twin, tx, rx = links
    seen = _calls(monkeypatch)
    whole = trace(twin, tx, rx, S, cache_dir=False, progress=False, memory_budget=64 * GIB)
    assert len(seen) == 1 and D.next_prime(seen[0]) == seen[0]
    counts, gains = small_calls
    np.testing.assert_array_equal(np.bincount(whole.link.numpy(), minlength=R), counts)
    np.testing.assert_allclose(reference_path_gain_db(whole), gains, atol=1e-6)


def test_sionnas_fixed_table_loses_paths_here(links, small_calls, monkeypatch):
    """The case is one where the sizing matters: Sionna's 10^6 slots (``RFTWIN_CHAIN_TABLES=sionna``) lose paths of
    the one big call."""
    twin, tx, rx = links
    monkeypatch.setenv("RFTWIN_CHAIN_TABLES", "sionna")
    whole = trace(twin, tx, rx, S, cache_dir=False, progress=False, memory_budget=64 * GIB)
    assert whole.num_paths < small_calls[0].sum()


def test_a_call_that_filled_its_tables_is_traced_again_with_larger_ones(links, small_calls, monkeypatch):
    twin, tx, rx = links
    monkeypatch.setattr(D, "SLOTS_PER_LANE", 1e-9)  # the first call gets the smallest table
    seen = _calls(monkeypatch)
    whole = trace(twin, tx, rx, S, cache_dir=False, progress=False, memory_budget=64 * GIB)
    assert len(seen) == 2 and seen[0] == D.table_slots(1, 1, S.max_num_paths_per_src) < seen[1]
    np.testing.assert_array_equal(np.bincount(whole.link.numpy(), minlength=R), small_calls[0])


def test_the_table_size_depends_on_the_call_alone(links, monkeypatch):
    """Two traces of the same links get the same tables, whatever was traced before in the process (tables learnt
    from earlier calls made the demo's re-traces differ from its simulation)."""
    twin, tx, rx = links
    seen = _calls(monkeypatch)
    trace(twin, tx[:16], rx[:16], S, cache_dir=False, progress=False, memory_budget=64 * GIB)
    trace(twin, tx[:64], rx[:64], S, cache_dir=False, progress=False, memory_budget=64 * GIB)
    trace(twin, tx[:16], rx[:16], S, cache_dir=False, progress=False, memory_budget=64 * GIB)
    assert seen[0] == seen[2] < seen[1]


def test_table_sizes_are_few_primes_above_what_the_call_needs():
    """Sionna compiles the table size into its kernels: sizes are rounded up to a prime above 2^(k/4), so calls of
    1 to 32 receivers share 15 sizes (and kernels) instead of 32."""
    assert D.next_prime(1_000_000) == 1_000_003 and D.next_prime(2**20) == 1_048_583
    assert D.table_slots(10, 1, 1_000_000) == D.next_prime(2**20)
    lanes = 2 * 10**6  # the demo's lanes per receiver
    sizes = [D.table_slots(lanes * r, 1, 1_000_000) for r in range(1, 33)]
    for r, n in enumerate(sizes, 1):
        assert D.next_prime(n) == n and D.SLOTS_PER_LANE * lanes * r <= n < 1.2 * D.SLOTS_PER_LANE * lanes * r + 2**10
    assert len(set(sizes)) == 15
    assert D.table_slots(10**9, 1, 1_000_000, candidates=10**6) >= 10**6 / D.TARGET_LOAD
    assert D.table_slots(10**12, 4, 1) <= D.MAX_SLOTS // 4
    assert D.table_slots(10, 1, 2**21 + 1) >= 2**21 + 1


def test_sized_tables_are_the_default(monkeypatch):
    monkeypatch.delenv("RFTWIN_CHAIN_TABLES")
    assert D.policy() == "sized" and D.slots_per_lane() == D.SLOTS_PER_LANE


def test_an_unknown_policy_is_refused_naming_the_variable(links, monkeypatch):
    twin, tx, rx = links
    monkeypatch.setenv("RFTWIN_CHAIN_TABLES", "huge")
    with pytest.raises(ValueError, match=r"RFTWIN_CHAIN_TABLES='huge': expected one of sionna, sized"):
        trace(twin, tx[:2], rx[:2], S, cache_dir=False, progress=False)
