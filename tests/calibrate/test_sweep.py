"""Global coordinate sweeps: land in the right basin of the multimodal slab loss, never increase the loss."""
import numpy as np

import _floor_wall as fw
from rftwin.calibrate import CalibrationConfig, Targets, calibrate
from rftwin.calibrate.sweep import coordinate_sweep
from rftwin.materials import PerObjectMaterials
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace


def test_sweep_then_lm_recovers_far_permittivity():
    twin = load("floor_wall")
    tx, rx = fw.links(10, seed=5)
    eps0, sig0 = fw.itu_materials(twin)
    th = np.array([o.thickness_m for o in twin.objects])
    eps_t, sig_t = eps0 * 1.7, sig0 * 0.6  # several slab-resonance minima away from the start
    twin.set_materials(eps_t, sig_t)
    ps = trace(twin, tx, rx, SolverSettings(max_depth=2, samples_per_src=100_000), cache_dir=False)
    meas = fw.sionna_gain_db(ps)
    L = len(tx)
    sw = coordinate_sweep(ps, np.arange(L), np.full(L, 3.5e9), meas, eps0, sig0, th,
                          np.stack([eps0 * 0.5, eps0 * 2.0], 1), np.stack([sig0 * 0.1, sig0 * 10.0], 1),
                          grid=64, sweeps=3, progress=False)
    assert all(b <= a + 1e-12 for a, b in zip(sw.history, sw.history[1:]))
    assert sw.history[-1] < 0.1 * sw.history[0]
    t = Targets.build(np.arange(L), np.full(L, 3.5e9), meas)
    res = calibrate(ps, PerObjectMaterials(sw.eps_r[None], sw.sigma[None], th), t,
                    CalibrationConfig(max_iter=200), truth=(eps_t, sig_t), progress=False, uncertainty=False)
    me, ms = res.mre(eps_t, sig_t)
    assert me < 1e-3 and ms < 1e-2, (me, ms, sw.eps_r, eps_t)
