"""Evaluation of material fields: values at interaction points, material-map errors (MRE), link errors."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from rftwin.fields.base import MaterialField
from rftwin.physics.slab import EPSILON_0
from rftwin.trace.pathset import NONE, PathSet


@dataclass
class MaterialErrors:
    """Relative errors |pred - true| / true of eps_r and sigma over P points (all frequencies pooled)."""

    mre_eps: float
    mre_sigma: float
    median_re_eps: float
    median_re_sigma: float
    mean_abs_log10_sigma: float  # mean |log10(sigma_pred / sigma_true)| (robust when sigma spans decades)
    num_points: int

    def as_dict(self, prefix: str = "") -> dict:
        return {f"{prefix}{k}": v for k, v in asdict(self).items()}


def interaction_points(ps: PathSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Points [P, 3] (m) and object indices [P] of all interactions of ``ps`` (row-major over [N, D])."""
    mask = ps.itype != NONE
    return ps.point[mask], ps.obj[mask]


def field_values(fld: MaterialField, points, obj, frequency_hz) -> tuple[np.ndarray, np.ndarray]:
    """(eps_r, sigma) [F, P] of the field at points [P, 3] on objects [P]."""
    dev = fld.bbox_lo.device
    with torch.no_grad():
        pm = fld.point_values(torch.as_tensor(points, dtype=fld.dtype_, device=dev),
                              torch.as_tensor(obj, dtype=torch.long, device=dev), frequency_hz)
    return pm.eps_r.cpu().numpy(), pm.sigma.cpu().numpy()


def per_object_values(eps_k: np.ndarray, sigma_k: np.ndarray, obj) -> tuple[np.ndarray, np.ndarray]:
    """Per-object values [F, K] gathered at points on objects ``obj`` [P] -> [F, P]."""
    o = np.asarray(obj, dtype=np.int64)
    return np.asarray(eps_k)[..., o], np.asarray(sigma_k)[..., o]


def material_errors(eps_pred, sigma_pred, eps_true, sigma_true, mask=None, frequency_hz=None,
                    conductor_loss_tangent: float = 100.0) -> MaterialErrors:
    """MRE and median relative error of eps_r and sigma (arrays broadcast, e.g. [F, P]; ``mask`` selects points).

    With ``frequency_hz`` [F] the eps_r error leaves out conductors, i.e. points whose true loss tangent
    sigma / (2 pi f eps_0 eps_r) exceeds ``conductor_loss_tangent``: there eps_r has no effect on any
    interaction (e.g. ITU metal, loss tangent ~1e7) and is not identifiable.
    """
    ep, sp, et, st = (np.asarray(x, dtype=np.float64) for x in (eps_pred, sigma_pred, eps_true, sigma_true))
    ep, sp, et, st = np.broadcast_arrays(ep, sp, et, st)
    m = np.isfinite(et) & np.isfinite(st)
    if mask is not None:
        m &= np.broadcast_to(np.asarray(mask, dtype=bool), m.shape)
    if not m.any():
        raise ValueError("no points with known true materials to evaluate")
    me = m
    if frequency_hz is not None:
        f = np.asarray(frequency_hz, dtype=np.float64).reshape((-1,) + (1,) * (et.ndim - 1))
        tan = st / (2 * np.pi * f * EPSILON_0 * et)
        me = m & (tan <= conductor_loss_tangent)
    re_e = np.abs(ep[me] - et[me]) / et[me] if me.any() else np.full(1, np.nan)
    re_s = np.abs(sp[m] - st[m]) / st[m]
    log_s = np.abs(np.log10(np.maximum(sp[m], 1e-30) / st[m]))
    return MaterialErrors(float(re_e.mean()), float(re_s.mean()), float(np.median(re_e)), float(np.median(re_s)),
                          float(log_s.mean()), int(m.sum()))


def link_errors(pred_db, meas_db) -> dict:
    """Path-gain prediction errors (dB): RMSE, MAE, median absolute error, mean (bias)."""
    e = np.asarray(pred_db, dtype=np.float64) - np.asarray(meas_db, dtype=np.float64)
    return {"rmse_db": float(np.sqrt(np.mean(e * e))), "mae_db": float(np.mean(np.abs(e))),
            "median_abs_db": float(np.median(np.abs(e))), "bias_db": float(np.mean(e))}
