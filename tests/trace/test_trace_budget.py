"""Tracing under a memory budget: split calls give the same paths, shards resume, a too small budget is refused."""
import warnings

import numpy as np
import pytest
import torch

from rftwin.pathset import PathSet
from rftwin.physics.channel import link_sum, path_power
from rftwin.physics.engine import path_coefficients
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace, tracer
from rftwin.trace import budget as B
from rftwin.trace.dedup_table import slots_per_lane
from rftwin.twin_io import material_values

S = SolverSettings(max_depth=2, samples_per_src=200_000, seed=3)
LANES = S.max_depth * S.samples_per_src


def _links():
    rng = np.random.default_rng(1)
    rx = np.c_[rng.uniform(-4, 4, (6, 2)), np.full(6, 1.5)]
    tx = np.array([[0.0, 0.0, 2.5], [1.0, -2.0, 2.0]])
    return np.repeat(tx, 3, 0), rx


def _gains(ps, twin):
    mv = material_values(twin, None, np.array([3.5e9]))
    a = path_coefficients(ps, mv, torch.tensor([3.5e9], dtype=torch.float64))[0]
    return 10 * torch.log10(link_sum(path_power(a), ps.link, ps.num_links))[0, 0]


def _budget_for_pairs(pairs: float) -> int:
    """A budget whose allowance above the current resident memory holds ``pairs`` (tx, rx) pairs (3 pairs give
    2 per call however the resident memory drifts by less than one pair's cost, about 20 MiB)."""
    cost = B.CallSizer(0, LANES, 0).pair_cost
    return int(B.current_rss() + pairs * cost)


def _whole_then_counted(monkeypatch):
    """The room's links traced in one call, then the solver wrapped so that later calls record their pairs:
    (twin, tx, rx, whole PathSet, list of pairs per call)."""
    twin = load("room")
    tx, rx = _links()
    whole = trace(twin, tx, rx, S, cache_dir=False, memory_budget=1 << 40)
    calls = []
    real = tracer.solve_paths

    def counting(tw, ut, ur, st):
        calls.append(len(ut) * len(ur))
        return real(tw, ut, ur, st)

    monkeypatch.setattr(tracer, "solve_paths", counting)
    return twin, tx, rx, whole, calls


def test_sizer_powers_of_two_and_minimum():
    s = B.CallSizer(budget=10 * B.GIB, lanes_per_pair=LANES, resident=B.GIB)
    n = s.max_pairs()
    assert n & (n - 1) == 0 and n * s.pair_cost <= s.allowance < 2 * n * s.pair_cost
    with pytest.raises(B.BudgetError, match=r"--memory-budget .* too small.*give at least"):
        B.CallSizer(budget=B.GIB + 10, lanes_per_pair=LANES, resident=B.GIB).max_pairs()
    assert B.parse_budget("1.5GiB") == int(1.5 * B.GIB) and B.parse_budget("512M") == 512 * B.MIB
    with pytest.raises(ValueError, match="not a size"):
        B.parse_budget("lots")


def test_tiny_budget_splits_calls_same_paths_and_gains(tmp_path, monkeypatch):
    twin, tx, rx, whole, calls = _whole_then_counted(monkeypatch)
    parts = trace(twin, tx, rx, S, cache_dir=tmp_path, memory_budget=_budget_for_pairs(3))
    assert len(calls) >= 3 and max(calls) <= 2  # 2 pairs per call at most
    assert parts.num_paths == whole.num_paths
    for lk in range(len(tx)):
        a = np.sort(whole.a_ref[whole.link == lk].abs().flatten().numpy())
        b = np.sort(parts.a_ref[parts.link == lk].abs().flatten().numpy())
        np.testing.assert_allclose(a, b, rtol=1e-5)  # Sionna float32
    torch.testing.assert_close(_gains(parts, twin), _gains(whole, twin), rtol=0, atol=1e-5)
    assert not list(tmp_path.glob("*.shards"))  # the assembled PathSet replaced the shards


