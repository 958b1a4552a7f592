"""Kernel inputs instead of literals (rftwin.trace.kernel_cache). Sionna 2.2 scatters each device's position
into the path endpoints as a literal, one kernel per device whose code holds its position, and keeps the material
values as literals: every solver call with new receivers compiled thousands of kernels (2 048 receivers: 8-12 s
of LLVM per call on an empty kernel cache, benchmarks/bench_kernel_cache.py) and every trace at new materials
the solver's kernels again. Real Sionna traces of the room; kernels counted with Dr.Jit's kernel history."""
import numpy as np
import pytest
import torch

import rftwin.trace.tracer as tracer
from rftwin.runtime import sionna_rt
from rftwin.scene import load
from rftwin.trace import kernel_cache
from rftwin.trace.tracer import AntennaSpec, SolverSettings, trace


@pytest.fixture(scope="module")
def room_links():
    rng = np.random.default_rng(4)
    n = 40
    tx = np.r_[np.tile([0.0, 0.0, 2.5], (n // 2, 1)), np.tile([1.0, -2.0, 1.5], (n // 2, 1))]
    rx = np.c_[rng.uniform(-4.5, 4.5, (n, 2)), rng.uniform(0.5, 2.5, n)]
    return load("room"), tx, rx


def test_paths_equal_those_of_sionnas_literals(room_links, monkeypatch):
    """Endpoints from arrays and materials as kernel inputs: the same paths, bit for bit, as Sionna's literals
    (at materials other than the scene's, as in a re-trace)."""
    from rftwin.scene.scene_materials import SceneMaterials

    twin, tx, rx = room_links
    st = SolverSettings(max_depth=3, samples_per_src=20_000)
    mats = SceneMaterials(np.array([o.relative_permittivity for o in twin.objects]) * 1.07,
                          np.array([o.conductivity for o in twin.objects]) * 0.9)
    ours = trace(twin, tx, rx, st, cache_dir=False, progress=False, materials=mats)
    monkeypatch.setattr(tracer, "array_endpoints", lambda scene, positions: scene._endpoints)
    monkeypatch.setattr(tracer, "opaque_materials", lambda scene: None)
    theirs = trace(twin, tx, rx, st, cache_dir=False, progress=False, materials=mats)
    a, b = ours.tensor_fields(), theirs.tensor_fields()
    assert ours.num_paths > 100 and a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_endpoints_need_no_kernel_per_device(room_links):
    import drjit as dr

    twin, _, rx = room_links
    rt = sionna_rt()
    sc = twin.scene
    tracer._set_arrays(sc, AntennaSpec(), AntennaSpec())
    tracer._clear_devices(sc)
    positions = {}
    for i, p in enumerate(rx[:16]):
        positions[f"rx{i}"] = p
        sc.add(rt.Receiver(name=f"rx{i}", position=[float(v) for v in p]))
    launches = {}
    try:
        dr.set_flag(dr.JitFlag.KernelHistory, True)
        for name, fn in (("sionna", sc._endpoints), ("arrays", kernel_cache.array_endpoints(sc, positions))):
            dr.kernel_history()
            out = fn(sc.receivers.values(), sc.rx_array, True, True)
            dr.eval(*out)
            launches[name] = len(dr.kernel_history())
            assert np.array_equal(np.array(out[0]).T, rx[:16].astype(np.float32)), name  # Point3f: [3, n]
    finally:
        dr.set_flag(dr.JitFlag.KernelHistory, False)
        tracer._clear_devices(sc)
    assert launches["sionna"] >= 16 and launches["arrays"] <= 2


def test_aligned_copies_start_on_64_bytes():
    x = np.arange(7, dtype=np.float32)[1:]  # a view 4 bytes into its buffer
    for _ in range(5):
        y = kernel_cache.aligned(x)
        assert y.ctypes.data % 64 == 0 and np.array_equal(x, y) and y.dtype == x.dtype


def test_material_values_become_kernel_inputs(room_links):
    """Sionna keeps every material value as a Dr.Jit literal (compiled into the kernels); after
    :func:`opaque_materials` each is an evaluated variable, an input of the kernels that read it."""
    import drjit as dr

    twin, _, _ = room_links
    rms = list(twin.scene.radio_materials.values())
    for rm in rms:
        rm.relative_permittivity = float(rm.relative_permittivity[0])  # as applied_materials sets them: literals
    assert all(rm._eta_r.state == dr.VarState.Literal for rm in rms)
    kernel_cache.opaque_materials(twin.scene)
    for rm in rms:
        for slot in kernel_cache.MATERIAL_SLOTS:
            assert getattr(rm, slot).state == dr.VarState.Evaluated, (rm.name, slot)
