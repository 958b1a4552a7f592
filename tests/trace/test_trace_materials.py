"""Tracing takes materials as an argument: a trace, a streamed trace and a radio map at a SceneMaterials record
equal those of a scene set to the same values, the scene is unchanged after every call (also after an error),
and the cache key follows the effective trace-time values (a record equal to the scene's own shares entries)."""
import dataclasses

import numpy as np
import pytest
import torch

import rftwin  # noqa: F401 - LLVM set-up first
from rftwin.evaluate.radiomap import compute_radio_map
from rftwin.pathset import DIFFUSE
from rftwin.scene import load
from rftwin.scene.scene_materials import SceneMaterials, applied_materials
from rftwin.trace.simulate import trace_path_gain_db
from rftwin.trace.tracer import AntennaSpec, SolverSettings, cache_key, iter_trace, trace

ST = SolverSettings(max_depth=2, samples_per_src=20_000, max_num_paths_per_src=20_000, seed=3)
TX = np.array([[2.0, 2.5, 1.5], [2.0, 2.5, 1.5]])
RX = np.array([[7.0, 6.0, 1.2], [5.5, 8.0, 1.0]])


def state(twin) -> tuple:
    """Everything of the Sionna scene a trace reads or rftwin shows: frequency, per object the values and whether
    its ITU frequency callback is on, and the object table."""
    objs = twin.scene.objects
    mats = tuple((o.name, objs[o.name].radio_material.frequency_update_callback is not None,
                  *(float(getattr(objs[o.name].radio_material, a)[0]) for a in
                    ("relative_permittivity", "conductivity", "thickness", "scattering_coefficient",
                     "xpd_coefficient"))) for o in twin.objects)
    table = tuple(dataclasses.astuple(o) for o in twin.objects)
    return float(twin.scene.frequency[0]), mats, table


@pytest.fixture(scope="module")
def scenes():
    return load("room"), load("room")


def truth(twin):
    eps = np.array([o.relative_permittivity for o in twin.objects]) * np.linspace(0.8, 1.3, len(twin.objects))
    sig = np.array([o.conductivity for o in twin.objects]) * np.linspace(1.2, 0.7, len(twin.objects))
    return eps, sig


def test_trace_at_a_record_equals_a_scene_set_to_it_and_leaves_the_scene_alone(scenes, tmp_path):
    twin, other = scenes
    eps, sig = truth(twin)
    before = state(twin)
    mats = SceneMaterials(eps, sig)
    ps, g = trace_path_gain_db(twin, TX, RX, ST, cache_dir=False, progress=False, materials=mats)
    assert state(twin) == before
    with applied_materials(other, mats):  # the reference: a scene that holds the values while it is traced
        ref = trace(other, TX, RX, ST, cache_dir=False, progress=False)
        key_set = cache_key(other, TX, RX, ST, AntennaSpec(), AntennaSpec())
    assert state(other) == before  # the context restored it
    assert ps.num_paths == ref.num_paths > 0
    torch.testing.assert_close(ps.a_ref, ref.a_ref, rtol=0, atol=0)
    torch.testing.assert_close(ps.length_m, ref.length_m, rtol=0, atol=0)
    assert ps.meta["trace_materials"] == ref.meta["trace_materials"]
    np.testing.assert_allclose([m["eps_r"] for m in ps.meta["trace_materials"]], eps, rtol=1e-6)
    assert np.all(np.isfinite(g))
    # the key follows the trace-time values: the record's key is that of a scene set to them, not the scene's own
    key_rec = cache_key(twin, TX, RX, ST, AntennaSpec(), AntennaSpec(), mats)
    key_own = cache_key(twin, TX, RX, ST, AntennaSpec(), AntennaSpec())
    assert key_rec == key_set != key_own
    # a record equal to the scene's own values (ITU callbacks then off) shares the scene's cache entries
    own = SceneMaterials([o.relative_permittivity for o in twin.objects], [o.conductivity for o in twin.objects])
    assert cache_key(twin, TX, RX, ST, AntennaSpec(), AntennaSpec(), own) == key_own
    assert state(twin) == before


