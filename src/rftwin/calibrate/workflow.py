"""Trace + calibrate, with optional re-tracing at the calibrated materials.

Which rare reflection/refraction chains Sionna's sampler finds depends (weakly) on the materials used while
tracing, so paths traced at the prior differ slightly from those of the true scene. Re-tracing once at the
calibrated materials and refining from there removes that mismatch (Sionna-based calibration re-traces at
every step; we do it once or twice).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from rftwin.calibrate.loop import CalibrationConfig, CalibrationResult, calibrate
from rftwin.calibrate.problem import Targets
from rftwin.materials.per_object import MaterialPrior, PerObjectMaterials, draw_starts
from rftwin.scene.load import TwinScene
from rftwin.trace.pathset import PathSet
from rftwin.trace.tracer import AntennaSpec, SolverSettings, trace


def calibrate_scene(twin: TwinScene, tx_pos: np.ndarray, rx_pos: np.ndarray, targets: Targets, prior: MaterialPrior,
                    cfg: CalibrationConfig = CalibrationConfig(), settings: SolverSettings = SolverSettings(),
                    num_starts: int = 32, retrace: int = 1, power_law: bool = False, seed: int = 0,
                    truth: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = True, cache_dir=None,
                    tx_antenna: AntennaSpec = AntennaSpec(), rx_antenna: AntennaSpec = AntennaSpec(),
                    ) -> tuple[CalibrationResult, PathSet]:
    """Calibrate per-object materials of ``twin`` from ``targets`` (rows refer to links ``tx_pos[i] -> rx_pos[i]``).

    On return the twin's radio materials hold the calibrated values.
    """
    thickness = [o.thickness_m for o in twin.objects]
    f_ref = float(prior.frequency_hz)
    twin.set_materials(prior.eps_r, prior.sigma)
    ps = trace(twin, tx_pos, rx_pos, settings, tx_antenna, rx_antenna, cache_dir=cache_dir, progress=progress)
    e, s = draw_starts(prior, num_starts, seed=seed)
    pl = prior.power_law if prior.power_law is not None and not np.isnan(prior.power_law).any() else None
    kw = dict(power_law=power_law, reference_frequency_hz=f_ref,
              b=None if pl is None else pl[:, 1], d=None if pl is None else pl[:, 3], fit=("eps_r", "sigma"))
    res = calibrate(ps, PerObjectMaterials(e, s, thickness, **kw), targets, cfg, truth=truth, progress=progress,
                    uncertainty=retrace == 0)
    history = list(res.history)
    for k in range(retrace):
        twin.set_materials(res.eps_r, res.sigma)
        ps = trace(twin, tx_pos, rx_pos, settings, tx_antenna, rx_antenna, cache_dir=cache_dir, progress=progress)
        pl_now = res.power_law
        kw.update(b=pl_now[:, 1] if power_law else None, d=pl_now[:, 3] if power_law else None)
        model = PerObjectMaterials(res.eps_r[None], res.sigma[None], thickness, **kw)
        prev_seconds, prev_iters = res.seconds, res.iterations
        res = calibrate(ps, model, targets, cfg, truth=truth, progress=progress, uncertainty=k == retrace - 1)
        offset = history[-1]["iteration"] if history else 0
        history += [dict(r, iteration=r["iteration"] + offset, retrace=k + 1) for r in res.history[1:]]
        res = replace(res, seconds=res.seconds + prev_seconds, iterations=res.iterations + prev_iters)
    twin.set_materials(res.eps_r, res.sigma)
    return replace(res, history=history), ps
