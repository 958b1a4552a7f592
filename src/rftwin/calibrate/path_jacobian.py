"""Jacobian of path-gain (dB) residuals by one reverse pass over per-interaction material values.

A path's coefficient depends only on the materials at its own interactions, and a link's path gain is the sum of
its paths' powers. So with the materials gathered per interaction q[b, f, n, i] (leaf tensors), one backward pass
of sum(p) gives every dp[b, f, n] / dq[b, f, n, i] exactly (no path shares an interaction). The chain rule then
only needs dq / dtheta, i.e. the per-object read-outs' Jacobian d v[b, f, k] / d theta[b, p] (forward-mode AD
through the material model alone, no engine), gathered at each interaction's object:

    dG[l] / dtheta = sum_{n in l} sum_i sum_q dp_n / dq_{n,i} * dv_q[obj(n, i)] / dtheta,
    dr[l] / dtheta = 10 / ln(10) * dG[l] / dtheta / G[l]   (+ the closed-form offset's own derivative).

Cost: about one forward and one backward engine pass for all P parameters and all B starts, instead of P
forward-mode passes (:func:`rftwin.calibrate.loop.jacobian` falls back to those for other loss terms).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.autograd.forward_ad as fwad
from torch.func import functional_call

from rftwin.calibrate.problem import Targets
from rftwin.pathset import PathSet
from rftwin.physics.channel import link_sum, path_power
from rftwin.physics.engine import MaterialValues, path_coefficients

_QUANTITIES = ("eps_r", "sigma", "scattering", "xpd")


def dual_state(model, names: list[str], sizes: list[int], theta: torch.Tensor, tangents: torch.Tensor
               ) -> dict[str, torch.Tensor]:
    """Parameters and per-start buffers for ``functional_call(model, state, ...)`` with G tangent directions
    carried along the start dimension: ``theta`` [B, P] repeated G times, copy g with tangent ``tangents[g]`` [P].
    Call inside ``torch.autograd.forward_ad.dual_level()``."""
    B = theta.shape[0]
    G = tangents.shape[0]
    dual = fwad.make_dual(theta.repeat(G, 1), tangents.repeat_interleave(B, 0))
    per_start = {n: b.repeat(G, 1) for n, b in model.named_buffers() if b.dim() == 2 and b.shape[0] == B}
    return dict(zip(names, torch.split(dual, sizes, 1)), **per_start)


def _readout_jacobian(model, names: list[str], sizes: list[int], theta: torch.Tensor, freqs: torch.Tensor
                      ) -> tuple[MaterialValues, dict[str, torch.Tensor]]:
    """Per-object material values of ``model`` at ``freqs`` and, per quantity, dv[b, f, k] / dtheta[b, p] as
    [B, F, K] x P -> [B, F, K, P] (reverse mode through the material model only, no engine: the starts are
    independent, so one batched backward pass with a one-hot cotangent per (f, k) gives every start's rows).
    Reverse mode, not forward: forward-mode AD of a scalar add imports ``torch._dynamo`` on first use, about as long
    as ``import torch`` itself."""
    B, P = theta.shape
    F = len(freqs)
    th = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        mv = functional_call(model, dict(zip(names, torch.split(th, sizes, 1))), (freqs,))
    values, jac = {}, {}
    for q in _QUANTITIES:
        v = getattr(mv, q)
        if v is None:
            continue
        K = v.shape[-1]
        v = v.expand(B, F, K)
        values[q] = v.detach()
        if v.requires_grad:
            n = F * K
            onehot = torch.eye(n, dtype=v.dtype, device=v.device).reshape(n, 1, F, K).expand(n, B, F, K)
            (g,) = torch.autograd.grad(v, th, onehot, retain_graph=True, is_grads_batched=True, allow_unused=True)
            if g is not None:  # [F K, B, P]
                jac[q] = g.reshape(F, K, B, P).permute(2, 0, 1, 3).contiguous()
    base = MaterialValues(values["eps_r"], values["sigma"], mv.thickness.detach(),
                          scattering=values.get("scattering"), xpd=values.get("xpd"), pattern=mv.pattern,
                          alpha_r=mv.alpha_r, alpha_i=mv.alpha_i, lambda_=mv.lambda_)
    return base, jac


def path_gain_jacobian(ps: PathSet, model, t: Targets, names: list[str], sizes: list[int], theta: torch.Tensor,
                       chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulated path gain (dB) of the target rows [B, M] and its Jacobian [B, M, P] w.r.t. the free parameters
    ``theta`` [B, P] (named ``names`` with ``sizes`` columns each, in ``model.named_parameters`` order)."""
    freqs = t.frequencies_hz
    base, jac = _readout_jacobian(model, names, sizes, theta, freqs)
    obj = ps.obj
    valid = (obj >= 0).to(theta.dtype)  # [N, D]
    idx = obj.clamp_min(0)
    leaves = {q: getattr(base, q)[..., idx].clone().requires_grad_(True) for q in jac}  # [B, F, N, D]
    per_int = replace(base.at_interactions(obj), **leaves)
    L = ps.num_links
    with torch.enable_grad():
        pw = path_power(path_coefficients(ps, per_int, freqs, check=False, chunk_size=chunk_size))  # [B, F, N]
        grads = torch.autograd.grad(pw.sum(), list(leaves.values()))
    G = link_sum(pw.detach(), ps.link, L)  # [B, F, L]
    # dG[b, f, l] / dtheta = sum_k H_q[b, f, l, k] dv_q[b, f, k] / dtheta, H_q = sum over the link's interactions
    # with object k of dp / dq (one scatter-add per quantity into link x object bins)
    K = base.eps_r.shape[-1]
    bins = (ps.link[:, None] * K + idx).reshape(-1)  # [N D]
    dG = 0.0
    for q, g in zip(leaves, grads):
        B, F = g.shape[:2]
        gv = (g * valid).reshape(B, F, -1)
        H = torch.zeros(B, F, L * K, dtype=gv.dtype, device=gv.device).index_add_(-1, bins, gv)
        dG = dG + H.reshape(B, F, L, K) @ jac[q]  # [B, F, L, P]
    rows_G = G[:, t.freq_index, t.link]  # [B, M]
    rows_dG = dG[:, t.freq_index, t.link]  # [B, M, P]
    safe = rows_G.clamp_min(1e-30)
    sim_db = 10.0 * torch.log10(safe)
    J = torch.where((rows_G > 1e-30)[..., None], (10.0 / math.log(10.0)) * rows_dG / safe[..., None],
                    torch.zeros((), dtype=rows_dG.dtype))
    return sim_db, J




def supports(cfg, model) -> bool:
    """Whether :func:`path_gain_residual_jacobian` covers the data residuals of this problem: least-squares path
    gain (dB) as the only loss term and a per-object material model (a MAP prior's rows are appended by the
    caller)."""
    terms = cfg.loss_terms
    return (len(terms) == 1 and terms[0].feature == "path_gain" and terms[0].metric == "mse_db"
            and hasattr(model, "readout"))


def path_gain_residual_jacobian(ps: PathSet, model, t: Targets, cfg, offset_state: torch.Tensor | None,
                                names: list[str], sizes: list[int], theta: torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The scaled path-gain residuals [B, M] of :func:`rftwin.calibrate.loop.residuals` and their Jacobian
    [B, M, P] (gain offset: fixed ``offset_state``, closed form, or none as configured)."""
    sim, J = path_gain_jacobian(ps, model, t, names, sizes, theta, cfg.chunk_size)
    w = t.row_weight("path_gain")
    ok = w > 0
    meas = torch.where(ok, t.path_gain_db, torch.zeros((), dtype=sim.dtype))
    if offset_state is not None:
        off = offset_state.to(sim.dtype)[:, None]
    elif cfg.offset_mode != "none":
        wsum = w.sum().clamp_min(1e-30)
        off = (torch.where(ok, meas - sim, torch.zeros((), dtype=sim.dtype)) * w).sum(-1, keepdim=True) / wsum
        J = J - (J * w[:, None]).sum(-2, keepdim=True) / wsum
    else:
        off = torch.zeros((), dtype=sim.dtype)
    scale = math.sqrt(cfg.loss_terms[0].weight) / torch.sqrt(w.sum().clamp_min(1e-30))
    sw = torch.sqrt(w) * scale
    r = torch.where(ok, sim + off - meas, torch.zeros((), dtype=sim.dtype)) * sw
    return r.detach(), (J * sw[:, None]).detach()


__all__ = ["dual_state", "path_gain_jacobian", "path_gain_residual_jacobian", "supports"]