def test_streamed_trace_restores_the_scene_and_matches(scenes, tmp_path):
    twin, _ = scenes
    eps, sig = truth(twin)
    before = state(twin)
    mats = SceneMaterials(eps, sig, scattering=np.full(len(eps), 0.25))
    st = dataclasses.replace(ST, diffuse_reflection=True)
    shards = list(iter_trace(twin, TX, RX, st, cache_dir=tmp_path, progress=False, memory_budget=2 << 30,
                             materials=mats))
    assert state(twin) == before
    whole = trace(twin, TX, RX, st, cache_dir=tmp_path, progress=False, materials=mats)  # from the shards
    assert sum(s.pathset.num_paths for s in shards) == whole.num_paths > 0
    assert bool((whole.itype == DIFFUSE).any())  # S > 0 at trace time: diffuse paths were sampled
    assert [m["scattering"] for m in whole.meta["trace_materials"]] == pytest.approx([0.25] * len(eps))
    assert state(twin) == before


def test_bad_record_is_refused_before_anything_changes(scenes):
    twin, _ = scenes
    before = state(twin)
    K = len(twin.objects)
    with pytest.raises(ValueError, match="sigma of object '.+' is -1.0, expected sigma >= 0"):
        trace(twin, TX, RX, ST, cache_dir=False, progress=False,
              materials=SceneMaterials(sigma=[-1.0] + [0.1] * (K - 1)))
    with pytest.raises(ValueError, match=f"eps_r has 2 values, expected one per scene object \\({K}\\)"):
        trace(twin, TX, RX, ST, cache_dir=False, progress=False, materials=SceneMaterials(eps_r=[2.0, 3.0]))
    with pytest.raises(RuntimeError, match="inside"):  # an error inside the block: values restored all the same
        with applied_materials(twin, SceneMaterials(eps_r=[5.0] * K), frequency_hz=28e9):
            assert float(twin.scene.frequency[0]) == pytest.approx(28e9)
            assert all(o.relative_permittivity == 5.0 for o in twin.objects)
            raise RuntimeError("inside")
    assert state(twin) == before


def test_radio_map_at_a_record_leaves_scene_and_frequency_alone(scenes):
    twin, other = scenes
    eps, sig = truth(twin)
    before = state(twin)
    st = SolverSettings(max_depth=2, samples_per_src=20_000, seed=1)
    kw = dict(height_m=1.5, cell_m=2.0, settings=st, mask_inside=False)
    res = compute_radio_map(twin, None, TX[:1], 28e9, materials=SceneMaterials(eps, sig), **kw)
    assert state(twin) == before  # frequency 3.5 GHz again, ITU callbacks back on
    with applied_materials(other, SceneMaterials(eps, sig)):
        ref = compute_radio_map(other, None, TX[:1], 28e9, **kw)
    # Sionna's radio-map solver accumulates cells with atomic float32 adds: equal up to summation order
    np.testing.assert_allclose(res.path_gain_db, ref.path_gain_db, rtol=1e-7, atol=0)
    assert np.isfinite(res.path_gain_db).any()


def test_predict_at_a_record_traces_and_evaluates_it(scenes):
    """Without a materials document, predict_channels traces at the record and the engine evaluates the same
    values: its path gains are Sionna's at the record (engine parity), and the scene is unchanged."""
    from rftwin.predict.predict import predict_channels

    twin, _ = scenes
    eps, sig = truth(twin)
    before = state(twin)
    mats = SceneMaterials(eps, sig)
    pred = predict_channels(twin, None, TX, RX, np.full(len(TX), 3.5e9), ST, progress=False, cache_dir=False,
                            materials=mats)
    assert state(twin) == before
    _, ref_db = trace_path_gain_db(twin, TX, RX, ST, cache_dir=False, progress=False, materials=mats)
    _, own_db = trace_path_gain_db(twin, TX, RX, ST, cache_dir=False, progress=False)
    got = pred.table["path_gain_db"].to_numpy()
    np.testing.assert_allclose(got, ref_db, atol=0.05)
    assert np.max(np.abs(own_db - ref_db)) > 0.5  # the record matters: the scene's own materials give other gains
