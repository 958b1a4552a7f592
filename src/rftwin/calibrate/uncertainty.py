"""Uncertainty of a calibrated single-start model: Gauss-Newton / Laplace covariance of the free parameters and
the per-object std of the read-outs (delta method)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from rftwin.calibrate.jacobians import jacobian, trainable_params
from rftwin.calibrate.losses import LossTerm
from rftwin.calibrate.problem import Targets
from rftwin.calibrate.stream import Stream
from rftwin.materials.per_object import PerObjectMaterials
from rftwin.pathset import PathSet

if TYPE_CHECKING:
    from rftwin.calibrate.loop import CalibrationConfig


@dataclass
class Uncertainty:
    """Laplace approximation at the solution: per-object std of eps_r, sigma (and S, K_xpd when present) at the
    noise levels ``noise`` (per feature block; ``noise_db`` the power one)."""

    noise_db: float
    eps_std: np.ndarray
    sigma_std: np.ndarray
    eps_identified: np.ndarray
    sigma_identified: np.ndarray
    log_std: np.ndarray  # std of the free (transformed) parameters [P]
    scattering_std: np.ndarray | None = None
    xpd_std: np.ndarray | None = None
    scattering_identified: np.ndarray | None = None  # std < 0.05 (absolute; S and K_xpd lie in [0, 1])
    xpd_identified: np.ndarray | None = None
    noise: dict = field(default_factory=dict)


_NOISE_FLOOR = {"path_gain": 0.1, "mpc_power": 0.1, "delay_spread": 0.1, "mean_delay": 0.1, "cfr": 1e-3}
_GAUSSIAN_METRIC = {"path_gain": "mse_db", "mpc_power": "mse_db", "delay_spread": "mse", "mean_delay": "mse",
                    "cfr": "nmse"}


def laplace(ps: PathSet | None, model: PerObjectMaterials, t: Targets, cfg: CalibrationConfig,
            prior_log_std: float = math.log(10.0), stream: Stream | None = None) -> Uncertainty:
    """Gauss-Newton/Laplace std of a single-start model: cov = (sum_b J_b^T J_b / s_b^2 + I / p^2)^-1 over the
    measured feature blocks b (Gaussian noise s_b: ``cfg.noise_db`` for powers, else the residual RMS), mapped to
    the physical read-outs by the delta method. Units of s_b: dB (powers), ns (delays), relative (CFR).
    With ``stream`` (:class:`rftwin.calibrate.stream.Stream`) J^T J and r^T r are accumulated over its link shards
    (``ps`` is then not used)."""
    params = trainable_params(model)
    P = sum(p.shape[1] for p in params)
    H = torch.zeros(P, P, dtype=params[0].dtype)
    noise = {}
    feats = list(dict.fromkeys(term.feature for term in cfg.loss_terms))
    off_mode = "closed_form" if cfg.offset_mode != "none" else "none"
    for feat in feats:
        c = replace(cfg, terms=(LossTerm(feat, _GAUSSIAN_METRIC[feat]),), offset=off_mode, optimizer="lbfgs",
                    prior_weight=0.0)
        w = t.row_weight(feat)
        if stream is None:
            r, J = jacobian(ps, model, t, c)
            sw = float(torch.sqrt(w.sum()))
            r, J = r[0] * sw, J[0] * sw  # raw residuals (natural units x sqrt(row weight))
            rr, JtJ = (r * r).sum(), J.T @ J
        else:  # the same sums, shard by shard (scaled residuals: squares sum to the loss)
            loss, JtJ, _ = stream.gauss_newton(model, t, c)
            W = w.sum()
            rr, JtJ = loss[0] * W, JtJ[0] * W
        n = int((w > 0).sum()) * (2 * t.cfr_subcarriers if feat == "cfr" else 1)
        if cfg.noise_db is not None and feat in ("path_gain", "mpc_power"):
            s = cfg.noise_db
        else:
            s = max(float(torch.sqrt(rr / max(n - P, 1))), _NOISE_FLOOR[feat])
        noise[feat] = s
        H = H + JtJ / s**2
    H = H + torch.eye(P, dtype=H.dtype) / prior_log_std**2
    cov = torch.linalg.inv(H)
    return uncertainty_from_cov(model, cov, noise)


#: read-outs up to which the delta method takes one scalar backward pass each
SCALAR_PASSES = 256


def uncertainty_from_cov(model: PerObjectMaterials, cov: torch.Tensor, noise: dict[str, float]) -> Uncertainty:
    """Per-object std of the read-outs at f_ref from the covariance [P, P] of a single-start model's free
    parameters (delta method); quantities held fixed get std 0."""
    params = trainable_params(model)
    cov = cov.to(params[0].dtype)
    log_std = torch.sqrt(torch.clamp(torch.diagonal(cov), min=0.0))
    # delta method: read-outs (at f_ref) as functions of the free parameters
    ro = model.readout()
    keys = list(ro)
    flat = torch.cat([ro[k][0] for k in keys])
    if flat.numel() <= SCALAR_PASSES:  # one scalar backward pass per read-out: a batched one (one-hot
        # cotangents) makes torch import its symbolic shapes and sympy (~0.5 s) for a few dozen entries
        rows = [torch.autograd.grad(x, params, retain_graph=True, allow_unused=True) for x in flat]
        grads = [None if all(r[i] is None for r in rows) else  # [Q K, 1, K_i] as the batched pass gives
                 torch.stack([torch.zeros_like(p) if r[i] is None else r[i] for r in rows]) for i, p in
                 enumerate(params)]
    else:
        eye = torch.eye(flat.numel(), dtype=flat.dtype)
        grads = torch.autograd.grad(flat, params, grad_outputs=eye, is_grads_batched=True, allow_unused=True)
    G = torch.cat([torch.zeros(flat.numel(), p.shape[1], dtype=flat.dtype) if g is None else g[:, 0]
                   for g, p in zip(grads, params)], 1)  # [Q K, P]
    std = torch.sqrt(torch.clamp(torch.einsum("ip,pq,iq->i", G, cov, G), min=0.0)).detach().cpu().numpy()
    K = model.thickness.shape[0]
    vals = {k: ro[k][0].detach().cpu().numpy() for k in keys}
    stds = {k: std[i * K:(i + 1) * K] for i, k in enumerate(keys)}
    fitted = set(model.fit)
    for k in keys:  # quantities held fixed have no uncertainty of their own
        if k not in fitted:
            stds[k] = np.zeros(K)
    e, sg = vals["eps_r"], vals["sigma"]
    s_std, x_std = stds.get("scattering"), stds.get("xpd")
    with np.errstate(invalid="ignore", divide="ignore"):
        return Uncertainty(noise.get("path_gain", next(iter(noise.values()), float("nan"))), stds["eps_r"],
                           stds["sigma"], stds["eps_r"] / e < 0.1, stds["sigma"] / sg < 0.1,
                           log_std.cpu().numpy(), s_std, x_std, None if s_std is None else s_std < 0.05,
                           None if x_std is None else x_std < 0.05, noise)


__all__ = ["Uncertainty", "laplace", "uncertainty_from_cov"]
