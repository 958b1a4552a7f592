"""Evaluation of material fields: values at interaction points, material-map errors (MRE), link errors."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from rftwin.fields.base import MaterialField
from rftwin.pathset import NONE, PathSet
from rftwin.physics.slab import EPSILON_0, SPEED_OF_LIGHT, complex_permittivity, slab_coefficients


@dataclass
class MaterialErrors:
    """Relative errors |pred - true| / true of eps_r and sigma over P points (all frequencies pooled)."""

    mre_eps: float
    mre_sigma: float
    median_re_eps: float
    median_re_sigma: float
    mean_abs_log10_sigma: float  # mean |log10(sigma_pred / sigma_true)| (robust when sigma spans decades)
    num_points: int
    mre_reflection: float = float("nan")  # MRE of |R| (normal incidence, slab of the given thickness)
    conductor_recall: float = float("nan")  # fraction of true conductor samples predicted as conductors
    conductor_false_alarm: float = float("nan")  # fraction of true dielectric samples predicted as conductors

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


def normal_reflection(eps_r, sigma, frequency_hz, thickness_m) -> np.ndarray:
    """|R| at normal incidence of a slab (ITU-R P.2040) of ``thickness_m`` (m): eps_r, sigma [F, P] (S/m),
    ``frequency_hz`` [F] -> [F, P]."""
    e = torch.tensor(np.array(eps_r, dtype=np.float64))
    sg = torch.tensor(np.array(sigma, dtype=np.float64))
    f = torch.tensor(np.array(frequency_hz, dtype=np.float64)).reshape((-1,) + (1,) * (e.dim() - 1))
    eta = complex_permittivity(e, sg, f)
    r_te = slab_coefficients(torch.ones((), dtype=torch.float64), eta,
                             torch.tensor(np.array(thickness_m, dtype=np.float64)), SPEED_OF_LIGHT / f)[0]
    return r_te.abs().numpy()


def _loss_tangent(eps, sigma, f):
    return sigma / (2 * np.pi * f * EPSILON_0 * np.maximum(eps, 1.0))


def material_errors(eps_pred, sigma_pred, eps_true, sigma_true, mask=None, frequency_hz=None,
                    conductor_loss_tangent: float = 100.0, thickness_m=None) -> MaterialErrors:
    """MRE and median relative error of eps_r and sigma (arrays broadcast, e.g. [F, P]; ``mask`` selects points).

    With ``frequency_hz`` [F] the eps_r error leaves out conductors, i.e. points whose true loss tangent
    sigma / (2 pi f eps_0 eps_r) exceeds ``conductor_loss_tangent``: there eps_r has no effect on any
    interaction (e.g. ITU metal, loss tangent ~1e7) and is not identifiable; the same threshold on the predicted
    values classifies predicted conductors (``conductor_recall`` / ``conductor_false_alarm``). With
    ``thickness_m`` (scalar or broadcastable to the points) also the MRE of the normal-incidence slab reflection
    magnitude |R| (the quantity that matters for a conductor, whose sigma above ~1e2 S/m is not identifiable:
    |R| -> 1 and |T| -> 0 either way).
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
    extra = {}
    if frequency_hz is not None:
        cond_t = ~(me == m) & m  # true conductors among the selected samples
        cond_p = _loss_tangent(ep, sp, np.broadcast_to(f, ep.shape)) > conductor_loss_tangent
        extra["conductor_recall"] = float(cond_p[cond_t].mean()) if cond_t.any() else float("nan")
        extra["conductor_false_alarm"] = float(cond_p[me].mean()) if me.any() else float("nan")
        if thickness_m is not None:
            fb = np.broadcast_to(f, ep.shape)[..., :1].reshape(-1) if ep.ndim > 1 else np.asarray(frequency_hz)
            th = np.broadcast_to(np.asarray(thickness_m, dtype=np.float64), ep.shape)
            rp = normal_reflection(ep, sp, fb, th)
            rt = normal_reflection(np.where(m, et, 2.0), np.where(m, st, 0.0), fb, th)
            extra["mre_reflection"] = float((np.abs(rp[m] - rt[m]) / rt[m]).mean())
    return MaterialErrors(float(re_e.mean()), float(re_s.mean()), float(np.median(re_e)), float(np.median(re_s)),
                          float(log_s.mean()), int(m.sum()), **extra)


def link_errors(pred_db, meas_db) -> dict:
    """Path-gain prediction errors (dB): RMSE, MAE, median absolute error, mean (bias)."""
    e = np.asarray(pred_db, dtype=np.float64) - np.asarray(meas_db, dtype=np.float64)
    return {"rmse_db": float(np.sqrt(np.mean(e * e))), "mae_db": float(np.mean(np.abs(e))),
            "median_abs_db": float(np.median(np.abs(e))), "bias_db": float(np.mean(e))}