def test_killed_trace_resumes_from_finished_shards(tmp_path, monkeypatch):
    twin = load("room")
    tx, rx = _links()
    budget = _budget_for_pairs(3)
    real = tracer.solve_paths
    pairs = []

    def dies_on_third(tw, ut, ur, st):
        if len(pairs) == 2:
            pairs.append(0)
            raise KeyboardInterrupt("killed")
        pairs.append(len(ut) * len(ur))
        return real(tw, ut, ur, st)

    monkeypatch.setattr(tracer, "solve_paths", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        trace(twin, tx, rx, S, cache_dir=tmp_path, memory_budget=budget)
    shards = list(tmp_path.glob("*.shards/*.npz"))
    assert len(shards) == 2 and not list(tmp_path.glob("*.npz"))
    done = sum(len(PathSet.load(f).meta["shard_links"]) for f in shards)
    pairs += [0]  # no more kills
    traced = []
    real_call = tracer.trace_call

    def counting(*args):
        shard = real_call(*args)
        traced.append(len(shard.links))
        return shard

    monkeypatch.setattr(tracer, "trace_call", counting)
    ps = trace(twin, tx, rx, S, cache_dir=tmp_path, memory_budget=1 << 40)  # another budget: shards still reused
    assert done >= 2 and sum(traced) == len(tx) - done  # the resumed trace traced only the missing links
    whole = trace(twin, tx, rx, S, cache_dir=False, memory_budget=1 << 40)
    torch.testing.assert_close(_gains(ps, twin), _gains(whole, twin), rtol=0, atol=1e-5)


def test_budget_too_small_is_refused_before_anything_is_written(tmp_path):
    twin = load("room")
    tx, rx = _links()
    with pytest.raises(B.BudgetError, match="give at least"):
        trace(twin, tx, rx, S, cache_dir=tmp_path, memory_budget=B.current_rss() + 1000)
    assert not any(tmp_path.iterdir())


def test_iter_trace_streams_a_cached_whole_pathset_in_budget_sized_shards(tmp_path):
    twin = load("room")
    tx, rx = _links()
    whole = trace(twin, tx, rx, S, cache_dir=tmp_path)
    shards = list(tracer.iter_trace(twin, tx, rx, S, cache_dir=tmp_path, memory_budget=_budget_for_pairs(3)))
    assert len(shards) == 3 and all(len(s.links) == 2 for s in shards)
    assert sorted(np.concatenate([s.links for s in shards]).tolist()) == list(range(len(tx)))
    for s in shards:
        sub = whole.select_links(s.links)
        torch.testing.assert_close(s.pathset.a_ref, sub.a_ref)
        torch.testing.assert_close(s.pathset.link, sub.link)


def test_equal_materials_share_one_instance_while_tracing_same_paths(tmp_path, monkeypatch):
    """A twin exported with one material per object (as calibration writes it) traces with one instance per
    distinct value set, gives the same PathSet as without sharing, and gets its per-object materials back."""
    from contextlib import contextmanager

    from rftwin.scene.export import export_scene
    from rftwin.trace import shared_materials

    room = load("room")
    values = {n: {"eps_r": 3.0 + 2.0 * (i % 2), "sigma": 0.01 * (1 + i % 2)} for i, n in enumerate(room.names)}
    twin = load(str(export_scene(room, tmp_path / "twin", values)))
    objs = twin.scene.objects
    assert len({objs[n].radio_material.name for n in twin.names}) == len(twin.names)
    ids = twin.id_to_index()
    tx, rx = _links()
    seen = []
    real = tracer.solve_paths

    def looking(tw, ut, ur, st):
        seen.append(len({id(objs[n].radio_material) for n in tw.names}))
        return real(tw, ut, ur, st)

    monkeypatch.setattr(tracer, "solve_paths", looking)
    shared = trace(twin, tx, rx, S, cache_dir=False, memory_budget=1 << 40)
    assert seen == [2, 2]  # one call per transmitter, two material instances for the nine objects
    after = [objs[n].radio_material for n in twin.names]
    assert len({id(m) for m in after}) == len(twin.names) and twin.id_to_index() == ids
    for n, m in zip(twin.names, after):
        assert float(m.relative_permittivity[0]) == pytest.approx(values[n]["eps_r"])
        assert float(m.conductivity[0]) == pytest.approx(values[n]["sigma"])
    # per-object edits still touch one object
    twin.set_materials(eps_r=[7.0] + [values[n]["eps_r"] for n in twin.names[1:]])
    n2 = twin.names[2]  # had the same values as names[0], so shared its instance while tracing
    assert float(objs[n2].radio_material.relative_permittivity[0]) == pytest.approx(values[n2]["eps_r"])
    twin.set_materials(eps_r=[values[n]["eps_r"] for n in twin.names])

    @contextmanager
    def no_sharing(tw):
        yield 0

    monkeypatch.setattr(tracer, "share_materials", no_sharing)
    seen.clear()
    alone = trace(twin, tx, rx, S, cache_dir=False, memory_budget=1 << 40)
    assert seen == [len(twin.names)] * 2
    assert shared.num_paths == alone.num_paths > 0
    for name, t in alone.tensor_fields().items():
        assert torch.equal(torch.nan_to_num(t), torch.nan_to_num(getattr(shared, name))), name
    assert shared_materials.material_key(objs[twin.names[0]].radio_material) is not None


def test_a_transmitter_has_the_same_paths_whatever_else_is_traced():
    """Sionna draws each ray's interaction type from a random stream of the ray's lane in the call; with several
    transmitters per call the second one's rays had other lanes than alone (here all 8 of its links had other path
    counts). One transmitter per call (tracer.plan_calls) makes its paths those of its own trace."""
    twin = load("room")
    st = SolverSettings(max_depth=3, samples_per_src=20_000, seed=5)
    rx = np.random.default_rng(0).uniform([-4.0, -4.0, 0.5], [4.0, 4.0, 2.5], (8, 3))
    txs = np.array([[0.0, 0.0, 2.5], [2.0, 1.0, 2.0], [-2.0, -1.0, 1.5]])
    both = trace(twin, np.repeat(txs, 8, 0), np.tile(rx, (3, 1)), st, cache_dir=False, memory_budget=1 << 40)
    for t in (1, 2):
        alone = trace(twin, np.repeat(txs[t:t + 1], 8, 0), rx, st, cache_dir=False)
        sub = both.select_links(np.arange(8 * t, 8 * t + 8))
        np.testing.assert_array_equal(np.bincount(sub.link.numpy(), minlength=8),
                                      np.bincount(alone.link.numpy(), minlength=8))
        torch.testing.assert_close(_gains(sub, twin), _gains(alone, twin), rtol=0, atol=1e-6)


def test_per_call_memory_is_learned_from_a_new_peak_only():
    key = ("test scene", S)
    m = B.FIXED_MARGIN
    try:
        assert B.learn_fixed(key, B.GIB, B.GIB, None, 0.0) is None  # no new peak: nothing learned
        # a call that peaked 1 GiB above where it started, 0.2 GiB of which stays resident, lanes costing 0.1 GiB
        assert B.learn_fixed(key, B.GIB, int(1.2 * B.GIB), 2 * B.GIB, 0.1 * B.GIB) == pytest.approx(0.7 * m * B.GIB)
        s = B.CallSizer(budget=4 * B.GIB, lanes_per_pair=LANES, resident=B.GIB, fixed=B.learned_fixed(key))
        assert s.allowance == pytest.approx(3 * B.GIB - 0.7 * m * B.GIB)
        assert B.learn_fixed(key, B.GIB, B.GIB, int(1.05 * B.GIB), 0.1 * B.GIB) == 0.0  # lanes cost more: none
        with pytest.raises(B.BudgetError, match="give at least"):
            B.CallSizer(budget=2 * B.GIB, lanes_per_pair=LANES, resident=B.GIB, fixed=1.5 * B.GIB).max_pairs()
    finally:
        B._learned_fixed.pop(key, None)


def test_learned_per_call_memory_splits_the_calls_after_it_same_paths(tmp_path, monkeypatch):
    """A scene whose calls need memory beyond their lanes (Sionna's diffraction records of a city scene, about
    1 GiB) gets smaller calls once it is known; the paths and gains stay those of one call."""
    twin, tx, rx, whole, calls = _whole_then_counted(monkeypatch)
    key = (id(twin.scene), S)
    cost = B.CallSizer(0, LANES, 0, slots_per_lane=slots_per_lane()).pair_cost  # as the tracer sizes calls
    resident = B.current_rss()
    monkeypatch.setattr(B, "current_rss", lambda: resident)  # sizing independent of the allocator's drift
    budget = int(resident + 1000 * cost)
    monkeypatch.setitem(B._learned_fixed, key, 997.5 * cost)  # leaves room for 2.5 pairs: 2 per call
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sized, not the one-pair fallback of a budget the fixed part fills
        parts = trace(twin, tx, rx, S, cache_dir=tmp_path, memory_budget=budget)
    assert len(calls) >= 3 and max(calls) <= 2, calls
    assert parts.num_paths == whole.num_paths
    torch.testing.assert_close(_gains(parts, twin), _gains(whole, twin), rtol=0, atol=1e-5)
